"""The pure checks of verification: a token is bound to the party's VM by its VM id claims."""

from __future__ import annotations

from activities.verify import token_vm_ids, vm_identity_problem
from cotenant.cloud.base import RoleGrant, VmInfo, allows_release

VM_ID = "3c1a2b4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
OTHER = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"


def claims(vmid: str | None, unique: str | None) -> dict:
    tee = {"x-ms-runtime": {"vm-configuration": {"vmUniqueId": unique}}} if unique else {}
    return {"x-ms-isolation-tee": tee, **({"x-ms-azurevm-vmid": vmid} if vmid else {})}


def vm(unique: str | None = VM_ID) -> VmInfo:
    return VmInfo(name="vm-demo-contoso", security_type="ConfidentialVM", vm_unique_id=unique)


def test_token_naming_the_partys_vm_passes_case_insensitively():
    # compute reports vmId in lower case; the vTPM's vmUniqueId claims are upper case
    assert vm_identity_problem(vm(), claims(VM_ID.upper(), VM_ID.upper())) is None
    assert vm_identity_problem(vm(), claims(VM_ID, None)) is None
    assert token_vm_ids(claims(VM_ID, OTHER)) == [VM_ID, OTHER]


def test_token_naming_another_vm_in_any_claim_is_refused():
    for token in (claims(OTHER, OTHER), claims(VM_ID, OTHER), claims(OTHER, VM_ID),
                  claims(None, OTHER)):
        problem = vm_identity_problem(vm(), token)
        assert problem and OTHER in problem and "vm-demo-contoso" in problem


def test_token_without_vm_identity_or_vm_without_id_is_refused():
    assert "names no VM" in (vm_identity_problem(vm(), claims(None, None)) or "")
    assert "no unique id" in (vm_identity_problem(vm(None), claims(VM_ID, VM_ID)) or "")
    assert vm_identity_problem(vm(""), claims("", "")) is not None


def test_every_release_capable_role_counts_as_a_release_grant():
    def grant(role: str, releases: bool | None = None) -> RoleGrant:
        return RoleGrant(scope="/s", principal_id="p", grants_release=releases,
                         role_definition_id=f"/subscriptions/s/providers/Microsoft.Authorization"
                                            f"/roleDefinitions/{role}")

    assert grant("08bbd89e-9f13-488c-ac41-acfcb10c90ab").is_release_role  # Release User
    assert grant("14B46E9E-C2B7-41B4-B07B-48A6EBF60603").is_release_role  # Crypto Officer
    assert grant("00482a5a-887f-4fb3-b363-3b7fe8e74483").is_release_role  # Administrator
    assert grant("12338af0-0e69-4776-bea7-57ae8d297424", False).is_release_role is False
    assert grant("c0000000-0000-0000-0000-00000000000c", True).is_release_role
    assert allows_release(["Microsoft.KeyVault/vaults/*"])
    assert allows_release(["*"])
    assert not allows_release(["*"], ["Microsoft.KeyVault/vaults/keys/release/action"])
    assert not allows_release(["Microsoft.KeyVault/vaults/keys/read",
                               "Microsoft.KeyVault/vaults/keys/unwrap/action"])
