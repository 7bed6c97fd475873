"""Exception types of cotenant.crypto. Messages never contain key material or tokens."""

from __future__ import annotations


class CryptoError(ValueError):
    """Base class: ``code`` is a stable machine-readable reason, ``str()`` a one-line message."""

    code = "crypto_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class KeyHsmError(CryptoError):
    """A ``key_hsm`` blob is malformed or does not unwrap with the given key."""

    code = "key_hsm"


class ReleaseError(CryptoError):
    """A Key Vault release response failed verification."""

    code = "release"


class SealedFileError(CryptoError):
    """A sealed file cannot be opened or fails authentication (subclasses say exactly why)."""

    code = "sealed_file"


class NotSealedError(SealedFileError):
    code = "not_sealed"


class UnsupportedFormatError(SealedFileError):
    code = "unsupported_format"


class HeaderError(SealedFileError):
    """The header is malformed (before any key is involved)."""

    code = "bad_header"


class HeaderTamperedError(SealedFileError):
    code = "header_tampered"


class WrongKeyError(SealedFileError):
    """The data key does not unwrap, or unwraps to a key this file was not sealed with."""

    code = "wrong_key"


class UnsupportedAlgorithmError(SealedFileError):
    code = "unsupported_algorithm"


class ChunkError(SealedFileError):
    """A chunk failed verification; ``index`` is its position in the file (0-based)."""

    def __init__(self, message: str, *, index: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.index = index


class ChunkCorruptedError(ChunkError):
    code = "chunk_corrupted"


class ChunkOrderError(ChunkError):
    """A chunk of this file sits at the wrong position (dropped, duplicated or reordered)."""

    code = "chunk_order"


class ForeignChunkError(ChunkError):
    code = "foreign_chunk"


class TruncatedError(ChunkError):
    code = "truncated"


class TrailingDataError(ChunkError):
    code = "trailing_data"
