"""Orchestrations driven by the real azure-functions-durable replay code."""

from __future__ import annotations

import os

import pytest

from cotenant.azurite import Azurite
from cotenant.devhost.engine import EngineError
from cotenant.devhost.history import EventType
from cotenant.devhost.testing import DevHostHarness

from .conftest import APP, Journal, settings_for, unique


@pytest.fixture
def host(module_host: DevHostHarness) -> DevHostHarness:
    return module_host


@pytest.fixture
def journal(module_journal: Journal) -> Journal:
    return module_journal

def _events(status, kind: str) -> list[dict]:
    return [e for e in status.history if e["EventType"] == kind]


def test_sequence(host: DevHostHarness) -> None:
    iid = host.start_orchestration("hello_sequence", ["Tokyo", "Seattle", "London"])
    status = host.wait(iid)
    assert status.runtime_status == "Completed"
    assert status.output == ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]
    scheduled = _events(status, "TaskScheduled")
    assert [e["EventId"] for e in scheduled] == [0, 1, 2]
    assert [e["TaskScheduledId"] for e in _events(status, "TaskCompleted")] == [0, 1, 2]
    assert status.history[0]["EventType"] == "OrchestratorStarted"
    assert status.history[1]["EventType"] == "ExecutionStarted"
    assert status.history[-1]["EventType"] == "ExecutionCompleted"


def test_fan_out_fan_in_of_100(host: DevHostHarness) -> None:
    episodes_before = host.stats.episodes
    iid = host.start_orchestration("fan_out", 100)
    status = host.wait(iid)
    assert status.runtime_status == "Completed"
    assert status.output == sum(2 * i for i in range(100))
    assert sorted(e["EventId"] for e in _events(status, "TaskScheduled")) == list(range(100))
    # Completions that arrive together are replayed together: far fewer than 100 episodes.
    assert host.stats.episodes - episodes_before < 60


def test_retry_then_success(host: DevHostHarness, journal: Journal) -> None:
    iid = host.start_orchestration("with_retry", {"key": "r1", "succeed_on": 3, "attempts": 5})
    status = host.wait(iid)
    assert status.runtime_status == "Completed", status.output
    assert status.output == "ok after 3"
    assert journal.count("flaky:r1") == 3
    # Attempt, retry timer, attempt, retry timer, attempt: ids as the host assigns them.
    assert [e["EventId"] for e in _events(status, "TaskScheduled")] == [0, 2, 4]
    assert [e["EventId"] for e in _events(status, "TimerCreated")] == [1, 3]
    assert [e["TaskScheduledId"] for e in _events(status, "TaskFailed")] == [0, 2]


def test_retries_exhausted_fail_with_the_activity_message(host: DevHostHarness,
                                                         journal: Journal) -> None:
    iid = host.start_orchestration("with_retry", {"key": "r2", "succeed_on": 99, "attempts": 3})
    status = host.wait(iid)
    assert status.runtime_status == "Failed"
    assert "Activity function 'flaky' failed: flaky attempt 3 failed" in status.output
    assert journal.count("flaky:r2") == 3


def test_activity_failure_fails_instance(host: DevHostHarness) -> None:
    status = host.wait(host.start_orchestration("fails", "disk on fire"))
    assert status.runtime_status == "Failed"
    assert "Activity function 'explode' failed: disk on fire" in status.output
    assert status.output.startswith("Orchestrator function 'fails' failed")


def test_external_event_wins_over_timer(host: DevHostHarness) -> None:
    iid = host.start_orchestration("approval")
    host.wait_for_custom_status(iid, lambda s: s == {"phase": "waiting"})
    host.raise_event(iid, "Approval", {"by": "alice"})
    status = host.wait(iid)
    assert status.output == {"approved": {"by": "alice"}}
    assert not _events(status, "TimerFired")


def test_timer_wins_when_clock_advances(host: DevHostHarness) -> None:
    iid = host.start_orchestration("approval")
    host.wait_for_custom_status(iid, lambda s: s == {"phase": "waiting"})
    host.advance(minutes=59)
    assert host.status(iid).runtime_status == "Running"
    host.advance(minutes=2)
    status = host.wait(iid, timeout=10)
    assert status.output == {"approved": None, "timed_out": True}
    assert [e["TimerId"] for e in _events(status, "TimerFired")] == [0]


def test_early_event_is_buffered(host: DevHostHarness) -> None:
    iid = host.start_orchestration("early_event")
    host.raise_event(iid, "Go", 42)  # before the orchestrator waits for it
    status = host.wait(iid)
    assert status.runtime_status == "Completed"
    assert status.output == 42


def test_sub_orchestration_success(host: DevHostHarness) -> None:
    iid = host.start_orchestration("parent", {"input": ["Oslo"]})
    status = host.wait(iid)
    assert status.output == {"child": ["Hello Oslo!"]}
    created = _events(status, "SubOrchestrationInstanceCreated")
    assert [e["EventId"] for e in created] == [0]
    child = host.status(created[0]["InstanceId"])
    assert child is not None and child.runtime_status == "Completed"


