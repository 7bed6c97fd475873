"""HTTP helpers shared by the lab's services: JSON errors and validated JSON bodies."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse


class HttpError(Exception):
    """Raised by handlers; rendered as ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None,
                 inner: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.inner = inner

    def response(self) -> JSONResponse:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.inner:
            error["innererror"] = {"code": self.inner}
        return JSONResponse({"error": error}, status_code=self.status, headers=self.headers)


async def http_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HttpError)
    return exc.response()


async def unexpected_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": "InternalServerError",
                   "message": f"the lab failed to handle the request ({type(exc).__name__})"}},
        status_code=500,
    )


EXCEPTION_HANDLERS = {HttpError: http_error_handler, Exception: unexpected_error_handler}


async def json_body(request: Request, *, required: bool = True) -> dict[str, Any]:
    """The request's JSON object body; 400 BadParameter when it is not one."""
    raw = await request.body()
    if not raw:
        if required:
            raise HttpError(400, "BadParameter", "the request body is missing")
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise HttpError(400, "BadParameter", "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise HttpError(400, "BadParameter", "the request body must be a JSON object")
    return body


def require_str(body: dict[str, Any], field: str, *, optional: bool = False) -> str | None:
    value = body.get(field)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise HttpError(400, "BadParameter", f"'{field}' must be a non-empty string")
    return value
