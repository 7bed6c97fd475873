"""The lab management API (loopback HTTP, bearer ``admin-token``): what ``LabClient`` wraps.

Routes (JSON in and out; errors ``{"error": {"code", "message"}}``):

* ``GET  /health`` (no auth) · ``GET /lab/info``
* ``POST /lab/identities`` ``{name, resource_group?}`` · ``GET /lab/identities``
* ``POST /lab/vaults`` ``{name, rbac?, purge_protection?, resource_group?, location?}``
* ``PUT  /lab/vaults/{name}/access-policies`` ``{object_id, keys: [...]}``
* ``POST /lab/role-assignments`` ``{principal_id | client_id, scope, role}`` ·
  ``GET /lab/role-assignments``
* ``POST /lab/vms`` ``{name, kind, identities?, agent_config?}`` · ``GET /lab/vms`` ·
  ``GET /lab/vms/{name}`` · ``POST /lab/vms/{name}/restart`` · ``DELETE /lab/vms/{name}``
* ``GET  /lab/audit`` · ``PUT /lab/faults`` ``[rules]`` · ``GET /lab/faults``
* resource manager routes, see :mod:`cotenant.lab.manager`.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from cotenant.lab.faults import FaultInjector, FaultRule
from cotenant.lab.http import HttpError, json_body, require_str
from cotenant.lab.identity import IdentityService
from cotenant.lab.state import AccessPolicy, RoleAssignment, StateStore, Vm
from cotenant.lab.vault.rbac import ACCESS_POLICY_PERMISSIONS, group_scope, role_name
from cotenant.lab.vault.service import VAULT_SUFFIX, VaultService, vault_url
from cotenant.lab.vms import VmSupervisor


class AdminAuth:
    """Require ``Authorization: Bearer <admin token>`` except on ``/health``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != "/health":
            headers = dict(scope["headers"])
            presented = headers.get(b"authorization", b"")
            if not secrets.compare_digest(presented, f"Bearer {self.token}".encode()):
                await HttpError(401, "Unauthorized", "missing or wrong lab admin token")\
                    .response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


def normalize_scope(scope: str) -> str:
    """A vault or key URL (``https://v.vault.azure.net[/keys/k]``), without version or slash,
    or a resource group's ARM id (lower case)."""
    scope = scope.strip().rstrip("/")
    parts = scope.lower().split("/")
    if len(parts) == 5 and parts[0] == "" and parts[1] == "subscriptions" \
            and parts[3] == "resourcegroups" and parts[2] and parts[4]:
        return group_scope(parts[2], parts[4])
    if not scope.startswith("https://"):
        raise HttpError(400, "InvalidParameter", "scope must be a vault or key URL or a "
                        f"resource group id: {scope!r}")
    host, _, path = scope.removeprefix("https://").partition("/")
    parts = [p for p in path.split("/") if p]
    if not host.endswith(VAULT_SUFFIX) or (parts and (parts[0] != "keys" or len(parts) > 3)):
        raise HttpError(400, "InvalidParameter", f"scope must be a vault or key URL: {scope!r}")
    return f"https://{host.lower()}" + (f"/keys/{parts[1]}" if len(parts) >= 2 else "")


SECURITY_TYPES = {"confidential": "ConfidentialVM", "debuggable": "ConfidentialVM",
                  "trusted-launch": "TrustedLaunch", "standard": "Standard"}


def vm_json(vm: Vm, supervisor: VmSupervisor) -> dict[str, Any]:
    identities = supervisor.store.read().identities
    return {**vm.model_dump(exclude={"hardware_public_key"}),
            "principal_ids": [identities[c].principal_id for c in vm.identities
                              if c in identities],
            "provisioning_state": "Succeeded",
            "agent_running": supervisor.agent_running(vm.name),
            "agent_pid": supervisor.agent_pid(vm.name),
            "security_type": SECURITY_TYPES[vm.kind],
            "directory": str(supervisor.directory(vm.name))}


