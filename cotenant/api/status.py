"""Compose a tenant's status document from its orchestration instances.

The ``deploy_tenant`` instance (id = tenant name) holds the phase graph's progress; each
party's ``provision_party`` sub-orchestration holds that party's chain; teardown and rotations
are their own instances. Nothing here carries credentials: custom statuses never contain any.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from cotenant.api.models import Operation, PartyStatus, PhaseEntry, TenantStatus, TenantSummary

DEBUG_NOTICE = ("debug mode is ON for this tenant: Bastion and SSH are enabled and the NSG "
                "admits SSH from the Bastion subnet; do not use it with real data")


def decoded(value: Any) -> Any:
    """Durable status fields may arrive as JSON text; give back the value."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def runtime(status: Any) -> str:
    value = status.runtime_status
    return getattr(value, "value", None) or getattr(value, "name", None) or str(value)


def _when(moment: Any) -> str | None:
    if moment is None:
        return None
    return moment.isoformat() if isinstance(moment, datetime) else str(moment)


def _seconds(entry: dict[str, Any]) -> float | None:
    try:
        start = datetime.fromisoformat(entry["started"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(entry["ended"].replace("Z", "+00:00"))
    except (KeyError, AttributeError, ValueError):
        return None
    return round((end - start).total_seconds(), 3)


def timeline(raw: dict[str, Any]) -> dict[str, PhaseEntry]:
    out = {}
    for name, entry in raw.items():
        fields = {k: v for k, v in entry.items() if k in ("state", "started", "ended", "error")}
        out[name] = PhaseEntry(**fields, seconds=_seconds(entry))
    return out


def summary(status: Any) -> TenantSummary:
    custom = decoded(status.custom_status) or {}
    return TenantSummary(name=status.instance_id, runtime_status=runtime(status),
                         phase=str(custom.get("phase", "pending")),
                         created=_when(status.created_time),
                         updated=_when(status.last_updated_time))


def operation(status: Any) -> Operation:
    custom = decoded(status.custom_status) or {}
    return Operation(instance_id=status.instance_id, runtime_status=runtime(status),
                     phase=custom.get("phase"), output=decoded(status.output),
                     errors=custom.get("errors") or [])


def _party(name: str, parent: dict[str, Any], child: dict[str, Any] | None,
           plan_party: dict[str, Any] | None, grants: dict[str, list[str]],
           debug: bool, tenant_lines: dict[str, Any]) -> PartyStatus:
    child = child or {}
    lines = {**tenant_lines, **(child.get("timeline") or {})}
    releases = child.get("releases") or parent.get("releases") or {}
    return PartyStatus(
        name=name,
        state=str(child.get("phase") if child.get("phase") not in (None, "starting")
                  else parent.get("state", "pending")),
        vm=(plan_party or {}).get("vm_name"),
        identity=(plan_party or {}).get("identity_name"),
        vault=(plan_party or {}).get("vault_name"),
        app_key=(plan_party or {}).get("app_key_name"),
        key_version=parent.get("key_version"),
        grants_on_key=grants.get(name, (plan_party or {}).get("releasable_by", [])),
        cvm=(lines.get(f"cvm:{name}") or {}).get("state", "pending"),
        bootstrap=(lines.get(f"bootstrap:{name}") or {}).get("state", "pending"),
        storage_account=(plan_party or {}).get("storage_account_name"),
        data_container=(plan_party or {}).get("data_container"),
        data=(lines.get(f"data:{name}") or {}).get("state", "pending"),
        attested=bool(child.get("attested") or parent.get("attested")),
        attestation=child.get("attestation"),
        releases=releases,
        debug_credentials=child.get("debug_credentials") if debug else None,
    )


def tenant_status(deploy: Any, children: dict[str, Any], plan: dict[str, Any] | None,
                  teardown: Any | None = None, rotations: list[Any] | None = None
                  ) -> TenantStatus:
    """``children``: party → its provision_party status (or None)."""
    custom = decoded(deploy.custom_status) or {}
    debug = bool(custom.get("debug"))
    output = decoded(deploy.output) if runtime(deploy) == "Completed" else None
    grants = (output or {}).get("grants") or {}
    merged_timeline = dict(custom.get("timeline") or {})
    party_plans = {p["party"]: p for p in (plan or {}).get("parties", [])}
    parties = []
    errors = list(custom.get("errors") or [])
    for name, state in (custom.get("parties") or {}).items():
        child_status = children.get(name)
        child = decoded(child_status.custom_status) if child_status is not None else None
        if child:
            merged_timeline.update(child.get("timeline") or {})
            errors += [e for e in child.get("errors") or [] if e not in errors]
        parties.append(_party(name, state, child, party_plans.get(name), grants, debug,
                              custom.get("timeline") or {}))
    return TenantStatus(
        name=deploy.instance_id,
        runtime_status=runtime(deploy),
        phase=str(custom.get("phase", "pending")),
        created=_when(deploy.created_time),
        updated=_when(deploy.last_updated_time),
        resource_group=custom.get("resource_group"),
        debug=debug,
        notice=DEBUG_NOTICE if debug else None,
        critical_path_seconds=custom.get("critical_path_seconds"),
        parties=parties,
        timeline=timeline({k: v for k, v in merged_timeline.items()
                           if not k.startswith("provision:")}),
        trust_matrix=custom.get("trust_matrix"),
        errors=errors,
        teardown=operation(teardown) if teardown is not None else None,
        rotations=[operation(r) for r in rotations or []],
    )
