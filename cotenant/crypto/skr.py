"""Secure Key Release: verify a Key Vault release response and unwrap the released key.

The response is ``{"value": "<compact JWS>"}``; the JWS is RS256-signed by the vault's
certificate (``x5c[0]``, chained to trusted roots and valid for the vault host). Its payload
carries the key (``response.key.key``) whose private material is in ``key_hsm``, wrapped to the
attested environment's runtime key (see ``cotenant.crypto.keyhsm``).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from cotenant.crypto.certs import verify_server_chain
from cotenant.crypto.encoding import b64_decode_any, b64url_decode, b64url_encode
from cotenant.crypto.errors import CryptoError, ReleaseError
from cotenant.crypto.keyhsm import (
    DEFAULT_ENC,
    SUPPORTED_ENCS,
    PrivateKey,
    RsaDecrypt,
    key_from_material,
    key_material_of,
    oaep_for,
    parse_key_hsm,
    unwrap_key_hsm,
    wrap_key_hsm,
)

__all__ = [
    "DEFAULT_ENC",
    "SUPPORTED_ENCS",
    "KeyId",
    "ReleasePayload",
    "ReleasedKey",
    "key_from_material",
    "key_material_of",
    "oaep_for",
    "parse_key_hsm",
    "parse_release_payload",
    "sign_release_jws",
    "unwrap_key_hsm",
    "verify_release_jws",
    "verify_release_response",
    "wrap_key_hsm",
]


@dataclass(frozen=True)
class KeyId:
    """A Key Vault key identifier ``https://<host>/keys/<name>[/<version>]``."""

    host: str
    name: str
    version: str | None

    @classmethod
    def parse(cls, kid: str) -> KeyId:
        parts = urlsplit(kid)
        segments = [s for s in parts.path.split("/") if s]
        if parts.scheme != "https" or not parts.hostname or len(segments) not in (2, 3):
            raise ReleaseError(f"not a Key Vault key id: {kid!r}", code="bad_kid")
        if segments[0] != "keys":
            raise ReleaseError(f"not a Key Vault key id: {kid!r}", code="bad_kid")
        host = parts.hostname.lower() + (f":{parts.port}" if parts.port else "")
        version = segments[2] if len(segments) == 3 else None
        return cls(host=host, name=segments[1], version=version)

    def matches(self, requested: KeyId) -> bool:
        """True if this (released, versioned) id is what ``requested`` asked for."""
        if self.host != requested.host or self.name.lower() != requested.name.lower():
            return False
        return requested.version is None or requested.version == self.version


@dataclass(frozen=True)
class ReleasePayload:
    """The parsed JWS payload of a release response (nothing unwrapped yet)."""

    kid: str
    kty: str
    key_hsm: str
    public_jwk: dict[str, Any]
    attributes: dict[str, Any]
    release_policy: dict[str, Any] | None
    request: dict[str, Any]


@dataclass(frozen=True)
class ReleasedKey:
    """A verified, unwrapped released key. ``key`` is a private key object or bytes (oct)."""

    kid: str
    version: str | None
    kty: str
    key: PrivateKey | bytes = field(repr=False)
    release_policy: dict[str, Any] | None
    attributes: dict[str, Any]


def parse_release_payload(payload: dict[str, Any]) -> ReleasePayload:
    """Validate the shape of a release payload and pull out the key parts."""
    try:
        key_bundle = payload["response"]["key"]
        jwk = key_bundle["key"]
        kid, kty, key_hsm = jwk["kid"], jwk["kty"], jwk["key_hsm"]
    except (KeyError, TypeError):
        raise ReleaseError("release payload lacks response.key.key", code="malformed") from None
    if not all(isinstance(v, str) for v in (kid, kty, key_hsm)):
        raise ReleaseError("release payload key fields must be strings", code="malformed")
    public_jwk = {k: v for k, v in jwk.items() if k != "key_hsm"}
    request = payload.get("request") if isinstance(payload.get("request"), dict) else {}
    return ReleasePayload(
        kid=kid,
        kty=kty,
        key_hsm=key_hsm,
        public_jwk=public_jwk,
        attributes=dict(key_bundle.get("attributes") or {}),
        release_policy=_decode_policy(key_bundle.get("release_policy")),
        request=dict(request),
    )


