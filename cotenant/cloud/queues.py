"""Commands to guest agents over storage queues (the same code for Azure and Azurite)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueServiceClient, TextBase64EncodePolicy

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

    def send(self, queue_name: str, message: dict[str, Any]) -> None:
        queue = self._service.get_queue_client(
            queue_name, message_encode_policy=TextBase64EncodePolicy())
        with cloud_errors("send command", queue_name):
            if queue_name not in self._created:
                with contextlib.suppress(ResourceExistsError):
                    queue.create_queue()
                self._created.add(queue_name)
            queue.send_message(json.dumps(message, separators=(",", ":")))
