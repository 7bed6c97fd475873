"""The one cloud interface the control plane's activities call.

Two backends implement :class:`Cloud`: ``azure`` (the Azure SDKs against real Azure) and
``lab`` (the same Key Vault and storage SDK clients pointed at the offline lab, plus the
lab's resource manager). Every method is idempotent so that an activity retried or replayed
by the Durable runtime creates nothing twice. Results are pydantic models whose
``model_dump(mode="json")`` crosses the activity boundary.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from cotenant.cloud.bootstrap import AgentInstall

# Built-in Azure role that allows only the key release data action.
RELEASE_ROLE_NAME = "Key Vault Crypto Service Release User"
RELEASE_ROLE_ID = "08bbd89e-9f13-488c-ac41-acfcb10c90ab"
# The data action that lets a principal release a key (secure key release).
RELEASE_DATA_ACTION = "Microsoft.KeyVault/vaults/keys/release/action"
# Built-in roles whose data actions include key release: Crypto Service Release User,
# Crypto Officer (``keys/*``) and Administrator (``vaults/*``). Any other role's definition
# is read from the cloud and checked with :func:`allows_release`.
RELEASE_CAPABLE_ROLE_IDS = frozenset({
    RELEASE_ROLE_ID,
    "14b46e9e-c2b7-41b4-b07b-48a6ebf60603",  # Key Vault Crypto Officer
    "00482a5a-887f-4fb3-b363-3b7fe8e74483",  # Key Vault Administrator
})


def _action_matches(pattern: str, action: str) -> bool:
    return fnmatch.fnmatchcase(action.lower(), pattern.lower())


def allows_release(data_actions: Iterable[str], not_data_actions: Iterable[str] = ()) -> bool:
    """Whether a role definition's data actions (``*`` wildcards, minus its not-data-actions)
    include releasing a key."""
    return (any(_action_matches(p, RELEASE_DATA_ACTION) for p in data_actions)
            and not any(_action_matches(p, RELEASE_DATA_ACTION) for p in not_data_actions))


def role_id_of(role_definition_id: str) -> str:
    """The role definition's GUID from a GUID or an ARM id ending in one."""
    return role_definition_id.rstrip("/").rsplit("/", 1)[-1].lower()

# ARM error codes that mean "try again later" rather than "this will never work".
TRANSIENT_ERROR_CODES = frozenset({
    "InternalServerError", "ServiceUnavailable", "TooManyRequests", "GatewayTimeout",
    "RetryableError", "Conflict", "AnotherOperationInProgress", "OperationNotAllowedRetry",
    "AllocationFailed", "ResourceGroupBeingDeleted", "Transient", "DeploymentInterrupted",
})


