"""Instances live in Azurite tables: a restarted (or killed) devhost resumes them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from cotenant.azurite import Azurite, free_port
from cotenant.devhost.testing import DevHostHarness

from .conftest import APP, Journal, unique
from .faults import TcpProxy


def test_restart_resumes_without_rerunning_recorded_activities(
        host: DevHostHarness, journal: Journal) -> None:
    iid = host.start_orchestration("slow_pair", 1.0)
    host.wait_for_history(iid, "TaskScheduled", count=2)  # the first result is recorded
    host.restart()
    assert host.host is not None and host.host.recovered >= 1
    status = host.wait(iid)
    assert status.runtime_status == "Completed"
    assert status.output == [0.05, 1.0]
    assert journal.count("slow:0.05") == 1  # recorded: not run again
    assert journal.count("slow:1.0") == 2  # in flight when stopped: run again


def test_timer_and_waiting_instance_survive_restart(host: DevHostHarness) -> None:
    timed = host.start_orchestration("approval")
    approved = host.start_orchestration("approval")
    for iid in (timed, approved):
        host.wait_for_custom_status(iid, lambda s: s == {"phase": "waiting"})
    host.restart()
    host.raise_event(approved, "Approval", "yes")
    assert host.wait(approved).output == {"approved": "yes"}
    host.advance(hours=2)
    assert host.wait(timed).output == {"approved": None, "timed_out": True}


def _serve(port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cotenant.devhost", "--app", str(APP), "--port", str(port),
         "--no-triggers"],
        env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


def _wait_up(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "devhost exited"
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise TimeoutError("devhost did not start")


def test_kill_and_restart_resumes_in_flight_instance(azurite: Azurite, journal: Journal,
                                                    tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "AzureWebJobsStorage": azurite.connection_string,
           "DEVHOST_TASK_HUB": unique("kill"), "DEVHOST_SAMPLE_JOURNAL": str(journal.path)}
    log = tmp_path / "devhost.log"
    first = _serve(port, env, log)
    try:
        _wait_up(f"{base}/api/items/1", first)
        links = httpx.post(f"{base}/api/orchestrators/slow_pair", json=30,
                           headers={"x-functions-key": "sample-function-key-for-tests-only"}
                           ).json()
        deadline = time.monotonic() + 30
        while journal.count("slow:30") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert journal.count("slow:30") == 1
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # no clean shutdown
        first.wait(10)
    second = _serve(port, {**env, "DEVHOST_SAMPLE_FAST": "1"}, log)
    try:
        _wait_up(f"{base}/api/items/1", second)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            body = httpx.get(links["statusQueryGetUri"]).json()
            if body["runtimeStatus"] not in ("Pending", "Running"):
                break
            time.sleep(0.1)
        assert body["runtimeStatus"] == "Completed", body
        assert body["output"] == [0.05, 30]
        assert journal.count("slow:0.05") == 1
        assert journal.count("slow:30") == 2
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(20)


def test_storage_outage_while_running_resumes_from_last_commit(
        azurite: Azurite, app_settings: dict[str, str], journal: Journal) -> None:
    with TcpProxy(azurite.table_port) as proxy:
        connection = azurite.connection_string.replace(f":{azurite.table_port}/",
                                                       f":{proxy.port}/")
        with DevHostHarness(APP, connection_string=connection, task_hub=unique("outage"),
                            settings=app_settings) as host:
            iid = host.start_orchestration("slow_pair", 1.0)
            host.wait_for_history(iid, "TaskScheduled", count=2)
            proxy.cut()  # the second activity finishes while storage is unreachable
            time.sleep(3)
            proxy.restore()
            status = host.wait(iid, timeout=60)
    assert status.runtime_status == "Completed"
    assert status.output == [0.05, 1.0]
    assert journal.count("slow:0.05") == 1
    assert journal.count("slow:1.0") == 2  # its result could not be recorded: run again


def test_result_waiting_in_inbox_is_not_delivered_twice_after_restart(
        host: DevHostHarness) -> None:
    parent = host.start_orchestration("parent_of_waiter", instance_id=unique("p"))
    child = f"{parent}-child"
    host.wait_for_status(child, "Running")
    host.wait_for_history(child, "TaskCompleted")
    host.suspend(parent)  # the child's result will wait in the parent's inbox
    host.raise_event(child, "Go", "done")
    assert host.wait(child).output == "done"
    host.restart()
    host.resume(parent)
    status = host.wait(parent)
    assert status.output == {"child": "done"}
    results = [e for e in status.history if e["EventType"] == "SubOrchestrationInstanceCompleted"]
    assert len(results) == 1
