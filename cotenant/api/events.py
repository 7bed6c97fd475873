"""Events into the control plane: guest reports (queue trigger) and scheduled rotation (timer).

A guest report is validated (schema, tenant and instance exist and belong together), recorded
in the audit table (an ``outcomes`` report: one row per key outcome, in one transaction) and
raised on the waiting orchestration, once, as the event named for its challenge, party and
subject (``cotenant.wire.reports.event_name``). A
malformed or unroutable message is moved to ``guest-reports-quarantine`` with the reason, and
logged; it is never retried.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func
from azure.core.exceptions import ResourceExistsError

from cotenant.api import service
from cotenant.api.audit import audit_log, report_rows
from cotenant.api.status import decoded, runtime
from cotenant.cloud.storage import storage_access
from cotenant.spec import SpecError, parse_spec
from cotenant.wire.reports import Report, ReportError, decode_message, report_event_name

bp = df.Blueprint()
log = logging.getLogger("cotenant.events")
REPORTS_QUEUE = "guest-reports"
QUARANTINE_QUEUE = "guest-reports-quarantine"
TERMINAL = ("Completed", "Failed", "Terminated")


class Unroutable(ValueError):
    """The report is well-formed but names no waiting orchestration of its tenant."""


def quarantine(body: bytes, reason: str) -> None:
    log.warning("guest report quarantined: %s", reason)
    access = storage_access()
    if access is None:
        return
    queue = access.queue(QUARANTINE_QUEUE)
    with contextlib.suppress(ResourceExistsError):
        queue.create_queue()
    queue.send_message(json.dumps({
        "reason": reason, "at": datetime.now(UTC).isoformat(),
        "message_base64": base64.b64encode(body[:32768]).decode()}))


async def route_report(client: df.DurableOrchestrationClient, body: bytes) -> str:
    """Validate, audit and deliver one report; returns what happened (for logs and tests)."""
    try:
        report = decode_message(body)
    except ReportError as exc:
        quarantine(body, f"invalid report: {exc}")
        return "quarantined"
    try:
        delivered = await _deliver(client, report)
    except Unroutable as exc:
        quarantine(body, str(exc))
        return "quarantined"
    return delivered


async def _deliver(client: df.DurableOrchestrationClient, report: Report) -> str:
    tenant, instance = report.tenant, report.instance
    if instance != tenant and not instance.startswith(f"{tenant}:"):
        raise Unroutable(f"instance {instance!r} does not belong to tenant {tenant!r}")
    # One status read per report (every instance of a tenant is named after it); the tenant
    # itself is looked up only to explain a miss.
    target = await client.get_status(instance)
    if target is None or target.runtime_status is None:
        deploy = await client.get_status(tenant) if instance != tenant else None
        if deploy is None or deploy.runtime_status is None:
            raise Unroutable(f"unknown tenant {tenant!r}")
        raise Unroutable(f"unknown orchestration instance {instance!r}")
    if report.event == "heartbeat":
        return "heartbeat"
    # One row per key outcome of an ``outcomes`` report, written in one transaction.
    await asyncio.to_thread(audit_log().record_many, tenant, report_rows(report))
    if runtime(target) in TERMINAL:
        return "recorded"  # the orchestration no longer waits (a late or repeated report)
    await client.raise_event(instance, report_event_name(report), report.model_dump(mode="json"))
    return "delivered"


@bp.queue_trigger(arg_name="msg", queue_name=REPORTS_QUEUE, connection="AzureWebJobsStorage")
@bp.durable_client_input(client_name="client")
async def guest_report(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
    outcome = await route_report(client, msg.get_body())
    log.info("guest report %s: %s", msg.id, outcome)


def rotation_due(deploy: Any, rotations: list[Any], now: datetime) -> bool:
    try:
        spec = parse_spec((decoded(deploy.input_) or {}).get("spec") or {})
    except SpecError:
        return False
    done = [r.created_time for r in rotations if runtime(r) == "Completed"]
    last = max([*done, deploy.last_updated_time])
    if last.tzinfo is None:
        last = last.replace(tzinfo=UTC)
    return now - last >= timedelta(days=spec.key_rotation_days)


async def rotate_due_tenants(client: df.DurableOrchestrationClient, now: datetime) -> list[str]:
    """Start ``rotate_keys`` for every deployed tenant whose interval has elapsed; the
    instance id is tenant + date, so a second firing the same day starts nothing."""
    everything = await client.get_status_all()
    started = []
    for deploy in everything:
        if deploy.name != service.DEPLOY or runtime(deploy) != "Completed":
            continue
        name = deploy.instance_id
        full = await client.get_status(name, show_input=True)
        rotations = [s for s in everything if s.instance_id.startswith(f"{name}:rotate:")]
        if not rotation_due(full, rotations, now):
            continue
        reply = await service.rotate_tenant(client, name, "", reason="scheduled",
                                            instance=f"{name}:rotate:{now:%Y-%m-%d}")
        if reply.status == 202 and reply.body.outcome == "started":
            started.append(name)
    return started


@bp.timer_trigger(schedule="0 0 3 * * *", arg_name="timer", run_on_startup=False)
@bp.durable_client_input(client_name="client")
async def rotation_timer(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    started = await rotate_due_tenants(client, datetime.now(UTC))
    log.info("scheduled rotation started for %s", ", ".join(started) or "no tenant")
