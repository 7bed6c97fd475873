"""For the control plane's CLI (``cotenant up``): wait for Woodgrove's aggregates, print them."""

from __future__ import annotations

import time
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table


class AnalyticsUnavailable(RuntimeError):
    """The aggregates could not be fetched; the message is one line for the user."""


def fetch_report(app_url: str, *, timeout: float = 300.0, poll: float = 1.0,
                 verify: bool | str = True) -> dict[str, Any]:
    """GET ``<app_url>/api/analytics`` until the one aggregation run has finished."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.get(f"{app_url.rstrip('/')}/api/analytics", timeout=30,
                                 verify=verify)
        except httpx.HTTPError as exc:
            raise AnalyticsUnavailable(f"{app_url}: {exc.__class__.__name__}") from None
        if response.status_code == 200:
            return response.json()
        try:
            error = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            raise AnalyticsUnavailable(f"{app_url}: HTTP {response.status_code}") from None
        if error.get("code") != "NotReady":
            raise AnalyticsUnavailable(f"{app_url}: {error.get('code')}: {error.get('message')}")
        if time.monotonic() >= deadline:
            raise AnalyticsUnavailable(f"{app_url}: the aggregates were not ready in time")
        time.sleep(poll)


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    return table


def render_report(report: dict[str, Any], console: Console) -> None:
    """The aggregates as rich tables (already k-anonymous: nothing is filtered here)."""
    money = "{:,.2f}".format
    console.print(_table("Records", ["Party", "People"],
                         [[c["label"], c["people"]] for c in report["record_counts"]]))
    console.print(_table(
        "Top countries", ["Country", "People", "Top cities"],
        [[c["country"], c["people"],
          ", ".join(f"{t['label']} ({t['people']})" for t in c["top_cities"])]
         for c in report["top_countries"]]))
    console.print(_table(
        f"Generations (reference {report['reference_date']})", ["Generation", "People", "%"],
        [[g["label"], g["people"], g["percent"]] for g in report["generations"]]))
    for party, shares in report["generations_by_party"].items():
        console.print(_table(f"Generations at {party}", ["Generation", "People", "%"],
                             [[g["label"], g["people"], g["percent"]] for g in shares]))
    by_party = [[a["label"], a["people"], money(a["average"])]
                for a in report["average_salary_by_party"]]
    if report.get("average_salary_combined"):
        combined = report["average_salary_combined"]
        by_party.append([combined["label"], combined["people"], money(combined["average"])])
    console.print(_table("Average salary per company", ["Company", "People", "Average"],
                         by_party))
    console.print(_table("Average salary by country", ["Country", "People", "Average"],
                         [[a["label"], a["people"], money(a["average"])]
                          for a in report["average_salary_by_country"]]))
    console.print(_table("Eye colours", ["Colour", "People"],
                         [[c["label"], c["people"]] for c in report["eye_colors"]]))
    console.print(_table("Top favourite colours", ["Colour", "People"],
                         [[c["label"], c["people"]] for c in report["favorite_colors"]]))
    console.print(f"Groups of fewer than {report['k']} people withheld: "
                  + (", ".join(f"{k} {v}" for k, v in report["suppressed_groups"].items())
                     or "none"))
