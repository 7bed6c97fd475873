"""The analytics core against an independent computation, and its privacy rules."""

from __future__ import annotations

import io
import json
from datetime import date

import pytest

from tests.workloads.expected import PARTIES, assert_report_matches
from workloads.analytics.aggregates import compute_report, generation_of
from workloads.analytics.records import COLUMNS, Person, RecordError, read_people

REFERENCE = date(2026, 11, 27)


def _parties() -> dict[str, list[Person]]:
    result = {}
    for name, path in PARTIES.items():
        with path.open(newline="", encoding="utf-8") as handle:
            result[name] = read_people(handle)
    return result


def _report_json(parties: dict[str, list[Person]], **kwargs) -> dict:
    report = compute_report(parties, reference_date=kwargs.pop("reference_date", REFERENCE))
    return json.loads(report.model_dump_json())


def test_report_matches_independent_computation_of_the_scenario_data() -> None:
    assert_report_matches(_report_json(_parties()), REFERENCE.year)


def test_report_depends_on_the_reference_date_not_the_clock() -> None:
    parties = _parties()
    later = date(2040, 1, 1)
    report = json.loads(compute_report(parties, reference_date=later).model_dump_json())
    assert_report_matches(report, later.year)
    assert report != _report_json(parties)


@pytest.mark.parametrize(
    ("year", "generation"),
    [
        (2013, "Gen Alpha"),
        (2012, "Gen Z"),
        (1997, "Gen Z"),
        (1996, "Millennials"),
        (1981, "Millennials"),
        (1980, "Gen X"),
        (1965, "Gen X"),
        (1964, "Boomers"),
        (1946, "Boomers"),
        (1945, "Silent"),
    ],
)
def test_generation_boundaries(year: int, generation: str) -> None:
    assert generation_of(year) == generation


def _person(country: str, salary: int, city: str = "Town", age: int = 40) -> Person:
    return Person(age, salary, "Brown", "Red", city, country)


def test_groups_under_k_are_withheld_everywhere() -> None:
    # Iceland has 4 people, one of them with an outstanding salary: nothing about Iceland,
    # and no value derived from that salary alone, may appear in the output.
    crowd = [_person("Norway", 50_000 + i, city="Oslo") for i in range(6)]
    few = [_person("Iceland", 9_999_999, city="Reykjavik", age=70) for _ in range(4)]
    report = compute_report({"A": crowd + few, "B": []}, reference_date=REFERENCE)
    text = report.model_dump_json()
    assert "Iceland" not in text and "Reykjavik" not in text
    assert "9999999" not in text and "Boomers" not in text  # 4 Boomers: withheld
    assert [c.label for c in report.record_counts] == ["A", "All parties"]  # B has 0 < k
    assert [a.label for a in report.average_salary_by_country] == ["Norway"]
    assert report.suppressed_groups["top_countries"] == 1
    assert report.suppressed_groups["average_salary_by_country"] == 1
    assert report.suppressed_groups["generations"] == 1


def test_party_with_fewer_than_k_people_gets_no_average() -> None:
    report = compute_report(
        {"Big": [_person("X", 10) for _ in range(5)], "Small": [_person("X", 99)] * 4},
        reference_date=REFERENCE,
    )
    assert [a.label for a in report.average_salary_by_party] == ["Big"]
    assert report.average_salary_combined is not None
    assert report.average_salary_combined.people == 9


def test_no_minimum_or_maximum_is_published() -> None:
    text = compute_report(_parties(), reference_date=REFERENCE).model_dump_json().lower()
    for word in ('"min', '"max', "lowest", "highest"):
        assert word not in text


def test_no_identifying_column_reaches_the_report() -> None:
    path = PARTIES["Contoso"]
    first = path.read_text(encoding="utf-8").splitlines()[1].split(",")
    name, phone, address, postal = first[0], first[1], first[6], first[7]
    text = compute_report(_parties(), reference_date=REFERENCE).model_dump_json()
    for value in (name, phone, address, postal):
        assert value not in text


def test_k_below_two_is_refused() -> None:
    with pytest.raises(ValueError):
        compute_report({}, reference_date=REFERENCE, k=1)


def _csv(*rows: str) -> io.StringIO:
    return io.StringIO("\n".join([",".join(COLUMNS), *rows]) + "\n")


GOOD = "Ann Lee,+1 555,30,1000,Brown,Red,1 Main St,12345,Oslo,Norway"


def test_read_people_keeps_only_the_statistical_fields() -> None:
    [person] = read_people(_csv(GOOD))
    assert person == Person(30, 1000, "Brown", "Red", "Oslo", "Norway")
    assert not hasattr(person, "name")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("a,b,c\n", "line 1: expected the columns"),
        (",".join(COLUMNS) + "\n" + GOOD.replace(",30,", ",thirty,") + "\n", "line 2: age"),
        (",".join(COLUMNS) + "\n" + GOOD.replace(",30,", ",200,") + "\n", "line 2: age"),
        (",".join(COLUMNS) + "\n" + GOOD.replace(",1000,", ",-5,") + "\n", "line 2: salary"),
        (",".join(COLUMNS) + "\n" + GOOD.replace(",Oslo,", ",,") + "\n", "line 2: city"),
        (",".join(COLUMNS) + "\n" + GOOD + ",extra\n", "line 2: expected 10 fields"),
        (",".join(COLUMNS) + '\n"unterminated\n', "not CSV"),
    ],
)
def test_read_people_rejects_bad_input_without_echoing_values(text: str, message: str) -> None:
    with pytest.raises(RecordError) as caught:
        read_people(io.StringIO(text))
    assert message in str(caught.value)
    assert "Ann Lee" not in str(caught.value) and "thirty" not in str(caught.value)
