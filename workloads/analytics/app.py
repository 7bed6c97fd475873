"""The party's web app (ASGI, served by uvicorn): attestation, keys, isolation, analytics.

Routes (all GET, none takes a URL, vault, key or file from the caller, none returns key
material or anyone's records):

    /                       the page (static HTML + JS, strict CSP)
    /api/info               who this party is
    /api/attestation        a fresh attestation token from the agent, verified HERE
                            (signature, issuer, expiry, nonce) and explained
    /api/keys               the agent's key status and each key's release policy
    /api/isolation          the agent asks the other parties' vaults for their keys and
                            reports Key Vault's refusal
    /api/analytics/events   (aggregator) Server-Sent Events of the one aggregation run
    /api/analytics          (aggregator) the k-anonymous aggregates once ready
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cotenant.crypto.tokens import TokenError, TokenVerifier
from guest_agent.client import AgentClient, AgentError
from workloads.analytics.config import AppConfig
from workloads.analytics.explain import explain_claims
from workloads.analytics.pipeline import OpenBlob, aggregation_job
from workloads.analytics.runonce import TERMINAL, RunOnce

log = logging.getLogger("workloads.analytics")
STATIC = Path(__file__).resolve().parent / "static"
SHARED_TTL = 30.0
KEY_FIELDS = ("vault", "name", "state", "version", "released_at", "error_code", "error")
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


class _SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.decode("latin-1").lower() not in SECURITY_HEADERS]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


class _Shared:
    """One result shared by all callers for ``ttl`` seconds (computed in a worker thread),
    so anonymous page views cannot drive the attestation service or other parties' vaults."""

    def __init__(self, compute: Callable[[], Any], ttl: float = SHARED_TTL) -> None:
        self._compute = compute
        self._ttl = ttl
        self._lock = asyncio.Lock()
        self._cached: tuple[float, Any] | None = None

    async def get(self) -> Any:
        async with self._lock:
            if self._cached and time.monotonic() - self._cached[0] < self._ttl:
                return self._cached[1]
            result = await anyio.to_thread.run_sync(self._compute)
            self._cached = (time.monotonic(), result)
            return result


class _Attestation:
    """A fresh attestation token from the agent, verified here (signature, issuer, expiry,
    nonce) and explained."""

    def __init__(self, config: AppConfig, agent: AgentClient) -> None:
        self.agent = agent
        self.verifier = TokenVerifier(
            [config.attestation_authority],
            verify=str(config.ca_bundle) if config.ca_bundle else True,
        )

    def attest_and_verify(self) -> dict[str, Any]:
        nonce = secrets.token_urlsafe(24)
        try:
            token = self.agent.attest(nonce)
        except AgentError as exc:
            raise ApiError(502, "AttestationUnavailable",
                           f"the guest agent could not attest ({exc.code})") from None
        try:
            verified = self.verifier.verify(token, nonce=nonce)
        except TokenError as exc:
            raise ApiError(502, "AttestationNotVerified",
                           f"the attestation token failed verification ({exc.code})") from None
        return {
            "verified": True,
            "checks": ["signature (issuer's published keys)", "issuer", "expiry",
                       "fresh challenge (nonce)"],
            "issuer": verified.issuer,
            "compliant_cvm": verified.is_compliant_cvm,
            "debuggable": verified.is_debuggable,
            "claims": explain_claims(verified.claims),
        }


def _public_key_view(entry: dict[str, Any]) -> dict[str, Any]:
    view = {field: entry[field] for field in KEY_FIELDS if field in entry}
    policy = entry.get("release_policy")
    if isinstance(policy, dict | str):
        view["release_policy"] = policy
    return view


