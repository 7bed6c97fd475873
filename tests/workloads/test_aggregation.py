"""Woodgrove's aggregation in the lab, over HTTP: the aggregates, the streamed progress of
the single run (two uvicorn workers), no plaintext or key material anywhere, and the summary
``cotenant up`` prints. The lab's CVM agent released the partners' keys through their
release policies and per-key grants; the sealed files came from the partners' containers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from cotenant.azurite import free_port
from tests.workloads.conftest import REFERENCE
from tests.workloads.expected import assert_report_matches
from tests.workloads.scenario import party_csv
from workloads.analytics.summary import AnalyticsUnavailable, fetch_report, render_report

pytestmark = [pytest.mark.azurite, pytest.mark.slow]


@pytest.fixture(scope="module")
def woodgrove(lab_apps: dict[str, str]) -> dict:
    return {"url": lab_apps["woodgrove"], "state": lab_apps["woodgrove:state"]}


def _wait_report(url: str, timeout: float = 150.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = httpx.get(url + "/api/analytics")
        if response.status_code == 200:
            return response.json()
        assert response.json()["error"]["code"] == "NotReady", response.text
        time.sleep(0.3)
    raise AssertionError("the aggregation did not finish")


def test_aggregates_match_the_independent_computation(woodgrove: dict) -> None:
    assert_report_matches(_wait_report(woodgrove["url"]), REFERENCE.year)


def test_progress_is_streamed_and_the_run_happened_once(woodgrove: dict) -> None:
    _wait_report(woodgrove["url"])
    events = []
    with httpx.stream("GET", woodgrove["url"] + "/api/analytics/events", timeout=30) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    steps = [e["step"] for e in events]
    assert steps[0] == "start" and steps[-1] == "done" and steps.count("start") == 1
    assert steps.count("decrypt") == 4  # two partners: decrypting, decrypted
    assert "Contoso: 250 records decrypted in memory" in [e["message"] for e in events]


def test_no_plaintext_or_key_material_on_disk_or_in_responses(woodgrove: dict) -> None:
    _wait_report(woodgrove["url"])
    first_row = party_csv("contoso").read_text(encoding="utf-8").splitlines()[1].split(",")
    name, phone, address = first_row[0], first_row[1], first_row[6]
    for path in Path(woodgrove["state"]).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for value in (name, phone, address):
                assert value.encode() not in data, path
    for route in ("/api/analytics", "/api/keys", "/api/info"):
        text = httpx.get(woodgrove["url"] + route).text
        assert name not in text and phone not in text and "PRIVATE" not in text
        assert '"d":' not in text  # no private JWK member


def test_summary_for_cotenant_up_fetches_and_prints_the_aggregates(woodgrove: dict) -> None:
    report = fetch_report(woodgrove["url"], timeout=60, poll=0.3)
    assert_report_matches(report, REFERENCE.year)
    console = Console(record=True, width=140)
    render_report(report, console)
    text = console.export_text()
    assert "All parties" in text and "Gen X" in text and "withheld" in text
    assert "Lucas Iyer" not in text


def test_summary_reports_an_unreachable_app_in_one_line() -> None:
    with pytest.raises(AnalyticsUnavailable) as caught:
        fetch_report(f"http://127.0.0.1:{free_port()}", timeout=1)
    assert "\n" not in str(caught.value)


def test_isolation_probes_get_the_other_vaults_refusal(lab_apps: dict[str, str]) -> None:
    # Fabrikam's agent probes Contoso's and Woodgrove's keys explicitly (isolation_probes).
    response = httpx.get(lab_apps["fabrikam"] + "/api/isolation", timeout=60)
    results = response.json()["results"]
    assert sorted(r["name"] for r in results) == ["contoso-secret-key", "woodgrove-secret-key"]
    for result in results:
        assert result["released"] is False and result["status"] == 403, result
        assert result["code"].startswith("Forbidden") and "when" not in result
