"""A small multi-party world in the lab for the guest agent tests.

Three vaults with one application key each (release policy: compliant SEV-SNP CVM); one
identity granted release on two of them (its own and a partner's) and not on the third.
VMs run the real agent (``python -m guest_agent run``), started by the lab.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from azure.identity import ManagedIdentityCredential
from azure.keyvault.keys import KeyClient, KeyReleasePolicy, KeyVaultKey
from cryptography.hazmat.primitives.asymmetric import rsa

from cotenant.azurite import Azurite, free_port
from cotenant.crypto.encoding import b64url_decode
from cotenant.lab.supervisor import RunningLab
from cotenant.policy import build_release_policy
from cotenant.wire.reports import KeyOutcome, Report
from guest_agent.config import AgentConfig
from tests.guest_agent.helpers import make_config, wait_reports

RELEASE_ROLE = "Key Vault Crypto Service Release User"


@dataclass
class World:
    lab: RunningLab
    azurite: Azurite
    authority: str
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    vaults: dict[str, str] = field(default_factory=dict)   # party -> vault URL
    keys: dict[str, str] = field(default_factory=dict)     # party -> key name
    credential: Any = None

    def setup(self) -> World:
        self.credential = ManagedIdentityCredential()
        policy = build_release_policy(self.authority)
        for party in ("contoso", "fabrikam", "woodgrove"):
            url = self.lab.client.create_vault(f"ga{party[:4]}{self.suffix}")
            self.vaults[party] = url
            self.keys[party] = f"{party}-secret-key"
            self.new_version(party, policy)
        return self

    def key_client(self, party: str) -> KeyClient:
        return KeyClient(self.vaults[party], self.credential)

    def new_version(self, party: str, policy: dict | None = None) -> KeyVaultKey:
        policy = policy or build_release_policy(self.authority)
        return self.key_client(party).create_rsa_key(
            self.keys[party], size=2048, hardware_protected=True, exportable=True,
            release_policy=KeyReleasePolicy(json.dumps(policy).encode()),
        )

    def public_key(self, party: str) -> tuple[str, rsa.RSAPublicKey]:
        key = self.key_client(party).get_key(self.keys[party])
        jwk = key.key
        public = rsa.RSAPublicNumbers(int.from_bytes(jwk.e, "big"),
                                      int.from_bytes(jwk.n, "big")).public_key()
        assert key.id is not None
        return key.id, public

    def identity(self, name: str, grants: list[str]) -> str:
        identity = self.lab.client.create_identity(f"{name}-{self.suffix}")
        for party in grants:
            scope = f"{self.vaults[party]}/keys/{self.keys[party]}"
            self.lab.client.grant(identity["client_id"], scope, RELEASE_ROLE)
        return identity["client_id"]

    def ref(self, party: str) -> dict[str, str]:
        return {"vault_url": self.vaults[party], "name": self.keys[party]}

    def vm(self, name: str, kind: str, client_id: str, parties: list[str],
           probes: tuple[str, ...] = (), **overrides: Any) -> AgentConfig:
        """Create a VM running the agent, allowed to release ``parties``' keys and probing
        ``probes``' keys for isolation."""
        vm_name = f"{name}-{self.suffix}"
        config = make_config(
            self.azurite,
            party=name, vm_name=vm_name,
            attestation={"endpoint": self.authority},
            identity={"client_id": client_id},
            keys=[self.ref(p) for p in parties],
            isolation_probes=[self.ref(p) for p in probes],
            api={"listen": f"127.0.0.1:{free_port()}"},
            **overrides,
        )
        self.lab.client.create_vm(vm_name, kind, identities=[client_id],
                                  agent_config=config.to_toml())
        return config


def startup_reports(config: AgentConfig, timeout: float = 40.0) -> list[Report]:
    """Wait for the agent's start-up reports: attested (or failed) and, after it, the one
    ``outcomes`` report of every allowed key and isolation probe."""

    def done(reports: list[Report]) -> bool:
        if any(r.event == "failed" and r.key_id is None for r in reports):
            return True
        return any(r.event == "attested" for r in reports) and any(
            r.event == "outcomes" for r in reports)

    return wait_reports(config, done, timeout=timeout)


def outcomes_of(reports: list[Report]) -> list[KeyOutcome]:
    """The outcomes of the start-up pass: exactly one ``outcomes`` report, after ``attested``,
    and no report about a single key."""
    assert [r.event for r in reports] == ["attested", "outcomes"], [r.event for r in reports]
    return list(reports[1].outcomes or [])


def wait_for_api(base_url: str, timeout: float = 20.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/status", timeout=1, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"agent API at {base_url} did not come up")


def lab_authority() -> str:
    return os.environ["COTENANT_LAB_ATTESTATION_URL"]


def jwk_public(jwk: dict[str, Any]) -> tuple[int, int]:
    return int.from_bytes(b64url_decode(jwk["n"]), "big"), int.from_bytes(
        b64url_decode(jwk["e"]), "big")