class CloudError(Exception):
    """A cloud call failed. ``transient`` says whether retrying can help.

    The message carries the step's resource and the cloud's own message, never secrets.
    """

    def __init__(self, message: str, *, transient: bool = False, resource: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient
        self.resource = resource
        self.code = code

    def __str__(self) -> str:
        prefix = "transient: " if self.transient else ""
        where = f" [{self.resource}]" if self.resource else ""
        code = f" ({self.code})" if self.code else ""
        return f"{prefix}{self.message}{code}{where}"


class NotFoundError(CloudError):
    """The resource does not exist."""


class DeploymentState(StrEnum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELED = "Canceled"
    NOT_FOUND = "NotFound"

    @property
    def terminal(self) -> bool:
        return self in (DeploymentState.SUCCEEDED, DeploymentState.FAILED,
                        DeploymentState.CANCELED)


class Deployment(BaseModel):
    """A resource-manager deployment of one tenant module."""

    resource_group: str
    name: str
    module: str = ""
    state: DeploymentState
    error_code: str | None = None
    error: str | None = None
    outputs: dict[str, Any] = Field(default_factory=dict)

    @property
    def retryable(self) -> bool:
        return self.state is DeploymentState.FAILED and self.error_code in TRANSIENT_ERROR_CODES


class KeyInfo(BaseModel):
    """A Key Vault key's public facts (never key material)."""

    vault_name: str
    name: str
    kid: str
    version: str
    key_type: str
    exportable: bool
    release_policy: dict[str, Any] | None = None


class RoleGrant(BaseModel):
    """A role assignment read back from the cloud."""

    scope: str
    principal_id: str
    role_definition_id: str
    # Whether the role's data actions include key release, when the backend resolved the
    # role's definition; None for the built-in release-capable roles it did not need to read.
    grants_release: bool | None = None

    @property
    def is_release_role(self) -> bool:
        """The assignment lets its principal release the key (any release-capable role)."""
        return bool(self.grants_release) or \
            role_id_of(self.role_definition_id) in RELEASE_CAPABLE_ROLE_IDS


class IdentityInfo(BaseModel):
    """A user-assigned managed identity (ids only)."""

    name: str
    principal_id: str
    client_id: str


class AgentSettings(BaseModel):
    """Where a guest agent on this cloud finds its queues, identity endpoint and TLS roots."""

    backend: str  # guest agent attestation backend: "tpm" on Azure, "lab" offline
    queue_account_url: str
    queue_connection_string: str | None = Field(default=None, repr=False)
    imds_endpoint: str = "http://169.254.169.254"
    ca_bundle: str | None = None
    api_listen: str = "127.0.0.1:8080"  # the agent's local SKR API (loopback)
    install: AgentInstall  # where the VM's Custom Script extension gets the agent


class OperatorSettings(BaseModel):
    """Who operates the vaults (creates the app keys through the data plane) and the
    platform principals the party module needs."""

    principal_id: str
    principal_type: str = "ServicePrincipal"
    cvm_orchestrator_object_id: str
    allowed_ip_ranges: list[str] = Field(default_factory=list)
    # GUID of the "cotenant Key Operator" custom role the party module assigns the operator on
    # each vault (manages keys, never releases or decrypts). Unset: party deployments refuse.
    role_definition_id: str | None = None

    def party_inputs(self) -> dict[str, Any]:
        return {"operator_principal_id": self.principal_id,
                "operator_role_definition_id": self.role_definition_id,
                "operator_principal_type": self.principal_type,
                "cvm_orchestrator_object_id": self.cvm_orchestrator_object_id,
                "allowed_ip_ranges": list(self.allowed_ip_ranges)}


class VmInfo(BaseModel):
    """A virtual machine's security-relevant facts."""

    name: str
    security_type: str | None = None
    provisioning_state: str | None = None
    # The VM's unique id (Azure compute ``properties.vmId``; the ``x-ms-azurevm-vmid`` claim
    # of the tokens its vTPM obtains). GUIDs compare case-insensitively.
    vm_unique_id: str | None = None
    principal_ids: list[str] = Field(default_factory=list)


class ResourceGroupState(StrEnum):
    EXISTS = "Exists"
    DELETING = "Deleting"
    NOT_FOUND = "NotFound"


@runtime_checkable
class Cloud(Protocol):
    """What the activities need from a cloud. Every call is idempotent."""

    name: str
    operator: OperatorSettings

    def ensure_resource_group(self, name: str, location: str, tags: dict[str, str]) -> None: ...

    def resource_group_state(self, name: str) -> ResourceGroupState: ...

    def begin_delete_resource_group(self, name: str) -> ResourceGroupState: ...

    def start_deployment(self, resource_group: str, name: str, module: str,
                         parameters: dict[str, Any]) -> Deployment:
        """Start (or find the already started) deployment ``name`` of ``module``."""

    def get_deployment(self, resource_group: str, name: str, *,
                       wait_seconds: float = 0.0) -> Deployment:
        """The deployment's state; a cloud that can (the lab) answers once it ends or
        ``wait_seconds`` have passed, others at once."""

    def vault_url(self, vault_name: str) -> str: ...

    def ensure_key(self, vault_name: str, key_name: str, *,
                   release_policy: dict[str, Any], size: int = 2048) -> KeyInfo:
        """Create the exportable RSA-HSM key with its release policy unless it exists."""

    def get_key(self, vault_name: str, key_name: str) -> KeyInfo: ...

    def new_key_version(self, vault_name: str, key_name: str, *,
                        release_policy: dict[str, Any], after_version: str) -> KeyInfo:
        """Create a version newer than ``after_version`` (no-op if one already exists)."""

    def set_release_policy(self, vault_name: str, key_name: str,
                           release_policy: dict[str, Any]) -> KeyInfo: ...

    def list_key_grants(self, resource_group: str, vault_name: str,
                        key_name: str) -> list[RoleGrant]: ...

    def get_identity(self, resource_group: str, identity_name: str) -> IdentityInfo: ...

    def get_identities(self, resource_group: str,
                       identity_names: Iterable[str]) -> dict[str, IdentityInfo]:
        """The identities by name (``NotFoundError`` for a missing one); a cloud that can
        (the lab) reads them in one request."""

    def agent_settings(self) -> AgentSettings: ...

    @property
    def tls_verify(self) -> bool | str:
        """``verify`` for HTTPS clients of this cloud's services (a CA bundle path or True)."""

    def get_vm(self, resource_group: str, vm_name: str) -> VmInfo: ...

    def purge_vault(self, vault_name: str, location: str) -> None: ...

    def ensure_command_queue(self, queue_name: str) -> None: ...

    def send_command(self, queue_name: str, message: dict[str, Any]) -> None: ...
