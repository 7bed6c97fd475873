"""Orchestrator actions as the SDK returns them: flattening and determinism checks."""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ActionType(IntEnum):
    CALL_ACTIVITY = 0
    CALL_ACTIVITY_WITH_RETRY = 1
    CALL_SUB_ORCHESTRATOR = 2
    CALL_SUB_ORCHESTRATOR_WITH_RETRY = 3
    CONTINUE_AS_NEW = 4
    CREATE_TIMER = 5
    WAIT_FOR_EXTERNAL_EVENT = 6
    CALL_ENTITY = 7
    CALL_HTTP = 8
    SIGNAL_ENTITY = 9
    WHEN_ANY = 11
    WHEN_ALL = 12


COMPOUND = {ActionType.WHEN_ANY, ActionType.WHEN_ALL}
# Actions that take the next sequence id when scheduled.
SCHEDULING = {ActionType.CALL_ACTIVITY, ActionType.CALL_ACTIVITY_WITH_RETRY,
              ActionType.CALL_SUB_ORCHESTRATOR, ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY,
              ActionType.CREATE_TIMER}
RETRYING = {ActionType.CALL_ACTIVITY_WITH_RETRY, ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY}
ACTIVITIES = {ActionType.CALL_ACTIVITY, ActionType.CALL_ACTIVITY_WITH_RETRY}
SUB_ORCHESTRATIONS = {ActionType.CALL_SUB_ORCHESTRATOR,
                      ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY}
NOT_EMULATED = {ActionType.CALL_ENTITY, ActionType.CALL_HTTP, ActionType.SIGNAL_ENTITY}


def flatten(actions: Any) -> list[dict[str, Any]]:
    """Leaf actions in the order the SDK scheduled them (depth-first through compounds).

    Accepts both replay schemas: a list of lists (v2+, one inner list) or the legacy
    list-of-lists-per-await (v1).
    """
    leaves: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            if node.get("actionType") in COMPOUND:
                walk(node.get("compoundActions", []))
            else:
                leaves.append(node)

    walk(actions)
    return leaves


def signature(action: dict[str, Any]) -> tuple[Any, ...]:
    """What must not change between replays: kind, target and explicit instance id."""
    return (action.get("actionType"), action.get("functionName"),
            action.get("externalEventName"), action.get("instanceId"))


def describe(action: dict[str, Any]) -> str:
    kind = ActionType(action["actionType"]).name.lower()
    target = action.get("functionName") or action.get("externalEventName") or ""
    return f"{kind}({target})" if target else kind


def find_divergence(recorded: list[dict[str, Any]],
                    current: list[dict[str, Any]]) -> str | None:
    """Reason why ``current`` does not replay ``recorded``, or None when it does."""
    for index, old in enumerate(recorded):
        if index >= len(current):
            return (f"Non-deterministic workflow detected: the orchestrator scheduled "
                    f"{len(current)} actions on replay but the history records {len(recorded)} "
                    f"(missing action #{index}: {describe(old)})")
        new = current[index]
        if signature(old) != signature(new):
            return (f"Non-deterministic workflow detected: action #{index} was "
                    f"{describe(old)} in the history but {describe(new)} on replay")
    return None
