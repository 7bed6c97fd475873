"""The per-party command queue: ``rotate``, ``re-attest``, ``wipe``.

Message (JSON, base64-encoded or raw)::

    {"schema_version": 1, "command": "rotate", "id": "<unique>",
     "instance": "<orchestration waiting for the answer>", "nonce": "<challenge>",
     "key": {"vault_url": "https://….vault.azure.net", "name": "contoso-secret-key"},
     "version": "<new version>"}

``instance``/``nonce`` default to the agent's configuration; ``rotate`` without ``key``
rotates every allowed key, without ``version`` it releases the latest version.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Annotated, Literal

from azure.core.exceptions import AzureError
from azure.storage.queue import QueueClient
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from guest_agent.config import KeyRef, Nonce
from guest_agent.queues import decode_json, first_problem

log = logging.getLogger("guest_agent.commands")
COMMAND_SCHEMA_VERSION = 1
MAX_DEQUEUE = 5


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = COMMAND_SCHEMA_VERSION
    command: Literal["rotate", "re-attest", "wipe"]
    id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    instance: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    nonce: Nonce | None = None
    key: KeyRef | None = None
    version: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{1,64}$")] | None = None


def parse_command(content: str | bytes) -> Command:
    """Raises ``ValueError`` with a one-line reason."""
    data = decode_json(content)
    try:
        return Command.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"invalid command: {first_problem(exc)}") from None


class CommandLoop:
    """Polls the command queue and hands each valid, not-yet-seen command to ``handle``.

    A message is deleted after it was handled (or found invalid); if ``handle`` raises, the
    message becomes visible again and is retried up to ``MAX_DEQUEUE`` times.
    """

    def __init__(self, client: QueueClient, handle: Callable[[Command], None],
                 poll_seconds: float, *, visibility_seconds: int = 120) -> None:
        self._client = client
        self._handle = handle
        self._poll = poll_seconds
        self._visibility = visibility_seconds
        self._seen: deque[str] = deque(maxlen=256)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="commands", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        self._client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except AzureError as exc:
                log.warning("command queue unreachable: %s", exc.__class__.__name__)
            self._stop.wait(self._poll)

    def poll_once(self) -> int:
        handled = 0
        for message in self._client.receive_messages(
            max_messages=8, visibility_timeout=self._visibility
        ):
            if self._stop.is_set():
                return handled
            try:
                command = parse_command(message.content)
            except ValueError as exc:
                log.warning("dropping command message %s: %s", message.id, exc)
                self._client.delete_message(message)
                continue
            if command.id not in self._seen:
                try:
                    self._handle(command)
                except Exception:
                    log.exception("command %s (%s) failed", command.command, command.id)
                    if message.dequeue_count < MAX_DEQUEUE:
                        continue
                self._seen.append(command.id)
                handled += 1
            self._client.delete_message(message)
        return handled
