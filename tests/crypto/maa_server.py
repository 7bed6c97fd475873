"""A real HTTPS server on 127.0.0.1 publishing OpenID discovery and a JWKS, plus a token issuer.

It stands in for the attestation service at the outermost edge: the verifier under test talks
to it over real TLS with a CA bundle, exactly as it talks to MAA or the lab.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cotenant.crypto.encoding import b64url_encode
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
        self.extra_jwks: list[dict[str, Any]] = []  # served as-is (e.g. x5c-only entries)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/.well-known/openid-configuration":
                    server.hits["discovery"] += 1
                    body = {
                        "issuer": server.issuer + server.issuer_suffix,
                        "jwks_uri": server.issuer + "/certs",
                        "id_token_signing_alg_values_supported": ["RS256"],
                    }
                elif self.path == "/certs":
                    server.hits["jwks"] += 1
                    keys = [public_jwk(k, kid) for kid, k in server.keys.items()]
                    body = {"keys": keys + server.extra_jwks}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        chain_pem = workdir / "server-chain.pem"
        key_pem = workdir / "server-key.pem"
        chain_pem.write_bytes(
            b"".join(
                c.public_bytes(serialization.Encoding.PEM) for c in pki.chain("127.0.0.1", tls_key)
            )
        )
        key_pem.write_bytes(
            tls_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(chain_pem, key_pem)
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self.ca_bundle = str(workdir / "ca.pem")
        Path(self.ca_bundle).write_bytes(pki.root.public_bytes(serialization.Encoding.PEM))
        self.issuer = f"https://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

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
