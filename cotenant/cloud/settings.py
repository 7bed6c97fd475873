"""Choose and build the cloud backend from the app's settings (environment variables).

``COTENANT_CLOUD`` = ``azure`` | ``lab``.
- azure: ``AZURE_SUBSCRIPTION_ID``; queues from ``AzureWebJobsStorage`` (a connection string)
  or ``COTENANT_QUEUE_URL`` with the app's managed identity (DefaultAzureCredential).
- lab: ``COTENANT_LAB_DIR`` (the running lab's directory, with the lab's environment from
  ``cotenant lab env``) and ``AzureWebJobsStorage`` (Azurite); see :mod:`cotenant.cloud.lab`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping

from cotenant.azurite import DEV_ACCOUNT, DEV_KEY
from cotenant.cloud.base import Cloud, CloudError, OperatorSettings
from cotenant.cloud.queues import QueueCommands

BACKENDS = ("azure", "lab")
_lock = threading.Lock()
_cache: dict[tuple[tuple[str, str], ...], Cloud] = {}


def storage_connection_string(env: Mapping[str, str] | None = None) -> str | None:
    """``AzureWebJobsStorage`` as a connection string (``UseDevelopmentStorage=true`` is
    Azurite on its default ports); None when the app uses an identity-based connection."""
    env = os.environ if env is None else env
    value = env.get("AzureWebJobsStorage", "")  # noqa: SIM112 - the Functions setting name
    if value.replace(" ", "").lower().startswith("usedevelopmentstorage=true"):
        host = "http://127.0.0.1"
        return (f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
                f"BlobEndpoint={host}:10000/{DEV_ACCOUNT};QueueEndpoint={host}:10001/"
                f"{DEV_ACCOUNT};TableEndpoint={host}:10002/{DEV_ACCOUNT};")
    return value if "AccountName=" in value else None


def queue_commands(env: Mapping[str, str], credential: object | None = None) -> QueueCommands:
    connection = storage_connection_string(env)
    if connection:
        return QueueCommands.from_connection_string(connection)
    url = env.get("COTENANT_QUEUE_URL")
    if not url or credential is None:
        raise CloudError("set AzureWebJobsStorage (connection string) or COTENANT_QUEUE_URL")
    return QueueCommands.from_account_url(url, credential)  # type: ignore[arg-type]


def operator(env: Mapping[str, str]) -> OperatorSettings:
    missing = [k for k in ("COTENANT_OPERATOR_PRINCIPAL_ID", "COTENANT_CVM_ORCHESTRATOR_OBJECT_ID")
               if not env.get(k)]
    if missing:
        raise CloudError(f"COTENANT_CLOUD=azure needs {' and '.join(missing)}")
    ranges = [r.strip() for r in env.get("COTENANT_ALLOWED_IP_RANGES", "").split(",") if r.strip()]
    return OperatorSettings(
        principal_id=env["COTENANT_OPERATOR_PRINCIPAL_ID"],
        principal_type=env.get("COTENANT_OPERATOR_PRINCIPAL_TYPE", "ServicePrincipal"),
        cvm_orchestrator_object_id=env["COTENANT_CVM_ORCHESTRATOR_OBJECT_ID"],
        allowed_ip_ranges=ranges)


def build_cloud(env: Mapping[str, str]) -> Cloud:
    backend = env.get("COTENANT_CLOUD", "").strip().lower()
    if backend == "azure":
        from azure.identity import DefaultAzureCredential

        from cotenant.cloud.azure import AzureCloud

        subscription = env.get("AZURE_SUBSCRIPTION_ID")
        if not subscription:
            raise CloudError("COTENANT_CLOUD=azure needs AZURE_SUBSCRIPTION_ID")
        credential = DefaultAzureCredential()
        return AzureCloud(subscription_id=subscription, credential=credential,
                          queues=queue_commands(env, credential), operator=operator(env))
    if backend == "lab":
        from cotenant.cloud.lab import LabCloud

        return LabCloud.from_settings(env)
    raise CloudError(f"COTENANT_CLOUD must be one of {', '.join(BACKENDS)} (got {backend!r})")


def open_cloud(env: Mapping[str, str] | None = None) -> Cloud:
    """The cloud for these settings (one instance per distinct settings, thread-safe)."""
    env = os.environ if env is None else env
    key = tuple(sorted((k, v) for k, v in env.items()
                       if k.startswith(("COTENANT_", "AZURE_", "AzureWebJobsStorage"))))
    with _lock:
        if key not in _cache:
            _cache[key] = build_cloud(env)
        return _cache[key]
