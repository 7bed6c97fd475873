"""The ``azure`` backend: real Azure through the Azure SDKs.

Deployments use the ARM JSON compiled from ``bicep/tenant/<module>.bicep`` by ``bicep build``
(``bicep/tenant/<module>.json``); a missing compiled template is a clear, permanent error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from azure.core import PipelineClient
from azure.core.credentials import TokenCredential
from azure.core.exceptions import ResourceNotFoundError
from azure.core.pipeline.policies import BearerTokenCredentialPolicy, RetryPolicy
from azure.core.rest import HttpRequest
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.resource.deployments import DeploymentsMgmtClient
from azure.mgmt.resource.resources import ResourceManagementClient

from cotenant.cloud.base import (
    RELEASE_CAPABLE_ROLE_IDS,
    AgentInstall,
    AgentSettings,
    CloudError,
    Deployment,
    DeploymentState,
    IdentityInfo,
    OperatorSettings,
    ResourceGroupState,
    RoleGrant,
    VmInfo,
    allows_release,
    role_id_of,
)
from cotenant.cloud.errors import cloud_errors
from cotenant.cloud.keyvault import DataPlaneKeys, KeyVaultKeys
from cotenant.cloud.queues import QueueCommands

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "bicep" / "tenant"
_ARM_ENDPOINT = "https://management.azure.com"
_IDENTITY_API = "2023-01-31"
_VAULT_API = "2023-07-01"
_ARM_STATES = {
    "Succeeded": DeploymentState.SUCCEEDED,
    "Failed": DeploymentState.FAILED,
    "Canceled": DeploymentState.CANCELED,
}


def load_template(module: str, templates_dir: Path = TEMPLATES_DIR) -> dict[str, Any]:
    path = templates_dir / f"{module}.json"
    if not path.is_file():
        raise CloudError(
            f"compiled template {path.name} is missing: run `bicep build "
            f"bicep/tenant/{module}.bicep` (CI does this) before deploying to Azure",
            resource=str(path))
    return json.loads(path.read_text())


def _deployment(resource_group: str, name: str, module: str, raw: Any) -> Deployment:
    props = raw.properties
    state = _ARM_STATES.get(props.provisioning_state or "", DeploymentState.RUNNING)
    error = props.error
    outputs = {k: v.get("value") for k, v in (props.outputs or {}).items()}
    detail = error
    while detail is not None and detail.details:  # the innermost error is the useful one
        detail = detail.details[0]
    return Deployment(
        resource_group=resource_group, name=name, module=module, state=state,
        error_code=detail.code if detail else None,
        error=detail.message if detail else None, outputs=outputs,
    )


class AzureCloud(DataPlaneKeys):
    """Azure Resource Manager, Key Vault, Authorization, Compute and Storage queues."""

    name = "azure"

    def __init__(self, *, subscription_id: str, credential: TokenCredential,
                 queues: QueueCommands, operator: OperatorSettings,
                 templates_dir: Path = TEMPLATES_DIR, vault_suffix: str = "vault.azure.net",
                 agent_install: AgentInstall | None = None, **client_options: Any) -> None:
        self.subscription_id = subscription_id
        self._agent_install = agent_install
        self.operator = operator
        self._templates_dir = templates_dir
        self._vault_suffix = vault_suffix
        self._resources = ResourceManagementClient(credential, subscription_id, **client_options)
        self._deployments = DeploymentsMgmtClient(credential, subscription_id, **client_options)
        self._authorization = AuthorizationManagementClient(
            credential, subscription_id, **client_options)
        self._compute = ComputeManagementClient(credential, subscription_id, **client_options)
        self._keys = KeyVaultKeys(credential, self.vault_url, **client_options)
        self._queues = queues
        self._role_releases: dict[str, bool] = {}  # role definition GUID → allows release
        self._arm = PipelineClient(_ARM_ENDPOINT, policies=[
            RetryPolicy(**client_options),
            BearerTokenCredentialPolicy(credential, f"{_ARM_ENDPOINT}/.default"),
        ], **client_options)

    # resource groups -----------------------------------------------------------------
    def ensure_resource_group(self, name: str, location: str, tags: dict[str, str]) -> None:
        with cloud_errors("create resource group", name):
            self._resources.resource_groups.create_or_update(
                name, {"location": location, "tags": tags})

    def resource_group_state(self, name: str) -> ResourceGroupState:
        with cloud_errors("read resource group", name):
            try:
                group = self._resources.resource_groups.get(name)
            except ResourceNotFoundError:
                return ResourceGroupState.NOT_FOUND
        if (group.properties and group.properties.provisioning_state) == "Deleting":
            return ResourceGroupState.DELETING
        return ResourceGroupState.EXISTS

    def begin_delete_resource_group(self, name: str) -> ResourceGroupState:
        state = self.resource_group_state(name)
        if state is ResourceGroupState.EXISTS:
            with cloud_errors("delete resource group", name):
                self._resources.resource_groups.begin_delete(name, polling=False)
            return ResourceGroupState.DELETING
        return state

    # deployments ---------------------------------------------------------------------
    def start_deployment(self, resource_group: str, name: str, module: str,
                         parameters: dict[str, Any]) -> Deployment:
        existing = self.get_deployment(resource_group, name)
        if existing.state in (DeploymentState.RUNNING, DeploymentState.SUCCEEDED):
            return existing.model_copy(update={"module": module})
        template = load_template(module, self._templates_dir)
        body = {"properties": {
            "mode": "Incremental",
            "template": template,
            "parameters": {k: {"value": v} for k, v in parameters.items()},
        }, "tags": {"cotenant-module": module}}
        with cloud_errors(f"start deployment of module {module}", f"{resource_group}/{name}"):
            self._deployments.deployments.begin_create_or_update(
                resource_group, name, body, polling=False)
        return Deployment(resource_group=resource_group, name=name, module=module,
                          state=DeploymentState.RUNNING)

    def get_deployment(self, resource_group: str, name: str, *,
                       wait_seconds: float = 0.0) -> Deployment:
        # ARM has no long poll: ``wait_seconds`` is ignored (the caller polls).
        with cloud_errors("read deployment", f"{resource_group}/{name}"):
            try:
                raw = self._deployments.deployments.get(resource_group, name)
            except ResourceNotFoundError:
                return Deployment(resource_group=resource_group, name=name,
                                  state=DeploymentState.NOT_FOUND)
        module = (raw.tags or {}).get("cotenant-module", "")
        return _deployment(resource_group, name, module, raw)

    # keys ----------------------------------------------------------------------------
    def vault_url(self, vault_name: str) -> str:
        return f"https://{vault_name}.{self._vault_suffix}"

    # identities, grants, VMs ---------------------------------------------------------
    def _resource_id(self, resource_group: str, provider: str, name: str) -> str:
        return (f"/subscriptions/{self.subscription_id}/resourceGroups/{resource_group}"
                f"/providers/{provider}/{name}")

    def list_key_grants(self, resource_group: str, vault_name: str,
                        key_name: str) -> list[RoleGrant]:
        scope = self._resource_id(resource_group, "Microsoft.KeyVault/vaults",
                                  f"{vault_name}/keys/{key_name}")
        # atScope(): the assignments at the key and every scope above it (vault, resource
        # group, subscription, management groups) — an inherited grant releases the key too.
        with cloud_errors("read role assignments", scope):
            found = list(self._authorization.role_assignments.list_for_scope(
                scope, filter="atScope()"))
        return [RoleGrant(scope=a.scope, principal_id=a.principal_id,
                          role_definition_id=a.role_definition_id,
                          grants_release=self._role_grants_release(a.role_definition_id))
                for a in found]

    def _role_grants_release(self, role_definition_id: str) -> bool:
        """Whether the role's data actions include key release (built-in release-capable
        roles are known; any other definition is read once and its permissions checked)."""
        role_id = role_id_of(role_definition_id)
        if role_id in RELEASE_CAPABLE_ROLE_IDS:
            return True
        if role_id not in self._role_releases:
            with cloud_errors("read role definition", role_definition_id):
                definition = self._authorization.role_definitions.get_by_id(
                    role_definition_id)
            self._role_releases[role_id] = any(
                allows_release(p.data_actions or (), p.not_data_actions or ())
                for p in definition.permissions or ())
        return self._role_releases[role_id]

    def get_identity(self, resource_group: str, identity_name: str) -> IdentityInfo:
        rid = self._resource_id(resource_group, "Microsoft.ManagedIdentity/userAssignedIdentities",
                                identity_name)
        with cloud_errors("read managed identity", rid):
            resource = self._resources.resources.get_by_id(rid, api_version=_IDENTITY_API)
        props = resource.properties or {}
        return IdentityInfo(name=identity_name, principal_id=str(props["principalId"]),
                            client_id=str(props["clientId"]))

    def get_identities(self, resource_group: str,
                       identity_names: Iterable[str]) -> dict[str, IdentityInfo]:
        return {name: self.get_identity(resource_group, name) for name in identity_names}

    def agent_settings(self) -> AgentSettings:
        if self._agent_install is None:
            raise CloudError("set COTENANT_AGENT_BUNDLE_URL, COTENANT_AGENT_BUNDLE_SHA256 and "
                             "COTENANT_AGENT_FILES_URL (where VMs get the guest agent)")
        return AgentSettings(backend="tpm", queue_account_url=self._queues.account_url,
                             install=self._agent_install)

    @property
    def tls_verify(self) -> bool | str:
        return True

    def get_vm(self, resource_group: str, vm_name: str) -> VmInfo:
        with cloud_errors("read virtual machine", f"{resource_group}/{vm_name}"):
            vm = self._compute.virtual_machines.get(resource_group, vm_name)
        security = vm.security_profile.security_type if vm.security_profile else None
        identities = vm.identity.user_assigned_identities if vm.identity else None
        return VmInfo(
            name=vm.name, security_type=str(getattr(security, "value", security))
            if security else None,
            provisioning_state=vm.provisioning_state, vm_unique_id=vm.vm_id,
            principal_ids=[i.principal_id for i in (identities or {}).values() if i.principal_id],
        )

    def purge_vault(self, vault_name: str, location: str) -> None:
        url = (f"{_ARM_ENDPOINT}/subscriptions/{self.subscription_id}/providers/"
               f"Microsoft.KeyVault/locations/{location}/deletedVaults/{vault_name}/purge"
               f"?api-version={_VAULT_API}")
        with cloud_errors("purge vault", vault_name):
            response = self._arm.send_request(HttpRequest("POST", url))
        if response.status_code in (200, 202, 404):
            return  # purged, purging, or nothing soft-deleted to purge
        if response.status_code == 409:
            raise CloudError("purge vault: the vault has purge protection; it stays "
                             "soft-deleted until its retention period ends", resource=vault_name)
        raise CloudError(f"purge vault: HTTP {response.status_code}", resource=vault_name,
                         transient=response.status_code >= 500 or response.status_code == 429)

    # guest agents --------------------------------------------------------------------
    def ensure_command_queue(self, queue_name: str) -> None:
        self._queues.ensure(queue_name)

    def send_command(self, queue_name: str, message: dict[str, Any]) -> None:
        self._queues.send(queue_name, message)
