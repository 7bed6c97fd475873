"""Run a lab in tests (a real ``cotenant lab serve`` process on loopback ports).

Use the fixtures from a ``conftest.py``::

    from cotenant.lab.testing import lab, lab_env  # noqa: F401  (pytest fixtures)

    def test_release(lab_env):                 # lab_env: the session lab + its environment
        client = lab_env.client                # cotenant.lab.client.LabClient
        url = client.create_vault("kv-test-1") # unique names per test
        cred = ManagedIdentityCredential()     # operator identity (Crypto Officer on url)
        KeyClient(url, cred).create_rsa_key("k", hardware_protected=True, ...)

or start one yourself::

    from cotenant.lab.testing import running_lab

    with running_lab(tmp_path / "lab", latency_scale=0.001) as lab:
        with lab.activate():                   # os.environ += lab.environ(), restored after
            ...
        lab.restart()                          # same directory, same state, same ports

``lab`` is session-scoped (one lab per test session, deployment latency scale 0.001);
``lab_env`` applies ``lab.environ()`` with ``monkeypatch`` for one test. Give every vault,
identity, VM and resource group a name unique to your test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from cotenant.lab.supervisor import LabStartError, RunningLab

__all__ = ["LabStartError", "RunningLab", "lab", "lab_env", "running_lab"]


@contextlib.contextmanager
def running_lab(directory: Path, **options: object) -> Iterator[RunningLab]:
    """Start a lab over ``directory`` (see :class:`RunningLab` for options); stop it after."""
    instance = RunningLab(directory, **options).start()  # type: ignore[arg-type]
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    """One lab for the test session (deployment latency scale 0.001)."""
    with running_lab(tmp_path_factory.mktemp("lab")) as instance:
        yield instance


@pytest.fixture
def lab_env(lab: RunningLab, monkeypatch: pytest.MonkeyPatch) -> RunningLab:
    """The session lab with its environment applied to ``os.environ`` for this test."""
    for key, value in lab.environ().items():
        monkeypatch.setenv(key, value)
    return lab
