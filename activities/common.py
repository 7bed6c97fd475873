"""How activities report failures and reach the cloud.

Transient cloud failures raise (the orchestrator's ``RetryOptions`` retries them); permanent
ones return ``{"ok": false, "error": {...}}`` so nothing retries what cannot succeed. Error
messages name the step and the resource and carry the cloud's message, never a secret.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from cotenant.cloud.base import Cloud, CloudError
from cotenant.cloud.settings import open_cloud, preload
from cotenant.plan import Plan, build_plan
from cotenant.spec import parse_spec

log = logging.getLogger("cotenant.activities")

# The worker imports the app once: the configured cloud backend is imported with it, not by
# the first activity (on its deployment's critical path).
preload()


class TransientFailure(RuntimeError):
    """Raised so the Durable retry policy tries the activity again."""


def failed(message: str, resource: str | None = None) -> dict[str, Any]:
    return {"ok": False, "error": {"message": message, "resource": resource}}


def cloud() -> Cloud:
    return open_cloud()


def plan_of(payload: dict[str, Any]) -> Plan:
    """The payload's plan: ``plan`` (the document) or ``spec`` — the orchestrators pass the
    small spec rather than the plan (~60 KB for ten parties), which would otherwise be in the
    history of every step and re-serialised on every replay; ``build_plan`` is pure, so the
    plan of a spec is built once per worker and reused."""
    if "plan" in payload:
        return Plan.model_validate(payload["plan"])
    return _plan_of_spec(json.dumps(payload["spec"], sort_keys=True))


@functools.lru_cache(maxsize=32)
def _plan_of_spec(spec_json: str) -> Plan:
    return build_plan(parse_spec(json.loads(spec_json)))


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
