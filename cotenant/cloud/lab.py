"""The ``lab`` backend: the offline lab, through the same SDK clients where it emulates Azure.

Key Vault goes through azure-keyvault-keys against the lab's vaults (the lab's proxy carries
``*.vault.azure.net`` to it; ``ManagedIdentityCredential`` gets the operator's token from the
lab's identity endpoint), queues through azure-storage-queue against Azurite. The resource
manager, identities, role assignments and VMs are read through ``LabClient`` (the lab emulates
them at the interface, not as ARM REST).

Settings: ``COTENANT_LAB_DIR`` (the running lab's directory; ``cotenant lab env`` sets it with
the proxy, CA bundle and identity variables) and ``AzureWebJobsStorage`` (Azurite).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from azure.identity import ManagedIdentityCredential

from cotenant.azurite import free_port
from cotenant.cloud.base import (
    RELEASE_ROLE_ID,
    AgentInstall,
    AgentSettings,
    CloudError,
    Deployment,
    DeploymentState,
    IdentityInfo,
    NotFoundError,
    OperatorSettings,
    ResourceGroupState,
    RoleGrant,
    VmInfo,
    allows_release,
)
from cotenant.cloud.keyvault import DataPlaneKeys, KeyVaultKeys
from cotenant.cloud.queues import QueueCommands
from cotenant.lab.client import LabClient, LabError
from cotenant.lab.vault.rbac import ROLES as LAB_ROLES
from cotenant.lab.vault.rbac import group_scope
from cotenant.plan import (
    CVM_ORCHESTRATOR_APP_ID,
    ENCRYPTION_ROLE,
    ENCRYPTION_ROLE_ID,
    KEY_OPERATOR_LAB_ROLE_ID,
    KEY_OPERATOR_ROLE,
    OFFICER_ROLE,
    OFFICER_ROLE_ID,
    RELEASE_ROLE,
)

_ROLE_IDS = {RELEASE_ROLE: RELEASE_ROLE_ID, ENCRYPTION_ROLE: ENCRYPTION_ROLE_ID,
             OFFICER_ROLE: OFFICER_ROLE_ID, KEY_OPERATOR_ROLE: KEY_OPERATOR_LAB_ROLE_ID}
# The lab has no Entra tenant: a stable stand-in object id for the platform's
# "Confidential VM Orchestrator" service principal.
LAB_CVM_ORCHESTRATOR = str(uuid.uuid5(uuid.NAMESPACE_URL, CVM_ORCHESTRATOR_APP_ID))
_TRANSIENT = frozenset({0, 408, 409, 429, 500, 502, 503, 504})


@contextmanager
def lab_errors(step: str, resource: str) -> Iterator[None]:
    try:
        yield
    except LabError as exc:
        error = NotFoundError if exc.status == 404 else CloudError
        raise error(f"{step}: {exc.message}", transient=exc.status in _TRANSIENT,
                    resource=resource, code=exc.code or None) from None


def _endpoint(connection_string: str, name: str) -> str:
    for part in connection_string.split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == name.lower():
            return value.strip().rstrip("/")
    raise CloudError(f"the storage connection string has no {name}")


class LabCloud(DataPlaneKeys):
    name = "lab"

    def __init__(self, client: LabClient, storage_connection_string: str,
                 agent_install: AgentInstall) -> None:
        self._lab = client
        self._agent_install = agent_install
        self._storage = storage_connection_string
        self._queues = QueueCommands.from_connection_string(storage_connection_string)
        ca_bundle = client.endpoints.ca_bundle
        self._keys = KeyVaultKeys(ManagedIdentityCredential(), LabClient.vault_url,
                                  connection_verify=ca_bundle)
        with lab_errors("read the lab operator", "lab"):
            operator = client.operator()
            self._subscription_id = str(client.info()["subscription_id"])
        self.operator = OperatorSettings(principal_id=operator["principal_id"],
                                         role_definition_id=KEY_OPERATOR_LAB_ROLE_ID,
                                         cvm_orchestrator_object_id=LAB_CVM_ORCHESTRATOR)

    @classmethod
    def from_settings(cls, env: Mapping[str, str]) -> LabCloud:
        from cotenant.cloud.settings import LAB_AGENT_INSTALL, agent_install
        from cotenant.cloud.storage import storage_connection_string

        directory = env.get("COTENANT_LAB_DIR")
        if not directory:
            raise CloudError("COTENANT_CLOUD=lab needs COTENANT_LAB_DIR (see `cotenant lab env`)")
        connection = storage_connection_string(env)
        if not connection:
            raise CloudError("COTENANT_CLOUD=lab needs AzureWebJobsStorage (Azurite's "
                             "connection string)")
        try:
            client = LabClient.from_directory(directory)
        except (OSError, ValueError) as exc:
            raise CloudError(f"no running lab in {directory}: {exc}") from None
        return cls(client, connection, agent_install(env, LAB_AGENT_INSTALL))

    # resource groups -----------------------------------------------------------------
    def ensure_resource_group(self, name: str, location: str, tags: dict[str, str]) -> None:
        with lab_errors("create resource group", name):
            self._lab.ensure_resource_group(name, location, tags)

    def resource_group_state(self, name: str) -> ResourceGroupState:
        with lab_errors("read resource group", name):
            group = self._lab.resource_group(name)
        if group is None:
            return ResourceGroupState.NOT_FOUND
        return ResourceGroupState.DELETING if group.get("state") == "Deleting" \
            else ResourceGroupState.EXISTS

    def begin_delete_resource_group(self, name: str) -> ResourceGroupState:
        with lab_errors("delete resource group", name):
            state = self._lab.delete_resource_group(name)
        return ResourceGroupState(state) if state in ResourceGroupState._value2member_map_ \
            else ResourceGroupState.DELETING

    # deployments ---------------------------------------------------------------------
    @staticmethod
    def _deployment(record: dict[str, Any]) -> Deployment:
        return Deployment(
            resource_group=record["resource_group"], name=record["name"],
            module=record.get("module", ""), state=DeploymentState(record["state"]),
            error_code=record.get("error_code"), error=record.get("error"),
            outputs=record.get("outputs") or {})

    def start_deployment(self, resource_group: str, name: str, module: str,
                         parameters: dict[str, Any]) -> Deployment:
        with lab_errors(f"start deployment of module {module}", f"{resource_group}/{name}"):
            return self._deployment(self._lab.start_deployment(
                resource_group, name, module, parameters))

    def get_deployment(self, resource_group: str, name: str, *,
                       wait_seconds: float = 0.0) -> Deployment:
        try:
            with lab_errors("read deployment", f"{resource_group}/{name}"):
                return self._deployment(self._lab.get_deployment(resource_group, name,
                                                                 wait=wait_seconds))
        except NotFoundError:
            return Deployment(resource_group=resource_group, name=name,
                              state=DeploymentState.NOT_FOUND)

    # keys ----------------------------------------------------------------------------
    def vault_url(self, vault_name: str) -> str:
        return LabClient.vault_url(vault_name)

    # identities, grants, VMs ---------------------------------------------------------
    def list_key_grants(self, resource_group: str, vault_name: str,
                        key_name: str) -> list[RoleGrant]:
        """The assignments at the key's scope and inherited from its vault and resource group
        (the lab's scopes above a key), like Azure's ``atScope()``."""
        vault = self.vault_url(vault_name).lower()
        scope = f"{self.vault_url(vault_name)}/keys/{key_name}"
        scopes = {vault, scope.lower(), group_scope(self._subscription_id, resource_group)}
        with lab_errors("read role assignments", scope):
            found = self._lab.role_assignments()
        return [RoleGrant(scope=a["scope"], principal_id=a["principal_id"],
                          role_definition_id=_ROLE_IDS.get(a["role"], a["role"]),
                          grants_release=a["role"] in LAB_ROLES
                          and allows_release(LAB_ROLES[a["role"]][1]))
                for a in found if a["scope"].lower() in scopes]

    def get_identity(self, resource_group: str, identity_name: str) -> IdentityInfo:
        return self.get_identities(resource_group, [identity_name])[identity_name]

    def get_identities(self, resource_group: str,
                       identity_names: Iterable[str]) -> dict[str, IdentityInfo]:
        """One read of the lab's identities, whatever their number."""
        wanted = list(identity_names)
        if not wanted:
            return {}
        with lab_errors("read managed identities", resource_group):
            found = {i["name"]: i for i in self._lab.identities()
                     if i.get("resource_group") == resource_group and i["name"] in wanted}
        for name in wanted:
            if name not in found:
                raise NotFoundError("read managed identity: not found",
                                    resource=f"{resource_group}/{name}")
        return {name: IdentityInfo(name=name, principal_id=found[name]["principal_id"],
                                   client_id=found[name]["client_id"]) for name in wanted}

    def get_vm(self, resource_group: str, vm_name: str) -> VmInfo:
        with lab_errors("read virtual machine", f"{resource_group}/{vm_name}"):
            vm = self._lab.get_vm(vm_name)
        return VmInfo(name=vm["name"], security_type=vm.get("security_type"),
                      vm_unique_id=vm.get("vm_unique_id"),
                      provisioning_state="Succeeded" if vm.get("status") == "running"
                      else vm.get("status"))

    def purge_vault(self, vault_name: str, location: str) -> None:
        """The lab deletes vaults outright with their resource group: nothing to purge."""

    def agent_settings(self) -> AgentSettings:
        # Simulated VMs share this host's loopback: each agent gets its own API port.
        return AgentSettings(backend="lab",
                             queue_account_url=_endpoint(self._storage, "QueueEndpoint"),
                             queue_connection_string=self._storage,
                             api_listen=f"127.0.0.1:{free_port()}",
                             install=self._agent_install)

    @property
    def tls_verify(self) -> bool | str:
        return self._lab.endpoints.ca_bundle

    def ensure_command_queue(self, queue_name: str) -> None:
        self._queues.ensure(queue_name)

    def send_command(self, queue_name: str, message: dict[str, Any]) -> None:
        self._queues.send(queue_name, message)
