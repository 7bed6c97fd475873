"""The host's ``/admin`` endpoints that local development uses (master key required).

``GET /admin/host/status`` answers ``{"state": "Running"}``; ``POST /admin/functions/<name>``
with ``{"input": "..."}`` runs a queue- or timer-triggered function once, as Core Tools
allows for non-HTTP functions.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest

from .http_triggers import presented_key
from .loader import Function, FunctionIndex
from .responses import error, json_response
from .settings import Keys


class AdminApi:
    def __init__(self, index: FunctionIndex, keys: Keys,
                 invoke: Callable[[Function, dict[str, Any]], Awaitable[Any]]) -> None:
        self.index = index
        self.keys = keys
        self.invoke = invoke

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/admin/host/status", self.status),
                web.post("/admin/functions/{name}", self.run)]

    def _admin(self, request: web.Request) -> bool:
        return self.keys.allows("", presented_key(request), admin=True)

    async def status(self, request: web.Request) -> web.Response:
        if not self._admin(request):
            return error(401, "the master key is required")
        return json_response({"state": "Running", "version": "devhost"})

    async def run(self, request: web.Request) -> web.Response:
        if not self._admin(request):
            return error(401, "the master key is required")
        fn = self.index.functions.get(request.match_info["name"])
        if fn is None:
            return error(404, f"no function named {request.match_info['name']!r}")
        try:
            body = json.loads(await request.read() or b"{}")
        except json.JSONDecodeError:
            return error(400, "the body must be JSON: {\"input\": \"...\"}")
        text = body.get("input", "") if isinstance(body, dict) else None
        if not isinstance(text, str):
            return error(400, "\"input\" must be a string")
        if fn.trigger_type == "queueTrigger":
            now = datetime.now(UTC)
            value: Any = QueueMessage(id=str(uuid.uuid4()), body=text.encode(), dequeue_count=1,
                                      insertion_time=now, time_next_visible=now,
                                      pop_receipt="admin")
        elif fn.trigger_type == "timerTrigger":
            value = TimerRequest(past_due=False)
        else:
            return error(400, f"{fn.name} is a {fn.trigger_type} function; only queue and "
                         "timer functions can be run through /admin/functions")
        try:
            await self.invoke(fn, {fn.trigger_param: value})
        except Exception:
            return error(500, f"Exception while executing function: Functions.{fn.name}")
        return web.Response(status=202)