def build_app(
    config: AppConfig,
    *,
    agent: AgentClient | None = None,
    open_blob: OpenBlob | None = None,
    key_wait_seconds: float = 120.0,
) -> Starlette:
    agent = agent or AgentClient(config.agent_url)
    attestation = _Shared(_Attestation(config, agent).attest_and_verify)
    run = RunOnce(config.state_dir)
    aggregator = config.role == "aggregator"

    async def call_agent(method: Any, what: str) -> Any:
        try:
            return await anyio.to_thread.run_sync(method)
        except AgentError as exc:
            raise ApiError(502, "AgentError", f"the guest agent could not {what} ({exc.code})"
                           ) from None

    async def index(_: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def info(_: Request) -> Response:
        return JSONResponse({
            "party": config.party,
            "display_name": config.display_name,
            "role": config.role,
            "partners": [p.display_name for p in config.partners],
            "k": config.k,
        })

    async def attestation_route(_: Request) -> Response:
        return JSONResponse(await attestation.get())

    async def keys(_: Request) -> Response:
        entries = await call_agent(agent.keys, "report its keys")
        return JSONResponse({"keys": [_public_key_view(e) for e in entries]})

    async def isolation(_: Request) -> Response:
        return JSONResponse({"results": await isolation_results.get()})

    def check_isolation() -> list[dict[str, Any]]:
        """The agent asks the vaults of its isolation probes now; keys its allow-list names
        but whose vault refused them at start-up are shown with that refusal."""
        try:
            results = agent.isolation_check()
            entries = agent.keys()
        except AgentError as exc:
            raise ApiError(502, "AgentError",
                           f"the guest agent could not run the isolation check ({exc.code})"
                           ) from None
        asked = {(r.get("vault"), r.get("name")) for r in results}
        for entry in entries:
            if entry.get("state") != "denied" or (entry.get("vault"), entry.get("name")) in asked:
                continue
            code = str(entry.get("error_code", ""))
            results.append({
                "vault": entry.get("vault"), "name": entry.get("name"), "released": False,
                "status": 403 if code.startswith("Forbidden") else None, "code": code,
                "message": str(entry.get("error", "")), "when": "at start-up",
            })
        return results

    isolation_results = _Shared(check_isolation)

    def require_aggregator() -> None:
        if not aggregator:
            raise ApiError(404, "NotFound", "only the aggregating party runs analytics")

    async def analytics(_: Request) -> Response:
        require_aggregator()
        final = run.finished()
        if final is None:
            raise ApiError(409, "NotReady", "the aggregation run has not finished yet")
        if final["step"] == "failed":
            raise ApiError(409, "RunFailed", final["message"])
        return JSONResponse(final["report"])

    async def analytics_events(request: Request) -> Response:
        require_aggregator()

        async def stream() -> AsyncIterator[str]:
            offset, quiet = 0, 0.0
            while not await request.is_disconnected():
                events, offset = run.events(offset)
                for event in events:
                    yield f"event: {event['step']}\ndata: {json.dumps(event)}\n\n"
                    if event["step"] in TERMINAL:
                        return
                if events:
                    quiet = 0.0
                else:
                    quiet += 0.2
                    if quiet >= 15:
                        yield ": keep-alive\n\n"
                        quiet = 0.0
                await asyncio.sleep(0.2)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"x-accel-buffering": "no"})

    async def on_api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return _error(exc.status, exc.code, exc.message)

    async def on_http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HttpError")
        return _error(exc.status_code, code, str(exc.detail))

    async def on_unexpected(_: Request, exc: Exception) -> Response:
        log.error("analytics app error: %s", exc.__class__.__name__)
        return _error(500, "InternalError", "internal error")

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if aggregator:
            if open_blob is None:  # the storage SDK is only needed (and loaded) here
                from workloads.analytics.storage import sealed_blob_opener

                fetch: OpenBlob = sealed_blob_opener(config)
            else:
                fetch = open_blob
            job = aggregation_job(config, agent, fetch, key_wait_seconds=key_wait_seconds)
            run.start(job)
        yield

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/api/info", info, methods=["GET"]),
        Route("/api/attestation", attestation_route, methods=["GET"]),
        Route("/api/keys", keys, methods=["GET"]),
        Route("/api/isolation", isolation, methods=["GET"]),
        Route("/api/analytics", analytics, methods=["GET"]),
        Route("/api/analytics/events", analytics_events, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(_SecurityHeaders)],
        lifespan=lifespan,
        exception_handlers={
            ApiError: on_api_error,
            HTTPException: on_http_error,
            Exception: on_unexpected,
        },
    )
    app.state.run = run
    return app
