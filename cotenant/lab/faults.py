"""Fault injection for any lab endpoint, by configuration.

A rule matches a service (``vault``, ``maa``, ``identity``, ``manage``, ``deployments`` — see
:mod:`cotenant.lab.manager` — or ``*``), an optional
HTTP method and a path regex, and fires for a ``fraction`` of matching calls (at most
``count`` times when set). Kinds:

* ``latency`` — delay by ``latency_ms`` then serve normally;
* ``throttle`` — 429 with ``Retry-After: <retry_after>`` and a JSON error;
* ``error`` — ``status`` (default 503) with a JSON error;
* ``drop`` — start the response and close the connection mid-body.

Rules come from ``<lab dir>/faults.json`` at start and from the management API
(``LabClient.set_faults``); they are not persisted otherwise.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
from typing import Any, Literal

from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Receive, Scope, Send


class FaultRule(BaseModel):
    service: str = "*"
    method: str | None = None
    path: str = ""
    kind: Literal["latency", "throttle", "error", "drop"]
    fraction: float = Field(default=1.0, ge=0.0, le=1.0)
    latency_ms: int = Field(default=0, ge=0, le=120_000)
    status: int = Field(default=503, ge=400, le=599)
    retry_after: int = Field(default=1, ge=0, le=3600)
    count: int | None = Field(default=None, ge=0)

    def matches(self, service: str, method: str, path: str) -> bool:
        return (self.service in ("*", service)
                and (self.method is None or self.method.upper() == method)
                and re.search(self.path, path) is not None)


class FaultInjector:
    """The active rules; thread-safe; ``seed`` makes the fraction draws reproducible."""

    def __init__(self, rules: list[FaultRule] | None = None, seed: int | None = None) -> None:
        self._rules = list(rules or [])
        self._fired: list[int] = [0] * len(self._rules)
        self._lock = threading.Lock()
        self._random = random.Random(seed)  # noqa: S311 - fault sampling, not security

    def set_rules(self, rules: list[FaultRule]) -> None:
        with self._lock:
            self._rules = list(rules)
            self._fired = [0] * len(rules)

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def pick(self, service: str, method: str, path: str) -> FaultRule | None:
        with self._lock:
            for index, rule in enumerate(self._rules):
                if not rule.matches(service, method, path):
                    continue
                if rule.count is not None and self._fired[index] >= rule.count:
                    continue
                if self._random.random() < rule.fraction:
                    self._fired[index] += 1
                    return rule
        return None


async def _send_json(send: Send, status: int, payload: dict[str, Any],
                     headers: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        *headers]})
    await send({"type": "http.response.body", "body": body})


class FaultMiddleware:
    """ASGI middleware applying the injector's rules to one service."""

    def __init__(self, app: ASGIApp, *, service: str, injector: FaultInjector) -> None:
        self.app = app
        self.service = service
        self.injector = injector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rule = self.injector.pick(self.service, scope["method"], scope["path"])
        if rule is None:
            await self.app(scope, receive, send)
        elif rule.kind == "latency":
            await asyncio.sleep(rule.latency_ms / 1000)
            await self.app(scope, receive, send)
        elif rule.kind == "throttle":
            await _send_json(send, 429, {"error": {
                "code": "Throttled", "message": "Request was throttled (lab fault injection)"}},
                [(b"retry-after", str(rule.retry_after).encode())])
        elif rule.kind == "error":
            await _send_json(send, rule.status, {"error": {
                "code": "ServiceUnavailable" if rule.status == 503 else "InternalServerError",
                "message": "lab fault injection"}}, [])
        else:  # drop: promise a body, send part of it, and let the server close the connection
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", b"4096")]})
            await send({"type": "http.response.body", "body": b"{", "more_body": True})
