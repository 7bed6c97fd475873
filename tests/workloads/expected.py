"""Independent computation of the analytics from the plaintext CSVs (csv module only).

Written separately from workloads.analytics so the tests compare two implementations.
"""

from __future__ import annotations

import csv
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "workloads" / "data"
PARTIES = {"Contoso": DATA / "contoso-data.csv", "Fabrikam": DATA / "fabrikam-data.csv"}
K = 5


def load_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def generation(birth_year: int) -> str:
    if birth_year >= 2013:
        return "Gen Alpha"
    if birth_year >= 1997:
        return "Gen Z"
    if birth_year >= 1981:
        return "Millennials"
    if birth_year >= 1965:
        return "Gen X"
    if birth_year >= 1946:
        return "Boomers"
    return "Silent"


def tally(values: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def ranked(counts: dict[str, int], limit: int | None = None) -> list[tuple[str, int]]:
    kept = [(label, n) for label, n in counts.items() if n >= K]
    kept.sort(key=lambda item: (-item[1], item[0]))
    return kept if limit is None else kept[:limit]


def mean_salary(rows: list[dict[str, str]]) -> float:
    return sum(int(row["salary"]) for row in rows) / len(rows)


def expected(year: int) -> dict:
    """The statistics as plain dicts/lists, every group under K withheld."""
    by_party = {name: load_rows(path) for name, path in PARTIES.items()}
    everyone = [row for rows in by_party.values() for row in rows]
    countries = tally([row["country"] for row in everyone])
    top = []
    for country, n in ranked(countries, 10):
        cities = tally([row["city"] for row in everyone if row["country"] == country])
        top.append((country, n, ranked(cities, 3)))
    gens = tally([generation(year - int(row["age"])) for row in everyone])
    gens_by_party = {
        name: {
            g: (n, round(100 * n / len(rows), 1))
            for g, n in tally([generation(year - int(r["age"])) for r in rows]).items()
            if n >= K
        }
        for name, rows in by_party.items()
    }
    salary_by_country = {
        country: mean_salary([row for row in everyone if row["country"] == country])
        for country, n in countries.items()
        if n >= K
    }
    return {
        "counts": {**{n: len(r) for n, r in by_party.items()}, "All parties": len(everyone)},
        "top_countries": top,
        "generations": {g: n for g, n in gens.items() if n >= K},
        "generations_by_party": gens_by_party,
        "salary_by_country": salary_by_country,
        "salary_by_party": {name: mean_salary(rows) for name, rows in by_party.items()},
        "salary_combined": mean_salary(everyone),
        "eye_colors": ranked(tally([row["eye_color"] for row in everyone])),
        "favorite_colors": ranked(tally([row["favorite_color"] for row in everyone]), 5),
    }


def assert_report_matches(report: dict, year: int) -> None:
    """Check an AnalyticsReport (as JSON) against the independent computation."""
    want = expected(year)
    assert report["k"] == K
    assert {c["label"]: c["people"] for c in report["record_counts"]} == want["counts"]
    got_top = [
        (c["country"], c["people"], [(t["label"], t["people"]) for t in c["top_cities"]])
        for c in report["top_countries"]
    ]
    assert got_top == want["top_countries"]
    assert {g["label"]: g["people"] for g in report["generations"]} == want["generations"]
    got_by_party = {
        party: {g["label"]: (g["people"], g["percent"]) for g in shares}
        for party, shares in report["generations_by_party"].items()
    }
    assert got_by_party == want["generations_by_party"]
    got_country = {a["label"]: a["average"] for a in report["average_salary_by_country"]}
    assert got_country.keys() == want["salary_by_country"].keys()
    for country, mean in want["salary_by_country"].items():
        assert abs(got_country[country] - mean) <= 0.01, country
    got_party = {a["label"]: a["average"] for a in report["average_salary_by_party"]}
    assert got_party.keys() == want["salary_by_party"].keys()
    for party, mean in want["salary_by_party"].items():
        assert abs(got_party[party] - mean) <= 0.01, party
    assert abs(report["average_salary_combined"]["average"] - want["salary_combined"]) <= 0.01
    assert [(c["label"], c["people"]) for c in report["eye_colors"]] == want["eye_colors"]
    got_fav = [(c["label"], c["people"]) for c in report["favorite_colors"]]
    assert got_fav == want["favorite_colors"]