def _decode_policy(policy: Any) -> dict[str, Any] | None:
    if not isinstance(policy, dict) or not policy.get("data"):
        return None
    try:
        decoded = json.loads(b64url_decode(policy["data"]))
    except ValueError:
        raise ReleaseError("release_policy.data is not base64url JSON", code="malformed") from None
    if not isinstance(decoded, dict):
        raise ReleaseError("release_policy.data is not a JSON object", code="malformed")
    return decoded


def _jws_value(value: str) -> str:
    text = value.strip()
    if text.startswith("{"):
        try:
            text = json.loads(text)["value"]
        except (ValueError, KeyError, TypeError):
            raise ReleaseError("release response lacks 'value'", code="malformed") from None
    if not isinstance(text, str) or text.count(".") != 2:
        raise ReleaseError("release response is not a compact JWS", code="malformed")
    return text


def _certificates(header: dict[str, Any]) -> list[x509.Certificate]:
    x5c = header.get("x5c")
    if not isinstance(x5c, list) or not x5c:
        raise ReleaseError("release JWS header has no x5c certificate chain", code="no_x5c")
    try:
        return [x509.load_der_x509_certificate(b64_decode_any(c)) for c in x5c]
    except ValueError:
        raise ReleaseError("release JWS x5c holds an invalid certificate", code="bad_x5c") from None


def _check_thumbprints(header: dict[str, Any], leaf: x509.Certificate) -> None:
    der = leaf.public_bytes(Encoding.DER)
    expected = {
        "x5t": b64url_encode(hashlib.sha1(der, usedforsecurity=False).digest()),
        "x5t#S256": b64url_encode(hashlib.sha256(der).digest()),
    }
    for name, thumbprint in expected.items():
        if name in header and (not isinstance(header[name], str)
                               or header[name].rstrip("=") != thumbprint):
            raise ReleaseError(f"release JWS {name} does not match x5c[0]", code="bad_x5c")


