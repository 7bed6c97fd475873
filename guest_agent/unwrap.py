"""Unwrap a sealed file's data key with an allow-listed key-encryption key held in memory."""

from __future__ import annotations

import re
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cotenant.crypto.errors import CryptoError
from cotenant.crypto.skr import KeyId, ReleasedKey
from cotenant.crypto.wrapping import check_wrap_algorithm
from guest_agent.config import AgentConfig, KeyRef
from guest_agent.keystore import KeyStore

_VERSION = re.compile(r"^[A-Za-z0-9]{1,64}$")


class KeyNotAllowed(PermissionError):
    """The request names a key outside the configured allow-list."""


class UnwrapError(ValueError):
    """The wrapped data key could not be unwrapped (bad alg, wrong key, corrupt input)."""


def resolve_key(config: AgentConfig, key_id: str) -> tuple[KeyRef, str | None]:
    """Map a caller-supplied key id (``https://<vault>/keys/<name>[/<version>]``) to an
    allow-listed key and optional version. Anything else is ``KeyNotAllowed``."""
    try:
        parsed = KeyId.parse(key_id)
    except CryptoError:
        raise KeyNotAllowed("key id is not a Key Vault key URL") from None
    ref = config.find_key(parsed.host, parsed.name)
    if ref is None:
        raise KeyNotAllowed(f"key {parsed.host}/{parsed.name} is not in this agent's allow-list")
    if parsed.version is not None and not _VERSION.match(parsed.version):
        raise KeyNotAllowed("key version is malformed")
    return ref, parsed.version


class DataKeyUnwrapper:
    """``unwrap(key_id, alg, wrapped)`` as ``cotenant.crypto.envelope.open_sealed`` expects.

    Uses the held version of the key; a file sealed under another version of an allowed key
    is served by releasing that version on demand (``release_version``) without keeping it.
    """

    def __init__(
        self,
        config: AgentConfig,
        keys: KeyStore,
        release_version: Callable[[KeyRef, str], ReleasedKey],
    ) -> None:
        self._config = config
        self._keys = keys
        self._release_version = release_version

    def __call__(self, key_id: str, alg: str, wrapped: bytes) -> bytes:
        return self.unwrap(key_id, alg, wrapped)

    def unwrap(self, key_id: str, alg: str, wrapped: bytes) -> bytes:
        ref, version = resolve_key(self._config, key_id)
        try:
            check_wrap_algorithm(alg)  # RSA-OAEP-256 only (RSA1_5 is an oracle risk)
        except CryptoError as exc:
            raise UnwrapError(str(exc)) from None
        held = self._keys.get(ref)
        if held is None or (version is not None and held.version != version):
            if version is None:
                raise UnwrapError(f"key {ref.label()} has not been released to this VM")
            held = self._release_version(ref, version)
        if not isinstance(held.key, rsa.RSAPrivateKey):
            raise UnwrapError(f"key {ref.label()} is not an RSA key")
        try:
            return held.key.decrypt(wrapped, padding.OAEP(
                mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
        except ValueError:
            raise UnwrapError("the data key does not unwrap with this key") from None
