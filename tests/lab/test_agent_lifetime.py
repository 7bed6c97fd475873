"""A simulated CVM's guest agent never outlives its lab: not on a clean stop, not on a kill."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from cotenant.azurite import Azurite
from cotenant.lab.testing import RunningLab, running_lab
from tests.lab.helpers import agent_config_toml, make_skr_key, process_running, unique

pytestmark = [pytest.mark.azurite, pytest.mark.slow]


def _descendants(pid: int) -> list[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        children = [c for c, p in parents.items() if p in frontier]
        found += children
        frontier = children
    return found


def _gone(pids: list[int], timeout: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(process_running(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if process_running(p)]


def _boot_agents(lab: RunningLab, azurite: Azurite, count: int) -> list[int]:
    with lab.activate():
        key = make_skr_key(lab)
    pids = []
    for _ in range(count):
        config = agent_config_toml(lab, key, azurite.queue_url, azurite.connection_string,
                                   tenant="lifetime", reports=unique("reports"),
                                   commands=unique("commands"))
        vm = lab.client.create_vm(unique("life"), "confidential",
                                  identities=[key.releaser["client_id"]],
                                  agent_config=config)
        assert vm["agent_running"], vm
        pids.append(vm["agent_pid"])
    return pids


def test_agents_stop_with_the_lab_and_die_with_a_killed_one(tmp_path: Path,
                                                             azurite: Azurite) -> None:
    with running_lab(tmp_path / "lab") as lab:
        pids = _boot_agents(lab, azurite, 2)
        time.sleep(1.0)  # well into their start-up
        assert all(process_running(p) for p in pids)
        lab.stop()  # SIGTERM to the lab's process group (which the agents are not in)
        assert _gone(pids) == [], "an agent outlived a stopped lab"

        lab.start()  # the VMs were running: they boot again, with new agents
        rebooted = [vm["agent_pid"] for vm in lab.client.vms() if vm["agent_running"]]
        assert len(rebooted) == 2 and not set(rebooted) & set(pids)
        assert lab.process is not None
        helpers = _descendants(lab.process.pid)  # the agents' zygote, the key-stock worker
        assert len(helpers) >= 2
        lab.process.send_signal(signal.SIGKILL)  # the lab alone, no clean-up
        lab.process.wait(timeout=10)
        assert _gone(rebooted) == [], "an agent outlived a killed lab"
        assert _gone(helpers) == [], "a lab helper process outlived a killed lab"
