"""The single-CVM tutorial's file format, read so it can be re-sealed.

A legacy file is ``nonce (12) | AES-256-GCM ciphertext | tag (16)`` over the whole plaintext,
with no associated data; its 32-byte data key is kept beside it, wrapped with the Key Vault key
by RSA-OAEP-256 (the tutorial's first version used RSA1_5, which is refused). The single tag
only authenticates at the very end, so :func:`reseal_legacy` streams the plaintext straight
into a new sealed file and the caller must discard that output if a ``SealedFileError`` is
raised (the CLI writes to a temporary file and renames it only on success).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from cotenant.crypto.encoding import b64_decode_any
from cotenant.crypto.envelope import DEFAULT_CHUNK_SIZE, Progress, SealedHeader, Unwrapper, seal
from cotenant.crypto.errors import (
    ChunkCorruptedError,
    SealedFileError,
    TruncatedError,
    UnsupportedAlgorithmError,
)
from cotenant.crypto.wrapping import WRAP_ALGORITHM, KeyWrapper, check_wrap_algorithm

NONCE_BYTES = 12
TAG_BYTES = 16
_READ = 1 << 20


def read_wrapped_key(path: str | Path) -> bytes:
    """A wrapped data key file: raw bytes, or base64/base64url text (as the tutorial saves)."""
    data = Path(path).read_bytes()
    if len(data) in (256, 384, 512):
        return data
    try:
        decoded = b64_decode_any(data.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise SealedFileError(f"{path} is neither a raw nor a base64 wrapped key") from None
    if len(decoded) not in (256, 384, 512):
        raise SealedFileError(f"{path} does not hold an RSA-2048/3072/4096 wrapped key")
    return decoded


def unwrap_legacy_key(
    wrapped: bytes, unwrapper: Unwrapper, *, key_id: str = "legacy", algorithm: str = WRAP_ALGORITHM
) -> bytes:
    """Unwrap the tutorial's data key (RSA-OAEP-256 only; RSA1_5 is refused)."""
    check_wrap_algorithm(algorithm)
    try:
        data_key = unwrapper(key_id, algorithm, wrapped)
    except UnsupportedAlgorithmError:
        raise
    except ValueError:  # includes WrongKeyError from PrivateKeyUnwrapper
        raise SealedFileError(
            "the legacy data key does not unwrap with RSA-OAEP-256 under this key "
            "(wrong key, or wrapped with RSA1_5, which is not supported)",
            code="wrong_key",
        ) from None
    if len(data_key) != 32:
        raise SealedFileError("the legacy data key is not 256 bits", code="wrong_key")
    return data_key


class LegacyReader(io.RawIOBase):
    """Decrypts a legacy file as a stream; the tag is checked when the end is reached.

    Bytes returned before the end are NOT yet authenticated: use it only to feed a writer whose
    output is discarded on error (as :func:`reseal_legacy` callers do).
    """

    def __init__(self, src: BinaryIO, data_key: bytes) -> None:
        super().__init__()
        src.seek(0, os.SEEK_END)
        size = src.tell()
        if size < NONCE_BYTES + TAG_BYTES:
            raise TruncatedError("legacy file is shorter than nonce + tag", index=0)
        src.seek(size - TAG_BYTES)
        tag = src.read(TAG_BYTES)
        src.seek(0)
        nonce = src.read(NONCE_BYTES)
        self.length = size - NONCE_BYTES - TAG_BYTES
        self._remaining = self.length
        self._src = src
        self._decryptor = Cipher(algorithms.AES(data_key), modes.GCM(nonce, tag)).decryptor()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._remaining == 0:
            if self._decryptor is not None:
                self._verify()
            return 0
        data = self._src.read(min(len(view), self._remaining, _READ))
        if not data:
            raise TruncatedError("legacy file ended early", index=0)
        self._remaining -= len(data)
        plain = self._decryptor.update(data)
        view[: len(plain)] = plain
        return len(plain)

    def _verify(self) -> None:
        decryptor, self._decryptor = self._decryptor, None
        try:
            decryptor.finalize()
        except InvalidTag:
            raise ChunkCorruptedError(
                "legacy file failed authentication (modified, truncated or wrong key)", index=0
            ) from None


def reseal_legacy(
    src: BinaryIO,
    dst: BinaryIO,
    *,
    data_key: bytes,
    key_id: str,
    wrapper: KeyWrapper,
    content_type: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Progress | None = None,
) -> SealedHeader:
    """Re-seal a legacy file into the sealed format with a fresh data key, streaming."""
    reader = LegacyReader(src, data_key)
    return seal(
        io.BufferedReader(reader, buffer_size=_READ),
        dst,
        key_id=key_id,
        wrapper=wrapper,
        content_type=content_type,
        chunk_size=chunk_size,
        plaintext_length=reader.length,
        progress=progress,
    )
