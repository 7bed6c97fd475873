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


FAST_TIMING = {
    "COTENANT_POLL_SECONDS": "0.2",
    "COTENANT_RETRY_FIRST_SECONDS": "0.2",
    "COTENANT_RETRY_ATTEMPTS": "4",
    "COTENANT_REPORT_TIMEOUT_SECONDS": "30",
    "COTENANT_DEPLOYMENT_TIMEOUT_SECONDS": "60",
    "COTENANT_DELETE_TIMEOUT_SECONDS": "60",
}


@pytest.fixture(scope="module")
def lab_stack(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory):
    """A lab (deployment latency ×0.001) whose environment the in-process app uses."""
    from cotenant.lab.testing import running_lab

    with running_lab(tmp_path_factory.mktemp("lab"), latency_scale=0.001,
                     azurite_connection_string=azurite.connection_string) as lab, \
            lab.activate():
        yield lab


@pytest.fixture(scope="module")
def stack(lab_stack, azurite: Azurite, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[DevHostHarness]:
    """The function app under the devhost, on the lab cloud, with Azurite and triggers."""
    with DevHostHarness(APP, connection_string=azurite.connection_string,
                        task_hub=f"cpE2e{next(_hubs)}", triggers=True,
                        keys_file=tmp_path_factory.mktemp("keys") / "keys.json",
                        settings={"COTENANT_CLOUD": "lab", **FAST_TIMING}) as host:
        yield host
