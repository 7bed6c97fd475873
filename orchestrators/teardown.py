"""``teardown_tenant``: delete the resource group (monitored), optionally purge vaults."""

from __future__ import annotations

import azure.durable_functions as df

from orchestrators.blueprint import bp
from orchestrators.common import (
    Progress,
    StepFailed,
    checked,
    failure_message,
    later,
    retry_options,
    timing_of,
)


@bp.orchestration_trigger(context_name="context")
def teardown_tenant(context: df.DurableOrchestrationContext):
    data = context.get_input()
    plan = data["plan"]
    timing = timing_of(data)
    retry = retry_options(timing)
    progress = Progress(context, tenant=plan["tenant"], purge=bool(data.get("purge")))
    step = "delete-resource-group"
    try:
        progress.start(step)
        where = {"plan": plan}
        state = checked((yield context.call_activity_with_retry(
            "delete_resource_group", retry, where)), step)["state"]
        deadline = later(context, timing["delete_timeout_seconds"])
        while state != "NotFound":
            if context.current_utc_datetime >= deadline:
                raise StepFailed(f"resource group {plan['resource_group']} still exists after "
                                 f"{timing['delete_timeout_seconds']:.0f}s")
            yield context.create_timer(later(context, timing["poll_seconds"]))
            state = checked((yield context.call_activity_with_retry(
                "resource_group_state", retry, where)), step)["state"]
        progress.finish(step)
        if data.get("purge"):
            step = "purge-vaults"
            progress.start(step)
            checked((yield context.call_activity_with_retry("purge_vaults", retry, where)), step)
            progress.finish(step)
        step = "record"
        progress.start(step)
        yield context.call_activity_with_retry("record_event", retry, {
            "tenant": plan["tenant"], "kind": "teardown",
            "detail": {"resource_group": plan["resource_group"],
                       "purged": bool(data.get("purge"))}})
        progress.finish(step)
        progress.set(phase="succeeded")
        return {"tenant": plan["tenant"], "resource_group": plan["resource_group"],
                "deleted": True, "purged": bool(data.get("purge"))}
    except Exception as exc:
        progress.fail(step, failure_message(exc))
        raise StepFailed(failure_message(exc)) from None
