"""Commands to guest agents over storage queues (the same code for Azure and Azurite)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient, QueueServiceClient, TextBase64EncodePolicy

from cotenant.cloud.errors import cloud_errors


class QueueCommands:
    """Sends JSON messages, base64-encoded as Azure Functions queue triggers expect."""

    def __init__(self, service: QueueServiceClient) -> None:
        self._service = service
        self._created: set[str] = set()

    @classmethod
    def from_connection_string(cls, connection_string: str, **options: Any) -> QueueCommands:
        return cls(QueueServiceClient.from_connection_string(connection_string, **options))

    @classmethod
    def from_account_url(cls, account_url: str, credential: TokenCredential,
                         **options: Any) -> QueueCommands:
        return cls(QueueServiceClient(account_url, credential=credential, **options))

    @property
    def account_url(self) -> str:
        return self._service.url.rstrip("/")

    def _queue(self, queue_name: str) -> QueueClient:
        return self._service.get_queue_client(
            queue_name, message_encode_policy=TextBase64EncodePolicy())

    def ensure(self, queue_name: str) -> None:
        """Create the queue unless it exists (so a receiver can poll it before any send)."""
        if queue_name in self._created:
            return
        with cloud_errors("create queue", queue_name), \
                contextlib.suppress(ResourceExistsError):
            self._queue(queue_name).create_queue()
        self._created.add(queue_name)

    def send(self, queue_name: str, message: dict[str, Any]) -> None:
        self.ensure(queue_name)
        with cloud_errors("send command", queue_name):
            self._queue(queue_name).send_message(json.dumps(message, separators=(",", ":")))
