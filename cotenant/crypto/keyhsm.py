"""The ``key_hsm`` blob of Secure Key Release: RSA-OAEP transport key + AES-KWP key material.

``ciphertext = RSA-OAEP(wrapping public key, t) || AES-KWP(t, material)`` where ``t`` is a fresh
256-bit AES key. The OAEP/MGF1 hash depends on ``enc``: SHA-1 for ``CKM_RSA_AES_KEY_WRAP``,
SHA-256 for ``RSA_AES_KEY_WRAP_256``, SHA-384 for ``RSA_AES_KEY_WRAP_384``; the label is empty.
Key material is PKCS#8 DER for RSA/EC keys and raw bytes for ``oct`` keys.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, OAEP, AsymmetricPadding
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap_with_padding,
    aes_key_wrap_with_padding,
)

from cotenant.crypto.encoding import b64url_decode, b64url_encode
from cotenant.crypto.errors import KeyHsmError

RsaDecrypt = Callable[[bytes, AsymmetricPadding], bytes]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

DEFAULT_ENC = "CKM_RSA_AES_KEY_WRAP"
_ENC_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "CKM_RSA_AES_KEY_WRAP": hashes.SHA1,
    "RSA_AES_KEY_WRAP_256": hashes.SHA256,
    "RSA_AES_KEY_WRAP_384": hashes.SHA384,
}
SUPPORTED_ENCS = tuple(_ENC_HASHES)
# Modulus sizes (bytes) tried, in order, when the caller does not say how long the RSA part is.
_RSA_PART_LENGTHS = (256, 384, 512)
_TRANSPORT_KEY_BYTES = 32
_RSA_KTYS = {"RSA", "RSA-HSM"}
_EC_KTYS = {"EC", "EC-HSM"}
_OCT_KTYS = {"oct", "oct-HSM"}


def oaep_for(enc: str) -> OAEP:
    """The RSA-OAEP padding (hash and MGF1 hash alike, empty label) that ``enc`` names."""
    try:
        algorithm = _ENC_HASHES[enc]
    except KeyError:
        raise KeyHsmError(
            f"unsupported key_hsm enc {enc!r}; expected one of {', '.join(SUPPORTED_ENCS)}",
            code="unsupported_enc",
        ) from None
    return OAEP(mgf=MGF1(algorithm=algorithm()), algorithm=algorithm(), label=None)


def wrap_key_hsm(
    material: bytes,
    wrapping_key: rsa.RSAPublicKey,
    enc: str = DEFAULT_ENC,
    kid: str = "TpmEphemeralEncryptionKey",
) -> str:
    """Wrap key material to ``wrapping_key`` the way Key Vault does; returns the base64url blob."""
    padding = oaep_for(enc)
    if not material:
        raise KeyHsmError("key material is empty", code="empty_material")
    transport_key = os.urandom(_TRANSPORT_KEY_BYTES)
    ciphertext = wrapping_key.encrypt(transport_key, padding) + aes_key_wrap_with_padding(
        transport_key, material
    )
    blob = {
        "schema_version": "1.0",
        "header": {"kid": kid, "alg": "dir", "enc": enc},
        "ciphertext": b64url_encode(ciphertext),
    }
    return b64url_encode(json.dumps(blob, separators=(",", ":")).encode())


def parse_key_hsm(key_hsm: str) -> tuple[dict[str, Any], bytes]:
    """Decode a ``key_hsm`` blob into its header and raw ciphertext; validates the shape."""
    try:
        blob = json.loads(b64url_decode(key_hsm))
    except ValueError:
        raise KeyHsmError("key_hsm is not base64url-encoded JSON", code="malformed") from None
    if not isinstance(blob, dict):
        raise KeyHsmError("key_hsm is not a JSON object", code="malformed")
    header = blob.get("header")
    ciphertext = blob.get("ciphertext")
    if not isinstance(header, dict) or not isinstance(ciphertext, str):
        raise KeyHsmError("key_hsm lacks header or ciphertext", code="malformed")
    if header.get("alg", "dir") != "dir":
        raise KeyHsmError(f"unsupported key_hsm alg {header.get('alg')!r}", code="unsupported_alg")
    try:
        raw = b64url_decode(ciphertext)
    except ValueError:
        raise KeyHsmError("key_hsm ciphertext is not base64url", code="malformed") from None
    return header, raw


def unwrap_key_hsm(key_hsm: str, rsa_decrypt: RsaDecrypt, *, rsa_bytes: int | None = None) -> bytes:
    """Unwrap a ``key_hsm`` blob and return the key material (PKCS#8 DER or raw ``oct`` bytes).

    ``rsa_decrypt(ciphertext, padding)`` decrypts with the private half of the wrapping key (a
    software key's ``decrypt`` method, or the vTPM); it must raise ``ValueError`` on failure.
    ``rsa_bytes`` is the wrapping modulus length; when omitted it is taken from a bound
    ``RSAPrivateKey.decrypt`` or else found by trying 2048, 3072 and 4096-bit lengths.
    """
    header, raw = parse_key_hsm(key_hsm)
    padding = oaep_for(str(header.get("enc", DEFAULT_ENC)))
    for length in _candidate_lengths(rsa_decrypt, rsa_bytes, len(raw)):
        try:
            transport_key = rsa_decrypt(raw[:length], padding)
        except ValueError:
            continue
        if len(transport_key) not in (16, 24, 32):
            raise KeyHsmError("key_hsm transport key has an invalid length", code="bad_transport")
        try:
            return aes_key_unwrap_with_padding(transport_key, raw[length:])
        except InvalidUnwrap:
            raise KeyHsmError(
                "key_hsm key material failed AES-KWP integrity check", code="integrity"
            ) from None
    raise KeyHsmError(
        "key_hsm transport key does not decrypt with this wrapping key", code="wrong_key"
    )


def _candidate_lengths(rsa_decrypt: RsaDecrypt, rsa_bytes: int | None, total: int) -> list[int]:
    if rsa_bytes is None:
        owner = getattr(rsa_decrypt, "__self__", None)
        if isinstance(owner, rsa.RSAPrivateKey):
            rsa_bytes = (owner.key_size + 7) // 8
    lengths = [rsa_bytes] if rsa_bytes is not None else list(_RSA_PART_LENGTHS)
    # The AES-KWP part is at least 16 bytes and a multiple of 8.
    viable = [n for n in lengths if total - n >= 16 and (total - n) % 8 == 0]
    if not viable:
        raise KeyHsmError("key_hsm ciphertext has an impossible length", code="malformed")
    return viable


def key_from_material(material: bytes, kty: str, *, from_verified_release: bool = False
                      ) -> PrivateKey | bytes:
    """Turn released key material into a key: a ``cryptography`` private key, or bytes for oct.

    ``from_verified_release``: the material came out of a key_hsm whose release response was
    verified (signature and certificate chain of the vault) and unwrapped with integrity (AES
    key wrap): it is what the vault's HSM generated, so OpenSSL's RSA consistency check (as
    long as generating the key: 60 ms at 2048 bits, 180 ms at 3072) is skipped. The caller
    still compares the key with the released public half.
    """
    if kty in _OCT_KTYS:
        if len(material) not in (16, 24, 32, 48, 64):
            raise KeyHsmError(f"oct key material has an invalid length {len(material)}")
        return bytes(material)
    if kty not in _RSA_KTYS | _EC_KTYS:
        raise KeyHsmError(f"unsupported key type {kty!r}", code="unsupported_kty")
    try:
        key = serialization.load_der_private_key(
            material, password=None, unsafe_skip_rsa_key_validation=from_verified_release)
    except (ValueError, TypeError):
        raise KeyHsmError(
            "key material is not an unencrypted PKCS#8 key", code="malformed"
        ) from None
    expected = rsa.RSAPrivateKey if kty in _RSA_KTYS else ec.EllipticCurvePrivateKey
    if not isinstance(key, expected):
        raise KeyHsmError(f"key material does not hold a {kty} key", code="kty_mismatch")
    return key


def key_material_of(private_key: PrivateKey | bytes) -> bytes:
    """The material Key Vault wraps: PKCS#8 DER for RSA/EC private keys, raw bytes for oct."""
    if isinstance(private_key, bytes | bytearray):
        return bytes(private_key)
    return private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