def verify_release_jws(
    value: str,
    *,
    vault_host: str,
    trust_anchors: list[x509.Certificate] | None,
    at: dt.datetime | None = None,
    verify_chain: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify the JWS signature with ``x5c[0]`` and (unless ``verify_chain`` is False) the chain
    to ``trust_anchors`` for ``vault_host``. Returns ``(header, payload)``."""
    token = _jws_value(value)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise ReleaseError("release JWS header is malformed", code="malformed") from None
    if header.get("alg") != "RS256":
        raise ReleaseError(
            f"release JWS alg {header.get('alg')!r} is not allowed (RS256 only)", code="bad_alg"
        )
    certs = _certificates(header)
    leaf = certs[0]
    public_key = leaf.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise ReleaseError("release JWS x5c[0] is not an RSA certificate", code="bad_x5c")
    _check_thumbprints(header, leaf)
    try:
        raw = jwt.api_jws.PyJWS().decode(token, key=public_key, algorithms=["RS256"])
    except jwt.InvalidSignatureError:
        raise ReleaseError("release JWS signature is invalid", code="bad_signature") from None
    except jwt.PyJWTError:
        raise ReleaseError("release JWS is malformed", code="malformed") from None
    if verify_chain:
        try:
            verify_server_chain(
                leaf, certs[1:], host=vault_host, trust_anchors=trust_anchors, at=at
            )
        except CryptoError as exc:
            raise ReleaseError(str(exc), code="untrusted_chain") from None
    try:
        payload = json.loads(raw)
    except ValueError:
        raise ReleaseError("release JWS payload is not JSON", code="malformed") from None
    if not isinstance(payload, dict):
        raise ReleaseError("release JWS payload is not a JSON object", code="malformed")
    return header, payload


def verify_release_response(
    value: str,
    *,
    vault_host: str,
    trust_anchors: list[x509.Certificate] | None,
    rsa_decrypt: RsaDecrypt,
    expected_kid: str | None = None,
    at: dt.datetime | None = None,
) -> ReleasedKey:
    """Verify a release response end to end and return the unwrapped key.

    ``value`` is the compact JWS or the whole ``{"value": ...}`` body. ``expected_kid`` is the id
    that was asked for: without a version any version of that key is accepted, with a version
    only that version. The released key must belong to ``vault_host``.
    """
    _, payload = verify_release_jws(
        value, vault_host=vault_host, trust_anchors=trust_anchors, at=at
    )
    release = parse_release_payload(payload)
    released_id = KeyId.parse(release.kid)
    if released_id.host.split(":")[0] != vault_host.lower().split(":")[0]:
        raise ReleaseError(
            f"released key {release.kid} does not belong to vault {vault_host}",
            code="kid_mismatch",
        )
    if expected_kid is not None and not released_id.matches(KeyId.parse(expected_kid)):
        raise ReleaseError(
            f"released key {release.kid} is not the requested {expected_kid}", code="kid_mismatch"
        )
    header, _ = parse_key_hsm(release.key_hsm)
    requested_enc = release.request.get("enc")
    if requested_enc is not None and header.get("enc", DEFAULT_ENC) != requested_enc:
        raise ReleaseError("key_hsm enc differs from the requested enc", code="enc_mismatch")
    key = key_from_material(unwrap_key_hsm(release.key_hsm, rsa_decrypt), release.kty,
                            from_verified_release=True)
    _check_public_half(key, release.public_jwk)
    return ReleasedKey(
        kid=release.kid,
        version=released_id.version,
        kty=release.kty,
        key=key,
        release_policy=release.release_policy,
        attributes=release.attributes,
    )


def _check_public_half(key: PrivateKey | bytes, jwk: dict[str, Any]) -> None:
    if not isinstance(key, rsa.RSAPrivateKey) or "n" not in jwk:
        return
    numbers = key.public_key().public_numbers()
    try:
        n = int.from_bytes(b64url_decode(jwk["n"]), "big")
        e = int.from_bytes(b64url_decode(jwk.get("e", "AQAB")), "big")
    except (TypeError, ValueError, AttributeError):
        raise ReleaseError("released key's public n/e are malformed", code="malformed") from None
    if (numbers.n, numbers.e) != (n, e):
        raise ReleaseError(
            "released private key does not match the key's public n/e", code="key_mismatch"
        )
    # The key was loaded without OpenSSL's full consistency check: one OAEP round trip (~1 ms)
    # shows its private half works with the public half it claims.
    probe = os.urandom(32)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    try:
        works = key.decrypt(key.public_key().encrypt(probe, oaep), oaep) == probe
    except ValueError:
        works = False
    if not works:
        raise ReleaseError("released private key is inconsistent (decrypt round trip failed)",
                           code="key_mismatch")


def sign_release_jws(
    payload: dict[str, Any], signing_key: rsa.RSAPrivateKey, chain: list[x509.Certificate]
) -> str:
    """Produce a release response JWS the way Key Vault does (for the lab's vault).

    ``chain`` is the vault certificate first, then intermediates. The header carries ``x5c``,
    ``x5t``, ``x5t#S256`` and ``kid`` = hex SHA-1 thumbprint of the certificate.
    """
    der = chain[0].public_bytes(Encoding.DER)
    sha1 = hashlib.sha1(der, usedforsecurity=False).digest()
    headers = {
        "kid": sha1.hex().upper(),
        "x5t": b64url_encode(sha1),
        "x5t#S256": b64url_encode(hashlib.sha256(der).digest()),
        "x5c": [base64.b64encode(c.public_bytes(Encoding.DER)).decode("ascii") for c in chain],
        "typ": "JWT",
    }
    body = json.dumps(payload, separators=(",", ":")).encode()
    return jwt.api_jws.PyJWS().encode(body, signing_key, algorithm="RS256", headers=headers)
