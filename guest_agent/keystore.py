"""Released keys, held in process memory only (never written anywhere)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from cotenant.crypto.skr import ReleasedKey
from guest_agent.config import KeyRef
from guest_agent.jwk import public_jwk


@dataclass(frozen=True)
class KeyState:
    ref: KeyRef
    released: ReleasedKey | None = None
    released_at: float | None = None
    error_code: str | None = None
    error: str | None = None

    def public_view(self) -> dict[str, Any]:
        """Status for the local API and logs: identifiers and state, never material."""
        view: dict[str, Any] = {
            "vault": self.ref.vault_url,
            "name": self.ref.name,
            "state": "released" if self.released else ("denied" if self.error_code else "pending"),
        }
        if self.released:
            view.update(kid=self.released.kid, version=self.released.version,
                        kty=self.released.kty, released_at=self.released_at,
                        release_policy=self.released.release_policy)
            public = public_jwk(self.released.key)
            if public is not None:
                view["public_jwk"] = public
        if self.error_code:
            view.update(error_code=self.error_code, error=self.error)
        return view


class KeyStore:
    """One current version per allowed key. Replacing or wiping drops the old object."""

    def __init__(self, refs: list[KeyRef]) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, KeyState] = {r.label(): KeyState(ref=r) for r in refs}

    def put(self, ref: KeyRef, released: ReleasedKey) -> None:
        """Hold ``released`` for ``ref``, which must be one of the allow-listed keys."""
        with self._lock:
            if ref.label() not in self._states:
                raise KeyError(f"{ref.label()} is not in the allow-list; not kept")
            self._states[ref.label()] = KeyState(ref=ref, released=released,
                                                 released_at=time.time())

    def fail(self, ref: KeyRef, code: str, message: str) -> None:
        """Record a failure; a previously released version stays usable."""
        with self._lock:
            old = self._states.get(ref.label(), KeyState(ref=ref))
            self._states[ref.label()] = KeyState(
                ref=ref, released=old.released, released_at=old.released_at,
                error_code=code, error=message,
            )

    def get(self, ref: KeyRef) -> ReleasedKey | None:
        with self._lock:
            state = self._states.get(ref.label())
            return state.released if state else None

    def wipe(self) -> None:
        with self._lock:
            self._states = {label: KeyState(ref=s.ref) for label, s in self._states.items()}

    def status(self) -> list[dict[str, Any]]:
        with self._lock:
            return [s.public_view() for s in self._states.values()]
