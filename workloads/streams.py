"""Adapters between the guest agent's plaintext blocks and readers that want a file."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any


class BlockReader(io.RawIOBase):
    """A read-only binary file over an iterator of byte blocks (kept in memory only)."""

    def __init__(self, blocks: Iterator[bytes]) -> None:
        self._blocks = blocks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._pending:
            block = next(self._blocks, None)
            if block is None:
                return 0
            self._pending = block
        size = min(len(target), len(self._pending))
        target[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def close(self) -> None:
        close = getattr(self._blocks, "close", None)
        if close is not None:
            close()
        super().close()


def binary_reader(blocks: Iterator[bytes]) -> io.BufferedReader:
    return io.BufferedReader(BlockReader(blocks), buffer_size=64 * 1024)


def text_reader(blocks: Iterator[bytes]) -> io.TextIOWrapper:
    return io.TextIOWrapper(binary_reader(blocks), encoding="utf-8", newline="")
