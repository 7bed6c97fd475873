"""The app reaches its own storage account in both forms the Functions host supports."""

from __future__ import annotations

import pytest
from azure.data.tables import TableServiceClient
from azure.identity import ManagedIdentityCredential

from cotenant.api.audit import AUDIT_TABLE, audit_log
from cotenant.cloud.settings import queue_commands
from cotenant.cloud.storage import storage_access

IDENTITY_ENV = {
    "AzureWebJobsStorage__credential": "managedidentity",
    "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-0000000000aa",
    "AzureWebJobsStorage__queueServiceUri": "https://stcp.queue.core.windows.net",
    "AzureWebJobsStorage__tableServiceUri": "https://stcp.table.core.windows.net",
}


def test_connection_string_form(azurite) -> None:
    access = storage_access({"AzureWebJobsStorage": azurite.connection_string})
    assert access is not None and access.connection_string == azurite.connection_string
    log = audit_log({"AzureWebJobsStorage": azurite.connection_string})
    log.record("storagetest", "tenant:test", {"note": "hello"})
    assert [e["kind"] for e in log.events("storagetest")] == ["tenant:test"]


def test_the_audit_log_is_one_client_per_account_and_survives_a_deleted_table(azurite) -> None:
    env = {"AzureWebJobsStorage": azurite.connection_string}
    log = audit_log(env)
    assert audit_log(dict(env)) is log  # connections reused, table created once
    log.record("audittable", "tenant:first", {"n": 1})
    TableServiceClient.from_connection_string(azurite.connection_string).delete_table(AUDIT_TABLE)
    log.record("audittable", "tenant:second", {"n": 2})
    assert [e["kind"] for e in log.events("audittable")] == ["tenant:second"]


def test_development_storage_shorthand_is_azurite_on_default_ports() -> None:
    access = storage_access({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert access is not None
    assert "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1" in access.connection_string


def test_identity_based_form_uses_the_service_uris_and_the_app_identity() -> None:
    # Shared-key access is disabled in Azure: no connection string exists, only these settings.
    access = storage_access(IDENTITY_ENV)
    assert access is not None and access.connection_string is None
    table = access.table(AUDIT_TABLE)
    assert table.url.startswith("https://stcp.table.core.windows.net")
    assert isinstance(table.credential, ManagedIdentityCredential)
    assert access.queue("guest-reports-quarantine").url.startswith(
        "https://stcp.queue.core.windows.net/guest-reports-quarantine")
    # The command queues go to the same account, with the same identity.
    assert queue_commands(IDENTITY_ENV).account_url == "https://stcp.queue.core.windows.net"


def test_account_name_alone_derives_the_public_endpoints() -> None:
    access = storage_access({"AzureWebJobsStorage__accountName": "stcp"})
    assert access is not None
    assert access.queue_url == "https://stcp.queue.core.windows.net"
    assert access.table_url == "https://stcp.table.core.windows.net"
    assert access.client_id is None


def test_nothing_configured_is_a_clear_error() -> None:
    assert storage_access({}) is None
    with pytest.raises(RuntimeError, match="AzureWebJobsStorage is not configured"):
        audit_log({})
