"""Reporting to and commands from real storage queues (Azurite)."""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest

from cotenant.azurite import Azurite
from cotenant.wire.commands import Command, parse_command
from cotenant.wire.reports import decode_message, make_report
from guest_agent.commands import CommandLoop
from guest_agent.config import Queues
from guest_agent.imds import ImdsClient
from guest_agent.queues import queue_client
from guest_agent.reporter import Reporter
from tests.guest_agent.helpers import make_config, queue, unique

pytestmark = pytest.mark.azurite

BASE = dict(tenant="acme", party="contoso", vm="acme-contoso-vm", instance="acme",
            nonce="n0nce-123456")


def _imds() -> ImdsClient:
    import httpx

    return ImdsClient("http://127.0.0.1:9", "unused", httpx.Client(trust_env=False))


def test_reports_arrive_base64_encoded_and_valid(azurite: Azurite) -> None:
    config = make_config(azurite)
    reporter = Reporter(queue_client(config.queues, config.queues.reports_url, _imds()))
    report = make_report(**BASE, event="attested", token="a.b.c")
    assert reporter.send(report)
    raw = queue(config, config.queues.reports_url).receive_message()
    assert raw is not None
    assert json.loads(base64.b64decode(raw.content))["event"] == "attested"
    assert decode_message(raw.content) == report


def test_reports_wait_in_the_outbox_while_the_queue_is_missing(azurite: Azurite) -> None:
    config = make_config(azurite)
    missing = config.queues.model_copy(
        update={"reports_url": f"{azurite.queue_url}/{unique('ga-late')}"})
    reporter = Reporter(queue_client(missing, missing.reports_url, _imds()))
    first = make_report(**BASE, event="attested", token="a.b.c")
    second = make_report(**BASE, event="released", key_id="https://v/keys/k/1", key_version="1")
    assert not reporter.send(first)
    assert not reporter.send(second)
    assert reporter.pending == 2
    client = queue(config, missing.reports_url)
    client.create_queue()
    assert reporter.flush() and reporter.pending == 0
    events = [decode_message(m.content).event for m in client.receive_messages(max_messages=8)]
    assert events == ["attested", "released"]  # order preserved


def test_commands_validate_and_default() -> None:
    command = parse_command(json.dumps({"command": "rotate", "id": "c1", "version": "abc123"}))
    assert command.key is None and command.instance is None
    encoded = base64.b64encode(json.dumps({"command": "wipe", "id": "c2"}).encode()).decode()
    assert parse_command(encoded).command == "wipe"
    for bad in ({"command": "shell", "id": "x"}, {"command": "rotate"},
                {"command": "rotate", "id": "x", "version": "../../x"},
                {"command": "rotate", "id": "x",
                 "key": {"vault_url": "http://evil", "name": "k"}}):
        with pytest.raises(ValueError):
            parse_command(json.dumps(bad))


def test_command_loop_handles_each_command_once_and_drops_garbage(azurite: Azurite) -> None:
    config = make_config(azurite)
    sender = queue(config, config.queues.commands_url)
    seen: list[Command] = []
    attempts: dict[str, int] = {}
    done = threading.Event()

    def handle(command: Command) -> None:
        attempts[command.id] = attempts.get(command.id, 0) + 1
        if command.id == "flaky" and attempts["flaky"] == 1:
            raise RuntimeError("transient")
        seen.append(command)
        if len(seen) == 3:
            done.set()

    sender.send_message("definitely not a command")
    sender.send_message(json.dumps({"command": "re-attest", "id": "a", "nonce": "nonce-abc-1"}))
    sender.send_message(json.dumps({"command": "re-attest", "id": "a", "nonce": "nonce-abc-1"}))
    sender.send_message(base64.b64encode(
        json.dumps({"command": "wipe", "id": "b"}).encode()).decode())
    sender.send_message(json.dumps({"command": "rotate", "id": "flaky"}))
    loop = CommandLoop(queue_client(config.queues, config.queues.commands_url, _imds()),
                       handle, poll_seconds=0.1, visibility_seconds=1)
    try:
        loop.start()
        assert done.wait(15), [c.id for c in seen]
    finally:
        loop.stop()
    assert sorted(c.id for c in seen) == ["a", "b", "flaky"]
    assert attempts["flaky"] == 2
    time.sleep(0.2)
    assert sender.peek_messages(max_messages=8) == []


def test_queue_names_come_from_the_urls() -> None:
    assert Queues.queue_name("https://acct.queue.core.windows.net/guest-reports") == \
        "guest-reports"
    assert Queues.account_url("http://127.0.0.1:10001/devstoreaccount1/q") == \
        "http://127.0.0.1:10001/devstoreaccount1"


def test_reports_sent_at_once_from_many_threads_each_arrive_once(azurite: Azurite) -> None:
    from concurrent.futures import ThreadPoolExecutor

    config = make_config(azurite)
    reporter = Reporter(queue_client(config.queues, config.queues.reports_url, _imds()))
    reports = [make_report(**BASE, event="released", key_id=f"https://v/keys/k{i}/1",
                           key_version="1") for i in range(12)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        assert all(pool.map(reporter.send, reports))
    assert reporter.pending == 0
    client = queue(config, config.queues.reports_url)
    got = [decode_message(m.content).key_id for m in client.receive_messages(max_messages=32)]
    assert sorted(got) == sorted(r.key_id for r in reports)
