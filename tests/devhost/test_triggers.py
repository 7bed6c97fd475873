"""Queue triggers on Azurite queues and NCRONTAB timer triggers."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from cotenant.azurite import Azurite
from cotenant.devhost.testing import DevHostHarness
from cotenant.devhost.timer_triggers import Schedule

from .conftest import APP, Journal, unique


@pytest.fixture
def triggered(azurite: Azurite, app_settings: dict[str, str]) -> Iterator[DevHostHarness]:
    with DevHostHarness(APP, connection_string=azurite.connection_string,
                        task_hub=unique("trig"), settings=app_settings,
                        triggers=True) as harness:
        yield harness


def _until(predicate, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _queue(azurite: Azurite, name: str) -> QueueClient:
    return QueueClient.from_connection_string(
        azurite.connection_string, name, message_encode_policy=TextBase64EncodePolicy())


def test_queue_trigger_processes_base64_messages(triggered: DevHostHarness, azurite: Azurite,
                                                 journal: Journal,
                                                 app_settings: dict[str, str]) -> None:
    queue = _queue(azurite, app_settings["DEVHOST_SAMPLE_QUEUE"])
    queue.send_message("hello report")
    assert _until(lambda: journal.count("queue:hello report:1") == 1)
    assert _until(lambda: not list(queue.peek_messages()))  # deleted after success


def test_queue_message_goes_to_poison_after_five_failures(
        triggered: DevHostHarness, azurite: Azurite, journal: Journal,
        app_settings: dict[str, str]) -> None:
    name = app_settings["DEVHOST_SAMPLE_QUEUE"]
    _queue(azurite, name).send_message("fail-me")
    poison = _queue(azurite, f"{name}-poison")
    assert _until(lambda: journal.count("queue:fail-me:") == 5, timeout=30)
    assert _until(lambda: _exists(poison) and
                  [m.content for m in poison.peek_messages()] == ["ZmFpbC1tZQ=="])
    attempts = [line.rsplit(":", 1)[1] for line in journal.lines()
                if line.startswith("queue:fail-me:")]
    assert attempts == ["1", "2", "3", "4", "5"]
    time.sleep(0.5)
    assert journal.count("queue:fail-me:") == 5  # not retried after moving to poison
    assert not list(_queue(azurite, name).peek_messages())


def test_a_message_outlasting_its_lease_is_renewed_not_redelivered(
        azurite: Azurite, journal: Journal, app_settings: dict[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from cotenant.devhost import queue_triggers

    monkeypatch.setattr(queue_triggers, "LEASE_SECONDS", 1.0)
    monkeypatch.setattr(queue_triggers, "RENEW_SECONDS", 0.3)
    with DevHostHarness(APP, connection_string=azurite.connection_string,
                        task_hub=unique("lease"), settings=app_settings, triggers=True):
        queue = _queue(azurite, app_settings["DEVHOST_SAMPLE_QUEUE"])
        queue.send_message("slow:3")  # three leases long
        assert _until(lambda: journal.count("queue:slow:3:1") == 1)
        time.sleep(1.5)  # past the first lease: only a renewal keeps it from another consumer
        assert list(queue.receive_messages(visibility_timeout=1)) == []
        assert _until(lambda: journal.count("queue-done:slow:3:1") == 1, timeout=20)
        assert _until(lambda: not list(queue.peek_messages()))  # deleted: the last receipt
        assert journal.count("queue:slow:3:") == 1


def _exists(queue: QueueClient) -> bool:
    try:
        queue.get_queue_properties()
        return True
    except Exception:
        return False


def test_timer_trigger_runs_on_startup_and_on_schedule(triggered: DevHostHarness,
                                                       journal: Journal) -> None:
    assert _until(lambda: journal.count("timer:") >= 1, timeout=5)  # run_on_startup
    assert _until(lambda: journal.count("timer:") >= 3, timeout=5)  # */1 seconds


def test_ncrontab_schedules() -> None:
    from datetime import UTC, datetime

    at = datetime(2026, 1, 1, 10, 0, 0, tzinfo=UTC)
    assert Schedule("0 */5 * * * *").next_after(at) == datetime(2026, 1, 1, 10, 5, tzinfo=UTC)
    assert Schedule("30 0 9 * * 1-5").next_after(at) == datetime(2026, 1, 2, 9, 0, 30,
                                                                 tzinfo=UTC)
    assert Schedule("00:00:10").next_after(at) == datetime(2026, 1, 1, 10, 0, 10, tzinfo=UTC)
    for bad in ("*/5 * * * *", "61 * * * * *", "not a schedule"):
        with pytest.raises(ValueError):
            Schedule(bad)
