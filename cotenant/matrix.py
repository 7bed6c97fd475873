"""The access matrix: who can release what.

A party's CVM can release a key only when **both** hold: its identity has a release grant
scoped to that key, and the key's release policy accepts the attestation token such a CVM
gets (a compliant SEV-SNP CVM attested by the tenant's authority). Either alone is not enough.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from cotenant.policy import evaluate


class AccessEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    key_owner: str
    key_name: str
    grantee: str
    granted: bool  # identity holds a key-scoped release grant
    policy_allows: bool  # the key's release policy accepts the grantee's CVM token
    can_release: bool


class AccessMatrix(BaseModel):
    model_config = ConfigDict(frozen=True)

    parties: list[str]
    entries: list[AccessEntry]

    def entry(self, key_owner: str, grantee: str) -> AccessEntry:
        for entry in self.entries:
            if entry.key_owner == key_owner and entry.grantee == grantee:
                return entry
        raise KeyError((key_owner, grantee))

    def can_release(self, key_owner: str, grantee: str) -> bool:
        return self.entry(key_owner, grantee).can_release

    def releasers_of(self, key_owner: str) -> list[str]:
        return [e.grantee for e in self.entries if e.key_owner == key_owner and e.can_release]

    def releasable_by(self, grantee: str) -> list[str]:
        """The key owners whose key ``grantee``'s CVM can release."""
        return [e.key_owner for e in self.entries if e.grantee == grantee and e.can_release]

    def rows(self) -> list[list[str]]:
        """Rows for a table: key, then one cell per party (``release``/``-``, with reasons)."""
        out = []
        for owner in self.parties:
            row = [self.entry(owner, owner).key_name]
            for grantee in self.parties:
                row.append(_cell(self.entry(owner, grantee)))
            out.append(row)
        return out


def _cell(entry: AccessEntry) -> str:
    if entry.can_release:
        return "release"
    if entry.granted and not entry.policy_allows:
        return "- (policy)"
    return "-"


def expected_cvm_claims(authority: str) -> dict:
    """The policy-relevant claims of a guest attestation token from one of the tenant's CVMs."""
    return {
        "iss": authority,
        "x-ms-attestation-type": "azurevm",
        "secureboot": True,
        "x-ms-isolation-tee": {
            "x-ms-attestation-type": "sevsnpvm",
            "x-ms-compliance-status": "azure-compliant-cvm",
            "x-ms-sevsnpvm-is-debuggable": False,
            "x-ms-sevsnpvm-vmpl": 0,
            "x-ms-runtime": {"vm-configuration": {"secure-boot": True, "tpm-enabled": True}},
        },
    }


def build_access_matrix(
    parties: list[str],
    key_names: dict[str, str],
    grants: set[tuple[str, str]],
    policies: dict[str, dict],
    authority: str,
) -> AccessMatrix:
    """``grants``: (key_owner, grantee) pairs; ``policies``: key owner → release policy."""
    claims = expected_cvm_claims(authority)
    policy_ok = {owner: evaluate(policies[owner], claims).allowed for owner in parties}
    entries = [
        AccessEntry(
            key_owner=owner,
            key_name=key_names[owner],
            grantee=grantee,
            granted=(owner, grantee) in grants,
            policy_allows=policy_ok[owner],
            can_release=(owner, grantee) in grants and policy_ok[owner],
        )
        for owner in parties
        for grantee in parties
    ]
    return AccessMatrix(parties=list(parties), entries=entries)
