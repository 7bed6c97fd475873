"""Helpers for the lab tests: unique names and a vault key under a release policy."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.identity import ManagedIdentityCredential
from azure.keyvault.keys import KeyClient, KeyReleasePolicy, KeyVaultKey

from cotenant.lab.client import LabClient, VmCredential
from cotenant.lab.testing import RunningLab
from cotenant.policy import build_release_policy


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class SkrKey:
    """A vault with an exportable key under a release policy, and a releaser identity."""

    lab: RunningLab
    vault_url: str
    key: KeyVaultKey
    releaser: dict[str, Any]
    policy: dict[str, Any]
    releaser_vm: str | None = field(default=None)

    @property
    def name(self) -> str:
        return self.key.name

    def releaser_client(self) -> KeyClient:
        """A KeyClient authenticated as the releaser identity, from a VM that holds it."""
        if self.releaser_vm is None:
            self.releaser_vm = self.vm("standard")
        return KeyClient(self.vault_url, self.lab.client.vm_credential(
            self.releaser_vm, self.releaser["client_id"]))

    def vm(self, kind: str) -> str:
        name = unique(f"vm-{kind}")
        self.lab.client.create_vm(name, kind, identities=[self.releaser["client_id"]])
        return name


def vm_identity(client: LabClient, client_id: str) -> VmCredential:
    """The identity ``client_id`` as a VM holding it sees it (a new VM, through its IMDS)."""
    vm = unique("vm-id")
    client.create_vm(vm, "standard", identities=[client_id])
    return client.vm_credential(vm, client_id)


def make_skr_key(lab: RunningLab, *, extra_claims: list | None = None,
                 grant: bool = True, immutable: bool = False) -> SkrKey:
    client = lab.client
    url = client.create_vault(unique("kv"))
    policy = build_release_policy(client.endpoints.attestation_url, extra_claims)
    key = KeyClient(url, ManagedIdentityCredential()).create_rsa_key(
        unique("key"), hardware_protected=True, exportable=True,
        release_policy=KeyReleasePolicy(json.dumps(policy).encode(), immutable=immutable))
    releaser = client.create_identity(unique("releaser"))
    if grant:
        client.grant(releaser["client_id"], f"{url}/keys/{key.name}",
                     "Key Vault Crypto Service Release User")
    return SkrKey(lab, url, key, releaser, policy)


def agent_config_toml(lab: RunningLab, key: SkrKey, azurite_queue_url: str,
                      connection_string: str, *, tenant: str, reports: str,
                      commands: str) -> str:
    """A guest agent configuration releasing ``key`` for a lab VM holding its releaser."""
    from cotenant.azurite import free_port
    from guest_agent.config import AgentConfig

    return AgentConfig(
        tenant=tenant, party="contoso", vm_name=f"{tenant}-vm",
        orchestration={"instance": tenant, "nonce": "nonce-0123456789"},
        attestation={"endpoint": lab.client.endpoints.attestation_url},
        identity={"client_id": key.releaser["client_id"]},
        keys=[{"vault_url": key.vault_url, "name": key.name}],
        queues={"reports_url": f"{azurite_queue_url}/{reports}",
                "commands_url": f"{azurite_queue_url}/{commands}",
                "connection_string": connection_string},
        api={"listen": f"127.0.0.1:{free_port()}"},
    ).to_toml()


def process_running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, or a process exiting as we look, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False

