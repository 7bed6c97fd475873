"""Exception types of cotenant.crypto. Messages never contain key material or tokens."""

from __future__ import annotations


class CryptoError(ValueError):
    """Base class: ``code`` is a stable machine-readable reason, ``str()`` a one-line message."""

    code = "crypto_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class KeyHsmError(CryptoError):
    """A ``key_hsm`` blob is malformed or does not unwrap with the given key."""

    code = "key_hsm"


class ReleaseError(CryptoError):
    """A Key Vault release response failed verification."""

    code = "release"
