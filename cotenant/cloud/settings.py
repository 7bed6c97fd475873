"""Choose and build the cloud backend from the app's settings (environment variables).

``COTENANT_CLOUD`` = ``azure`` | ``lab``.
- azure: ``AZURE_SUBSCRIPTION_ID``; queues in the app's storage account, reached as the host
  reaches it (``AzureWebJobsStorage``: connection string or identity-based ``__queueServiceUri``,
  see :mod:`cotenant.cloud.storage`), else ``COTENANT_QUEUE_URL`` with DefaultAzureCredential.
- both: ``COTENANT_AGENT_BUNDLE_URL``, ``COTENANT_AGENT_BUNDLE_SHA256`` and
  ``COTENANT_AGENT_FILES_URL`` say where a VM gets the guest agent (required on azure; the lab's
  simulated extension downloads nothing, so there they default to ``LAB_AGENT_INSTALL``).
- lab: ``COTENANT_LAB_DIR`` (the running lab's directory, with the lab's environment from
  ``cotenant lab env``) and ``AzureWebJobsStorage`` (Azurite); see :mod:`cotenant.cloud.lab`.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Mapping

from pydantic import ValidationError

from cotenant.cloud.base import Cloud, CloudError, OperatorSettings
from cotenant.cloud.bootstrap import AgentInstall
from cotenant.cloud.queues import QueueCommands
from cotenant.cloud.storage import storage_access

BACKENDS = ("azure", "lab")
_lock = threading.Lock()
_cache: dict[tuple[tuple[str, str], ...], Cloud] = {}


def queue_commands(env: Mapping[str, str], credential: object | None = None) -> QueueCommands:
    access = storage_access(env)
    if access is not None and (access.connection_string or access.queue_url):
        return QueueCommands(access.queue_service())
    url = env.get("COTENANT_QUEUE_URL")
    if not url or credential is None:
        raise CloudError("set AzureWebJobsStorage (connection string) or COTENANT_QUEUE_URL")
    return QueueCommands.from_account_url(url, credential)  # type: ignore[arg-type]


def operator(env: Mapping[str, str]) -> OperatorSettings:
    missing = [k for k in ("COTENANT_OPERATOR_PRINCIPAL_ID", "COTENANT_OPERATOR_ROLE_DEFINITION_ID",
                           "COTENANT_CVM_ORCHESTRATOR_OBJECT_ID") if not env.get(k)]
    if missing:
        raise CloudError(f"COTENANT_CLOUD=azure needs {', '.join(missing)}")
    ranges = [r.strip() for r in env.get("COTENANT_ALLOWED_IP_RANGES", "").split(",") if r.strip()]
    return OperatorSettings(
        principal_id=env["COTENANT_OPERATOR_PRINCIPAL_ID"],
        principal_type=env.get("COTENANT_OPERATOR_PRINCIPAL_TYPE", "ServicePrincipal"),
        role_definition_id=env["COTENANT_OPERATOR_ROLE_DEFINITION_ID"],
        cvm_orchestrator_object_id=env["COTENANT_CVM_ORCHESTRATOR_OBJECT_ID"],
        allowed_ip_ranges=ranges)


AGENT_INSTALL_SETTINGS = {"bundle_url": "COTENANT_AGENT_BUNDLE_URL",
                          "bundle_sha256": "COTENANT_AGENT_BUNDLE_SHA256",
                          "files_url": "COTENANT_AGENT_FILES_URL"}
# The lab plays the Custom Script extension without downloading anything (its VMs run the agent
# from this checkout); these reserved (.invalid) addresses only fill the rendered script.
LAB_AGENT_INSTALL = AgentInstall(bundle_url="https://agent.lab.invalid/bundle.tar.gz",
                                 bundle_sha256="0" * 64,
                                 files_url="https://agent.lab.invalid/install")


def agent_install(env: Mapping[str, str], default: AgentInstall | None = None) -> AgentInstall:
    """Where VMs get the guest agent, from the settings (``default`` when none is set)."""
    given = {field: env.get(name, "").strip() for field, name in AGENT_INSTALL_SETTINGS.items()}
    if not any(given.values()) and default is not None:
        return default
    missing = [AGENT_INSTALL_SETTINGS[f] for f, value in given.items() if not value]
    if missing:
        raise CloudError(f"set {' and '.join(missing)} (where VMs get the guest agent)")
    try:
        return AgentInstall(**given)
    except ValidationError as exc:
        field = str(exc.errors()[0]["loc"][0])
        raise CloudError(f"{AGENT_INSTALL_SETTINGS[field]} is invalid: "
                         f"{exc.errors()[0]['msg']}") from None


# The modules each backend needs (imported on first use, or ahead by ``preload``).
BACKEND_MODULES = {"azure": ("azure.identity", "cotenant.cloud.azure"),
                   "lab": ("cotenant.cloud.lab",)}


def backend_of(env: Mapping[str, str]) -> str:
    return env.get("COTENANT_CLOUD", "").strip().lower()


def preload(env: Mapping[str, str] | None = None) -> None:
    """Import the configured backend's modules now (the function app calls this when it is
    loaded, so an activity's first invocation does not pay ~0.2 s of imports); only that
    backend's: the azure configuration never imports the lab. No settings: nothing."""
    for module in BACKEND_MODULES.get(backend_of(os.environ if env is None else env), ()):
        importlib.import_module(module)


def build_cloud(env: Mapping[str, str]) -> Cloud:
    backend = backend_of(env)
    if backend == "azure":
        from azure.identity import DefaultAzureCredential

        from cotenant.cloud.azure import AzureCloud

        subscription = env.get("AZURE_SUBSCRIPTION_ID")
        if not subscription:
            raise CloudError("COTENANT_CLOUD=azure needs AZURE_SUBSCRIPTION_ID")
        install = agent_install(env)
        credential = DefaultAzureCredential()
        return AzureCloud(subscription_id=subscription, credential=credential,
                          queues=queue_commands(env, credential), operator=operator(env),
                          agent_install=install)
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
