"""Helpers for the lab tests: unique names and a vault key under a release policy."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from azure.identity import ManagedIdentityCredential
from azure.keyvault.keys import KeyClient, KeyReleasePolicy, KeyVaultKey

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

    @property
    def name(self) -> str:
        return self.key.name

    def releaser_client(self) -> KeyClient:
        return KeyClient(self.vault_url,
                         ManagedIdentityCredential(client_id=self.releaser["client_id"]))

    def vm(self, kind: str) -> str:
        name = unique(f"vm-{kind}")
        self.lab.client.create_vm(name, kind, identities=[self.releaser["client_id"]])
        return name


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