def test_sub_orchestration_failure_propagates(host: DevHostHarness) -> None:
    status = host.wait(host.start_orchestration("parent", {"ok": False, "input": "kaput"}))
    assert status.runtime_status == "Failed"
    assert "Orchestrator function 'fails' failed" in status.output
    assert "kaput" in status.output


def test_continue_as_new(host: DevHostHarness) -> None:
    iid = host.start_orchestration("counter", 0)
    status = host.wait(iid)
    assert status.runtime_status == "Completed"
    assert status.output == 3
    assert status.custom_status == {"value": 3}
    assert status.input == 3  # the last execution's input
    assert _events(status, "ExecutionStarted")[0]["Input"] == "3"
    assert not _events(status, "TaskScheduled")  # the history restarted


def test_terminate(host: DevHostHarness) -> None:
    iid = host.start_orchestration("waits_forever")
    host.wait_for_status(iid, "Running")
    host.terminate(iid, "operator said so")
    status = host.wait(iid)
    assert status.runtime_status == "Terminated"
    assert status.output == "operator said so"


def test_purge(host: DevHostHarness) -> None:
    iid = host.start_orchestration("hello_sequence", ["a"])
    host.wait(iid)
    assert iid in [s.instance_id for s in host.list_instances()]
    assert host.purge(iid) == 1
    assert iid not in [s.instance_id for s in host.list_instances()]
    assert host.status(iid) is None
    assert host.purge(iid) == 0


def test_non_determinism_is_detected(host: DevHostHarness) -> None:
    iid = host.start_orchestration("nondeterministic")
    host.wait_for_history(iid, "TaskCompleted")
    os.environ["DEVHOST_SAMPLE_BRANCH"] = "b"  # the orchestrator now takes another branch
    try:
        host.raise_event(iid, "Next")
        status = host.wait(iid)
    finally:
        os.environ["DEVHOST_SAMPLE_BRANCH"] = "a"
    assert status.runtime_status == "Failed"
    assert "Non-deterministic workflow detected" in status.output
    assert "call_activity(say_hello)" in status.output and "call_activity(double)" in status.output


def test_history_event_types_match_the_protocol() -> None:
    assert EventType.TASK_SCHEDULED == 4 and EventType.TIMER_FIRED == 11
    assert EventType.EVENT_RAISED == 15 and EventType.CONTINUE_AS_NEW == 16


def test_sub_orchestration_with_retry(host: DevHostHarness, journal: Journal) -> None:
    status = host.wait(host.start_orchestration("parent_with_retry",
                                                {"key": "sub", "succeed_on": 2}))
    assert status.runtime_status == "Completed", status.output
    assert status.output == "ok after 2"
    created = _events(status, "SubOrchestrationInstanceCreated")
    assert [e["EventId"] for e in created] == [0, 2]  # attempt, retry timer (1), attempt
    assert journal.count("flaky:sub") == 2


def test_not_emulated_actions_fail_clearly(host: DevHostHarness) -> None:
    status = host.wait(host.start_orchestration("uses_call_http"))
    assert status.runtime_status == "Failed"
    assert "does not emulate call_http" in status.output


def test_instance_ids_are_reused_only_when_not_running(host: DevHostHarness) -> None:
    host.start_orchestration("waits_forever", instance_id="tenant-a")
    host.wait_for_status("tenant-a", "Running")
    with pytest.raises(EngineError, match="already exists"):
        host.start_orchestration("hello_sequence", ["x"], instance_id="tenant-a")
    host.terminate("tenant-a", "done")
    host.wait("tenant-a")
    host.start_orchestration("hello_sequence", ["again"], instance_id="tenant-a")
    status = host.wait("tenant-a")
    assert status.name == "hello_sequence" and status.output == ["Hello again!"]
    assert not _events(status, "ExecutionTerminated")  # a fresh history


def test_events_and_terminate_on_unknown_or_finished_instances(host: DevHostHarness) -> None:
    with pytest.raises(EngineError) as unknown:
        host.raise_event("nobody", "X", 1)
    assert unknown.value.status == 404
    iid = host.start_orchestration("hello_sequence", ["y"])
    host.wait(iid)
    with pytest.raises(EngineError) as gone:
        host.raise_event(iid, "X", 1)
    assert gone.value.status == 410
    with pytest.raises(EngineError) as finished:
        host.terminate(iid, "late")
    assert finished.value.status == 410


def test_activity_concurrency_is_limited(host: DevHostHarness, azurite: Azurite,
                                        module_journal: Journal) -> None:
    # host.json of the sample app: maxConcurrentActivityFunctions = 8
    assert 2 < host.wait(host.start_orchestration("concurrency", 12)).output <= 8
    with DevHostHarness(APP, connection_string=azurite.connection_string,
                        task_hub=unique("limit"), settings=settings_for(module_journal),
                        max_concurrent_activities=2) as limited:
        assert limited.wait(limited.start_orchestration("concurrency", 8)).output == 2
