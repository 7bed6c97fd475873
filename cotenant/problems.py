"""A validation problem: where (a path into the document) and what."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def join_problems(problems: list[Problem]) -> str:
    return "; ".join(str(p) for p in problems)
