"""A real HTTPS server on 127.0.0.1 publishing OpenID discovery and a JWKS, plus a token issuer.

It stands in for the attestation service at the outermost edge: the verifier under test talks
to it over real TLS with a CA bundle, exactly as it talks to MAA or the lab.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from cotenant.crypto.encoding import b64url_encode
from tests.crypto.https_server import HttpsJsonServer
from tests.crypto.pki import Pki


def public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    numbers = key.public_key().public_numbers()
    n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
    return {"kid": kid, "kty": "RSA", "n": b64url_encode(n), "e": "AQAB"}


class MaaServer:
    def __init__(self, pki: Pki, tls_key: rsa.RSAPrivateKey, workdir: Path) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.hits: dict[str, int] = {"discovery": 0, "jwks": 0}
        self.issuer_suffix = ""  # lets a test announce another issuer in discovery
        self.jwks_uri: str | None = None  # lets a test announce another JWKS address
        self.extra_jwks: list[dict[str, Any]] = []  # served as-is (e.g. x5c-only entries)
        self._server = HttpsJsonServer(pki, tls_key, workdir, self._handle)
        self.ca_bundle = self._server.ca_bundle
        self.issuer = self._server.url

    def _handle(self, method: str, path: str, headers: dict, body: Any):
        if path == "/.well-known/openid-configuration":
            self.hits["discovery"] += 1
            return (
                200,
                {
                    "issuer": self.issuer + self.issuer_suffix,
                    "jwks_uri": self.jwks_uri or self.issuer + "/certs",
                    "id_token_signing_alg_values_supported": ["RS256"],
                },
                {},
            )
        if path == "/certs":
            self.hits["jwks"] += 1
            keys = [public_jwk(k, kid) for kid, k in self.keys.items()]
            return 200, {"keys": keys + self.extra_jwks}, {}
        return 404, {"error": {"code": "NotFound", "message": path}}, {}

    def stop(self) -> None:
        self._server.stop()

    def token(
        self,
        claims: dict[str, Any] | None = None,
        *,
        kid: str = "k1",
        key: rsa.RSAPrivateKey | None = None,
        lifetime: int = 3600,
        not_before: int = 0,
        issuer: str | None = None,
    ) -> str:
        now = int(time.time())
        body = {
            "iss": issuer or self.issuer,
            "iat": now,
            "nbf": now + not_before,
            "exp": now + lifetime,
            **(claims or {}),
        }
        signer = key or self.keys[kid]
        headers = {"kid": kid, "jku": self.issuer + "/certs", "typ": "JWT"}
        return jwt.encode(body, signer, algorithm="RS256", headers=headers)
