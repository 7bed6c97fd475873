"""The partner analytics: the seed scenario's aggregates, with k-anonymity enforced here.

Privacy rules (enforced on the server, before anything is rendered):

- No statistic is published for a group of fewer than ``k`` people (default 5): such a
  group's count, share and average are all withheld, and only the number of withheld groups
  per statistic is reported.
- No minimum or maximum of an individual's value is computed at all.
- Only the fields listed in ``records.Person`` are ever read.

Everything here is pure: the caller passes the people per party and the reference date
used to turn ages into birth years.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date

from pydantic import BaseModel

from workloads.analytics.records import Person

K_ANONYMITY = 5
TOP_COUNTRIES = 10
TOP_CITIES = 3
TOP_FAVORITE_COLORS = 5

# (name, first birth year); the last one has no lower bound.
GENERATIONS: tuple[tuple[str, int | None], ...] = (
    ("Gen Alpha", 2013),
    ("Gen Z", 1997),
    ("Millennials", 1981),
    ("Gen X", 1965),
    ("Boomers", 1946),
    ("Silent", None),
)


class Count(BaseModel):
    label: str
    people: int


class Share(BaseModel):
    label: str
    people: int
    percent: float  # of the whole population the share is taken from, suppressed included


class Average(BaseModel):
    label: str
    people: int
    average: float


class CountryCities(BaseModel):
    country: str
    people: int
    top_cities: list[Count]


class AnalyticsReport(BaseModel):
    k: int
    reference_date: date
    record_counts: list[Count]  # one per party, then "All parties"
    top_countries: list[CountryCities]
    generations: list[Share]
    generations_by_party: dict[str, list[Share]]
    average_salary_by_country: list[Average]
    average_salary_by_party: list[Average]
    average_salary_combined: Average | None
    eye_colors: list[Count]
    favorite_colors: list[Count]
    suppressed_groups: dict[str, int]  # statistic -> how many groups were withheld


def generation_of(birth_year: int) -> str:
    for name, first_year in GENERATIONS:
        if first_year is None or birth_year >= first_year:
            return name
    raise AssertionError("unreachable: the last generation has no lower bound")


def birth_year(person: Person, reference_date: date) -> int:
    return reference_date.year - person.age


def compute_report(
    parties: Mapping[str, Sequence[Person]],
    *,
    reference_date: date,
    k: int = K_ANONYMITY,
) -> AnalyticsReport:
    """Aggregate the people of every party; groups under ``k`` people are withheld."""
    if k < 2:
        raise ValueError("k must be at least 2")
    everyone = [person for people in parties.values() for person in people]
    suppressed: Counter[str] = Counter()
    report = _Builder(k, suppressed)

    def generation(person: Person) -> str:
        return generation_of(birth_year(person, reference_date))

    generation_order = [name for name, _ in GENERATIONS]
    return AnalyticsReport(
        k=k,
        reference_date=reference_date,
        record_counts=report.counts(
            "record_counts",
            [(name, len(people)) for name, people in parties.items()]
            + [("All parties", len(everyone))],
        ),
        top_countries=report.top_countries(everyone),
        generations=report.shares("generations", everyone, generation, generation_order),
        generations_by_party={
            name: report.shares("generations_by_party", people, generation, generation_order)
            for name, people in parties.items()
        },
        average_salary_by_country=report.averages(
            "average_salary_by_country", _group(everyone, lambda p: p.country)
        ),
        average_salary_by_party=report.averages(
            "average_salary_by_party", {name: list(people) for name, people in parties.items()}
        ),
        average_salary_combined=report.average("average_salary_combined", "All parties", everyone),
        eye_colors=report.ranked("eye_colors", Counter(p.eye_color for p in everyone), None),
        favorite_colors=report.ranked(
            "favorite_colors", Counter(p.favorite_color for p in everyone), TOP_FAVORITE_COLORS
        ),
        suppressed_groups=dict(sorted(suppressed.items())),
    )


class _Builder:
    """Builds each statistic, withholding (and tallying) every group under k people."""

    def __init__(self, k: int, suppressed: Counter[str]) -> None:
        self.k = k
        self.suppressed = suppressed

    def _keep(self, statistic: str, people: int) -> bool:
        if people >= self.k:
            return True
        self.suppressed[statistic] += 1
        return False

    def counts(self, statistic: str, items: Iterable[tuple[str, int]]) -> list[Count]:
        return [
            Count(label=label, people=n) for label, n in items if self._keep(statistic, n)
        ]

    def ranked(self, statistic: str, counter: Counter[str], limit: int | None) -> list[Count]:
        ordered = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
        kept = self.counts(statistic, ordered)
        return kept if limit is None else kept[:limit]

    def shares(
        self,
        statistic: str,
        people: Sequence[Person],
        key: Callable[[Person], str],
        order: Sequence[str],
    ) -> list[Share]:
        counter = Counter(key(person) for person in people)
        total = len(people)
        return [
            Share(label=label, people=counter[label], percent=_percent(counter[label], total))
            for label in order
            if counter[label] and self._keep(statistic, counter[label])
        ]

    def average(self, statistic: str, label: str, people: Sequence[Person]) -> Average | None:
        if not self._keep(statistic, len(people)):
            return None
        mean = sum(person.salary for person in people) / len(people)
        return Average(label=label, people=len(people), average=round(mean, 2))

    def averages(self, statistic: str, groups: Mapping[str, list[Person]]) -> list[Average]:
        results = [self.average(statistic, label, people) for label, people in groups.items()]
        kept = [result for result in results if result is not None]
        return sorted(kept, key=lambda a: (-a.average, a.label))

    def top_countries(self, everyone: Sequence[Person]) -> list[CountryCities]:
        by_country = _group(everyone, lambda p: p.country)
        countries = self.ranked(
            "top_countries", Counter({c: len(ps) for c, ps in by_country.items()}), TOP_COUNTRIES
        )
        return [
            CountryCities(
                country=country.label,
                people=country.people,
                top_cities=self.ranked(
                    "top_cities",
                    Counter(p.city for p in by_country[country.label]),
                    TOP_CITIES,
                ),
            )
            for country in countries
        ]


def _group(people: Iterable[Person], key: Callable[[Person], str]) -> dict[str, list[Person]]:
    groups: defaultdict[str, list[Person]] = defaultdict(list)
    for person in people:
        groups[key(person)].append(person)
    return dict(groups)


def _percent(part: int, whole: int) -> float:
    return round(100 * part / whole, 1) if whole else 0.0
