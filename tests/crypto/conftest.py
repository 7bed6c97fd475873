"""Fixtures of the crypto tests: RSA keys generated once per session, a test PKI."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.crypto.pki import Pki

_KEYS: dict[tuple[int, int], rsa.RSAPrivateKey] = {}


def rsa_key(bits: int, slot: int = 0) -> rsa.RSAPrivateKey:
    """A cached RSA key: the same (bits, slot) always returns the same key in one session."""
    if (bits, slot) not in _KEYS:
        _KEYS[(bits, slot)] = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return _KEYS[(bits, slot)]


@pytest.fixture(scope="session")
def pki() -> Pki:
    return Pki.create()
