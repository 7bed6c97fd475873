"""Parse a party's people CSV into the few fields the aggregates need.

Only the columns the statistics use are kept (age, salary, eye colour, favourite colour,
city, country); names, phone numbers, street addresses and postal codes are dropped while
reading, so they never reach the aggregation code or its output.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass

COLUMNS = (
    "name",
    "phone",
    "age",
    "salary",
    "eye_color",
    "favorite_color",
    "address",
    "postal_code",
    "city",
    "country",
)
MAX_AGE = 130
MAX_TEXT = 100


class RecordError(ValueError):
    """A row or the header of a people CSV is not valid; the message names the line."""


@dataclass(frozen=True, slots=True)
class Person:
    age: int
    salary: int
    eye_color: str
    favorite_color: str
    city: str
    country: str


def read_people(lines: Iterable[str]) -> list[Person]:
    """Read the rows of a people CSV (an iterable of text lines, e.g. a text stream).

    Raises RecordError on a wrong header or an invalid row; the message names the line and
    the column but never repeats a value, since values are personal data.
    """
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise RecordError(f"line 1: not CSV ({exc})") from None
    if header is None:
        raise RecordError("the file is empty: expected a header row")
    if tuple(column.strip() for column in header) != COLUMNS:
        raise RecordError(f"line 1: expected the columns {','.join(COLUMNS)}")
    people: list[Person] = []
    try:
        for row in reader:
            if not row:
                continue
            people.append(_person(row, reader.line_num))
    except csv.Error as exc:
        raise RecordError(f"line {reader.line_num}: not CSV ({exc})") from None
    return people


def _person(row: list[str], line: int) -> Person:
    if len(row) != len(COLUMNS):
        raise RecordError(f"line {line}: expected {len(COLUMNS)} fields, found {len(row)}")
    fields = dict(zip(COLUMNS, (value.strip() for value in row), strict=True))
    return Person(
        age=_integer(fields, "age", line, 0, MAX_AGE),
        salary=_integer(fields, "salary", line, 0, None),
        eye_color=_text(fields, "eye_color", line),
        favorite_color=_text(fields, "favorite_color", line),
        city=_text(fields, "city", line),
        country=_text(fields, "country", line),
    )


def _integer(fields: dict[str, str], column: str, line: int, low: int, high: int | None) -> int:
    raw = fields[column]
    if not raw.isascii() or not raw.isdigit():
        raise RecordError(f"line {line}: {column} must be a whole number")
    value = int(raw)
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise RecordError(f"line {line}: {column} must be {bounds}")
    return value


def _text(fields: dict[str, str], column: str, line: int) -> str:
    value = fields[column]
    if not value:
        raise RecordError(f"line {line}: {column} is empty")
    if len(value) > MAX_TEXT or not value.isprintable():
        raise RecordError(f"line {line}: {column} is not a short printable text")
    return value
