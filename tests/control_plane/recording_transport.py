"""An azure-core transport that records every request and answers from a script.

This is the outermost edge of the azure backend: the real SDK clients build and send real
HTTP requests; only the network is replaced.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
import requests.adapters
from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import RequestsTransport


@dataclass
class Recorded:
    method: str
    url: str
    headers: dict[str, str]
    body: Any

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


Handler = Callable[[Recorded], tuple[int, Any] | tuple[int, Any, dict[str, str]]]


class RecordingAdapter(requests.adapters.BaseAdapter):
    """Routes (method, url-regex) to handlers; unmatched requests answer 404."""

    def __init__(self) -> None:
        super().__init__()
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.requests: list[Recorded] = []

    def on(self, method: str, pattern: str, handler: Handler | tuple[int, Any]) -> None:
        fn = handler if callable(handler) else (lambda _r, h=handler: h)
        self.routes.insert(0, (method, re.compile(pattern), fn))

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        body = request.body
        if isinstance(body, bytes):
            body = body.decode()
        url = str(request.url)
        rec = Recorded(str(request.method), url, dict(request.headers), body)
        headers: dict[str, str] = {}
        if "vault.azure.net" in url and "Authorization" not in request.headers:
            status, payload = 401, {"error": {"code": "Unauthorized"}}
            headers = {"WWW-Authenticate": 'Bearer authorization="https://login.microsoftonline'
                                           '.com/tid", resource="https://vault.azure.net"'}
        else:
            self.requests.append(rec)
            status, payload = 404, {"error": {"code": "NotFound", "message": "no route"}}
            for method, pattern, fn in self.routes:
                if method == request.method and pattern.search(url):
                    answer = fn(rec)
                    status, payload = answer[0], answer[1]
                    headers = answer[2] if len(answer) > 2 else {}
                    break
        response = requests.Response()
        response.status_code = status
        if isinstance(payload, str):  # XML (storage) answers are given as text
            response._content = payload.encode()
            headers = {"Content-Type": "application/xml", **headers}
        else:
            response._content = json.dumps(payload).encode() if payload is not None else b""
        response.headers.update({"Content-Type": "application/json", **headers})
        response.url = url
        response.request = request
        response.raw = io.BytesIO(response._content)
        return response

    def close(self) -> None:
        pass

    def sent(self, method: str, pattern: str) -> list[Recorded]:
        rx = re.compile(pattern)
        return [r for r in self.requests if r.method == method and rx.search(r.url)]

    def transport(self) -> RequestsTransport:
        session = requests.Session()
        session.mount("https://", self)
        return RequestsTransport(session=session, session_owner=False)


class StaticCredential:
    """A token credential for the recorded HTTP tests (no identity provider involved)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("test-access-token", int(time.time()) + 3600)
