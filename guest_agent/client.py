"""What workloads use to talk to the guest agent's local API.

    client = AgentClient("http://127.0.0.1:8080")
    client.status(); client.claims(); client.keys()
    with open("data.sealed", "rb") as src:
        for block in client.decrypt_stream(src):   # plaintext, streamed
            ...
    data_key = client.unwrap(key_id, "RSA-OAEP-256", wrapped_key)

The key-encryption key never leaves the agent; ``decrypt_stream`` sends the sealed file and
reads the plaintext back concurrently (full duplex), so files of any size stream through.
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import httpx

CHUNK = 1024 * 1024


class AgentError(RuntimeError):
    """The agent answered with an error (``status``, ``code``) or could not be reached."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if status == 0 else f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


def _raise_for(status: int, body: bytes) -> None:
    if status < 400:
        return
    try:
        error = json.loads(body)["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "HttpError", body[:200].decode("utf-8", errors="replace")
    raise AgentError(status, code, message)


class AgentClient:
    def __init__(self, base_url: str = "http://127.0.0.1:8080", *, timeout: float = 60.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError("the agent's local API is plain http on loopback")
        self.base_url = base_url.rstrip("/")
        self._host = parts.hostname
        self._port = parts.port or 80
        self._timeout = timeout
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, trust_env=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _json(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            reason = f"{self.base_url}: {exc.__class__.__name__}"
            raise AgentError(0, "Unreachable", reason) from None
        _raise_for(response.status_code, response.content)
        return response.json()

    # --- sidecar-compatible -------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return self._json("GET", "/status")

    def attest(self, nonce: str, maa_endpoint: str | None = None) -> str:
        """A fresh attestation token carrying ``nonce`` (``POST /attest/maa``)."""
        runtime = base64.b64encode(json.dumps({"nonce": nonce}).encode()).decode()
        body: dict[str, Any] = {"runtime_data": runtime}
        if maa_endpoint:
            body["maa_endpoint"] = maa_endpoint
        return str(self._json("POST", "/attest/maa", body)["token"])

    def release_private_key(self, akv_endpoint: str, key_name: str) -> dict[str, Any]:
        """``POST /key/release``: the private JWK (only if the agent's config allows it)."""
        body = {"akv_endpoint": akv_endpoint, "kid": key_name}
        return json.loads(self._json("POST", "/key/release", body)["key"])

    # --- workload routes ----------------------------------------------------------------
    def claims(self) -> dict[str, Any]:
        return self._json("GET", "/attest/claims")["claims"]

    def keys(self) -> list[dict[str, Any]]:
        return self._json("GET", "/keys")["keys"]

    def isolation_check(self) -> list[dict[str, Any]]:
        """The vaults' answers to this VM asking for other parties' keys (``GET /isolation``)."""
        return self._json("GET", "/isolation")["results"]

    def unwrap(self, key_id: str, alg: str, wrapped_key: bytes) -> bytes:
        body = {"key_id": key_id, "alg": alg,
                "wrapped_key": base64.b64encode(wrapped_key).decode("ascii")}
        return base64.b64decode(self._json("POST", "/keys/unwrap", body)["key"])

    def decrypt_stream(self, src: BinaryIO | bytes | Path | str) -> Iterator[bytes]:
        """Send a sealed file (stream, bytes or path); yield its plaintext as it arrives.

        Raises ``AgentError`` on refusal; a connection cut mid-stream (tampered data) raises
        ``AgentError`` with code ``StreamAborted`` — discard what was yielded so far.
        """
        if isinstance(src, str | Path):
            with open(src, "rb") as fh:
                yield from self.decrypt_stream(fh)
            return
        blocks: Iterable[bytes] = [src] if isinstance(src, bytes) else _blocks(src)
        conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        try:
            yield from self._duplex(conn, blocks)
        finally:
            conn.close()

    def decrypt_to(self, src: BinaryIO | bytes | Path | str, dst: BinaryIO) -> int:
        total = 0
        for block in self.decrypt_stream(src):
            dst.write(block)
            total += len(block)
        return total

    def _duplex(self, conn: http.client.HTTPConnection,
                blocks: Iterable[bytes]) -> Iterator[bytes]:
        try:
            conn.putrequest("POST", "/sealed/decrypt")
            conn.putheader("Content-Type", "application/octet-stream")
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
        except OSError as exc:
            raise AgentError(0, "Unreachable", f"{self.base_url}: {exc}") from None
        send_error: list[BaseException] = []

        def send() -> None:
            try:
                for block in blocks:
                    if block:
                        conn.send(b"%x\r\n%s\r\n" % (len(block), block))
                conn.send(b"0\r\n\r\n")
            except OSError as exc:  # the agent answered early (error) or went away
                send_error.append(exc)

        sender = threading.Thread(target=send, name="decrypt-upload", daemon=True)
        sender.start()
        try:
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            raise AgentError(0, "Unreachable", f"{self.base_url}: {exc}") from None
        try:
            if response.status >= 400:
                _raise_for(response.status, response.read())
            while True:
                try:
                    block = response.read1(CHUNK)
                except (OSError, http.client.HTTPException):
                    raise AgentError(0, "StreamAborted",
                                     "the agent aborted the stream (data failed to decrypt)"
                                     ) from None
                if not block:
                    break
                yield block
        finally:
            response.close()
            sender.join(timeout=self._timeout)


def _blocks(src: BinaryIO) -> Iterator[bytes]:
    while True:
        block = src.read(CHUNK)
        if not block:
            return
        yield block
