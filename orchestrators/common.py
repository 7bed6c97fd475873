"""Helpers shared by the orchestrators. Pure and deterministic: time comes from the context.

Activities report permanent failures as ``{"ok": false, "error": {...}}`` results (so the
retry policy does not retry what cannot succeed) and raise on transient ones (so
``RetryOptions`` retries them).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import azure.durable_functions as df

# Defaults; the HTTP starter passes the app's settings in each orchestration's input.
DEFAULT_TIMING: dict[str, float] = {
    "poll_seconds": 15.0,
    "deployment_wait_seconds": 0.0,
    "deployment_timeout_seconds": 3600.0,
    "report_timeout_seconds": 1200.0,
    "retry_first_seconds": 5.0,
    "retry_attempts": 5,
    "deploy_attempts": 3,
    "delete_timeout_seconds": 3600.0,
}


class StepFailed(Exception):
    """A step failed permanently; the message names the step, resource and cloud message."""


def timing_of(data: dict[str, Any]) -> dict[str, float]:
    return {**DEFAULT_TIMING, **(data.get("timing") or {})}


def retry_options(timing: dict[str, float]) -> df.RetryOptions:
    first_ms = max(1, int(timing["retry_first_seconds"] * 1000))
    return df.RetryOptions(first_ms, int(timing["retry_attempts"]))


def later(context: df.DurableOrchestrationContext, seconds: float) -> datetime:
    return context.current_utc_datetime + timedelta(seconds=seconds)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def checked(result: dict[str, Any], step: str) -> dict[str, Any]:
    """Return the activity result or raise :class:`StepFailed` with its error."""
    if result.get("ok", True):
        return result
    error = result.get("error") or {}
    where = f" on {error['resource']}" if error.get("resource") else ""
    raise StepFailed(f"{step} failed{where}: {error.get('message', 'unknown error')}")


def failure_message(exc: BaseException) -> str:
    """The useful first line of an activity/sub-orchestration failure."""
    text = str(exc).strip()
    for marker in ("Activity function", "Sub orchestrator function", "Orchestrator function"):
        if text.startswith(marker) and "failed: " in text:
            text = text.split("failed: ", 1)[1]
    return text.split("\n")[0].strip() or exc.__class__.__name__


class Progress:
    """A custom-status document with a phase timeline, published on every change."""

    def __init__(self, context: df.DurableOrchestrationContext, **fields: Any) -> None:
        self._context = context
        self.status: dict[str, Any] = {"phase": "starting", "timeline": {}, "errors": [],
                                       **fields}

    def publish(self) -> None:
        self._context.set_custom_status(self.status)

    def start(self, *phases: str) -> None:
        now = iso(self._context.current_utc_datetime)
        for phase in phases:
            self.status["timeline"][phase] = {"state": "running", "started": now}
        self.status["phase"] = phases[-1] if phases else self.status["phase"]
        self.publish()

    def finish(self, phase: str, state: str = "succeeded", **details: Any) -> None:
        entry = self.status["timeline"].setdefault(phase, {})
        entry.update(state=state, ended=iso(self._context.current_utc_datetime), **details)
        self.publish()

    def fail(self, phase: str, message: str) -> None:
        self.status["errors"].append({"phase": phase, "message": message})
        self.status["phase"] = "failed"
        self.finish(phase, "failed", error=message)

    def set(self, **fields: Any) -> None:
        self.status.update(fields)
        self.publish()
