"""Key release over real HTTP(S): retries, denial reasons, enc fallback, token confinement.

A scripted HTTPS "vault" on 127.0.0.1 (certificate from a throwaway CA) and a plain-HTTP IMDS
answer the agent's real ``KeyReleaser``/``ImdsClient``; only the TEE is a stand-in.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.padding import AsymmetricPadding

from cotenant.lab.ca import LabCA
from guest_agent.config import KeyRef
from guest_agent.imds import ImdsClient
from guest_agent.release import KeyReleaser, ReleaseDenied, ReleaseFailed
from guest_agent.retry import Backoff, TransientError
from guest_agent.tee import Tee

TARGET = "header.attestation-token.signature"


@dataclass
class Script:
    """Responses to serve in order (status, body, headers); requests are recorded."""

    responses: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        script = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                script.requests.append({"path": self.path, "headers": dict(self.headers),
                                        "body": json.loads(body) if body else None})
                status, payload, headers = (script.responses.pop(0) if script.responses
                                            else (500, {"error": "unscripted"}, {}))
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@contextlib.contextmanager
def serving(script: Script, context: ssl.SSLContext | None = None) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), script.handler())
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


class StubTee:
    """The TEE stand-in: a fixed token; unwrapping is never reached in these tests."""

    name = "stub"

    def attest(self, nonce: str) -> str:
        return TARGET

    def decrypt(self, ciphertext: bytes, padding: AsymmetricPadding) -> bytes:
        raise AssertionError("not reached")

    def close(self) -> None:
        pass


@dataclass
class Rig:
    vault: Script
    imds: Script
    attacker: Script
    releaser: KeyReleaser
    key: KeyRef
    tee: Tee
    attacker_port: int


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[LabCA, ssl.SSLContext]:
    ca = LabCA(tmp_path_factory.mktemp("ca"))
    cert, key = ca.issue_to_files("vault", ["127.0.0.1"])
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    return ca, server_ctx


@pytest.fixture
def rig(tls: tuple[LabCA, ssl.SSLContext]) -> Iterator[Rig]:
    ca, server_ctx = tls
    vault, imds, attacker = Script(), Script(), Script()
    with serving(vault, server_ctx) as vault_port, serving(imds) as imds_port, \
            serving(attacker) as attacker_port:
        http = httpx.Client(verify=ssl.create_default_context(cafile=str(ca.bundle_path)),
                            trust_env=False, timeout=5)
        fast = Backoff(attempts=4, base_seconds=0.01, cap_seconds=0.05)
        identity = ImdsClient(f"http://127.0.0.1:{imds_port}", "client-123", http, fast)
        releaser = KeyReleaser(http, identity, trust_anchors=[ca.cert], backoff=fast)
        tee = Tee(StubTee())
        tee.attest("nonce-1234")
        yield Rig(vault, imds, attacker, releaser,
                  KeyRef(vault_url=f"https://127.0.0.1:{vault_port}", name="contoso-key"),
                  tee, attacker_port)
        http.close()


def _token(value: str) -> tuple[int, Any, dict[str, str]]:
    return 200, {"access_token": value, "expires_on": "9999999999"}, {}


def _denied(message: str) -> tuple[int, Any, dict[str, str]]:
    return 403, {"error": {"code": "Forbidden", "message": message,
                           "innererror": {"code": "AccessDenied"}}}, {}


def test_transient_errors_are_retried_and_403_is_reported_with_the_reason(rig: Rig) -> None:
    rig.imds.responses.append(_token("mi-token-1"))
    rig.vault.responses += [(503, {}, {}), (429, {}, {"Retry-After": "0"}),
                            _denied("policy not satisfied: sevsnpvm required")]
    with pytest.raises(ReleaseDenied) as err:
        rig.releaser.release(rig.key, rig.tee)
    assert err.value.reason == "policy not satisfied: sevsnpvm required"
    assert err.value.code == "Forbidden/AccessDenied"
    assert len(rig.vault.requests) == 3  # 403 is not retried
    first = rig.vault.requests[0]
    assert first["path"] == "/keys/contoso-key//release?api-version=7.4"
    assert first["headers"]["Authorization"] == "Bearer mi-token-1"
    assert first["body"] == {"target": TARGET, "enc": "RSA_AES_KEY_WRAP_256"}
    assert "mi-token-1" not in str(err.value)
    imds = rig.imds.requests[0]
    assert imds["headers"]["Metadata"] == "true"
    assert "resource=https%3A%2F%2Fvault.azure.net" in imds["path"]
    assert "client_id=client-123" in imds["path"]


def test_enc_refusal_falls_back_to_ckm_rsa_aes_key_wrap(rig: Rig) -> None:
    rig.imds.responses.append(_token("mi-token-1"))
    rig.vault.responses += [
        (400, {"error": {"code": "BadParameter",
                         "message": "enc RSA_AES_KEY_WRAP_256 is not supported"}}, {}),
        _denied("no"),
    ]
    with pytest.raises(ReleaseDenied):
        rig.releaser.release(rig.key, rig.tee, version="abc123")
    assert [r["body"]["enc"] for r in rig.vault.requests] == [
        "RSA_AES_KEY_WRAP_256", "CKM_RSA_AES_KEY_WRAP"]
    assert rig.vault.requests[0]["path"].startswith("/keys/contoso-key/abc123/release")


def test_other_bad_requests_are_not_retried_with_another_enc(rig: Rig) -> None:
    rig.imds.responses.append(_token("mi-token-1"))
    rig.vault.responses.append((400, {"error": {"code": "BadParameter",
                                                "message": "The key is not exportable"}}, {}))
    with pytest.raises(ReleaseFailed, match="not exportable"):
        rig.releaser.release(rig.key, rig.tee)
    assert len(rig.vault.requests) == 1


def test_expired_bearer_is_refreshed_once(rig: Rig) -> None:
    rig.imds.responses += [_token("old-token"), _token("new-token")]
    rig.vault.responses += [(401, {"error": {"code": "Unauthorized", "message": "expired"}}, {}),
                            _denied("no")]
    with pytest.raises(ReleaseDenied):
        rig.releaser.release(rig.key, rig.tee)
    assert [r["headers"]["Authorization"] for r in rig.vault.requests] == [
        "Bearer old-token", "Bearer new-token"]


def test_the_token_never_follows_a_redirect(rig: Rig) -> None:
    rig.imds.responses.append(_token("mi-token-secret"))
    rig.vault.responses.append(
        (307, {}, {"Location": f"http://127.0.0.1:{rig.attacker_port}/steal"}))
    with pytest.raises(ReleaseFailed) as err:
        rig.releaser.release(rig.key, rig.tee)
    assert rig.attacker.requests == []
    assert "mi-token-secret" not in str(err.value)


def test_unreachable_vault_gives_up_after_bounded_retries(rig: Rig) -> None:
    rig.imds.responses.append(_token("mi-token-1"))
    rig.vault.responses += [(503, {}, {})] * 4
    with pytest.raises(TransientError, match="after 4 attempts"):
        rig.releaser.release(rig.key, rig.tee)
    assert len(rig.vault.requests) == 4


def test_imds_refusal_is_an_identity_error_without_secrets(rig: Rig) -> None:
    from guest_agent.imds import IdentityError

    rig.imds.responses.append((400, {"error": "invalid_request",
                                     "error_description": "Identity not found"}, {}))
    with pytest.raises(IdentityError, match="Identity not found"):
        rig.releaser.release(rig.key, rig.tee)
    assert rig.vault.requests == []


def test_isolation_probe_reports_the_refusal_and_never_unwraps(rig: Rig) -> None:
    rig.imds.responses.append(_token("mi-token-1"))
    rig.vault.responses += [_denied("Caller is not authorized"),
                            (200, {"value": "a.b.c"}, {})]
    refused = rig.releaser.probe(rig.key, rig.tee)
    assert refused == {"vault": rig.key.vault_url, "name": "contoso-key", "released": False,
                       "status": 403, "code": "Forbidden/AccessDenied",
                       "message": "Caller is not authorized"}
    leaked = rig.releaser.probe(rig.key, rig.tee)  # StubTee.decrypt would fail if unwrapped
    assert leaked["released"] is True and leaked["status"] == 200


def test_queue_credential_asks_imds_for_the_storage_audience(rig: Rig) -> None:
    from guest_agent.imds import ImdsCredential

    rig.imds.responses.append(_token("storage-token"))
    credential = ImdsCredential(rig.releaser.imds)
    token = credential.get_token("https://storage.azure.com/.default")
    assert token.token == "storage-token"
    assert "resource=https%3A%2F%2Fstorage.azure.com&" in rig.imds.requests[0]["path"]
    assert credential.get_token("https://storage.azure.com/.default").token == "storage-token"
    assert len(rig.imds.requests) == 1  # cached until shortly before expiry
