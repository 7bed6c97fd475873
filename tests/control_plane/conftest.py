"""Fixtures of the control plane tests: the function app under the devhost harness."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cotenant.azurite import Azurite
from cotenant.devhost.testing import DevHostHarness

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "function_app.py"
THREE_PARTY = REPO / "examples" / "three-party.yaml"
_hubs = itertools.count(1)


@pytest.fixture
def spec() -> dict:
    return yaml.safe_load(THREE_PARTY.read_text())


@pytest.fixture
def api_host(azurite: Azurite, tmp_path: Path) -> Iterator[DevHostHarness]:
    """The app with its queue trigger, no cloud behind it (API and event-routing tests)."""
    with DevHostHarness(APP, connection_string=azurite.connection_string,
                        task_hub=f"cpApi{next(_hubs)}", triggers=True,
                        keys_file=tmp_path / "keys.json",
                        settings={"COTENANT_CLOUD": "lab"}) as host:
        yield host
