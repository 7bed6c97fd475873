"""Queue triggers on Azure Storage queues, with the host's retry and poison-queue behaviour.

A message is received invisible for a short lease that is renewed while the function runs (as
the host does), so a message whose processing died — the host, or a failed call to Storage
after a failed function — is back within a lease rather than after the function timeout; when
the function fails it is made visible again after ``visibilityTimeout``; once it has been
dequeued ``maxDequeueCount``
times (default 5) and fails again it moves to ``<queue>-poison``. Messages are base64 unless
host.json sets ``extensions.queues.messageEncoding`` to ``none``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.functions.queue import QueueMessage
from azure.storage.queue.aio import QueueClient

from .appsettings import resolve
from .loader import Function
from .settings import HostConfig, SettingsError

log = logging.getLogger("cotenant.devhost")
# A received message stays invisible for LEASE_SECONDS, renewed every RENEW_SECONDS while its
# function runs.
LEASE_SECONDS = 30.0
RENEW_SECONDS = 10.0
_RETRIES = 3  # attempts of the Storage call that puts a failed message back


def decode_body(content: str, base64_encoded: bool) -> bytes:
    if base64_encoded:
        try:
            return base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            pass  # the host would fail such a message; accept plain text locally
    return content.encode()


class QueueListener:
    def __init__(self, fn: Function, config: HostConfig,
                 invoke: Callable[[Function, dict[str, Any]], Awaitable[Any]]) -> None:
        self.fn = fn
        self.settings = config.queues
        self.invoke = invoke
        self.queue_name = resolve(str(fn.trigger["queueName"]), config.values).lower()
        connection = config.connection(fn.trigger.get("connection"))
        if not connection:
            raise SettingsError(f"queue trigger {fn.name}: no storage connection configured")
        self._queue = QueueClient.from_connection_string(connection, self.queue_name)
        self._poison = QueueClient.from_connection_string(connection,
                                                          f"{self.queue_name}-poison")
        self._task: asyncio.Task[None] | None = None
        self.processed = 0

    async def start(self) -> None:
        with contextlib.suppress(ResourceExistsError):
            await self._queue.create_queue()
        self._task = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._queue.close()
        await self._poison.close()

    async def _poll(self) -> None:
        delay = 0.05
        while True:
            try:
                messages = [m async for m in self._queue.receive_messages(
                    messages_per_page=self.settings.batch_size,
                    visibility_timeout=int(LEASE_SECONDS),
                    max_messages=self.settings.batch_size)]
            except Exception as exc:
                log.warning("queue %s: receive failed: %s", self.queue_name, exc)
                messages = []
            if messages:
                delay = 0.05
                results = await asyncio.gather(*(self._process(m) for m in messages),
                                               return_exceptions=True)
                for result in results:
                    if isinstance(result, Exception):
                        log.warning("queue %s: %s", self.queue_name, result)
                continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.max_polling_interval)

    async def _process(self, message: Any) -> None:
        msg = QueueMessage(
            id=message.id, body=decode_body(message.content, self.settings.base64),
            dequeue_count=message.dequeue_count, expiration_time=message.expires_on,
            insertion_time=message.inserted_on, time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt)
        lease = _Lease(self._queue, message)
        try:
            async with lease:
                await self.invoke(self.fn, {self.fn.trigger_param: msg})
        except Exception as exc:
            log.warning("Executed 'Functions.%s' (Failed, Id=%s, dequeue count %s): %s",
                        self.fn.name, message.id, message.dequeue_count, exc)
            await self._failed(message, lease.receipt)
            return
        self.processed += 1
        await self._queue.delete_message(message.id, lease.receipt)

    async def _failed(self, message: Any, receipt: str) -> None:
        if message.dequeue_count >= self.settings.max_dequeue_count:
            with contextlib.suppress(ResourceExistsError):
                await self._poison.create_queue()
            await self._poison.send_message(message.content)
            await self._queue.delete_message(message.id, receipt)
            log.warning("Message %s moved to %s-poison after %s attempts", message.id,
                        self.queue_name, message.dequeue_count)
            return
        for attempt in range(_RETRIES):
            try:
                await self._queue.update_message(
                    message.id, receipt,
                    visibility_timeout=int(self.settings.visibility_timeout))
                return
            except Exception as exc:  # noqa: BLE001 - Storage unreachable: retry, then the lease
                if attempt == _RETRIES - 1:
                    log.warning("queue %s: message %s not put back (%s); it returns when its "
                                "lease ends, within %.0f s", self.queue_name, message.id,
                                type(exc).__name__, LEASE_SECONDS)
                    return
                await asyncio.sleep(0.2 * 2 ** attempt)


class _Lease:
    """Keeps a received message invisible while its function runs; ``receipt`` is the pop
    receipt of the latest renewal (each renewal issues a new one)."""

    def __init__(self, queue: QueueClient, message: Any) -> None:
        self._queue, self._id = queue, message.id
        self.receipt: str = message.pop_receipt
        self._done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _Lease:
        self._task = asyncio.get_running_loop().create_task(self._renew())
        return self

    async def __aexit__(self, *_: object) -> None:
        self._done.set()  # an in-flight renewal finishes, so the receipt is current
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _renew(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._done.wait(), RENEW_SECONDS)
            if self._done.is_set():
                return
            try:
                renewed = await self._queue.update_message(
                    self._id, self.receipt, visibility_timeout=int(LEASE_SECONDS))
                self.receipt = renewed.pop_receipt
            except Exception as exc:  # noqa: BLE001 - the next renewal tries again
                log.warning("message %s: lease not renewed: %s", self._id, type(exc).__name__)
