"""Managed identities and their token service.

Two token endpoints, both issuing RS256 JWTs (``oid``, ``appid``, ``tid``, ``aud``, ``exp``)
signed by the lab's identity key, which the lab's Key Vault verifies:

* ``GET /msi/token?api-version=2019-08-01&resource=…[&client_id=…]`` with header
  ``X-IDENTITY-HEADER`` — the App Service form that azure-identity's
  ``ManagedIdentityCredential`` uses when ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER`` are set.
  It speaks for the control plane only: the operator identity (with or without its
  ``client_id``). Like App Service, it never issues tokens for identities assigned elsewhere
  (a party VM's identity comes only from that VM's IMDS).
* ``GET /vms/<vm>/metadata/identity/oauth2/token?resource=…[&client_id=…]`` with header
  ``Metadata: true`` — IMDS for one simulated VM (only identities assigned to that VM).
  A VM process gets ``AZURE_POD_IDENTITY_AUTHORITY_HOST=<identity>/vms/<vm>`` so the
  unmodified ``ManagedIdentityCredential`` (IMDS flavour) reaches it. There is no shared
  IMDS address: like Azure's link-local IMDS, a VM's IMDS only ever speaks for that VM, so a
  process configured with another VM's ``client_id`` gets nothing.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cotenant.lab.ca import load_private, private_pem, write_private
from cotenant.lab.http import HttpError
from cotenant.lab.state import Identity, StateStore

TOKEN_LIFETIME = 3600
OPERATOR_NAME = "lab-operator"


def _resource_of(value: str | None) -> str:
    if not value or not value.startswith("https://"):
        raise HttpError(400, "invalid_request", "'resource' must be an https URL")
    return value.removesuffix("/.default")


class IdentityService:
    """Identities, their tokens and the HTTP token endpoints."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        header_path = store.directory / "identity-header"
        if not header_path.exists():
            write_private(header_path, secrets.token_urlsafe(32).encode())
        self.identity_header = header_path.read_text().strip()
        with store.edit() as state:
            if not state.identity_signing_key:
                key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
                state.identity_signing_key = private_pem(key).decode()
            if not any(i.operator for i in state.identities.values()):
                op = Identity(name=OPERATOR_NAME, operator=True)
                state.identities[op.client_id] = op
        self._key = load_private(self.store.read().identity_signing_key.encode())

    @property
    def issuer(self) -> str:
        return f"https://sts.windows.net/{self.store.read().tenant_id}/"

    # -- identities ------------------------------------------------------------------------
    def create(self, name: str, resource_group: str | None = None) -> Identity:
        """Create the identity ``name`` (idempotent per resource group)."""
        if not 3 <= len(name) <= 128 or not all(c.isascii() and (c.isalnum() or c in "-_")
                                                for c in name):
            raise HttpError(400, "InvalidParameter", f"invalid identity name {name!r} (3-128 "
                            "letters, digits, hyphens and underscores)")
        with self.store.edit() as state:
            existing = state.identity_by_name(name, resource_group)
            if existing is not None and not existing.operator:
                return existing
            identity = Identity(name=name, resource_group=resource_group)
            state.identities[identity.client_id] = identity
            return identity

    def get(self, client_id: str) -> Identity:
        identity = self.store.read().identities.get(client_id)
        if identity is None:
            raise HttpError(400, "invalid_request", f"unknown client_id {client_id}")
        return identity

    # -- tokens ----------------------------------------------------------------------------
    def issue(self, identity: Identity, resource: str) -> tuple[str, int]:
        now = int(time.time())
        state = self.store.read()
        claims = {
            "aud": resource, "iss": self.issuer, "iat": now, "nbf": now,
            "exp": now + TOKEN_LIFETIME, "oid": identity.principal_id, "sub": identity.principal_id,
            "appid": identity.client_id, "tid": state.tenant_id, "idtyp": "app",
            "xms_mirid": (f"/subscriptions/{state.subscription_id}/resourcegroups/"
                          f"{identity.resource_group or 'lab'}/providers/"
                          f"Microsoft.ManagedIdentity/userAssignedIdentities/{identity.name}"),
        }
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": "lab-identity"})
        return token, claims["exp"]

    def verify(self, token: str, audience: str) -> dict[str, Any]:
        """Verify a bearer token for ``audience``; raises ``jwt.InvalidTokenError``."""
        return jwt.decode(
            token, self._key.public_key(), algorithms=["RS256"],
            audience=[audience, audience + "/"], issuer=self.issuer,
            options={"require": ["exp", "oid", "aud"]},
        )

    # -- HTTP ------------------------------------------------------------------------------
    async def app_service_token(self, request: Request) -> JSONResponse:
        presented = request.headers.get("x-identity-header", "").encode("utf-8", "replace")
        if not secrets.compare_digest(presented, self.identity_header.encode()):
            raise HttpError(401, "unauthorized", "missing or wrong X-IDENTITY-HEADER")
        resource = _resource_of(request.query_params.get("resource"))
        client_id = request.query_params.get("client_id")
        identity = self.store.read().operator()
        if client_id and client_id != identity.client_id:
            raise HttpError(400, "invalid_request", "the identity is not assigned to the "
                            "control plane (only the operator identity is)")
        token, expires_on = self.issue(identity, resource)
        return JSONResponse({
            "access_token": token, "expires_on": str(expires_on), "resource": resource,
            "token_type": "Bearer", "client_id": identity.client_id,
        })

    async def imds_token(self, request: Request) -> JSONResponse:
        if request.headers.get("metadata", "").lower() != "true":
            raise HttpError(400, "invalid_request", "Required metadata header not specified")
        resource = _resource_of(request.query_params.get("resource"))
        client_id = request.query_params.get("client_id")
        with self.store.lock:
            vm = self.store.read().vms.get(request.path_params["vm"])
        if vm is None or vm.status != "running":
            raise HttpError(400, "invalid_request", "Identity not found on a running VM")
        if client_id is None:
            if len(vm.identities) != 1:
                raise HttpError(400, "invalid_request",
                                "the VM has several identities (or none): pass client_id")
            client_id = vm.identities[0]
        if client_id not in vm.identities:
            raise HttpError(400, "invalid_request", "Identity not found")
        token, expires_on = self.issue(self.get(client_id), resource)
        return JSONResponse({
            "access_token": token, "client_id": client_id,
            "expires_in": str(expires_on - int(time.time())), "expires_on": str(expires_on),
            "ext_expires_in": str(expires_on - int(time.time())),
            "not_before": str(int(time.time())), "resource": resource, "token_type": "Bearer",
        })

    def routes(self) -> list[Route]:
        return [
            Route("/msi/token", self.app_service_token, methods=["GET"]),
            Route("/vms/{vm}/metadata/identity/oauth2/token", self.imds_token, methods=["GET"]),
        ]
