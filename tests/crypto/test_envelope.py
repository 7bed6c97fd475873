"""Sealed files: round trips at every size boundary and every tamper case."""

from __future__ import annotations

import io
import json
import os
import struct

import pytest

from cotenant.crypto.envelope import (
    DEFAULT_CHUNK_SIZE,
    MAGIC,
    SealedHeader,
    open_sealed,
    read_header,
    seal,
)
from cotenant.crypto.errors import (
    ChunkCorruptedError,
    ChunkOrderError,
    ForeignChunkError,
    HeaderError,
    HeaderTamperedError,
    NotSealedError,
    SealedFileError,
    TrailingDataError,
    TruncatedError,
    UnsupportedAlgorithmError,
    UnsupportedFormatError,
    WrongKeyError,
)
from cotenant.crypto.wrapping import PrivateKeyUnwrapper, PublicKeyWrapper, WrappedKey
from tests.crypto.conftest import rsa_key
from tests.crypto.sealing import KEY_ID, Frames, Unsized, open_bytes, seal_bytes

CS = 64
SIZES = [0, 1, CS - 1, CS, CS + 1, 2 * CS - 1, 2 * CS, 2 * CS + 1, 100 * CS + 7]


@pytest.mark.parametrize("sized", [True, False], ids=["length-known", "length-unknown"])
@pytest.mark.parametrize("size", SIZES)
def test_round_trip(size: int, sized: bool) -> None:
    data = os.urandom(size)
    sealed = seal_bytes(data, sized=sized)
    header = read_header(io.BytesIO(sealed))
    assert header.plaintext_length == (size if sized else None)
    if sized:
        assert header.sealed_size == len(sealed)
    assert open_bytes(sealed) == data


@pytest.mark.parametrize("size", [0, 1, CS, 3 * CS + 5])
def test_reading_styles(size: int) -> None:
    data = os.urandom(size)
    sealed = seal_bytes(data)
    unwrap = PrivateKeyUnwrapper(rsa_key(2048))
    small = io.BufferedReader(open_sealed(io.BytesIO(sealed), unwrap), buffer_size=7)
    assert b"".join(iter(lambda: small.read(5), b"")) == data
    reader = open_sealed(io.BytesIO(sealed), unwrap)
    assert b"".join(reader.chunks()) == data
    text = io.TextIOWrapper(
        io.BufferedReader(open_sealed(io.BytesIO(sealed), unwrap)),
        encoding="latin-1",
        newline="",
    )
    assert text.read().encode("latin-1") == data


def test_default_chunk_size_round_trip() -> None:
    data = os.urandom(DEFAULT_CHUNK_SIZE + 3)
    sealed = seal_bytes(data, chunk_size=DEFAULT_CHUNK_SIZE)
    assert read_header(io.BytesIO(sealed)).chunk_count == 2
    assert open_bytes(sealed) == data


def test_pandas_reads_the_stream(tmp_path) -> None:
    pandas = pytest.importorskip("pandas")
    csv = b"name,age\n" + b"ada,36\ngrace,45\n" * 50
    sealed = seal_bytes(csv, content_type="text/csv")
    reader = open_sealed(io.BytesIO(sealed), PrivateKeyUnwrapper(rsa_key(2048)))
    frame = pandas.read_csv(reader)
    assert len(frame) == 100 and list(frame.columns) == ["name", "age"]
    assert not list(tmp_path.iterdir())  # nothing written to disk


def test_header_records_versioned_key_and_facts() -> None:
    sealed = seal_bytes(b"hello", content_type="text/plain")
    header = read_header(io.BytesIO(sealed))
    assert isinstance(header, SealedHeader)
    assert header.key_id == KEY_ID and header.wrap_alg == "RSA-OAEP-256"
    assert header.content_type == "text/plain" and header.plaintext_length == 5
    facts = header.describe()
    assert facts["wrapped_key_bytes"] == 256
    assert header.wrapped_key.hex() not in json.dumps(facts)
    assert "wrapped_key" not in repr(header).replace("wrapped_key_", "")


# --- tampering -------------------------------------------------------------------------------


def _reject(sealed: bytes, key=None) -> SealedFileError:
    with pytest.raises(SealedFileError) as info:
        open_bytes(sealed, key)
    return info.value


