"""Waiting for guest-agent reports (raised as ``report`` events by the queue trigger)."""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from typing import Any

import azure.durable_functions as df

from orchestrators.common import StepFailed, later

REPORT_EVENT = "report"


def wait_reports(context: df.DurableOrchestrationContext, *, nonce: str, timeout: float,
                 done: Callable[[list[dict[str, Any]]], bool], what: str
                 ) -> Generator[Any, Any, list[dict[str, Any]]]:
    """Collect reports answering ``nonce`` until ``done(received)`` says we have them all.

    Raises :class:`StepFailed` naming ``what`` when the deadline passes first. Reports for
    another challenge (a previous run, a replayed message) are ignored.
    """
    timer = context.create_timer(later(context, timeout))
    received: list[dict[str, Any]] = []
    while True:
        event = context.wait_for_external_event(REPORT_EVENT)
        winner = yield context.task_any([event, timer])
        if winner is timer:
            raise StepFailed(f"timed out after {timeout:.0f}s waiting for {what}")
        report = winner.result
        if isinstance(report, str):  # the host may deliver event data as JSON text
            report = json.loads(report)
        if report.get("nonce") != nonce:
            continue
        received.append(report)
        if done(received):
            timer.cancel()
            return received
