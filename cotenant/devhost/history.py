"""History events in the shape the Durable extension sends to the Python worker.

Each event is a plain dict with ``EventType``, ``EventId``, ``IsPlayed`` and ``Timestamp``
plus the type's own fields, exactly as ``azure.durable_functions`` reads them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import IntEnum
from typing import Any


class EventType(IntEnum):
    EXECUTION_STARTED = 0
    EXECUTION_COMPLETED = 1
    EXECUTION_FAILED = 2
    EXECUTION_TERMINATED = 3
    TASK_SCHEDULED = 4
    TASK_COMPLETED = 5
    TASK_FAILED = 6
    SUB_ORCHESTRATION_CREATED = 7
    SUB_ORCHESTRATION_COMPLETED = 8
    SUB_ORCHESTRATION_FAILED = 9
    TIMER_CREATED = 10
    TIMER_FIRED = 11
    ORCHESTRATOR_STARTED = 12
    ORCHESTRATOR_COMPLETED = 13
    EVENT_RAISED = 15
    CONTINUE_AS_NEW = 16
    EXECUTION_SUSPENDED = 19
    EXECUTION_RESUMED = 20


def iso(ts: datetime) -> str:
    """UTC timestamp as the host writes it (microseconds, trailing ``Z``)."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def event(kind: EventType, ts: datetime, event_id: int = -1, **fields: Any) -> dict[str, Any]:
    return {"EventType": int(kind), "EventId": event_id, "IsPlayed": False,
            "Timestamp": iso(ts), **fields}


def orchestrator_started(ts: datetime) -> dict[str, Any]:
    return event(EventType.ORCHESTRATOR_STARTED, ts)


def orchestrator_completed(ts: datetime) -> dict[str, Any]:
    return event(EventType.ORCHESTRATOR_COMPLETED, ts)


def execution_started(ts: datetime, name: str, input_text: str | None,
                      parent_instance_id: str | None = None) -> dict[str, Any]:
    fields: dict[str, Any] = {"Name": name, "Input": input_text, "Version": ""}
    if parent_instance_id:
        fields["ParentInstance"] = {"OrchestrationInstance": {"InstanceId": parent_instance_id}}
    return event(EventType.EXECUTION_STARTED, ts, **fields)


def execution_completed(ts: datetime, status: str, result: str | None) -> dict[str, Any]:
    return event(EventType.EXECUTION_COMPLETED, ts, OrchestrationStatus=status, Result=result)


def task_scheduled(ts: datetime, task_id: int, name: str, input_text: str | None) -> dict[str, Any]:
    return event(EventType.TASK_SCHEDULED, ts, task_id, Name=name, Input=input_text)


def task_completed(ts: datetime, task_id: int, result: str | None) -> dict[str, Any]:
    return event(EventType.TASK_COMPLETED, ts, TaskScheduledId=task_id, Result=result)


def task_failed(ts: datetime, task_id: int, reason: str, details: str) -> dict[str, Any]:
    return event(EventType.TASK_FAILED, ts, TaskScheduledId=task_id, Reason=reason,
                 Details=details)


def sub_orchestration_created(ts: datetime, task_id: int, name: str, instance_id: str,
                              input_text: str | None) -> dict[str, Any]:
    return event(EventType.SUB_ORCHESTRATION_CREATED, ts, task_id, Name=name,
                 InstanceId=instance_id, Input=input_text)


def sub_orchestration_completed(ts: datetime, task_id: int, result: str | None) -> dict[str, Any]:
    return event(EventType.SUB_ORCHESTRATION_COMPLETED, ts, TaskScheduledId=task_id,
                 Result=result)


def sub_orchestration_failed(ts: datetime, task_id: int, reason: str,
                             details: str) -> dict[str, Any]:
    return event(EventType.SUB_ORCHESTRATION_FAILED, ts, TaskScheduledId=task_id,
                 Reason=reason, Details=details)


def timer_created(ts: datetime, timer_id: int, fire_at: datetime) -> dict[str, Any]:
    return event(EventType.TIMER_CREATED, ts, timer_id, FireAt=iso(fire_at))


def timer_fired(ts: datetime, timer_id: int, fire_at: str) -> dict[str, Any]:
    return event(EventType.TIMER_FIRED, ts, TimerId=timer_id, FireAt=fire_at)


def event_raised(ts: datetime, name: str, input_text: str | None) -> dict[str, Any]:
    return event(EventType.EVENT_RAISED, ts, Name=name, Input=input_text)


def continue_as_new(ts: datetime, input_text: str | None) -> dict[str, Any]:
    return event(EventType.CONTINUE_AS_NEW, ts, Result=input_text)


def describe(evt: dict[str, Any], *, with_output: bool) -> dict[str, Any]:
    """One history event as the status API shows it (``showHistory=true``)."""
    kind = EventType(evt["EventType"])
    out: dict[str, Any] = {"EventType": _PASCAL[kind], "Timestamp": evt["Timestamp"]}
    for key in ("EventId", "TaskScheduledId", "TimerId", "Name", "FireAt", "InstanceId",
                "Reason", "OrchestrationStatus"):
        if key in evt and evt[key] not in (None, -1):
            out["FunctionName" if key == "Name" else key] = evt[key]
    if with_output:
        for key in ("Result", "Input", "Details"):
            if evt.get(key) is not None:
                out[key] = evt[key]
    return out


_PASCAL = {kind: "".join(part.capitalize() for part in kind.name.split("_"))
           for kind in EventType}
_PASCAL[EventType.SUB_ORCHESTRATION_CREATED] = "SubOrchestrationInstanceCreated"
_PASCAL[EventType.SUB_ORCHESTRATION_COMPLETED] = "SubOrchestrationInstanceCompleted"
_PASCAL[EventType.SUB_ORCHESTRATION_FAILED] = "SubOrchestrationInstanceFailed"
