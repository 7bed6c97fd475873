"""The app's own storage account, as the Functions host itself reaches it.

``AzureWebJobsStorage`` is either a connection string (Azurite, ``UseDevelopmentStorage=true``)
or, in Azure with shared-key access disabled, the identity-based form: ``AzureWebJobsStorage__
queueServiceUri`` / ``__tableServiceUri`` (or ``__accountName``) with ``__credential=
managedidentity`` and ``__clientId``. Everything the app stores itself (audit table, quarantine
queue, command queues) goes through :class:`StorageAccess`, so both forms work everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from azure.core.credentials import TokenCredential
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient, QueueServiceClient

from cotenant.azurite import DEV_ACCOUNT, DEV_KEY

_PREFIX = "AzureWebJobsStorage"


def storage_connection_string(env: Mapping[str, str] | None = None) -> str | None:
    """``AzureWebJobsStorage`` as a connection string (``UseDevelopmentStorage=true`` is
    Azurite on its default ports); None when the app uses an identity-based connection."""
    env = os.environ if env is None else env
    value = env.get(_PREFIX, "")
    if value.replace(" ", "").lower().startswith("usedevelopmentstorage=true"):
        host = "http://127.0.0.1"
        return (f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
                f"BlobEndpoint={host}:10000/{DEV_ACCOUNT};QueueEndpoint={host}:10001/"
                f"{DEV_ACCOUNT};TableEndpoint={host}:10002/{DEV_ACCOUNT};")
    return value if "AccountName=" in value else None


@dataclass(frozen=True)
class StorageAccess:
    """A connection string, or service URLs reached with the app's managed identity."""

    connection_string: str | None = None
    queue_url: str | None = None
    table_url: str | None = None
    client_id: str | None = None

    @cached_property
    def credential(self) -> TokenCredential:
        from azure.identity import ManagedIdentityCredential

        if self.client_id:
            return ManagedIdentityCredential(client_id=self.client_id)
        return ManagedIdentityCredential()

    def _url(self, url: str | None, service: str) -> str:
        if not url:
            raise LookupError(f"{_PREFIX}__{service}ServiceUri is not set")
        return url

    def queue_service(self) -> QueueServiceClient:
        if self.connection_string:
            return QueueServiceClient.from_connection_string(self.connection_string)
        return QueueServiceClient(self._url(self.queue_url, "queue"), credential=self.credential)

    def queue(self, name: str) -> QueueClient:
        return self.queue_service().get_queue_client(name)

    def table(self, name: str) -> TableClient:
        if self.connection_string:
            return TableClient.from_connection_string(self.connection_string, name)
        return TableClient(self._url(self.table_url, "table"), name, credential=self.credential)


def storage_access(env: Mapping[str, str] | None = None) -> StorageAccess | None:
    """How the app reaches its storage account, or None when nothing is configured."""
    env = os.environ if env is None else env
    connection = storage_connection_string(env)
    if connection:
        return StorageAccess(connection_string=connection)
    account = env.get(f"{_PREFIX}__accountName")
    queue_url = env.get(f"{_PREFIX}__queueServiceUri") or (
        f"https://{account}.queue.core.windows.net" if account else None)
    table_url = env.get(f"{_PREFIX}__tableServiceUri") or (
        f"https://{account}.table.core.windows.net" if account else None)
    if not (queue_url or table_url):
        return None
    return StorageAccess(queue_url=queue_url, table_url=table_url,
                         client_id=env.get(f"{_PREFIX}__clientId"))
