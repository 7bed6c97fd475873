"""Helpers for the sealed-file tests: seal bytes, open them, cut a sealed file into frames."""

from __future__ import annotations

import io
from dataclasses import dataclass

from cotenant.crypto.envelope import open_sealed, read_header, seal
from cotenant.crypto.wrapping import PrivateKeyUnwrapper, PublicKeyWrapper
from tests.crypto.conftest import rsa_key

KEY_ID = "https://contoso-kv.vault.azure.net/keys/contoso-secret-key/0123456789abcdef"


class Unsized:
    """A stream whose length cannot be known in advance (like stdin)."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._inner.read(size)


def seal_bytes(data: bytes, *, chunk_size: int = 64, sized: bool = True, **kwargs) -> bytes:
    dst = io.BytesIO()
    src = io.BytesIO(data) if sized else Unsized(data)
    seal(
        src,
        dst,
        key_id=KEY_ID,
        wrapper=PublicKeyWrapper(rsa_key(2048).public_key()),
        chunk_size=chunk_size,
        **kwargs,
    )
    return dst.getvalue()


def open_bytes(sealed: bytes, key=None) -> bytes:
    reader = open_sealed(io.BytesIO(sealed), PrivateKeyUnwrapper(key or rsa_key(2048)))
    return reader.read()


@dataclass
class Frames:
    header: bytes
    frames: list[bytes]

    @classmethod
    def split(cls, sealed: bytes) -> Frames:
        header = read_header(io.BytesIO(sealed))
        body = sealed[header.header_size :]
        size = header.frame_size
        return cls(
            sealed[: header.header_size], [body[i : i + size] for i in range(0, len(body), size)]
        )

    def join(self, frames: list[bytes] | None = None) -> bytes:
        return self.header + b"".join(self.frames if frames is None else frames)
