"""Shared helpers for the guest agent tests: configs, queues, a served agent."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from azure.storage.queue import QueueClient
from cryptography.hazmat.primitives.asymmetric.padding import AsymmetricPadding

from cotenant.azurite import Azurite, free_port
from cotenant.wire.reports import Report, decode_message
from guest_agent.agent import Agent
from guest_agent.backends import AttestationError
from guest_agent.config import AgentConfig, parse_config
from guest_agent.server import make_server

VAULT = "https://contoso-kv.vault.azure.net"
PARTNER_VAULT = "https://fabrikam-kv.vault.azure.net"


class SealedTee:
    """A TEE stand-in that cannot attest (the outermost edge); counts the attempts."""

    name = "sealed"

    def __init__(self) -> None:
        self.attempts = 0

    def attest(self, nonce: str) -> str:
        self.attempts += 1
        raise AttestationError("no TEE in this test")

    def decrypt(self, ciphertext: bytes, padding: AsymmetricPadding) -> bytes:
        raise AttestationError("no TEE in this test")

    def close(self) -> None:
        pass


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def config_data(azurite: Azurite, **overrides: Any) -> dict[str, Any]:
    reports, commands = unique("ga-reports"), unique("ga-commands")
    data: dict[str, Any] = {
        "tenant": "acme",
        "party": "contoso",
        "vm_name": "acme-contoso-vm",
        "backend": "lab",
        "orchestration": {"instance": "acme", "nonce": uuid.uuid4().hex},
        "attestation": {"endpoint": "https://sharedneu.neu.attest.azure.net"},
        "identity": {"client_id": str(uuid.uuid4()), "imds_endpoint": "http://127.0.0.1:9"},
        "keys": [
            {"vault_url": VAULT, "name": "contoso-secret-key"},
            {"vault_url": PARTNER_VAULT, "name": "fabrikam-secret-key"},
        ],
        "queues": {
            "reports_url": f"{azurite.queue_url}/{reports}",
            "commands_url": f"{azurite.queue_url}/{commands}",
            "connection_string": azurite.connection_string,
            "poll_seconds": 0.2,
        },
        "api": {"listen": f"127.0.0.1:{free_port()}"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def make_config(azurite: Azurite, **overrides: Any) -> AgentConfig:
    config = parse_config(config_data(azurite, **overrides))
    for url in (config.queues.reports_url, config.queues.commands_url):
        queue(config, url).create_queue()
    return config


def queue(config: AgentConfig, url: str) -> QueueClient:
    name = url.rstrip("/").rsplit("/", 1)[-1]
    assert config.queues.connection_string
    return QueueClient.from_connection_string(config.queues.connection_string, name)


def drain_reports(config: AgentConfig) -> list[Report]:
    client = queue(config, config.queues.reports_url)
    out = []
    for message in client.receive_messages(max_messages=32):
        out.append(decode_message(message.content))
        client.delete_message(message)
    return out


def wait_reports(config: AgentConfig, predicate: Any, timeout: float = 20.0) -> list[Report]:
    """Collect reports until ``predicate(all_so_far)`` holds."""
    seen: list[Report] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.extend(drain_reports(config))
        if predicate(seen):
            return seen
        time.sleep(0.1)
    raise AssertionError(f"reports did not arrive: {[r.event for r in seen]}")


@contextlib.contextmanager
def served(agent: Agent) -> Iterator[str]:
    """Serve ``agent``'s local API in a thread; yields its base URL."""
    server = make_server(agent)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("local API did not start")
        time.sleep(0.02)
    try:
        yield f"http://{agent.config.api.listen}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
