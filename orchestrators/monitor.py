"""``monitor_deployment``: start one module deployment, then poll it with durable timers.

``start_deployment`` starts it and ``get_deployment`` reads the state. With
``deployment_wait_seconds`` (0 = off) both wait up to that long for the end before returning
(the lab answers when the deployment ends; Azure is re-read every ``poll_seconds``), so a short
deployment costs one step and a long one one step per wait instead of two (timer, then read)
per poll; otherwise the orchestration sleeps on a durable timer between polls.
A failure whose cloud error code is transient restarts the deployment (up to
``deploy_attempts``); any other failure ends the orchestration with the cloud's message.
"""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from orchestrators.blueprint import bp
from orchestrators.common import StepFailed, checked, later, retry_options, timing_of

TERMINAL = ("Succeeded", "Failed", "Canceled")


def monitor(context: df.DurableOrchestrationContext, spec: dict[str, Any], module: str,
            party: str | None, timing: dict[str, float], **extra: Any) -> df.Task:
    """Schedule the monitor sub-orchestration for ``module`` (of ``party``) of the tenant
    ``spec`` (``start_deployment`` builds the plan from it)."""
    return context.call_sub_orchestrator("monitor_deployment", {
        "spec": spec, "module": module, "party": party, "timing": timing, "extra": extra,
    })


@bp.orchestration_trigger(context_name="context")
def monitor_deployment(context: df.DurableOrchestrationContext):
    data = context.get_input()
    timing = timing_of(data)
    retry = retry_options(timing)
    module, party = data["module"], data.get("party")
    name = f"{module} of {party}" if party else module
    context.set_custom_status({"deployment": name, "state": "Starting", "attempt": 1})
    attempt = 1
    while True:
        started = yield context.call_activity_with_retry(
            "start_deployment", retry, {**data, "wait_seconds": timing["deployment_wait_seconds"]})
        deployment = checked(started, f"starting deployment {name}")["deployment"]
        where = {"resource_group": deployment["resource_group"], "name": deployment["name"]}
        deadline = later(context, timing["deployment_timeout_seconds"])
        while deployment["state"] not in TERMINAL:
            if context.current_utc_datetime >= deadline:
                raise StepFailed(
                    f"deployment {name} (module {module}) did not finish within "
                    f"{timing['deployment_timeout_seconds']:.0f}s")
            wait = float(timing["deployment_wait_seconds"])
            if wait <= 0:
                yield context.create_timer(later(context, timing["poll_seconds"]))
            polled = yield context.call_activity_with_retry("get_deployment", retry, {
                **where, "wait_seconds": wait, "poll_seconds": timing["poll_seconds"]})
            deployment = checked(polled, f"reading deployment {name}")["deployment"]
            context.set_custom_status({"deployment": name, "state": deployment["state"],
                                       "attempt": attempt})
        if deployment["state"] == "Succeeded":
            # What a parent needs; the outputs stay in this orchestration's history rather
            # than in the parent's, which every later episode of the parent replays.
            return {k: deployment.get(k) for k in ("resource_group", "name", "module", "state")}
        if deployment.get("retryable") and attempt < int(timing["deploy_attempts"]):
            attempt += 1
            yield context.create_timer(later(context, timing["retry_first_seconds"]))
            continue
        raise StepFailed(
            f"deployment {name} (module {module}) failed after {attempt} attempt(s): "
            f"{deployment.get('error_code') or deployment['state']}: "
            f"{deployment.get('error') or 'no message from the cloud'}")