@pytest.mark.parametrize("sized", [True, False])
def test_every_bit_flip_is_detected(sized: bool) -> None:
    sealed = seal_bytes(os.urandom(2 * 16 + 5), chunk_size=16, sized=sized)
    header_size = read_header(io.BytesIO(sealed)).header_size
    for offset in range(len(sealed)):
        flipped = bytearray(sealed)
        flipped[offset] ^= 1 << (offset % 8)
        err = _reject(bytes(flipped))
        if offset >= header_size:
            assert isinstance(err, ChunkCorruptedError), (offset, err)


def test_header_modification_is_specific() -> None:
    sealed = seal_bytes(b"data" * 40, content_type="text/csv")
    tampered = sealed.replace(b'"text/csv"', b'"text/xyz"')
    assert isinstance(_reject(tampered), HeaderTamperedError)


def test_bad_magic_and_version() -> None:
    sealed = seal_bytes(b"data")
    assert isinstance(_reject(b"PK\x03\x04" + sealed[4:]), NotSealedError)
    assert isinstance(_reject(MAGIC + b"\x02" + sealed[9:]), UnsupportedFormatError)
    assert isinstance(_reject(b""), NotSealedError)
    huge = sealed[:9] + struct.pack(">I", 1 << 30) + sealed[13:]
    assert isinstance(_reject(huge), HeaderError)


@pytest.mark.parametrize("sized", [True, False])
def test_truncation_at_every_frame_boundary_and_inside(sized: bool) -> None:
    sealed = seal_bytes(os.urandom(3 * CS + 10), sized=sized)
    parts = Frames.split(sealed)
    for keep in range(len(parts.frames)):
        err = _reject(parts.join(parts.frames[:keep]))
        assert isinstance(err, TruncatedError), (keep, err)
    for cut in (1, 17, CS):  # inside a full chunk
        err = _reject(parts.join(parts.frames[:1]) + parts.frames[1][:-cut])
        assert isinstance(err, TruncatedError), (cut, err)
    for cut in (1, 5):  # inside the final chunk
        err = _reject(sealed[:-cut])
        expected = TruncatedError if sized else (TruncatedError, ChunkCorruptedError)
        assert isinstance(err, expected), (cut, err)
    assert isinstance(_reject(parts.header[:-3]), HeaderError)


@pytest.mark.parametrize("sized", [True, False])
def test_dropped_chunk(sized: bool) -> None:
    parts = Frames.split(seal_bytes(os.urandom(4 * CS + 1), sized=sized))
    for drop in range(len(parts.frames) - 1):
        err = _reject(parts.join(parts.frames[:drop] + parts.frames[drop + 1 :]))
        assert isinstance(err, ChunkOrderError) and "missing" in str(err), (drop, err)
        assert err.index == drop


@pytest.mark.parametrize("sized", [True, False])
def test_duplicated_chunk(sized: bool) -> None:
    parts = Frames.split(seal_bytes(os.urandom(4 * CS + 1), sized=sized))
    frames = parts.frames
    err = _reject(parts.join(frames[:2] + [frames[1]] + frames[2:]))
    assert isinstance(err, ChunkOrderError) and "appears again" in str(err)
    assert err.index == 2


@pytest.mark.parametrize("sized", [True, False])
def test_reordered_chunks(sized: bool) -> None:
    parts = Frames.split(seal_bytes(os.urandom(4 * CS + 1), sized=sized))
    f = parts.frames
    err = _reject(parts.join([f[0], f[2], f[1], *f[3:]]))
    assert isinstance(err, ChunkOrderError) and err.index == 1


def test_final_chunk_moved_forward() -> None:
    parts = Frames.split(seal_bytes(os.urandom(3 * CS), sized=False))
    f = parts.frames
    err = _reject(parts.join([f[0], f[2]]))
    assert isinstance(err, ChunkOrderError)


def test_chunk_swapped_in_from_another_file() -> None:
    a = Frames.split(seal_bytes(os.urandom(3 * CS)))
    b = Frames.split(seal_bytes(os.urandom(3 * CS)))
    err = _reject(a.join([a.frames[0], b.frames[1], a.frames[2]]))
    assert isinstance(err, ForeignChunkError) and err.index == 1