class AdminApi:
    def __init__(self, store: StateStore, identity: IdentityService, vaults: VaultService,
                 vms: VmSupervisor, faults: FaultInjector, info: dict[str, Any]) -> None:
        self.store, self.identity, self.vaults = store, identity, vaults
        self.vms, self.faults, self.info = vms, faults, info

    async def health(self, _request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def lab_info(self, _request: Request) -> JSONResponse:
        with self.store.lock:
            return self._info()

    def _info(self) -> JSONResponse:
        state = self.store.read()
        return JSONResponse({**self.info, "tenant_id": state.tenant_id,
                             "subscription_id": state.subscription_id,
                             "operator": state.operator().model_dump(),
                             "authorities": sorted(state.authorities),
                             "vaults": sorted(state.vaults)})

    async def create_identity(self, request: Request) -> JSONResponse:
        body = await json_body(request)
        name = require_str(body, "name")
        assert name is not None
        identity = await run_in_threadpool(self.identity.create, name,
                                           body.get("resource_group"))
        return JSONResponse(identity.model_dump())

    async def list_identities(self, _request: Request) -> JSONResponse:
        with self.store.lock:
            return JSONResponse([i.model_dump() for i in self.store.read().identities.values()])

    async def create_vault(self, request: Request) -> JSONResponse:
        body = await json_body(request)
        name = require_str(body, "name")
        assert name is not None
        vault = await run_in_threadpool(
            self.vaults.create_vault, name, resource_group=body.get("resource_group"),
            location=str(body.get("location", "lab")), rbac=bool(body.get("rbac", True)),
            purge_protection=bool(body.get("purge_protection", True)))
        return JSONResponse({"name": vault.name, "url": vault_url(vault.name),
                             "rbac": vault.rbac, "purge_protection": vault.purge_protection})

    async def set_access_policy(self, request: Request) -> JSONResponse:
        body = await json_body(request)
        object_id = require_str(body, "object_id")
        permissions = body.get("keys")
        if not isinstance(permissions, list) or not set(permissions) <= ACCESS_POLICY_PERMISSIONS:
            raise HttpError(400, "InvalidParameter", "keys must list key permissions among: "
                            + ", ".join(sorted(ACCESS_POLICY_PERMISSIONS)))
        with self.store.edit() as state:
            vault = state.vaults.get(request.path_params["name"])
            if vault is None:
                raise HttpError(404, "NotFound", "no such vault")
            vault.access_policies = [p for p in vault.access_policies if p.object_id != object_id]
            vault.access_policies.append(AccessPolicy(object_id=str(object_id), keys=permissions))
        return JSONResponse({"object_id": object_id, "keys": permissions})

    def principal_of(self, body: dict[str, Any]) -> str:
        state = self.store.read()
        if isinstance(body.get("principal_id"), str):
            return str(body["principal_id"])
        client_id = require_str(body, "client_id")
        identity = state.identities.get(str(client_id))
        if identity is None:
            raise HttpError(400, "InvalidParameter", f"unknown identity {client_id}")
        return identity.principal_id

    def grant(self, principal_id: str, scope: str, role: str) -> RoleAssignment:
        """Assign ``role`` at ``scope`` (idempotent)."""
        try:
            canonical_role = role_name(role)
        except ValueError as exc:
            raise HttpError(400, "InvalidParameter", str(exc)) from None
        scope = normalize_scope(scope)
        vault_name = scope.removeprefix("https://").split(".")[0]
        with self.store.edit() as state:
            if scope.startswith("/subscriptions/"):
                if not any(group_scope(state.subscription_id, g) == scope
                           for g in state.resource_groups):
                    raise HttpError(400, "InvalidParameter",
                                    f"no resource group {scope!r} in the lab")
            elif vault_name not in state.vaults:
                raise HttpError(400, "InvalidParameter", f"no vault {vault_name!r} in the lab")
            for existing in state.role_assignments:
                if (existing.principal_id, existing.scope, existing.role) == (
                        principal_id, scope, canonical_role):
                    return existing
            assignment = RoleAssignment(principal_id=principal_id, scope=scope,
                                        role=canonical_role)
            state.role_assignments.append(assignment)
            return assignment

    async def create_role_assignment(self, request: Request) -> JSONResponse:
        body = await json_body(request)
        scope, role = require_str(body, "scope"), require_str(body, "role")
        assert scope is not None and role is not None
        return JSONResponse(self.grant(self.principal_of(body), scope, role).model_dump())

    async def list_role_assignments(self, _request: Request) -> JSONResponse:
        with self.store.lock:
            return JSONResponse([a.model_dump() for a in self.store.read().role_assignments])

    async def create_vm(self, request: Request) -> JSONResponse:
        body = await json_body(request)
        name, kind = require_str(body, "name"), require_str(body, "kind")
        assert name is not None and kind is not None
        identities = body.get("identities") or []
        if not isinstance(identities, list):
            raise HttpError(400, "InvalidParameter", "identities must be a list of client ids")
        config = body.get("agent_config")
        vm = await run_in_threadpool(
            self.vms.create, name, kind, identities=[str(i) for i in identities],
            agent_config=config if isinstance(config, str) else None)
        return JSONResponse(vm_json(vm, self.vms))

    async def list_vms(self, _request: Request) -> JSONResponse:
        with self.store.lock:
            return JSONResponse([vm_json(v, self.vms) for v in self.store.read().vms.values()])

    def _vm(self, request: Request) -> Vm:
        vm = self.store.read().vms.get(request.path_params["name"])
        if vm is None:
            raise HttpError(404, "NotFound", "no such VM")
        return vm

    async def get_vm(self, request: Request) -> JSONResponse:
        return JSONResponse(vm_json(self._vm(request), self.vms))

    async def restart_vm(self, request: Request) -> JSONResponse:
        vm = self._vm(request)
        await run_in_threadpool(self.vms.boot, vm.name)
        return JSONResponse(vm_json(self.store.read().vms[vm.name], self.vms))

    async def delete_vm(self, request: Request) -> JSONResponse:
        await run_in_threadpool(self.vms.delete, self._vm(request).name)
        return JSONResponse({"deleted": request.path_params["name"]})

    async def audit(self, request: Request) -> JSONResponse:
        records = self.store.audit_records()
        key = request.query_params.get("key")
        if key:
            records = [r for r in records if r.get("key") == key]
        return JSONResponse(records)

    async def set_faults(self, request: Request) -> JSONResponse:
        try:
            raw = json.loads(await request.body() or b"[]")
            rules = [FaultRule.model_validate(r) for r in raw]
        except (ValueError, TypeError, ValidationError) as exc:
            raise HttpError(400, "InvalidParameter", f"invalid fault rules: {exc}") from None
        self.faults.set_rules(rules)
        return JSONResponse([r.model_dump() for r in rules])

    async def get_faults(self, _request: Request) -> JSONResponse:
        return JSONResponse([r.model_dump() for r in self.faults.rules()])

    def routes(self) -> list[Route]:
        return [
            Route("/health", self.health, methods=["GET"]),
            Route("/lab/info", self.lab_info, methods=["GET"]),
            Route("/lab/identities", self.create_identity, methods=["POST"]),
            Route("/lab/identities", self.list_identities, methods=["GET"]),
            Route("/lab/vaults", self.create_vault, methods=["POST"]),
            Route("/lab/vaults/{name}/access-policies", self.set_access_policy,
                  methods=["PUT"]),
            Route("/lab/role-assignments", self.create_role_assignment, methods=["POST"]),
            Route("/lab/role-assignments", self.list_role_assignments, methods=["GET"]),
            Route("/lab/vms", self.create_vm, methods=["POST"]),
            Route("/lab/vms", self.list_vms, methods=["GET"]),
            Route("/lab/vms/{name}", self.get_vm, methods=["GET"]),
            Route("/lab/vms/{name}", self.delete_vm, methods=["DELETE"]),
            Route("/lab/vms/{name}/restart", self.restart_vm, methods=["POST"]),
            Route("/lab/audit", self.audit, methods=["GET"]),
            Route("/lab/faults", self.set_faults, methods=["PUT"]),
            Route("/lab/faults", self.get_faults, methods=["GET"]),
        ]
