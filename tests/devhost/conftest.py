"""Fixtures for the devhost tests: the sample app served by the harness on Azurite."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cotenant.azurite import Azurite
from cotenant.devhost.testing import DevHostHarness

APP = Path(__file__).resolve().parent / "app" / "function_app.py"


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


class Journal:
    """The file the sample app appends to, one line per activity/trigger run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    def lines(self) -> list[str]:
        return self.path.read_text().splitlines()

    def count(self, prefix: str) -> int:
        return sum(1 for line in self.lines() if line.startswith(prefix))


def settings_for(journal: Journal) -> dict[str, str]:
    return {"DEVHOST_SAMPLE_JOURNAL": str(journal.path),
            "DEVHOST_SAMPLE_QUEUE": unique("q"), "DEVHOST_SAMPLE_BRANCH": "a"}


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal.txt")


@pytest.fixture
def app_settings(journal: Journal) -> dict[str, str]:
    return settings_for(journal)


@pytest.fixture
def host(azurite: Azurite, app_settings: dict[str, str]) -> Iterator[DevHostHarness]:
    """A fresh host per test (tests that restart it or count activity runs)."""
    with DevHostHarness(APP, connection_string=azurite.connection_string,
                        task_hub=unique("hub"), settings=app_settings) as harness:
        yield harness


@pytest.fixture(scope="module")
def module_journal(tmp_path_factory: pytest.TempPathFactory) -> Journal:
    return Journal(tmp_path_factory.mktemp("journal") / "journal.txt")


@pytest.fixture(scope="module")
def module_host(azurite: Azurite, module_journal: Journal) -> Iterator[DevHostHarness]:
    """One host for a whole module whose tests use their own instances and journal keys."""
    with DevHostHarness(APP, connection_string=azurite.connection_string,
                        task_hub=unique("hub"), settings=settings_for(module_journal)
                        ) as harness:
        yield harness
