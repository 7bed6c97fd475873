"""The Key Vault data plane (REST, api-version 7.x) for every lab vault.

Vaults are addressed by their real host names, ``https://<vault>.vault.azure.net`` (reached
through the lab proxy, see :mod:`cotenant.lab.proxy`), so the unmodified SDK's challenge
check (vault host ends with the challenge resource's domain, ``vault.azure.net``) passes.
Unauthenticated requests get ``401`` with ``WWW-Authenticate: Bearer authorization="…",
resource="https://vault.azure.net"``; bearer tokens come from the lab identity service.
Errors use Key Vault's JSON shape ``{"error": {"code", "message", "innererror"?}}``.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cotenant.lab.ca import LabCA
from cotenant.lab.http import HttpError, json_body
from cotenant.lab.identity import IdentityService
from cotenant.lab.state import Key, LabState, RoleAssignment, StateStore, Vault
from cotenant.lab.vault import keys as kv
from cotenant.lab.vault.names import VAULT_SUFFIX, vault_url
from cotenant.lab.vault.rbac import authorize
from cotenant.lab.vault.release import Releaser

RESOURCE = "https://vault.azure.net"
DEFAULT_API_VERSION = "7.4"
VAULT_SIGNING_KEY = "vault-signing"  # the lab CA's key behind every vault's signing cert


def valid_vault_name(name: str) -> bool:
    return (3 <= len(name) <= 24 and name[0].isalpha() and name[-1].isalnum()
            and all(c.isascii() and (c.isalnum() or c == "-") for c in name)
            and "--" not in name)


def not_found(what: str) -> HttpError:
    return HttpError(404, "KeyNotFound", f"A key with (name/id) {what} was not found in this "
                     "key vault.")


class _Call:
    """One parsed request to a vault: who, what, on which key."""

    def __init__(self, vault: Vault, caller: dict[str, Any], segments: list[str],
                 method: str, body: dict[str, Any], api_version: str) -> None:
        self.vault, self.caller, self.segments = vault, caller, segments
        self.method, self.body, self.api_version = method, body, api_version
        self.url = vault_url(vault.name)

    @property
    def principal(self) -> str:
        return str(self.caller.get("oid"))


class VaultService:
    """Vault management (for the lab's resource manager and CLI) and the data plane."""

    def __init__(self, store: StateStore, ca: LabCA, identity: IdentityService) -> None:
        self.store = store
        self.ca = ca
        self.identity = identity
        self.releaser = Releaser(str(ca.bundle_path))

    # -- management ------------------------------------------------------------------------
    def create_vault(self, name: str, *, resource_group: str | None = None,
                     location: str = "lab", rbac: bool = True, purge_protection: bool = True,
                     soft_delete_days: int = 90,
                     operator_role: str | None = "Key Vault Crypto Officer") -> Vault:
        """Create vault ``name`` (idempotent). A new vault gives the lab's operator identity
        ``operator_role`` on it (Crypto Officer for hand use: ``cotenant lab vault create``);
        ``None`` grants nothing (tenant deployments grant the control plane's key operator role
        themselves)."""
        if not valid_vault_name(name):
            raise HttpError(400, "InvalidParameter", f"invalid vault name {name!r} (3-24 "
                            "letters, digits and hyphens, starting with a letter)")
        with self.store.edit() as state:
            vault = state.vaults.get(name)
            if vault is None:
                issued = self.ca.issue(f"{name}{VAULT_SUFFIX}", [f"{name}{VAULT_SUFFIX}"],
                                       key=self.ca.shared_rsa_key(VAULT_SIGNING_KEY))
                vault = Vault(
                    name=name, resource_group=resource_group, location=location, rbac=rbac,
                    purge_protection=purge_protection, soft_delete_days=soft_delete_days,
                    signing_key=issued.key_pem().decode(), signing_cert=issued.chain_pem().decode(),
                )
                state.vaults[name] = vault
                if operator_role is not None:
                    self._grant_operator(state, vault, operator_role)
            return vault

    @staticmethod
    def _grant_operator(state: LabState, vault: Vault, role: str) -> None:
        state.role_assignments.append(RoleAssignment(
            principal_id=state.operator().principal_id, scope=vault_url(vault.name), role=role))

    # -- HTTP ------------------------------------------------------------------------------
    def _challenge(self, message: str) -> HttpError:
        tenant = self.store.read().tenant_id
        return HttpError(401, "Unauthorized", message, headers={"WWW-Authenticate": (
            f'Bearer authorization="https://login.microsoftonline.com/{tenant}", '
            f'resource="{RESOURCE}"')})

    def _caller(self, request: Request) -> dict[str, Any]:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise self._challenge("AKV10000: Request is missing a Bearer or PoP token.")
        try:
            return self.identity.verify(token.strip(), RESOURCE)
        except jwt.PyJWTError as exc:
            raise self._challenge(f"AKV10022: Invalid audience or token: "
                                  f"{type(exc).__name__}") from None

    async def handle(self, request: Request) -> Response:
        host = (request.headers.get("host") or "").split(":")[0].lower()
        name = host.removesuffix(VAULT_SUFFIX)
        vault = self.store.read().vaults.get(name) if host.endswith(VAULT_SUFFIX) else None
        if vault is None:
            raise HttpError(404, "VaultNotFound", f"no vault at {host!r}")
        segments = request.url.path.strip("/").split("/")
        try:
            caller = self._caller(request)
        except HttpError as exc:
            if segments[-1:] == ["release"] and request.method == "POST" and len(segments) > 1:
                self.store.audit({"vault": vault.name, "key": segments[1], "version": None,
                                  "caller": None, "decision": "denied", "status": exc.status,
                                  "reason": exc.message})
            raise
        body = await json_body(request, required=False)
        call = _Call(vault, caller, segments, request.method, body,
                     request.query_params.get("api-version", DEFAULT_API_VERSION))
        status, payload = await run_in_threadpool(self._dispatch, call)
        if payload is None:
            return Response(status_code=status)
        return JSONResponse(payload, status_code=status)

    def routes(self) -> list[Route]:
        return [Route("/{path:path}", self.handle,
                      methods=["GET", "POST", "PUT", "PATCH", "DELETE"])]

    # -- dispatch --------------------------------------------------------------------------
    def _dispatch(self, call: _Call) -> tuple[int, Any]:
        """Serve one call; everything but a release, a create and a rotate runs under the
        state lock. A release fetches the issuer's keys over HTTP from this same process;
        a create or rotate makes its key first (an empty key stock generates one: every
        vault request and deployment would wait for it) and locks only to store it."""
        seg = call.segments
        if seg[-1:] == ["release"] or (call.method == "POST" and len(seg) == 3
                                       and seg[0] == "keys" and seg[2] in ("create", "rotate")):
            return self._route(call)
        with self.store.lock:
            return self._route(call)

    def _route(self, call: _Call) -> tuple[int, Any]:
        seg, method = call.segments, call.method
        if seg == ["keys"] and method == "GET":
            return self._list(call)
        if seg == ["deletedkeys"] and method == "GET":
            return self._list_deleted(call)
        if len(seg) >= 2 and seg[0] == "deletedkeys":
            return self._deleted(call, seg[1], seg[2:])
        if len(seg) < 2 or seg[0] != "keys" or not seg[1]:
            raise HttpError(400, "BadParameter", f"unsupported operation {method} /{'/'.join(seg)}")
        name, rest = seg[1], seg[2:]
        route = {
            ("POST", "create"): self._create, ("POST", "rotate"): self._rotate,
            ("GET", "versions"): self._versions, ("GET", "rotationpolicy"): self._get_rotation,
            ("PUT", "rotationpolicy"): self._set_rotation,
        }.get((method, rest[0] if len(rest) == 1 else ""))
        if route is not None:
            return route(call, name)
        if not rest or (len(rest) == 1 and method in ("GET", "PATCH", "DELETE")):
            version = rest[0] if rest else ""
            if method == "GET":
                return self._get(call, name, version)
            if method == "PATCH":
                return self._update(call, name, version)
            return self._delete(call, name)
        if len(rest) == 2 and method == "POST":
            return self._operation(call, name, rest[0], rest[1].lower())
        raise HttpError(400, "BadParameter", f"unsupported operation {method} /{'/'.join(seg)}")

    def _authorize(self, call: _Call, key_name: str | None, operation: str) -> None:
        verdict = authorize(self.store.read(), call.vault, call.url, key_name, call.principal,
                            operation)
        if not verdict.allowed:
            raise HttpError(403, "Forbidden", f"Caller is not authorized to perform action on "
                            f"resource: {verdict.reason}", inner="ForbiddenByRbac"
                            if call.vault.rbac else "AccessDenied")

    def _key(self, call: _Call, name: str) -> Key:
        key = call.vault.keys.get(name)
        if key is None:
            raise not_found(name)
        return key

    def _create(self, call: _Call, name: str) -> tuple[int, Any]:
        self._authorize(call, name, "create")
        if not name or not all(c.isascii() and (c.isalnum() or c == "-") for c in name):
            raise kv.bad(f"invalid key name {name!r}")
        version = kv.new_version(call.body)
        with self.store.edit():
            if name in call.vault.deleted_keys:
                raise HttpError(409, "Conflict", f"Key {name} is currently in a deleted but "
                                "recoverable state, and its name cannot be reused; in this "
                                "state, the key can only be recovered or purged.")
            key = call.vault.keys.get(name)
            if key is None:
                key = call.vault.keys[name] = Key(name=name)
            key.versions.append(version)
        if version.release_policy is not None:
            self.releaser.prepare(version.release_policy.data)
        return 200, kv.bundle(call.vault, call.url, key, version)

    def _rotate(self, call: _Call, name: str) -> tuple[int, Any]:
        self._authorize(call, name, "rotate")
        with self.store.lock:
            latest = self._key(call, name).latest
        version = kv.new_version({}, inherit=latest)
        with self.store.edit():
            key = self._key(call, name)
            key.versions.append(version)
        return 200, kv.bundle(call.vault, call.url, key, version)

    def _get(self, call: _Call, name: str, version_id: str) -> tuple[int, Any]:
        self._authorize(call, name, "get")
        key = self._key(call, name)
        version = key.version(version_id)
        if version is None:
            raise not_found(f"{name}/{version_id}")
        return 200, kv.bundle(call.vault, call.url, key, version)

    def _list(self, call: _Call) -> tuple[int, Any]:
        self._authorize(call, None, "list")
        items = [kv.item(call.vault, call.url, k, k.latest, versioned=False)
                 for k in call.vault.keys.values()]
        return 200, {"value": items, "nextLink": None}

    def _versions(self, call: _Call, name: str) -> tuple[int, Any]:
        self._authorize(call, name, "list")
        key = self._key(call, name)
        items = [kv.item(call.vault, call.url, key, v, versioned=True) for v in key.versions]
        return 200, {"value": items, "nextLink": None}

    def _update(self, call: _Call, name: str, version_id: str) -> tuple[int, Any]:
        self._authorize(call, name, "update")
        with self.store.edit():
            key = self._key(call, name)
            version = key.version(version_id)
            if version is None:
                raise not_found(f"{name}/{version_id}")
            body = call.body
            attrs = body.get("attributes") or {}
            if not isinstance(attrs, dict):
                raise kv.bad("attributes must be an object")
            if "exportable" in attrs and kv.flag(attrs, "exportable", False) != \
                    version.exportable:
                raise kv.bad("AKV.SKR.1014: Cannot modify the exportable state of a key.")
            if "release_policy" in body:
                current = version.release_policy
                new = kv.parse_release_policy(body["release_policy"],
                                              exportable=version.exportable)
                if current is not None and current.immutable and new != current:
                    raise kv.bad("AKV.SKR.1013: The release policy is immutable and cannot be "
                                 "changed.")
                version.release_policy = new
            if "enabled" in attrs:
                version.enabled = kv.flag(attrs, "enabled", True)
            for field, attr in (("nbf", "not_before"), ("exp", "expires")):
                if field in attrs:
                    setattr(version, attr, kv.timestamp(attrs, field))
            if isinstance(body.get("key_ops"), list):
                version.key_ops = [str(o) for o in body["key_ops"]]
            if isinstance(body.get("tags"), dict):
                version.tags = {str(k): str(v) for k, v in body["tags"].items()}
            version.updated = int(time.time())
        return 200, kv.bundle(call.vault, call.url, key, version)

    def _delete(self, call: _Call, name: str) -> tuple[int, Any]:
        self._authorize(call, name, "delete")
        with self.store.edit():
            key = self._key(call, name)
            now = int(time.time())
            key.deleted_date = now
            key.scheduled_purge_date = now + call.vault.soft_delete_days * 86400
            call.vault.deleted_keys[name] = call.vault.keys.pop(name)
        return 200, kv.deleted_bundle(call.vault, call.url, key)

    def _list_deleted(self, call: _Call) -> tuple[int, Any]:
        self._authorize(call, None, "list")
        items = [{**kv.item(call.vault, call.url, k, k.latest, versioned=False),
                  "recoveryId": f"{call.url}/deletedkeys/{k.name}",
                  "deletedDate": k.deleted_date, "scheduledPurgeDate": k.scheduled_purge_date}
                 for k in call.vault.deleted_keys.values()]
        return 200, {"value": items, "nextLink": None}

    def _deleted(self, call: _Call, name: str, rest: list[str]) -> tuple[int, Any]:
        key = call.vault.deleted_keys.get(name)
        if call.method == "GET" and not rest:
            self._authorize(call, name, "get")
            if key is None:
                raise HttpError(404, "KeyNotFound", f"Deleted Key not found: {name}")
            return 200, kv.deleted_bundle(call.vault, call.url, key)
        if call.method == "DELETE" and not rest:
            self._authorize(call, name, "purge")
            if key is None:
                raise HttpError(404, "KeyNotFound", f"Deleted Key not found: {name}")
            if call.vault.purge_protection:
                raise HttpError(403, "Forbidden", f"Operation \"purge\" is not allowed because "
                                f"purge protection is enabled for this vault. Key {name} will "
                                "be purged automatically at its scheduled purge date.",
                                inner="PurgeProtectionEnabled")
            with self.store.edit():
                call.vault.deleted_keys.pop(name, None)
            return 204, None
        if call.method == "POST" and rest == ["recover"]:
            self._authorize(call, name, "recover")
            if key is None:
                raise HttpError(404, "KeyNotFound", f"Deleted Key not found: {name}")
            with self.store.edit():
                key.deleted_date = key.scheduled_purge_date = None
                call.vault.keys[name] = call.vault.deleted_keys.pop(name)
            return 200, kv.bundle(call.vault, call.url, key, key.latest)
        raise HttpError(400, "BadParameter", "unsupported deleted-key operation")

    def _get_rotation(self, call: _Call, name: str) -> tuple[int, Any]:
        self._authorize(call, name, "getrotationpolicy")
        key = self._key(call, name)
        return 200, self._rotation_json(call, key)

    def _set_rotation(self, call: _Call, name: str) -> tuple[int, Any]:
        self._authorize(call, name, "setrotationpolicy")
        body = call.body
        actions = body.get("lifetimeActions", [])
        if not isinstance(actions, list):
            raise kv.bad("lifetimeActions must be a list")
        for action in actions:
            trigger = action.get("trigger") if isinstance(action, dict) else None
            kind = (action.get("action") or {}).get("type") if isinstance(action, dict) else None
            if not isinstance(trigger, dict) or not (
                    {"timeAfterCreate", "timeBeforeExpiry"} & set(trigger)):
                raise kv.bad("each lifetime action needs trigger.timeAfterCreate or "
                             "trigger.timeBeforeExpiry")
            if str(kind).lower() not in ("rotate", "notify"):
                raise kv.bad("action.type must be Rotate or Notify")
        attrs = body.get("attributes") or {}
        with self.store.edit():
            key = self._key(call, name)
            now = int(time.time())
            created = (key.rotation_policy or {}).get("attributes", {}).get("created", now)
            key.rotation_policy = {
                "lifetimeActions": actions,
                "attributes": {"expiryTime": attrs.get("expiryTime"), "created": created,
                               "updated": now},
            }
        return 200, self._rotation_json(call, key)

    @staticmethod
    def _rotation_json(call: _Call, key: Key) -> dict[str, Any]:
        policy = key.rotation_policy or {
            "lifetimeActions": [{"trigger": {"timeBeforeExpiry": "P30D"},
                                 "action": {"type": "Notify"}}],
            "attributes": {"expiryTime": None}}
        return {"id": f"{call.url}/keys/{key.name}/rotationpolicy", **policy}

    def _operation(self, call: _Call, name: str, version_id: str,
                   operation: str) -> tuple[int, Any]:
        op = {"encrypt": "encrypt", "decrypt": "decrypt", "wrapkey": "wrapKey",
              "unwrapkey": "unwrapKey", "release": "release"}.get(operation)
        if op is None:
            raise HttpError(400, "BadParameter", f"unsupported key operation {operation!r}")
        if op == "release":
            return self._release(call, name, version_id)
        self._authorize(call, name, op)
        key = self._key(call, name)
        version = key.version(version_id)
        if version is None:
            raise not_found(f"{name}/{version_id}")
        result = kv.crypto_operation(version, op, call.body)
        return 200, {"kid": f"{call.url}/keys/{name}/{version.version}",
                     "value": kv.encode(result)}

    def _release(self, call: _Call, name: str, version_id: str) -> tuple[int, Any]:
        record = {"vault": call.vault.name, "key": name, "version": version_id or None,
                  "caller": call.principal, "appid": call.caller.get("appid")}
        try:
            self._authorize(call, name, "release")
            key = self._key(call, name)
            version = key.version(version_id)
            if version is None:
                raise not_found(f"{name}/{version_id}")
            record["version"] = version.version
            jws, reason = self.releaser.release(
                call.vault, call.url, key, version, call.body,
                requested_version=version_id or None, api_version=call.api_version)
        except HttpError as exc:
            self.store.audit({**record, "decision": "denied", "status": exc.status,
                              "reason": exc.message})
            raise
        self.store.audit({**record, "decision": "released", "status": 200, "reason": reason})
        return 200, {"value": jws}

