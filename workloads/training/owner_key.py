"""The public half of the data owner's key, to seal the trained model back to its owner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from cotenant.crypto.encoding import b64url_decode
from cotenant.crypto.wrapping import PublicKeyWrapper
from guest_agent.client import AgentClient


class OwnerKeyError(ValueError):
    """The data owner's public key is not available; the message says what to pass."""


def _same_key(entry: dict[str, Any], key_id: str) -> bool:
    kid = str(entry.get("kid", ""))
    return bool(kid) and (kid == key_id or key_id.startswith(kid.rstrip("/") + "/"))


def owner_wrapper(agent: AgentClient, key_id: str, public_key_pem: Path | None) -> PublicKeyWrapper:
    """A wrapper for ``key_id``: from the data owner's PEM if given, else from the public
    JWK the guest agent reports for that released key."""
    if public_key_pem is not None:
        return PublicKeyWrapper.from_pem(public_key_pem)
    entries = agent.keys()
    for entry in entries:
        jwk = entry.get("public_jwk")
        if _same_key(entry, key_id) and isinstance(jwk, dict) and jwk.get("kty") == "RSA":
            numbers = rsa.RSAPublicNumbers(
                int.from_bytes(b64url_decode(jwk["e"]), "big"),
                int.from_bytes(b64url_decode(jwk["n"]), "big"),
            )
            return PublicKeyWrapper(numbers.public_key())
    raise OwnerKeyError(
        "the guest agent does not report the data owner's public key; "
        "pass the owner's public key with --owner-public-key"
    )
