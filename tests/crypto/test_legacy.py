"""The tutorial's legacy format: unwrap its data key, re-seal it, refuse RSA1_5 and tampering."""

from __future__ import annotations

import base64
import io
import os

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cotenant.crypto.errors import (
    ChunkCorruptedError,
    SealedFileError,
    TruncatedError,
    UnsupportedAlgorithmError,
)
from cotenant.crypto.legacy import read_wrapped_key, reseal_legacy, unwrap_legacy_key
from cotenant.crypto.wrapping import PrivateKeyUnwrapper, PublicKeyWrapper
from tests.crypto.conftest import rsa_key
from tests.crypto.sealing import KEY_ID, open_bytes

OAEP256 = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def legacy_file(data: bytes) -> tuple[bytes, bytes, bytes]:
    """(file, data key, wrapped data key) the way the tutorial's data owner produced them."""
    key, nonce = AESGCM.generate_key(256), os.urandom(12)
    wrapped = rsa_key(2048, slot=1).public_key().encrypt(key, OAEP256)
    return nonce + AESGCM(key).encrypt(nonce, data, None), key, wrapped


def _reseal(blob: bytes, key: bytes) -> bytes:
    dst = io.BytesIO()
    reseal_legacy(
        io.BytesIO(blob),
        dst,
        data_key=key,
        key_id=KEY_ID,
        wrapper=PublicKeyWrapper(rsa_key(2048).public_key()),
        chunk_size=64,
    )
    return dst.getvalue()


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 1000])
def test_reseal_round_trip(size: int) -> None:
    data = os.urandom(size)
    blob, key, wrapped = legacy_file(data)
    unwrapped = unwrap_legacy_key(wrapped, PrivateKeyUnwrapper(rsa_key(2048, slot=1)))
    assert unwrapped == key
    assert open_bytes(_reseal(blob, unwrapped)) == data


def test_tampered_legacy_file_is_refused() -> None:
    blob, key, _ = legacy_file(b"x" * 500)
    flipped = bytearray(blob)
    flipped[100] ^= 1
    with pytest.raises(ChunkCorruptedError):
        _reseal(bytes(flipped), key)
    with pytest.raises(ChunkCorruptedError):
        _reseal(blob[:-1], key)
    with pytest.raises(TruncatedError):
        _reseal(blob[:20], key)
    with pytest.raises(ChunkCorruptedError):
        _reseal(blob, os.urandom(32))


def test_rsa1_5_wrapped_key_is_refused_clearly() -> None:
    key = os.urandom(32)
    wrapped = rsa_key(2048, slot=1).public_key().encrypt(key, padding.PKCS1v15())
    with pytest.raises(SealedFileError, match="RSA1_5"):
        unwrap_legacy_key(wrapped, PrivateKeyUnwrapper(rsa_key(2048, slot=1)))
    with pytest.raises(UnsupportedAlgorithmError, match="RSA-OAEP-256"):
        unwrap_legacy_key(wrapped, PrivateKeyUnwrapper(rsa_key(2048, slot=1)), algorithm="RSA1_5")


def test_wrapped_key_files(tmp_path) -> None:
    wrapped = os.urandom(256)
    raw, b64, url = tmp_path / "raw", tmp_path / "b64", tmp_path / "url"
    raw.write_bytes(wrapped)
    b64.write_text(base64.b64encode(wrapped).decode() + "\n")
    url.write_text(base64.urlsafe_b64encode(wrapped).decode().rstrip("="))
    assert read_wrapped_key(raw) == read_wrapped_key(b64) == read_wrapped_key(url) == wrapped
    (tmp_path / "bad").write_text("not a key")
    with pytest.raises(SealedFileError):
        read_wrapped_key(tmp_path / "bad")
