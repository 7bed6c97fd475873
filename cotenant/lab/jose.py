"""Small JOSE helpers shared by the lab's token issuers (attestation and identity)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from cotenant.crypto.encoding import b64url_decode, b64url_encode


def _int_b64(value: int) -> str:
    return b64url_encode(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def rsa_jwk(public_key: rsa.RSAPublicKey, **fields: object) -> dict[str, object]:
    """A public RSA JWK (``kty``, ``n``, ``e``) plus ``fields`` (kid, key_ops, ...)."""
    numbers = public_key.public_numbers()
    return {**fields, "kty": "RSA", "n": _int_b64(numbers.n), "e": _int_b64(numbers.e)}


def ec_jwk(public_key: ec.EllipticCurvePublicKey, **fields: object) -> dict[str, object]:
    """A public EC JWK (``kty``, ``crv``, ``x``, ``y``) plus ``fields``."""
    numbers = public_key.public_numbers()
    size = (public_key.curve.key_size + 7) // 8
    crv = {"secp256r1": "P-256", "secp384r1": "P-384"}[public_key.curve.name]
    return {**fields, "kty": "EC", "crv": crv,
            "x": b64url_encode(numbers.x.to_bytes(size, "big")),
            "y": b64url_encode(numbers.y.to_bytes(size, "big"))}


def rsa_public_from_jwk(jwk: dict[str, object]) -> rsa.RSAPublicKey:
    n = int.from_bytes(b64url_decode(str(jwk["n"])), "big")
    e = int.from_bytes(b64url_decode(str(jwk["e"])), "big")
    return rsa.RSAPublicNumbers(e, n).public_key()


def self_signed_cert(key: rsa.RSAPrivateKey, common_name: str) -> x509.Certificate:
    """A self-signed certificate like the ones MAA publishes in its JWKS ``x5c``."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def x5c(certs: list[x509.Certificate]) -> list[str]:
    """``x5c`` entries: standard base64 DER, leaf first."""
    return [base64.b64encode(der(c)).decode("ascii") for c in certs]


def sha256_kid(cert: x509.Certificate) -> str:
    """MAA-style key id: standard base64 of the certificate's SHA-256 digest."""
    return base64.b64encode(hashlib.sha256(der(cert)).digest()).decode("ascii")


def thumbprints(cert: x509.Certificate) -> dict[str, str]:
    """``x5t`` (SHA-1) and ``x5t#S256`` of a certificate, base64url."""
    return {
        "x5t": b64url_encode(hashlib.sha1(der(cert)).digest()),  # noqa: S324 - JOSE x5t
        "x5t#S256": b64url_encode(hashlib.sha256(der(cert)).digest()),
    }
