"""The local SKR API (loopback only).

ACI confidential sidecar compatible:
    GET  /status        -> {"message": "Status OK", ...agent summary}
    POST /attest/maa    {"maa_endpoint", "runtime_data"} -> {"token"}
    POST /key/release   {"maa_endpoint", "akv_endpoint", "kid"} -> {"key": "<private JWK>"}
                        (403 unless ``allow_private_key_release`` is set in the config)
Workload routes (no key material leaves except a sealed file's own data key):
    GET  /attest/claims -> {"claims": {...}, "verified": true} of the agent's current token,
                           verified here against the configured authority's keys
    GET  /keys          -> {"keys": [{vault, name, state, kid, version, release_policy, ...}]}
    GET  /isolation     -> {"results": [{vault, name, released, status, code, message}]}
                        (asks the configured other parties' vaults; see isolation_probes)
    POST /keys/unwrap   {"key_id", "alg", "wrapped_key" (base64)} -> {"key": base64}
    POST /sealed/decrypt  body: a sealed file -> the plaintext, streamed

Requests can only name allow-listed keys (vault host + key name); URLs are never taken from
the caller. Errors are ``{"error": {"code", "message"}}`` with 4xx/5xx statuses.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import os
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import anyio.from_thread
import anyio.to_thread
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from cotenant.crypto.envelope import open_sealed
from cotenant.crypto.errors import CryptoError
from cotenant.crypto.tokens import TokenError, TokenVerifier
from guest_agent.backends import AttestationError
from guest_agent.imds import IdentityError
from guest_agent.jwk import private_jwk
from guest_agent.release import ReleaseDenied, ReleaseFailed
from guest_agent.retry import TransientError
from guest_agent.unwrap import KeyNotAllowed, UnwrapError

if TYPE_CHECKING:
    from guest_agent.agent import Agent

log = logging.getLogger("guest_agent.api")
MAX_JSON_BODY = 64 * 1024
STREAM_CHUNK = 1024 * 1024
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


async def _json_body(request: Request) -> dict[str, Any]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON_BODY:
            raise ApiError(413, "RequestTooLarge", f"JSON bodies are limited to {MAX_JSON_BODY}")
    try:
        data = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "BadRequest", "body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "BadRequest", "body must be a JSON object")
    return data


def _string(data: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > 8192:
        raise ApiError(400, "BadRequest", f"'{name}' must be a non-empty string")
    return value


def _host_of(value: str) -> str:
    return (urlsplit(value).netloc if "://" in value else value.split("/", 1)[0]).lower()


class _BodyReader(io.RawIOBase):
    """A blocking file over the request body, for a worker thread (anyio portal)."""

    def __init__(self, stream: AsyncIterator[bytes]) -> None:
        self._stream = stream
        self._buffer = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    async def _next(self) -> bytes | None:
        try:
            return await self._stream.__anext__()
        except StopAsyncIteration:
            return None

    def readinto(self, target: Any) -> int:
        while not self._buffer and not self._eof:
            chunk = anyio.from_thread.run(self._next)
            if chunk is None:
                self._eof = True
            else:
                self._buffer = chunk
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


class _LoopbackHostOnly:
    """Refuses requests whose ``Host`` is not a loopback name (blocks DNS rebinding: a
    browser page cannot reach the API under a foreign name)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = Headers(scope=scope).get("host", "")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name.lower() not in LOOPBACK_HOSTS:
                response = _error(400, "InvalidHost", "the local API answers loopback names only")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _DuplexStreamingResponse(StreamingResponse):
    """Streams while the request body is still being read (Starlette's default would race the
    body reader with its disconnect listener on ASGI < 2.4)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.stream_response(send)
        except CryptoError as exc:
            # Headers are gone: end without completing the body, so the connection is cut
            # and the client cannot mistake a truncated/tampered stream for the whole file.
            log.warning("sealed stream aborted: %s", exc)


def build_app(agent: Agent) -> Starlette:
    config = agent.config

    def _check_maa(data: dict[str, Any]) -> None:
        endpoint = _string(data, "maa_endpoint", required=False)
        if endpoint is not None and _host_of(endpoint) != _host_of(config.attestation.endpoint):
            raise ApiError(400, "AttestationEndpointNotAllowed",
                           "maa_endpoint must be the configured attestation endpoint")

    async def status(_: Request) -> Response:
        return JSONResponse({
            "message": "Status OK",
            "tenant": config.tenant, "party": config.party, "vm": config.vm_name,
            "backend": config.backend,
            "private_key_release": config.allow_private_key_release,
            **agent.tee.summary(),
            "keys": agent.keys.status(),
        })

    verifier = TokenVerifier([config.attestation.endpoint],
                             verify=config.tls.resolved_bundle(os.environ) or True)

    async def claims(_: Request) -> Response:
        if not agent.tee.attested:
            raise ApiError(409, "NotAttested", "the VM has not attested yet")
        try:
            verified = await anyio.to_thread.run_sync(agent.tee.claims, verifier)
        except TokenError as exc:
            raise ApiError(502, "TokenUnverified", str(exc)) from None
        return JSONResponse({"claims": verified, "verified": True,
                             "issuer": config.attestation.endpoint})

    async def keys(_: Request) -> Response:
        return JSONResponse({"keys": agent.keys.status()})

    async def isolation(_: Request) -> Response:
        results = await anyio.to_thread.run_sync(agent.probe_isolation)
        return JSONResponse({"results": results})

    async def attest_maa(request: Request) -> Response:
        data = await _json_body(request)
        _check_maa(data)
        runtime_data = _string(data, "runtime_data", required=False) or ""
        nonce = _nonce_from_runtime_data(runtime_data)
        token = await anyio.to_thread.run_sync(agent.tee.attest_for_caller, nonce)
        return JSONResponse({"token": token})

    async def key_release(request: Request) -> Response:
        if not config.allow_private_key_release:
            raise ApiError(403, "PrivateKeyReleaseDisabled",
                           "releasing private key material to local callers is disabled")
        data = await _json_body(request)
        _check_maa(data)
        vault = _string(data, "akv_endpoint")
        name = _string(data, "kid")
        assert vault is not None and name is not None
        ref = config.find_key(_host_of(vault), name)
        if ref is None:
            raise ApiError(403, "KeyNotAllowed", "key is not in this agent's allow-list")
        released = agent.keys.get(ref)
        if released is None:
            released = await anyio.to_thread.run_sync(
                lambda: agent.release(ref, agent.startup))
        if released is None:
            raise ApiError(403, "ReleaseFailed", "the key could not be released to this VM")
        return JSONResponse({"key": json.dumps(private_jwk(released))})

    async def unwrap(request: Request) -> Response:
        data = await _json_body(request)
        key_id, alg = _string(data, "key_id"), _string(data, "alg")
        wrapped_text = _string(data, "wrapped_key")
        assert key_id is not None and alg is not None and wrapped_text is not None
        try:
            wrapped = base64.urlsafe_b64decode(wrapped_text + "=" * (-len(wrapped_text) % 4))
        except (binascii.Error, ValueError):
            raise ApiError(400, "BadRequest", "'wrapped_key' is not base64") from None
        key = await anyio.to_thread.run_sync(agent.unwrapper.unwrap, key_id, alg, wrapped)
        return JSONResponse({"key": base64.b64encode(key).decode("ascii")})

    async def decrypt(request: Request) -> Response:
        reader = io.BufferedReader(_BodyReader(request.stream()), buffer_size=STREAM_CHUNK)
        plaintext = await anyio.to_thread.run_sync(open_sealed, reader, agent.unwrapper)

        def chunks() -> Iterator[bytes]:
            try:
                while True:
                    block = plaintext.read(STREAM_CHUNK)
                    if not block:
                        return
                    yield block
            finally:
                plaintext.close()

        return _DuplexStreamingResponse(chunks(), media_type="application/octet-stream")

    async def on_api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return _error(exc.status, exc.code, exc.message)

    async def on_http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, "HttpError", str(exc.detail))

    async def on_not_allowed(_: Request, exc: Exception) -> Response:
        return _error(403, "KeyNotAllowed", str(exc))

    async def on_unwrap(_: Request, exc: Exception) -> Response:
        return _error(422, "UnwrapFailed", str(exc))

    async def on_crypto(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, CryptoError)
        return _error(422, f"Crypto.{exc.code}", str(exc))

    async def on_release(_: Request, exc: Exception) -> Response:
        return _error(403, "ReleaseFailed", str(exc))

    async def on_attestation(_: Request, exc: Exception) -> Response:
        code = "IdentityUnavailable" if isinstance(exc, IdentityError) else "AttestationFailed"
        return _error(503, code, str(exc))

    async def on_unexpected(_: Request, exc: Exception) -> Response:
        log.error("local API error: %s", exc.__class__.__name__)
        return _error(500, "InternalError", "internal error")

    routes = [
        Route("/status", status, methods=["GET"]),
        Route("/attest/maa", attest_maa, methods=["POST"]),
        Route("/attest/claims", claims, methods=["GET"]),
        Route("/key/release", key_release, methods=["POST"]),
        Route("/keys", keys, methods=["GET"]),
        Route("/isolation", isolation, methods=["GET"]),
        Route("/keys/unwrap", unwrap, methods=["POST"]),
        Route("/sealed/decrypt", decrypt, methods=["POST"]),
    ]
    middleware = []
    if not config.api.force_non_loopback:
        middleware.append(Middleware(_LoopbackHostOnly))
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={
            ApiError: on_api_error,
            HTTPException: on_http_error,
            KeyNotAllowed: on_not_allowed,
            UnwrapError: on_unwrap,
            CryptoError: on_crypto,
            ReleaseDenied: on_release,
            ReleaseFailed: on_release,
            AttestationError: on_attestation,
            TransientError: on_attestation,
            IdentityError: on_attestation,
            Exception: on_unexpected,
        },
    )


def _nonce_from_runtime_data(runtime_data: str) -> str:
    """The sidecar's ``runtime_data`` is base64 JSON; its ``nonce`` (or the whole text, for
    other shapes) becomes the client-payload nonce of the token."""
    if not runtime_data:
        raise ApiError(400, "BadRequest", "'runtime_data' is required")
    try:
        decoded = json.loads(base64.b64decode(runtime_data + "=" * (-len(runtime_data) % 4)))
    except (binascii.Error, ValueError):
        decoded = None
    if isinstance(decoded, dict) and isinstance(decoded.get("nonce"), str) and decoded["nonce"]:
        nonce = decoded["nonce"]
    else:
        nonce = runtime_data
    if len(nonce) > 1024:
        raise ApiError(400, "BadRequest", "runtime data is too long")
    return nonce
