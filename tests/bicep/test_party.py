"""party.bicep: vault hardening, the confidential disk key and DES, grants at key scope."""

from __future__ import annotations

import json

from cotenant.plan import ENCRYPTION_ROLE_ID, OFFICER_ROLE_ID, RELEASE_ROLE_ID
from tests.bicep.conftest import KEY_OPERATOR_ROLE_ID, OPERATOR_ID, ORCHESTRATOR_ID, evaluated
from tests.bicep.template import Ref

# Roles that would let Key Vault decrypt/unwrap/sign for a principal without any attestation.
FORBIDDEN_ROLE_IDS = {
    "12338af0-0e69-4776-bea7-57ae8d297424",  # Key Vault Crypto User
    "00482a5a-887f-4fb3-b363-3b7fe8e74483",  # Key Vault Administrator
    OFFICER_ROLE_ID,  # Key Vault Crypto Officer: keys/* includes release
    "f25e0fa2-a7c8-4377-a976-54943a77a395",  # Key Vault Contributor
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",  # Owner
    "b24988ac-6180-42a0-ab88-20f7382dd24c",  # Contributor
}


def _role_id(assignment) -> str:
    call = assignment.properties["roleDefinitionId"]
    assert call.name == "subscription_resource_id"
    assert call.args["resource_type"] == "Microsoft.Authorization/roleDefinitions"
    return call.args["resource_name_1"]


def test_vault_is_premium_rbac_soft_delete_purge_protected_and_firewalled(plan):
    template = evaluated(plan, "party")
    (vault,) = template.of_type("Microsoft.KeyVault/vaults")
    props = vault.properties
    assert vault.body["name"] == plan.party("contoso").vault_name
    assert props["sku"] == {"family": "A", "name": "premium"}
    assert props["enableRbacAuthorization"] is True
    assert props["enableSoftDelete"] is True
    assert props["enablePurgeProtection"] is True
    assert props["softDeleteRetentionInDays"] == 90
    assert "accessPolicies" not in props
    assert not (props["enabledForDeployment"] or props["enabledForTemplateDeployment"]
                or props["enabledForDiskEncryption"])
    acls = props["networkAcls"]
    assert acls["defaultAction"] == "Deny"
    assert acls["bypass"] == "AzureServices"
    assert acls["ipRules"] == [{"value": "20.50.1.7"}, {"value": "52.10.0.0/28"}]
    (rule,) = acls["virtualNetworkRules"]
    assert rule["id"].args["resource_name_1"] == plan.network.vnet_name
    assert rule["id"].args["resource_name_2"] == plan.network.vm_subnet.name


def test_disk_key_is_exportable_rsa_hsm_3072_with_the_plan_release_policy(plan):
    template = evaluated(plan, "party")
    (key,) = template.of_type("Microsoft.KeyVault/vaults/keys")
    props = key.properties
    assert key.body["name"] == plan.party("contoso").disk_key_name
    assert (props["kty"], props["keySize"]) == ("RSA-HSM", 3072)
    assert props["attributes"] == {"enabled": True, "exportable": True}
    assert set(props["keyOps"]) == {"wrapKey", "unwrapKey"}
    policy = props["release_policy"]
    assert policy["contentType"] == "application/json; charset=utf-8"
    encoded = policy["data"]
    assert encoded.name == "base64"
    assert encoded.args["input_string"].name == "string"
    document = encoded.args["input_string"].args["value_to_convert"]
    assert document == plan.disk_key_release_policy
    assert "sevsnpvm" in json.dumps(document)


def test_des_is_confidential_vm_encrypted_with_the_disk_key(plan):
    template = evaluated(plan, "party")
    (des,) = template.of_type("Microsoft.Compute/diskEncryptionSets")
    assert des.body["name"] == plan.party("contoso").des_name
    assert des.properties["encryptionType"] == "ConfidentialVmEncryptedWithCustomerKey"
    assert des.properties["activeKey"]["keyUrl"] == Ref("diskKey.properties.keyUriWithVersion")
    assert des.properties["activeKey"]["sourceVault"]["id"] == Ref("vault.id")
    assert des.body["identity"]["type"] == "SystemAssigned"


def test_role_assignments_are_the_three_expected_at_the_narrowest_scope(plan):
    template = evaluated(plan, "party")
    found = {
        (a.body["scope"].path, _role_id(a), str(a.properties["principalId"]))
        for a in template.of_type("Microsoft.Authorization/roleAssignments")
    }
    assert found == {
        ("diskKey", ENCRYPTION_ROLE_ID, "des.identity.principalId"),
        ("diskKey", RELEASE_ROLE_ID, ORCHESTRATOR_ID),
        ("vault", KEY_OPERATOR_ROLE_ID, OPERATOR_ID),
    }
    # the platform's disk grants are exactly what the plan says they are
    roles = {r.principal: r.role_definition_id for r in plan.party("contoso").disk_key_roles}
    assert roles == {"disk-encryption-set": ENCRYPTION_ROLE_ID,
                     "confidential-vm-orchestrator": RELEASE_ROLE_ID}


def test_no_role_that_decrypts_without_attestation(plan):
    template = evaluated(plan, "party")
    for assignment in template.of_type("Microsoft.Authorization/roleAssignments"):
        assert _role_id(assignment) not in FORBIDDEN_ROLE_IDS


def test_only_the_operator_role_is_vault_wide(plan):
    template = evaluated(plan, "party")
    vault_wide = [a for a in template.of_type("Microsoft.Authorization/roleAssignments")
                  if a.body["scope"].path == "vault"]
    assert [_role_id(a) for a in vault_wide] == [KEY_OPERATOR_ROLE_ID]
    (assignment,) = vault_wide
    assert assignment.properties["principalId"] == OPERATOR_ID


def test_identity_is_user_assigned_and_outputs_its_principal(plan):
    template = evaluated(plan, "party")
    (identity,) = template.of_type("Microsoft.ManagedIdentity/userAssignedIdentities")
    assert identity.body["name"] == plan.party("contoso").identity_name
    assert template.outputs["identityPrincipalId"] == Ref("identity.properties.principalId")
