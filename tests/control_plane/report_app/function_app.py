"""A minimal app around ``orchestrators.reports.wait_reports`` (tests/control_plane/
test_report_delivery.py): it works first, so reports raised right after start arrive early.
It also registers the real ``guest-reports`` queue trigger (``cotenant.api.events``), which
routes reports to it when the harness runs triggers."""

from __future__ import annotations

import time

import azure.durable_functions as df

from cotenant.api import events
from orchestrators.reports import wait_reports

app = df.DFApp()
app.register_functions(events.bp)


@app.activity_trigger(input_name="seconds")
def pause(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.orchestration_trigger(context_name="context")
def collect(context: df.DurableOrchestrationContext):
    data = context.get_input()
    yield context.call_activity("pause", data["pause"])
    got = yield from wait_reports(
        context, nonce=data["nonce"], expected=[tuple(e) for e in data["expected"]],
        timeout=data["timeout"], what="the test's reports",
        stop=lambda report: report.get("event") == "isolation-broken")
    return {f"{party}|{subject}": report for (party, subject), report in got.items()}
