"""The agent side of the per-party command queue: poll, de-duplicate, hand each command on.

The message format (``Command``, ``parse_command``) is the shared wire format in
``cotenant.wire.commands``.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from azure.core.exceptions import AzureError
from azure.storage.queue import QueueClient

from cotenant.wire.commands import Command, parse_command

log = logging.getLogger("guest_agent.commands")
MAX_DEQUEUE = 5


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
