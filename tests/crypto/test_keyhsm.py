"""key_hsm wrap/unwrap (RFC 5649 AES-KWP under RSA-OAEP) and key material round trips."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.keywrap import (
    aes_key_unwrap_with_padding,
    aes_key_wrap_with_padding,
)

from cotenant.crypto.encoding import b64url_decode, b64url_encode
from cotenant.crypto.errors import KeyHsmError
from cotenant.crypto.skr import (
    SUPPORTED_ENCS,
    key_from_material,
    key_material_of,
    parse_key_hsm,
    unwrap_key_hsm,
    wrap_key_hsm,
)
from tests.crypto.conftest import rsa_key

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "crypto"
RFC5649 = json.loads((FIXTURES / "rfc5649-vectors.json").read_text())["vectors"]


@pytest.mark.parametrize("vector", RFC5649, ids=lambda v: v["name"])
def test_rfc5649_vectors(vector: dict) -> None:
    kek, key = bytes.fromhex(vector["kek"]), bytes.fromhex(vector["key"])
    wrapped = bytes.fromhex(vector["wrapped"])
    assert aes_key_wrap_with_padding(kek, key) == wrapped
    assert aes_key_unwrap_with_padding(kek, wrapped) == key


def _material(kind: str) -> tuple[bytes, str]:
    if kind == "oct":
        return os.urandom(32), "oct-HSM"
    if kind == "ec":
        return key_material_of(ec.generate_private_key(ec.SECP256R1())), "EC-HSM"
    return key_material_of(rsa_key(int(kind.removeprefix("rsa")), slot=1)), "RSA-HSM"


@pytest.mark.parametrize("enc", SUPPORTED_ENCS)
@pytest.mark.parametrize("kind", ["rsa2048", "rsa3072", "rsa4096", "oct", "ec"])
def test_key_hsm_round_trip(enc: str, kind: str) -> None:
    wrapping = rsa_key(2048)
    material, kty = _material(kind)
    blob = wrap_key_hsm(material, wrapping.public_key(), enc)
    header, raw = parse_key_hsm(blob)
    assert header == {"kid": "TpmEphemeralEncryptionKey", "alg": "dir", "enc": enc}
    assert len(raw) >= 256 + 16
    unwrapped = unwrap_key_hsm(blob, wrapping.decrypt)
    assert unwrapped == material
    key = key_from_material(unwrapped, kty)
    assert key_material_of(key) == material


@pytest.mark.parametrize("bits", [2048, 3072, 4096])
def test_unwrap_finds_rsa_length_with_opaque_decrypt(bits: int) -> None:
    """A vTPM-style callable (not a bound key method): the RSA part length is discovered."""
    wrapping = rsa_key(bits)
    material = os.urandom(32)
    blob = wrap_key_hsm(material, wrapping.public_key(), "RSA_AES_KEY_WRAP_256")

    def tpm_decrypt(ciphertext: bytes, padding) -> bytes:
        return wrapping.decrypt(ciphertext, padding)

    assert unwrap_key_hsm(blob, tpm_decrypt) == material


def test_wrong_wrapping_key_is_rejected() -> None:
    blob = wrap_key_hsm(os.urandom(32), rsa_key(2048).public_key())
    with pytest.raises(KeyHsmError) as info:
        unwrap_key_hsm(blob, rsa_key(2048, slot=2).decrypt)
    assert info.value.code == "wrong_key"


def test_tampered_kwp_part_fails_integrity() -> None:
    blob = json.loads(b64url_decode(wrap_key_hsm(os.urandom(32), rsa_key(2048).public_key())))
    raw = bytearray(b64url_decode(blob["ciphertext"]))
    raw[-1] ^= 1
    blob["ciphertext"] = b64url_encode(bytes(raw))
    tampered = b64url_encode(json.dumps(blob).encode())
    with pytest.raises(KeyHsmError) as info:
        unwrap_key_hsm(tampered, rsa_key(2048).decrypt)
    assert info.value.code == "integrity"


def test_enc_mismatch_between_header_and_wrap_fails() -> None:
    blob = json.loads(b64url_decode(wrap_key_hsm(os.urandom(32), rsa_key(2048).public_key())))
    blob["header"]["enc"] = "RSA_AES_KEY_WRAP_384"
    with pytest.raises(KeyHsmError) as info:
        unwrap_key_hsm(b64url_encode(json.dumps(blob).encode()), rsa_key(2048).decrypt)
    assert info.value.code == "wrong_key"


@pytest.mark.parametrize(
    ("blob", "code"),
    [
        ("not-base64-$$", "malformed"),
        (b64url_encode(b"[1,2]"), "malformed"),
        (b64url_encode(b'{"header":{"enc":"RSA1_5"},"ciphertext":"AAAA"}'), "unsupported_enc"),
        (b64url_encode(b'{"header":{"alg":"RSA-OAEP"},"ciphertext":"AAAA"}'), "unsupported_alg"),
        (b64url_encode(b'{"header":{},"ciphertext":"AAAA"}'), "malformed"),
    ],
)
def test_malformed_key_hsm(blob: str, code: str) -> None:
    with pytest.raises(KeyHsmError) as info:
        unwrap_key_hsm(blob, rsa_key(2048).decrypt)
    assert info.value.code == code


def test_wrap_refuses_unknown_enc() -> None:
    with pytest.raises(KeyHsmError, match="unsupported key_hsm enc"):
        wrap_key_hsm(b"k" * 32, rsa_key(2048).public_key(), "RSA1_5")


def test_key_from_material_checks_type() -> None:
    with pytest.raises(KeyHsmError) as info:
        key_from_material(_material("ec")[0], "RSA-HSM")
    assert info.value.code == "kty_mismatch"
    with pytest.raises(KeyHsmError):
        key_from_material(b"\x00" * 5, "oct")
    with pytest.raises(KeyHsmError):
        key_from_material(b"\x30\x00", "RSA")


def test_real_sample_key_hsm_structure() -> None:
    """The quickstart's key_hsm: header and a 256 + 2384 byte ciphertext (RSA-2048 + KWP)."""
    payload = json.loads((FIXTURES / "akv-release-response.payload.json").read_text())
    key_hsm = payload["response"]["key"]["key"]["key_hsm"]
    assert b64url_decode(key_hsm) == (FIXTURES / "akv-release-key_hsm.json").read_bytes()
    header, raw = parse_key_hsm(key_hsm)
    assert header["enc"] == "CKM_RSA_AES_KEY_WRAP"
    assert len(raw) == 256 + 2384
    # The TPM key that could unwrap it is gone; any other key is refused cleanly.
    with pytest.raises(KeyHsmError) as info:
        unwrap_key_hsm(key_hsm, rsa_key(2048).decrypt)
    assert info.value.code == "wrong_key"