def test_header_swapped_onto_another_files_body() -> None:
    a = Frames.split(seal_bytes(os.urandom(2 * CS)))
    b = Frames.split(seal_bytes(os.urandom(2 * CS)))
    assert isinstance(_reject(a.join(b.frames)), ForeignChunkError)


@pytest.mark.parametrize("sized", [True, False])
@pytest.mark.parametrize("size", [2 * CS, 2 * CS + 9])
def test_trailing_data(sized: bool, size: int) -> None:
    sealed = seal_bytes(os.urandom(size), sized=sized)
    parts = Frames.split(sealed)
    for extra in (parts.frames[0], b"\x00" * 3):
        err = _reject(sealed + extra)
        if sized or size % CS == 0:
            assert isinstance(err, TrailingDataError), err
        else:  # without the length, a short final chunk plus junk looks like a modified chunk
            assert isinstance(err, TrailingDataError | ChunkCorruptedError), err


def test_wrong_private_key() -> None:
    err = _reject(seal_bytes(b"secret"), key=rsa_key(2048, slot=2))
    assert isinstance(err, WrongKeyError)
    assert "0123456789abcdef" in str(err)  # names the key it was sealed for


def test_unwrapper_returning_a_wrong_data_key() -> None:
    sealed = seal_bytes(b"secret")
    reader_error = pytest.raises(WrongKeyError)
    with reader_error:
        open_sealed(io.BytesIO(sealed), lambda kid, alg, wrapped: os.urandom(32))
    with pytest.raises(WrongKeyError):
        open_sealed(io.BytesIO(sealed), lambda kid, alg, wrapped: b"short")


def test_unwrapper_value_error_is_wrong_key() -> None:
    def failing(kid: str, alg: str, wrapped: bytes) -> bytes:
        raise ValueError("tpm said no")

    with pytest.raises(WrongKeyError):
        open_sealed(io.BytesIO(seal_bytes(b"x")), failing)


class _Rsa15Wrapper:
    def wrap(self, key_id: str, data_key: bytes) -> WrappedKey:
        return WrappedKey(key_id, "RSA1_5", b"\x00" * 256)


def test_rsa1_5_is_refused_when_sealing_and_opening() -> None:
    with pytest.raises(UnsupportedAlgorithmError, match="RSA1_5"):
        seal(io.BytesIO(b"x"), io.BytesIO(), key_id=KEY_ID, wrapper=_Rsa15Wrapper())
    with pytest.raises(UnsupportedAlgorithmError, match="RSA1_5"):
        PublicKeyWrapper(rsa_key(2048).public_key(), algorithm="RSA1_5")
    parts = Frames.split(seal_bytes(b"x"))
    body = parts.header[13:-32].replace(b'"RSA-OAEP-256"', b'"RSA1_5"')
    forged = parts.header[:9] + struct.pack(">I", len(body)) + body + parts.header[-32:]
    err = _reject(parts.join().replace(parts.header, forged))
    assert isinstance(err, UnsupportedAlgorithmError) and "RSA-OAEP-256" in str(err)


def test_unversioned_key_vault_id_is_refused() -> None:
    wrapper = PublicKeyWrapper(rsa_key(2048).public_key())
    with pytest.raises(HeaderError, match="no version"):
        seal(
            io.BytesIO(b"x"),
            io.BytesIO(),
            key_id="https://kv.vault.azure.net/keys/k",
            wrapper=wrapper,
        )


def test_source_that_changes_length_is_detected(tmp_path) -> None:
    wrapper = PublicKeyWrapper(rsa_key(2048).public_key())
    with pytest.raises(SealedFileError, match="source changed"):
        seal(Unsized(b"abc"), io.BytesIO(), key_id=KEY_ID, wrapper=wrapper, plaintext_length=5)


def test_small_rsa_keys_are_refused() -> None:
    small = rsa_key(1024)
    with pytest.raises(ValueError, match="2048"):
        PublicKeyWrapper(small.public_key())


def test_chunk_size_bounds() -> None:
    with pytest.raises(HeaderError):
        seal_bytes(b"x", chunk_size=8)
