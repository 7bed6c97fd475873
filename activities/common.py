"""How activities report failures and reach the cloud.

Transient cloud failures raise (the orchestrator's ``RetryOptions`` retries them); permanent
ones return ``{"ok": false, "error": {...}}`` so nothing retries what cannot succeed. Error
messages name the step and the resource and carry the cloud's message, never a secret.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from cotenant.cloud.base import Cloud, CloudError
from cotenant.cloud.settings import open_cloud
from cotenant.plan import Plan

log = logging.getLogger("cotenant.activities")


class TransientFailure(RuntimeError):
    """Raised so the Durable retry policy tries the activity again."""


def failed(message: str, resource: str | None = None) -> dict[str, Any]:
    return {"ok": False, "error": {"message": message, "resource": resource}}


def cloud() -> Cloud:
    return open_cloud()


def plan_of(payload: dict[str, Any]) -> Plan:
    return Plan.model_validate(payload["plan"])


def activity(fn: Callable[[dict[str, Any]], dict[str, Any]]
             ) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Wrap an activity body: ``ok: true`` results, CloudError → retry or permanent failure."""

    @functools.wraps(fn)
    def run(payload: Any) -> dict[str, Any]:
        try:
            result = fn(payload)
        except CloudError as exc:
            if exc.transient:
                log.warning("%s: transient failure: %s", fn.__name__, exc)
                raise TransientFailure(str(exc)) from None
            log.error("%s: %s", fn.__name__, exc)
            return failed(exc.message + (f" ({exc.code})" if exc.code else ""), exc.resource)
        return {"ok": True, **result}

    return run
