"""Fixtures shared by every test area."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cotenant.azurite import Azurite, start_azurite

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """One Azurite for the test session, on free loopback ports, with its own data folder.

    Tests must use names (queues, tables, containers) unique to themselves.
    """
    instance = start_azurite(tmp_path_factory.mktemp("azurite"))
    try:
        yield instance
    finally:
        instance.stop()
