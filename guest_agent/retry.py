"""HTTP with bounded exponential backoff on throttling, server errors and timeouts."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class TransientError(RuntimeError):
    """Retries were exhausted; the last failure is in the message (no secrets)."""


@dataclass(frozen=True)
class Backoff:
    attempts: int = 5
    base_seconds: float = 0.5
    cap_seconds: float = 20.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), self.cap_seconds)
            except ValueError:
                pass
        exp = min(self.cap_seconds, self.base_seconds * (2**attempt))
        return exp / 2 + random.uniform(0, exp / 2)  # noqa: S311 - jitter, not crypto


def send_with_retry(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    backoff: Backoff,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    **kwargs: Any,
) -> httpx.Response:
    """Send a request; retry on ``RETRY_STATUSES`` and transport errors; return the last
    non-retryable response. Raises ``TransientError`` once attempts are exhausted."""
    last = ""
    for attempt in range(backoff.attempts):
        retry_after = None
        try:
            response = client.request(method, url, **kwargs)
        except httpx.TimeoutException:
            last = f"{what}: timed out"
        except httpx.TransportError as exc:
            last = f"{what}: connection failed ({exc.__class__.__name__})"
        else:
            if response.status_code not in RETRY_STATUSES:
                return response
            last = f"{what}: HTTP {response.status_code}"
            retry_after = response.headers.get("Retry-After")
        if attempt + 1 < backoff.attempts:
            sleep(backoff.delay(attempt, retry_after))
    raise TransientError(f"{last} (after {backoff.attempts} attempts)")
