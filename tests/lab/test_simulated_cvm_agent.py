"""A simulated CVM runs the real guest agent, which attests and releases its key in the lab."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from azure.storage.queue import QueueClient

from cotenant.azurite import Azurite
from cotenant.lab.testing import RunningLab
from tests.lab.helpers import agent_config_toml, make_skr_key, process_running, unique


@pytest.mark.azurite
@pytest.mark.slow
def test_guest_agent_in_a_simulated_cvm_releases_its_key(lab_env: RunningLab,
                                                         azurite: Azurite) -> None:
    key = make_skr_key(lab_env)
    client = lab_env.client
    reports, commands = unique("lab-reports"), unique("lab-commands")
    for queue in (reports, commands):
        QueueClient.from_connection_string(azurite.connection_string, queue).create_queue()
    config = agent_config_toml(lab_env, key, azurite.queue_url, azurite.connection_string,
                               tenant="labtest", reports=reports, commands=commands)
    vm = unique("cvm")
    created = client.create_vm(vm, "confidential", identities=[key.releaser["client_id"]],
                               agent_config=config)
    try:
        assert created["agent_running"] and created["has_agent_config"]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            released = [r for r in client.audit(key=key.name) if r["decision"] == "released"]
            if released:
                break
            time.sleep(0.25)
        assert released, "the agent did not release its key"
        assert released[0]["caller"] == key.releaser["principal_id"]
        pid = created["agent_pid"]
        # the agent (now releasing) is its own session (the lab stops it as a group), runs in
        # its VM's directory, and its process never held the operator's identity variables
        assert os.getsid(pid) == pid
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert b"IDENTITY_HEADER=" not in environ and b"IDENTITY_ENDPOINT=" not in environ
        assert Path(f"/proc/{pid}/cwd").resolve() == Path(created["directory"]).resolve()
        # and it reports to the control plane's queue
        queue = QueueClient.from_connection_string(azurite.connection_string, reports)
        while time.monotonic() < deadline and not list(queue.peek_messages(max_messages=1)):
            time.sleep(0.25)
        assert list(queue.peek_messages(max_messages=1)), "no guest report"
    finally:
        client.delete_vm(vm)
    assert not process_running(pid), "agent still running"
