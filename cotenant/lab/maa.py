"""The attestation service (Microsoft Azure Attestation compatible), one per region host.

Every host under ``.attest.azure.net`` reached through the lab (e.g.
``https://sharedneu.neu.attest.azure.net``) is an authority with its own signing key, created
on first use and kept in the lab state, so several authorities run at once and tokens from
one never verify as another. Endpoints (per authority, chosen by the ``Host`` header):

* ``GET /.well-known/openid-configuration`` — ``issuer``, ``jwks_uri`` (``<iss>/certs``), ...
* ``GET /certs`` — ``{"keys": [{"kid", "kty", "x5c", "n", "e", "alg", "use"}]}``
* ``POST /attest/AzureGuest?api-version=2020-10-01`` — body ``{"AttestationInfo": …}`` (see
  :mod:`cotenant.lab.evidence`); answers ``{"token": <encrypted envelope>}`` holding an RS256
  JWT with the guest claim layout of :mod:`cotenant.lab.claims`. Evidence from a VM the lab
  did not create, or not signed by that VM's registered hardware key, is refused (400).
"""

from __future__ import annotations

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cotenant.lab.ca import load_private
from cotenant.lab.claims import guest_claims
from cotenant.lab.evidence import EvidenceError, quoted_vm, seal_token, verify_attestation_info
from cotenant.lab.http import HttpError, json_body
from cotenant.lab.jose import rsa_jwk, self_signed_cert, sha256_kid, x5c
from cotenant.lab.keypool import POOL
from cotenant.lab.state import Authority, StateStore

AUTHORITY_SUFFIX = ".attest.azure.net"
DEFAULT_AUTHORITY_HOST = "sharedneu.neu.attest.azure.net"


def authority_url(host: str) -> str:
    return f"https://{host}"


def is_authority_host(host: str) -> bool:
    return host.endswith(AUTHORITY_SUFFIX) and host.count(".") >= 4 and host.isascii()


def _host_of(request: Request) -> str:
    host = (request.headers.get("host") or "").split(":")[0].lower()
    if not is_authority_host(host):
        raise HttpError(404, "NotFound", f"no attestation authority at host {host!r}")
    return host


class AttestationService:
    """Authorities (signing keys, discovery, JWKS) and the AzureGuest endpoint."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def authority(self, host: str) -> Authority:
        """The authority for ``host`` (created with a fresh signing key on first use)."""
        existing = self.store.read().authorities.get(host)
        if existing is not None:
            return existing
        # The key is made before taking the state's lock (every edit of the lab waits on it);
        # two first uses at once make one key in vain, the first one stored wins.
        pem = POOL.private_pem(2048)
        cert = self_signed_cert(load_private(pem), authority_url(host))
        with self.store.edit() as state:
            if host not in state.authorities:
                state.authorities[host] = Authority(
                    host=host, signing_key=pem.decode(), kid=sha256_kid(cert),
                    cert=cert.public_bytes(serialization.Encoding.PEM).decode(),
                )
            return state.authorities[host]

    def sign(self, host: str, claims: dict[str, object]) -> str:
        authority = self.authority(host)
        key = load_private(authority.signing_key.encode())
        return jwt.encode(claims, key, algorithm="RS256", headers={
            "jku": f"{authority_url(host)}/certs", "kid": authority.kid, "typ": "JWT"})

    # -- HTTP ------------------------------------------------------------------------------
    async def _authority_of(self, request: Request) -> Authority:
        """The request's authority; off the event loop (a first use makes its key and takes
        the state's lock, which a vault request's thread may hold)."""
        return await run_in_threadpool(self.authority, _host_of(request))

    async def openid_configuration(self, request: Request) -> JSONResponse:
        iss = authority_url((await self._authority_of(request)).host)
        return JSONResponse({
            "response_types_supported": ["token", "none"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "revocation_endpoint": f"{iss}/revoke", "issuer": iss, "jwks_uri": f"{iss}/certs",
            "claims_supported": ["cnf", "nonce", "x-ms-ver", "x-ms-attestation-type",
                                 "x-ms-policy-hash", "x-ms-policy-signer"],
        })

    async def certs(self, request: Request) -> JSONResponse:
        authority = await self._authority_of(request)
        cert = x509.load_pem_x509_certificate(authority.cert.encode())
        public = cert.public_key()
        assert isinstance(public, rsa.RSAPublicKey)
        return JSONResponse({"keys": [rsa_jwk(public, x5c=x5c([cert]), kid=authority.kid,
                                              alg="RS256", use="sig")]})

    async def attest_guest(self, request: Request) -> JSONResponse:
        host = _host_of(request)
        body = await json_body(request)
        info_value = body.get("AttestationInfo")
        if not isinstance(info_value, str) or not info_value:
            raise HttpError(400, "InvalidParameter", "'AttestationInfo' is required")
        # Off the event loop: the evidence check, the token's signature and its sealing are
        # CPU (OpenSSL runs without the GIL), and every lab service shares this loop.
        return JSONResponse({"token": await run_in_threadpool(self._attest, host, info_value)})

    def _attest(self, host: str, info_value: str) -> str:
        """The sealed attestation token for the evidence ``info_value`` (raises HttpError)."""
        try:
            info, quote = quoted_vm(info_value)
            with self.store.lock:
                vm = next((v for v in self.store.read().vms.values()
                           if v.vm_unique_id == quote["vmUniqueId"]), None)
            if vm is None or not vm.hardware_public_key:
                raise EvidenceError("the evidence comes from an unknown platform")
            evidence = verify_attestation_info(info, quote, vm.hardware_public_key)
        except EvidenceError as exc:
            raise HttpError(400, "InvalidParameter", f"attestation failed: {exc}") from None
        token = self.sign(host, guest_claims(vm, authority_url(host), evidence))
        return seal_token(token, evidence.enc_key)

    def routes(self) -> list[Route]:
        return [
            Route("/.well-known/openid-configuration", self.openid_configuration,
                  methods=["GET"]),
            Route("/certs", self.certs, methods=["GET"]),
            Route("/attest/AzureGuest", self.attest_guest, methods=["POST"]),
        ]
