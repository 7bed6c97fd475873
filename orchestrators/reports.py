"""Waiting for guest-agent reports (raised by the queue trigger, one event name per subject).

Each report is raised as the event ``cotenant.wire.reports.event_name(nonce, party,
subject)``: the challenge, the reporting party and what the report is about (``attestation``,
``keys`` — the start-up pass's outcomes of every key, in one report — or ``key:<name>``, one
key's rotation). An orchestrator waits for exactly the names it expects, each once; reports
that arrived before it started waiting (an agent reports while its VM's deployment is still
running) are delivered at once. Reports for another challenge have other names and are never
waited for.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterable
from typing import Any

import azure.durable_functions as df

from cotenant.wire.reports import event_name
from orchestrators.common import StepFailed, later

Expected = tuple[str, str]  # (reporting party, subject)


def wait_reports(context: df.DurableOrchestrationContext, *, nonce: str,
                 expected: Iterable[Expected], timeout: float, what: str,
                 stop: Callable[[dict[str, Any]], bool] = lambda _: False,
                 ) -> Generator[Any, Any, dict[Expected, dict[str, Any]]]:
    """One report per expected (party, subject), in arrival order; returns them by key.

    Ends early, with what arrived so far, when ``stop(report)`` is true. Raises
    :class:`StepFailed` naming ``what`` and the subjects still missing when the deadline
    passes first.
    """
    pending = {e: context.wait_for_external_event(event_name(nonce, *e)) for e in expected}
    received: dict[Expected, dict[str, Any]] = {}
    if not pending:
        return received
    timer = context.create_timer(later(context, timeout))
    while pending:
        winner = yield context.task_any([*pending.values(), timer])
        if winner is timer:
            missing = ", ".join(f"{party} on {subject}" for party, subject in sorted(pending))
            raise StepFailed(f"timed out after {timeout:.0f}s waiting for {what} "
                             f"(no report from {missing})")
        which = next(e for e, task in pending.items() if task is winner)
        del pending[which]
        report = winner.result
        if isinstance(report, str):  # the host may deliver event data as JSON text
            report = json.loads(report)
        received[which] = report
        if stop(report):
            break
    timer.cancel()
    return received
