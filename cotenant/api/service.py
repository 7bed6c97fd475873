"""What the HTTP API does, independent of the Functions bindings (a durable client in, a
status code and a JSON-able body out)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cotenant.api.audit import audit_log
from cotenant.api.models import Accepted, ErrorResponse, Links, TenantList
from cotenant.api.status import decoded, runtime, summary, tenant_status
from cotenant.plan import build_plan
from cotenant.spec import SpecError, TenantSpec, parse_spec

RUNNING = ("Pending", "Running", "ContinuedAsNew")
# tenant names (the spec's pattern) and the instance ids derived from them
_INSTANCE = re.compile(r"^[a-z][a-z0-9]{2,7}(:[A-Za-z0-9:._-]{1,120})?$")
DEPLOY = "deploy_tenant"


@dataclass
class Reply:
    status: int
    body: Any

    def json(self) -> str:
        body = self.body.model_dump(mode="json", exclude_none=True) \
            if hasattr(self.body, "model_dump") else self.body
        return json.dumps(body)


def error(status: int, code: str, message: str, problems: list[dict[str, str]] | None = None
          ) -> Reply:
    detail: dict[str, Any] = {"code": code, "message": message}
    if problems is not None:
        detail["problems"] = problems
    return Reply(status, ErrorResponse.model_validate({"error": detail}))


def timing(env: Mapping[str, str] | None = None) -> dict[str, float]:
    """Orchestration timing from ``COTENANT_<NAME>`` settings (e.g. COTENANT_POLL_SECONDS)."""
    env = os.environ if env is None else env
    names = ("poll_seconds", "deployment_wait_seconds", "deployment_timeout_seconds",
             "report_timeout_seconds", "retry_first_seconds", "retry_attempts",
             "deploy_attempts", "delete_timeout_seconds")
    out = {}
    for name in names:
        value = env.get(f"COTENANT_{name.upper()}")
        if value:
            out[name] = float(value)
    return out


def fingerprint(spec: TenantSpec) -> str:
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def links(base: str, name: str) -> Links:
    root = f"{base}/api/tenants/{name}"
    return Links(status=root, audit=f"{root}/audit", rotate=f"{root}/rotate", delete=root)


async def _status(client: Any, instance_id: str, *, show_input: bool = False) -> Any | None:
    if not _INSTANCE.match(instance_id):
        return None  # not a name this API ever creates: nothing to look up
    found = await client.get_status(instance_id, show_input=show_input)
    if found is None or found.runtime_status is None or not found.instance_id:
        return None
    return found


def parse_body(body: bytes, content_type: str) -> tuple[dict[str, Any] | None, Reply | None]:
    import yaml

    try:
        if "yaml" in content_type:
            data = yaml.safe_load(body.decode("utf-8"))
        else:
            data = json.loads(body.decode("utf-8") or "null")
    except (ValueError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return None, error(400, "InvalidBody", f"the body is not valid JSON or YAML: {exc}")
    if not isinstance(data, dict):
        return None, error(400, "InvalidBody", "the body must be a tenant spec object")
    return data, None


async def create_tenant(client: Any, data: dict[str, Any], base: str) -> Reply:
    try:
        spec = parse_spec(data)
    except SpecError as exc:
        problems = [{"path": p.path, "message": p.message} for p in exc.problems]
        return error(400, "InvalidSpec", f"the tenant spec has {len(problems)} problem(s)",
                     problems)
    name, print_ = spec.name, fingerprint(spec)
    existing = await _status(client, name, show_input=True)
    outcome = "started"
    if existing is not None:
        state = runtime(existing)
        same = (decoded(existing.input_) or {}).get("fingerprint") == print_
        torn_down = await _torn_down_after(client, name, existing)
        if state in RUNNING and not same:
            return error(409, "TenantBusy", f"tenant {name} is being deployed with a different "
                         "spec; wait for it to finish or delete it first")
        if same and not torn_down and state in (*RUNNING, "Completed"):
            return Reply(200 if state == "Completed" else 202, _accepted(
                name, "deploy", name, "existing", state, base))
        outcome = "restarted"
    await client.start_new(DEPLOY, name, {"spec": spec.model_dump(mode="json"),
                                          "fingerprint": print_, "timing": timing()})
    return Reply(202, _accepted(name, "deploy", name, outcome, "Pending", base))


async def _torn_down_after(client: Any, name: str, deploy: Any) -> bool:
    teardown = await _status(client, f"{name}:teardown")
    if teardown is None or runtime(teardown) != "Completed":
        return False
    return str(teardown.created_time) > str(deploy.created_time)


def _accepted(name: str, operation: str, instance: str, outcome: str, state: str,
              base: str) -> Accepted:
    return Accepted(tenant=name, operation=operation, instance_id=instance,  # type: ignore[arg-type]
                    outcome=outcome, runtime_status=state, links=links(base, name))  # type: ignore[arg-type]


async def list_tenants(client: Any) -> Reply:
    found = await client.get_status_all()
    tenants = [summary(s) for s in found if s.name == DEPLOY]
    return Reply(200, TenantList(tenants=sorted(tenants, key=lambda t: t.name)))


def _plan(deploy: Any) -> dict[str, Any] | None:
    spec = (decoded(deploy.input_) or {}).get("spec")
    if not spec:
        return None
    return build_plan(parse_spec(spec)).model_dump(mode="json")


async def get_tenant(client: Any, name: str) -> Reply:
    deploy = await _status(client, name, show_input=True)
    if deploy is None or deploy.name != DEPLOY:
        return error(404, "TenantNotFound", f"no tenant named {name}")
    custom = decoded(deploy.custom_status) or {}
    children = {}
    for party, state in (custom.get("parties") or {}).items():
        if state.get("instance"):
            children[party] = await _status(client, state["instance"])
    rotations = [s for s in await client.get_status_all()
                 if s.instance_id.startswith(f"{name}:rotate:")]
    return Reply(200, tenant_status(deploy, children, _plan(deploy),
                                    await _status(client, f"{name}:teardown"),
                                    sorted(rotations, key=lambda s: str(s.created_time))))


async def delete_tenant(client: Any, name: str, base: str, purge: bool) -> Reply:
    deploy = await _status(client, name, show_input=True)
    if deploy is None or deploy.name != DEPLOY:
        return error(404, "TenantNotFound", f"no tenant named {name}")
    instance = f"{name}:teardown"
    current = await _status(client, instance)
    if current is not None and runtime(current) in RUNNING:
        return Reply(202, _accepted(name, "teardown", instance, "existing", runtime(current), base))
    if runtime(deploy) in RUNNING:
        await client.terminate(name, "teardown requested")
    await client.start_new("teardown_tenant", instance, {
        "plan": _plan(deploy), "purge": purge, "timing": timing()})
    return Reply(202, _accepted(name, "teardown", instance, "started", "Pending", base))


async def rotate_tenant(client: Any, name: str, base: str, *, reason: str = "manual",
                        instance: str | None = None) -> Reply:
    deploy = await _status(client, name, show_input=True)
    if deploy is None or deploy.name != DEPLOY:
        return error(404, "TenantNotFound", f"no tenant named {name}")
    if runtime(deploy) != "Completed":
        return error(409, "TenantNotReady", f"tenant {name} is {runtime(deploy)}; keys are "
                     "rotated only on a deployed tenant")
    instance = instance or f"{name}:rotate:{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}"
    existing = await _status(client, instance)
    if existing is not None:
        return Reply(202, _accepted(name, "rotate", instance, "existing", runtime(existing),
                                    base))
    await client.start_new("rotate_keys", instance, {
        "plan": _plan(deploy), "reason": reason, "timing": timing()})
    return Reply(202, _accepted(name, "rotate", instance, "started", "Pending", base))


async def audit(client: Any, name: str) -> Reply:
    deploy = await _status(client, name)
    if deploy is None or deploy.name != DEPLOY:
        return error(404, "TenantNotFound", f"no tenant named {name}")
    return Reply(200, {"tenant": name, "events": audit_log().events(name)})
