"""Invoke HTTP-triggered functions: func.HttpRequest in, func.HttpResponse out, keys enforced."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from aiohttp import web

from .loader import Function, FunctionIndex
from .responses import error, json_response
from .routes import Route, compile_route
from .settings import Keys

log = logging.getLogger("cotenant.devhost")
MAX_BODY = 100 * 1024 * 1024  # the host's default request size limit


@dataclass(frozen=True)
class HttpFunction:
    function: Function
    route: Route
    methods: frozenset[str]
    auth_level: str


def index_http(index: FunctionIndex, prefix: str) -> list[HttpFunction]:
    out = []
    for fn in index.by_trigger("httpTrigger"):
        trigger = fn.trigger
        methods = frozenset(m.upper() for m in trigger.get("methods") or ()) or frozenset(
            ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"))
        route = compile_route(prefix, trigger.get("route") or fn.name)
        out.append(HttpFunction(fn, route, methods,
                                str(trigger.get("authLevel", "FUNCTION")).upper()))
    # Most literal segments first, as ASP.NET routing prefers specific templates.
    return sorted(out, key=lambda f: -f.route.literal_segments)


def presented_key(request: web.Request) -> str | None:
    return request.headers.get("x-functions-key") or request.query.get("code")


class HttpTriggers:
    def __init__(self, functions: list[HttpFunction], keys: Keys,
                 client_binding: Callable[[str], str], invoke: Callable[..., Any]) -> None:
        self.functions = functions
        self.keys = keys
        self.client_binding = client_binding
        self.invoke = invoke

    def find(self, path: str, method: str) -> tuple[HttpFunction, dict[str, str]] | None | str:
        matched_path = False
        for candidate in self.functions:
            params = candidate.route.match(path)
            if params is None:
                continue
            matched_path = True
            if method in candidate.methods:
                return candidate, params
        return "method" if matched_path else None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        found = self.find(request.path, request.method)
        if found is None:
            return error(404, "no function matches this route")
        if found == "method":
            return error(405, f"method {request.method} is not allowed on this route")
        assert not isinstance(found, str)
        target, params = found
        name = target.function.name
        if target.auth_level != "ANONYMOUS" and not self.keys.allows(
                name, presented_key(request), admin=target.auth_level == "ADMIN"):
            return error(401, "a valid function key is required (x-functions-key or code)")
        if request.content_length and request.content_length > MAX_BODY:
            return error(413, "request body too large")
        body = await request.read()
        req = func.HttpRequest(
            method=request.method, url=str(request.url),
            headers={k: v for k, v in request.headers.items()},
            params={k: v for k, v in request.query.items()},
            route_params=params, body=body)
        kwargs: dict[str, Any] = {target.function.trigger_param: req}
        client = target.function.binding_of("durableClient")
        if client is not None:
            kwargs[client["name"]] = self.client_binding(f"{request.scheme}://{request.host}")
        try:
            result = await self.invoke(target.function, kwargs)
        except Exception:
            log.exception("Executed 'Functions.%s' (Failed)", name)
            return error(500, f"Exception while executing function: Functions.{name}")
        return to_response(result)


async def call_function(fn: Function, kwargs: dict[str, Any]) -> Any:
    """Await coroutine functions; run synchronous ones in a worker thread."""
    if inspect.iscoroutinefunction(fn.code):
        return await fn.code(**kwargs)
    return await asyncio.get_running_loop().run_in_executor(None, lambda: fn.code(**kwargs))


def to_response(result: Any) -> web.StreamResponse:
    if result is None:
        return web.Response(status=204)
    if isinstance(result, func.HttpResponse):
        headers = {k: v for k, v in result.headers.items() if k.lower() != "content-type"}
        content_type = result.headers.get("content-type") or result.mimetype or "text/plain"
        response = web.Response(status=result.status_code, body=result.get_body(),
                                headers=headers)
        response.headers["Content-Type"] = content_type if "charset" in content_type or \
            not content_type.startswith("text/") else f"{content_type}; charset={result.charset}"
        return response
    if isinstance(result, str | bytes):
        return web.Response(status=200, body=result.encode() if isinstance(result, str)
                            else result, content_type="text/plain")
    return json_response(result)
