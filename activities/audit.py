"""Activity recording tenant events (teardown outcome, …) in the audit table."""

from __future__ import annotations

from typing import Any

from activities.blueprint import bp
from cotenant.api.audit import audit_log


@bp.activity_trigger(input_name="payload")
def record_event(payload: dict[str, Any]) -> dict[str, Any]:
    row = audit_log().record(payload["tenant"], payload["kind"], payload.get("detail") or {})
    return {"ok": True, "row": row}
