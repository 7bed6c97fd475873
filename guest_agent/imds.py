"""Managed-identity tokens from the instance metadata service (IMDS)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from azure.core.credentials import AccessToken

from guest_agent.retry import Backoff, send_with_retry

VAULT_RESOURCE = "https://vault.azure.net"
STORAGE_RESOURCE = "https://storage.azure.com"
_API_VERSION = "2018-02-01"
_REFRESH_MARGIN = 300


class IdentityError(RuntimeError):
    """IMDS refused or returned no token (message carries no token)."""


@dataclass
class ImdsClient:
    """Fetches and caches tokens for the VM's user-assigned identity (``client_id``)."""

    endpoint: str
    client_id: str
    http: httpx.Client
    backoff: Backoff = field(default_factory=Backoff)
    _cache: dict[str, AccessToken] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def token(self, resource: str, *, refresh: bool = False) -> AccessToken:
        with self._lock:
            cached = self._cache.get(resource)
            if cached and not refresh and cached.expires_on - _REFRESH_MARGIN > time.time():
                return cached
            fresh = self._fetch(resource)
            self._cache[resource] = fresh
            return fresh

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()

    def _fetch(self, resource: str) -> AccessToken:
        response = send_with_retry(
            self.http, "GET", f"{self.endpoint}/metadata/identity/oauth2/token",
            backoff=self.backoff, what="IMDS token",
            params={"api-version": _API_VERSION, "resource": resource,
                    "client_id": self.client_id},
            headers={"Metadata": "true"},
        )
        if response.status_code != 200:
            raise IdentityError(
                f"IMDS refused a token for {resource}: HTTP {response.status_code} "
                f"{_error_text(response)}"
            )
        try:
            body = response.json()
            return AccessToken(str(body["access_token"]), int(body["expires_on"]))
        except (ValueError, KeyError, TypeError):
            raise IdentityError("IMDS returned a malformed token response") from None


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict):
        desc = body.get("error_description") or body.get("error")
        if isinstance(desc, dict):
            desc = desc.get("message")
        return str(desc or "")[:300]
    return ""


class ImdsCredential:
    """An azure-core ``TokenCredential`` backed by ``ImdsClient`` (for the storage queues)."""

    def __init__(self, imds: ImdsClient) -> None:
        self._imds = imds

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        if len(scopes) != 1:
            raise IdentityError("exactly one scope is supported")
        return self._imds.token(scopes[0].removesuffix("/.default"))
