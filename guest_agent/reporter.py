"""Send reports to the ``guest-reports`` queue; keep a small outbox across outages."""

from __future__ import annotations

import logging
import threading
from collections import deque

from azure.core.exceptions import AzureError
from azure.storage.queue import QueueClient

from cotenant.wire.reports import Report

log = logging.getLogger("guest_agent.reporter")
OUTBOX_LIMIT = 100


class Reporter:
    def __init__(self, client: QueueClient) -> None:
        self._client = client
        self._outbox: deque[Report] = deque(maxlen=OUTBOX_LIMIT)
        self._sending = 0  # taken from the outbox, not yet acknowledged by the queue
        self._lock = threading.Lock()

    def send(self, report: Report) -> bool:
        """Queue ``report`` (after anything still pending). False if the queue is unreachable;
        the report then waits in the outbox for the next send or ``flush``.

        Threads that report at once send at once (each message is its own request; the
        control plane needs no order between them: every report has its own event), rather
        than queueing behind each other's round trips. One thread flushing sends in order.
        """
        with self._lock:
            self._outbox.append(report)
        return self.flush()

    def flush(self) -> bool:
        while True:
            with self._lock:
                if not self._outbox:
                    return True
                report = self._outbox.popleft()
                self._sending += 1
            try:
                self._client.send_message(report.to_json())
            except AzureError as exc:
                with self._lock:
                    self._outbox.appendleft(report)
                    self._sending -= 1
                log.warning("report %s not sent yet: %s", report.event, exc.__class__.__name__)
                return False
            with self._lock:
                self._sending -= 1
            log.info("reported %s%s", report.event, _about(report))

    @property
    def pending(self) -> int:
        """Reports not yet delivered: waiting in the outbox or being sent."""
        with self._lock:
            return len(self._outbox) + self._sending

    def close(self) -> None:
        self._client.close()


def _about(report: Report) -> str:
    if report.outcomes:
        return f" ({len(report.outcomes)} keys)"
    return f" {report.key_id}" if report.key_id else ""
