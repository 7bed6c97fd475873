"""Sealed files: a fresh AES-256 data key per file, streaming chunked AES-256-GCM.

Layout (all integers big-endian; see docs/sealed-file-format.md)::

    magic "CTSEALED" | version u8 | header length u32 | header JSON | header MAC (32)
    frame 0 | frame 1 | ... | final frame

    frame = nonce (12) | AES-256-GCM(chunk) ciphertext | tag (16)
    nonce = nonce prefix (7, random per file) | chunk counter u32 | final flag u8

Every chunk is authenticated with the header bytes (magic through header JSON) as associated
data; its nonce binds its position and whether it is the last chunk. The data key is wrapped
with RSA-OAEP-256 by a ``KeyWrapper``; an HKDF of it gives the GCM key, the header MAC key and a
key commitment stored in the header, so a wrong key is told apart from tampering. Non-final
chunks hold exactly ``chunk_size`` plaintext bytes; the final chunk 0..chunk_size bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import stat
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cotenant.crypto.encoding import b64url_decode, b64url_encode
from cotenant.crypto.errors import (
    ChunkCorruptedError,
    ChunkOrderError,
    CryptoError,
    ForeignChunkError,
    HeaderError,
    HeaderTamperedError,
    NotSealedError,
    SealedFileError,
    TrailingDataError,
    TruncatedError,
    UnsupportedFormatError,
    WrongKeyError,
)
from cotenant.crypto.wrapping import KeyWrapper, check_wrap_algorithm

MAGIC = b"CTSEALED"
FORMAT_VERSION = 1
CIPHER = "AES-256-GCM"
DEFAULT_CHUNK_SIZE = 1 << 20
MIN_CHUNK_SIZE = 16
MAX_CHUNK_SIZE = 1 << 26
MAX_HEADER_JSON = 1 << 16
NONCE_PREFIX_BYTES = 7
NONCE_BYTES = 12
TAG_BYTES = 16
MAC_BYTES = 32
MAX_CHUNKS = 1 << 32
_PREAMBLE = struct.Struct(">8sBI")
_KDF_INFO = b"cotenant sealed file v1"

Unwrapper = Callable[[str, str, bytes], bytes]
Progress = Callable[[int], None]


@dataclass(frozen=True)
class SealedHeader:
    """The parsed header of a sealed file. Nothing in it is secret (the data key is wrapped)."""

    version: int
    key_id: str
    wrap_alg: str
    wrapped_key: bytes = field(repr=False)
    chunk_size: int
    nonce_prefix: bytes
    key_commitment: bytes = field(repr=False)
    content_type: str | None
    plaintext_length: int | None
    raw: bytes = field(repr=False)
    mac: bytes = field(repr=False)

    @property
    def header_size(self) -> int:
        return len(self.raw) + MAC_BYTES

    @property
    def frame_size(self) -> int:
        return NONCE_BYTES + self.chunk_size + TAG_BYTES

    @property
    def chunk_count(self) -> int | None:
        if self.plaintext_length is None:
            return None
        return max(1, -(-self.plaintext_length // self.chunk_size))

    @property
    def sealed_size(self) -> int | None:
        count = self.chunk_count
        if count is None or self.plaintext_length is None:
            return None
        return self.header_size + count * (NONCE_BYTES + TAG_BYTES) + self.plaintext_length

    def describe(self) -> dict[str, Any]:
        """Facts for ``cotenant data inspect``: never the data key, only a wrapped-key digest."""
        return {
            "format_version": self.version,
            "cipher": CIPHER,
            "key_id": self.key_id,
            "wrap_algorithm": self.wrap_alg,
            "wrapped_key_bytes": len(self.wrapped_key),
            "wrapped_key_sha256": hashlib.sha256(self.wrapped_key).hexdigest()[:16],
            "chunk_size": self.chunk_size,
            "chunk_count": self.chunk_count,
            "content_type": self.content_type,
            "plaintext_length": self.plaintext_length,
            "header_bytes": self.header_size,
            "sealed_size": self.sealed_size,
        }


@dataclass(frozen=True)
class _Keys:
    aead: AESGCM
    mac_key: bytes = field(repr=False)
    commitment: bytes = field(repr=False)


def _derive(data_key: bytes, nonce_prefix: bytes) -> _Keys:
    if len(data_key) != 32:
        raise WrongKeyError("the unwrapped data key is not 256 bits")
    okm = HKDF(hashes.SHA256(), 96, salt=nonce_prefix, info=_KDF_INFO).derive(data_key)
    return _Keys(AESGCM(okm[:32]), okm[32:64], okm[64:])


def _nonce(prefix: bytes, index: int, final: bool) -> bytes:
    return prefix + index.to_bytes(4, "big") + (b"\x01" if final else b"\x00")


def _header_mac(keys: _Keys, raw: bytes) -> bytes:
    return hmac.new(keys.mac_key, raw, hashlib.sha256).digest()


def _read_exact(src: BinaryIO, size: int) -> bytes:
    parts, remaining = [], size
    while remaining:
        part = src.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


def _readinto_full(src: BinaryIO, view: memoryview) -> int:
    total = 0
    readinto = getattr(src, "readinto", None)
    while total < len(view):
        if readinto is not None:
            got = readinto(view[total:])
        else:
            data = src.read(len(view) - total)
            got = len(data)
            view[total : total + got] = data
        if not got:
            break
        total += got
    return total


def _source_length(src: BinaryIO) -> int | None:
    try:
        info = os.fstat(src.fileno())
        if stat.S_ISREG(info.st_mode):
            return info.st_size - src.tell()
    except (AttributeError, OSError, io.UnsupportedOperation):
        pass
    if isinstance(src, io.BytesIO):
        return len(src.getbuffer()) - src.tell()
    return None


def _require_versioned(key_id: str) -> None:
    if not key_id or len(key_id) > 2048:
        raise HeaderError("key id must be 1..2048 characters")
    if key_id.startswith("https://") and "/keys/" in key_id:
        segments = [s for s in key_id.split("/keys/", 1)[1].split("/") if s]
        if len(segments) < 2:
            raise HeaderError(f"key id {key_id} has no version; record the full versioned key id")


def _build_header(
    key_id: str,
    wrap_alg: str,
    wrapped_key: bytes,
    chunk_size: int,
    nonce_prefix: bytes,
    commitment: bytes,
    content_type: str | None,
    plaintext_length: int | None,
) -> bytes:
    fields: dict[str, Any] = {
        "cipher": CIPHER,
        "key_id": key_id,
        "wrap_alg": wrap_alg,
        "wrapped_key": b64url_encode(wrapped_key),
        "chunk_size": chunk_size,
        "nonce_prefix": b64url_encode(nonce_prefix),
        "key_commitment": b64url_encode(commitment),
    }
    if content_type is not None:
        fields["content_type"] = content_type
    if plaintext_length is not None:
        fields["plaintext_length"] = plaintext_length
    body = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    if len(body) > MAX_HEADER_JSON:
        raise HeaderError("header is too large")
    return _PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(body)) + body


def seal(
    src: BinaryIO,
    dst: BinaryIO,
    *,
    key_id: str,
    wrapper: KeyWrapper,
    content_type: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    plaintext_length: int | None = None,
    progress: Progress | None = None,
) -> SealedHeader:
    """Encrypt ``src`` into ``dst`` with a fresh data key wrapped by ``wrapper``.

    Memory use is about two chunks whatever the size. The plaintext length is recorded when
    known (given, or ``src`` is a regular file / BytesIO) and then enforced. ``progress`` is
    called with the number of plaintext bytes consumed by each chunk.
    """
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise HeaderError(f"chunk size must be {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE} bytes")
    if not key_id:
        raise HeaderError("a key id is required")
    if plaintext_length is None:
        plaintext_length = _source_length(src)
    data_key, nonce_prefix = os.urandom(32), os.urandom(NONCE_PREFIX_BYTES)
    wrapped = wrapper.wrap(key_id, data_key)
    check_wrap_algorithm(wrapped.algorithm)
    _require_versioned(wrapped.key_id)
    keys = _derive(data_key, nonce_prefix)
    raw = _build_header(
        wrapped.key_id,
        wrapped.algorithm,
        wrapped.ciphertext,
        chunk_size,
        nonce_prefix,
        keys.commitment,
        content_type,
        plaintext_length,
    )
    mac = _header_mac(keys, raw)
    dst.write(raw)
    dst.write(mac)
    total = _write_chunks(src, dst, keys.aead, nonce_prefix, chunk_size, raw, progress)
    if plaintext_length is not None and total != plaintext_length:
        raise SealedFileError(
            f"source changed while sealing: read {total} bytes, expected {plaintext_length}",
            code="source_changed",
        )
    return _parse_header(raw, mac)


def _write_chunks(
    src: BinaryIO,
    dst: BinaryIO,
    aead: AESGCM,
    prefix: bytes,
    chunk_size: int,
    aad: bytes,
    progress: Progress | None,
) -> int:
    buf = bytearray(chunk_size + 1)
    view = memoryview(buf)
    carried = 0  # bytes already in buf (the look-ahead byte of the previous read)
    index = total = 0
    while True:
        got = carried + _readinto_full(src, view[carried:])
        final = got <= chunk_size
        size = got if final else chunk_size
        if index >= MAX_CHUNKS:
            raise SealedFileError("file too large for this chunk size", code="too_large")
        nonce = _nonce(prefix, index, final)
        dst.write(nonce)
        dst.write(aead.encrypt(nonce, view[:size], aad))
        total += size
        if progress is not None:
            progress(size)
        if final:
            return total
        buf[0] = buf[chunk_size]
        carried = 1
        index += 1


def _parse_header(raw: bytes, mac: bytes) -> SealedHeader:
    try:
        fields = json.loads(raw[_PREAMBLE.size :])
    except ValueError:
        raise HeaderError("header is not valid JSON") from None
    if not isinstance(fields, dict):
        raise HeaderError("header is not a JSON object")

    def get(name: str, kind: type, *, optional: bool = False) -> Any:
        value = fields.get(name)
        if value is None and optional:
            return None
        if not isinstance(value, kind) or isinstance(value, bool):
            raise HeaderError(f"header field {name!r} is missing or not a {kind.__name__}")
        return value

    if get("cipher", str) != CIPHER:
        raise UnsupportedFormatError(f"unsupported cipher {fields.get('cipher')!r}")
    chunk_size = get("chunk_size", int)
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise HeaderError(f"header chunk size {chunk_size} is out of range")
    length = get("plaintext_length", int, optional=True)
    if length is not None and length < 0:
        raise HeaderError("header plaintext length is negative")
    try:
        wrapped = b64url_decode(get("wrapped_key", str))
        prefix = b64url_decode(get("nonce_prefix", str))
        commitment = b64url_decode(get("key_commitment", str))
    except ValueError:
        raise HeaderError("header holds invalid base64url") from None
    if len(prefix) != NONCE_PREFIX_BYTES or len(commitment) != 32 or not wrapped:
        raise HeaderError("header nonce prefix, key commitment or wrapped key is malformed")
    return SealedHeader(
        version=raw[len(MAGIC)],
        key_id=get("key_id", str),
        wrap_alg=get("wrap_alg", str),
        wrapped_key=wrapped,
        chunk_size=chunk_size,
        nonce_prefix=prefix,
        key_commitment=commitment,
        content_type=get("content_type", str, optional=True),
        plaintext_length=length,
        raw=raw,
        mac=mac,
    )


def read_header(src: BinaryIO) -> SealedHeader:
    """Read and parse the header (no key needed; not yet authenticated)."""
    preamble = _read_exact(src, _PREAMBLE.size)
    if len(preamble) < _PREAMBLE.size or not preamble.startswith(MAGIC):
        raise NotSealedError("not a cotenant sealed file (bad magic)")
    _, version, length = _PREAMBLE.unpack(preamble)
    if version != FORMAT_VERSION:
        raise UnsupportedFormatError(f"unsupported sealed file format version {version}")
    if length > MAX_HEADER_JSON:
        raise HeaderError(f"header length {length} exceeds {MAX_HEADER_JSON} bytes")
    body = _read_exact(src, length)
    mac = _read_exact(src, MAC_BYTES)
    if len(body) < length or len(mac) < MAC_BYTES:
        raise HeaderError("file ends inside the header")
    return _parse_header(preamble + body, mac)


def open_sealed(src: BinaryIO, unwrapper: Unwrapper) -> SealedReader:
    """Authenticate the header of ``src`` and return a readable plaintext stream.

    ``unwrapper(key_id, wrap_alg, wrapped_key)`` returns the data key. Each chunk is verified
    before any of its plaintext is returned; a failure raises a ``SealedFileError`` subclass
    from ``read`` (treat that as failure of the whole file).
    """
    header = read_header(src)
    check_wrap_algorithm(header.wrap_alg)
    try:
        data_key = unwrapper(header.key_id, header.wrap_alg, header.wrapped_key)
    except CryptoError:
        raise
    except ValueError:
        raise WrongKeyError(f"the data key does not unwrap (sealed for {header.key_id})") from None
    keys = _derive(data_key, header.nonce_prefix)
    if not hmac.compare_digest(keys.commitment, header.key_commitment):
        raise WrongKeyError(f"wrong data key for this file (sealed for {header.key_id})")
    if not hmac.compare_digest(_header_mac(keys, header.raw), header.mac):
        raise HeaderTamperedError("the header has been modified")
    return SealedReader(src, header, keys.aead)


class SealedReader(io.RawIOBase):
    """Plaintext of a sealed file, decrypted and verified chunk by chunk."""

    def __init__(self, src: BinaryIO, header: SealedHeader, aead: AESGCM) -> None:
        super().__init__()
        self.header = header
        self._src = src
        self._aead = aead
        self._frame = bytearray(header.frame_size)
        self._carry = b""
        self._index = 0
        self._done = False
        self._plain = b""
        self._pos = 0
        self._total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while self._pos >= len(self._plain):
            if self._done:
                return 0
            self._plain, self._pos = self._next_chunk(), 0
        n = min(len(view), len(self._plain) - self._pos)
        view[:n] = self._plain[self._pos : self._pos + n]
        self._pos += n
        return n

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        while self._pos >= len(self._plain) and not self._done:
            self._plain, self._pos = self._next_chunk(), 0
        if self._pos == 0 and size >= len(self._plain):  # hand over a whole chunk, no copy
            chunk, self._plain = self._plain, b""
            return chunk
        out = self._plain[self._pos : self._pos + size]
        self._pos += len(out)
        return out

    def readall(self) -> bytes:
        return b"".join(self.chunks())

    def chunks(self) -> Iterator[bytes]:
        """Yield the remaining plaintext chunk by chunk (each verified before it is yielded)."""
        if self._pos < len(self._plain):
            yield self._plain[self._pos :]
        self._plain, self._pos = b"", 0
        while not self._done:
            chunk = self._next_chunk()
            if chunk:
                yield chunk

    def _next_chunk(self) -> bytes:
        index, header = self._index, self.header
        expected_final, size = self._read_frame()
        frame = memoryview(self._frame)[:size]
        nonce = _nonce(header.nonce_prefix, index, expected_final)
        try:
            plain = self._aead.decrypt(nonce, frame[NONCE_BYTES:], header.raw)
        except InvalidTag:
            raise self._diagnose(frame, expected_final) from None
        if bytes(frame[:NONCE_BYTES]) != nonce:
            raise ChunkCorruptedError(f"chunk {index}: its nonce field was modified", index=index)
        self._total += len(plain)
        self._index += 1
        length = header.plaintext_length
        if length is not None and self._total > length:
            raise TrailingDataError(
                f"chunk {index} goes past the plaintext length in the header", index=index
            )
        if expected_final:
            self._finish()
        return plain

    def _read_frame(self) -> tuple[bool, int]:
        """Read the next frame into ``self._frame``; returns (is last in the stream, size).

        A frame is the last one when the stream ends right after it (one byte of look-ahead);
        the final-chunk flag bound into its nonce then has to agree.
        """
        view = memoryview(self._frame)
        view[: len(self._carry)] = self._carry
        got = len(self._carry) + _readinto_full(self._src, view[len(self._carry) :])
        if got < NONCE_BYTES + TAG_BYTES:
            if got == 0 and self._index > 0:
                raise TruncatedError(
                    f"file ends after chunk {self._index - 1}; the final chunk is missing",
                    index=self._index,
                )
            raise TruncatedError(
                f"chunk {self._index} is cut short (file truncated)", index=self._index
            )
        self._carry = self._src.read(1) if got == self.header.frame_size else b""
        return not self._carry, got

    def _finish(self) -> None:
        self._done = True
        length = self.header.plaintext_length
        if length is not None and self._total != length:
            raise TruncatedError(
                f"file holds {self._total} bytes, the header says {length}: chunks are missing",
                index=self._index,
            )

    def _diagnose(self, frame: memoryview, expected_final: bool) -> SealedFileError:
        """Explain a chunk that failed authentication, trusting only what authenticates."""
        index, header = self._index, self.header
        stored = bytes(frame[:NONCE_BYTES])
        if stored[:NONCE_PREFIX_BYTES] != header.nonce_prefix:
            return ForeignChunkError(
                f"chunk {index} comes from another sealed file (chunks swapped between files)",
                index=index,
            )
        counter, flag = int.from_bytes(stored[7:11], "big"), stored[11]
        claimed = (counter, flag == 1)
        if flag in (0, 1) and claimed != (index, expected_final) and self._verifies(frame):
            if counter < index:
                return ChunkOrderError(
                    f"chunk {counter} appears again at position {index} "
                    "(duplicated or reordered chunks)",
                    index=index,
                )
            if counter > index:
                return ChunkOrderError(
                    f"chunk {index} is missing: found chunk {counter} in its place "
                    "(dropped or reordered chunks)",
                    index=index,
                )
            if flag == 0:
                return TruncatedError(
                    f"file ends after chunk {index}; the chunks after it are missing",
                    index=index,
                )
            return TrailingDataError(f"data follows the final chunk {index}", index=index)
        if self._final_then_trailing(frame):
            return TrailingDataError(f"data follows the final chunk {index}", index=index)
        if expected_final and self._cut_short(frame, flag):
            return TruncatedError(f"chunk {index} is cut short (file truncated)", index=index)
        return ChunkCorruptedError(
            f"chunk {index} failed authentication (modified data)", index=index
        )

    def _cut_short(self, frame: memoryview, flag: int) -> bool:
        """A non-final chunk shorter than a full frame, or a final one shorter than the header
        says, at the end of the stream."""
        if flag == 0:
            return len(frame) < self.header.frame_size
        length, header = self.header.plaintext_length, self.header
        if length is None or header.chunk_count != self._index + 1:
            return False
        return len(frame) < NONCE_BYTES + TAG_BYTES + length - self._index * header.chunk_size

    def _final_then_trailing(self, frame: memoryview) -> bool:
        """With a known length: does the exact final frame verify, followed by extra bytes?"""
        length, header = self.header.plaintext_length, self.header
        if length is None or header.chunk_count != self._index + 1:
            return False
        exact = NONCE_BYTES + TAG_BYTES + length - self._index * header.chunk_size
        expected = _nonce(header.nonce_prefix, self._index, True)
        return (
            len(frame) > exact
            and bytes(frame[:NONCE_BYTES]) == expected
            and self._verifies(frame[:exact])
        )

    def _verifies(self, frame: memoryview) -> bool:
        try:
            self._aead.decrypt(bytes(frame[:NONCE_BYTES]), frame[NONCE_BYTES:], self.header.raw)
        except InvalidTag:
            return False
        return True
