"""JWKs of released keys: the public half (key status, to seal results back to the owner) and
the private one for the sidecar-compatible ``/key/release`` (only when enabled in config)."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cotenant.crypto.encoding import b64url_encode
from cotenant.crypto.skr import ReleasedKey

_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


def _int(value: int, size: int | None = None) -> str:
    length = size or max(1, (value.bit_length() + 7) // 8)
    return b64url_encode(value.to_bytes(length, "big"))


def public_jwk(key: object) -> dict[str, str] | None:
    """The public half of a released RSA key, or None for other key types."""
    if not isinstance(key, rsa.RSAPrivateKey):
        return None
    numbers = key.public_key().public_numbers()
    return {"kty": "RSA", "n": _int(numbers.n), "e": _int(numbers.e)}


def private_jwk(released: ReleasedKey) -> dict[str, Any]:
    key = released.key
    if isinstance(key, rsa.RSAPrivateKey):
        priv = key.private_numbers()
        pub = priv.public_numbers
        return {"kid": released.kid, "kty": "RSA", "n": _int(pub.n), "e": _int(pub.e),
                "d": _int(priv.d), "p": _int(priv.p), "q": _int(priv.q),
                "dp": _int(priv.dmp1), "dq": _int(priv.dmq1), "qi": _int(priv.iqmp)}
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = (key.curve.key_size + 7) // 8
        numbers = key.private_numbers()
        return {"kid": released.kid, "kty": "EC",
                "crv": _CURVES.get(key.curve.name, key.curve.name),
                "x": _int(numbers.public_numbers.x, size),
                "y": _int(numbers.public_numbers.y, size),
                "d": _int(numbers.private_value, size)}
    return {"kid": released.kid, "kty": "oct", "k": b64url_encode(bytes(key))}
