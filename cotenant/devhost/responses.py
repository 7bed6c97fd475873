"""JSON responses in the project's error shape (plus the field the durable client reads)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

_CODES = {400: "BadRequest", 401: "Unauthorized", 404: "NotFound", 405: "MethodNotAllowed",
          409: "Conflict", 410: "Gone", 413: "PayloadTooLarge", 500: "InternalError",
          501: "NotImplemented", 503: "ServiceUnavailable"}


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> web.Response:
    return web.Response(status=status, text=json.dumps(data), content_type="application/json",
                        headers=headers)


def error(status: int, message: str) -> web.Response:
    """``{"error": {"code", "message"}}``; ``ExceptionMessage`` is what the SDK's client reads."""
    body = {"error": {"code": _CODES.get(status, "Error"), "message": message},
            "ExceptionMessage": message}
    return json_response(body, status)
