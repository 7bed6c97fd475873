"""The attested environment: a backend plus the token it last obtained."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from guest_agent.backends import AttestationBackend, AttestationError

if TYPE_CHECKING:
    from cotenant.crypto.tokens import TokenVerifier


class Tee:
    """Serialises attestation and remembers the current token (its ephemeral key is the
    backend's, so any token it obtained can be the release ``target``)."""

    def __init__(self, backend: AttestationBackend) -> None:
        self.backend = backend
        self._token: str | None = None
        self._nonce: str | None = None
        self._attested_at: float | None = None
        self._lock = threading.Lock()
        self._early: tuple[str, Future[str]] | None = None

    def prefetch(self, nonce: str) -> None:
        """Start attesting with ``nonce`` in the background (while the agent is still
        starting up); the next ``attest(nonce)`` takes that result instead of asking again."""
        future: Future[str] = Future()

        def run() -> None:
            try:
                future.set_result(self.backend.attest(nonce))
            except BaseException as exc:  # handed to attest(), which reports it
                future.set_exception(exc)

        self._early = (nonce, future)
        threading.Thread(target=run, name="early-attest", daemon=True).start()

    def attest(self, nonce: str) -> str:
        with self._lock:
            early, self._early = self._early, None
            if early is not None and early[0] == nonce:
                token = early[1].result()
            else:
                token = self.backend.attest(nonce)
            self._token, self._nonce, self._attested_at = token, nonce, time.time()
            return token

    def current_token(self) -> str:
        token = self._token
        if token is None:
            raise AttestationError("the VM has not attested yet")
        return token

    def age(self) -> float | None:
        """Seconds since the current token was obtained, or None."""
        return None if self._attested_at is None else time.time() - self._attested_at

    def attest_for_caller(self, nonce: str) -> str:
        """A token for a local caller's nonce; the agent's own token stays as it is."""
        with self._lock:
            return self.backend.attest(nonce)

    @property
    def attested(self) -> bool:
        return self._token is not None

    def summary(self) -> dict[str, Any]:
        """What the local API shows about the current attestation (no token)."""
        if self._token is None:
            return {"attested": False}
        return {"attested": True, "attested_at": self._attested_at}

    def claims(self, verifier: TokenVerifier) -> dict[str, Any]:
        """The current token's claims, verified against the configured attestation authority
        (signature via its JWKS, issuer, expiry, the nonce it was obtained with). Raises
        ``TokenError``."""
        token, nonce = self.current_token(), self._nonce
        return verifier.verify(token, nonce=nonce).claims

    def forget(self) -> None:
        with self._lock:
            self._token = self._attested_at = None
