"""base64url (RFC 4648 §5) without padding, as JOSE uses it; decoding tolerates padding."""

from __future__ import annotations

import base64
import binascii


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str | bytes) -> bytes:
    """Decode base64url with or without padding; raises ValueError on malformed input."""
    raw = text.encode("ascii") if isinstance(text, str) else text
    raw = raw.rstrip(b"=")
    try:
        return base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not valid base64url") from exc


def b64_decode_any(text: str) -> bytes:
    """Decode standard base64 or base64url (x5c uses standard base64, some tools use url-safe)."""
    cleaned = text.strip().replace("-", "+").replace("_", "/").rstrip("=")
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not valid base64") from exc
