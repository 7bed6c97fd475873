"""data.bicep: each party's own storage for its sealed data file — Entra-only, private,
firewalled to the VM subnet and the owner's ranges, read grants at container scope for exactly
the parties that may release the owner's key."""

from __future__ import annotations

import pytest
import yaml

from cotenant.bicep_params import check_parameters, declared_parameters
from cotenant.deployments import DeploymentInputError, module_parameters, module_path
from cotenant.plan import Plan, build_plan
from cotenant.spec import parse_spec
from tests.bicep.conftest import PRINCIPALS, REFERENCE_SPEC, evaluated
from tests.bicep.template import Call, Ref, Template

BLOB_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
BLOB_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c989"
UPLOADER = "7c1e2d3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
# Roles that would give a reader more than reading one container's blobs.
TOO_BROAD = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",  # Storage Blob Data Owner
    "17d1049b-9a84-46fb-8f53-869881c3d3ab",  # Storage Account Contributor
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",  # Owner
    "b24988ac-6180-42a0-ab88-20f7382dd24c",  # Contributor
}


def _plan_with_uploads() -> Plan:
    data = yaml.safe_load(REFERENCE_SPEC.read_text(encoding="utf-8"))
    data["parties"][0]["data_uploaders"] = [UPLOADER.upper()]
    data["parties"][0]["data_allowed_ip_ranges"] = ["20.61.7.9", "20.61.8.0/31", "52.12.0.0/28"]
    return build_plan(parse_spec(data))


@pytest.fixture(scope="module")
def upload_plan() -> Plan:
    return _plan_with_uploads()


def _assignments(template: Template) -> list[tuple[str, str, str, str | None]]:
    """(scope, role id, principal, principal type) of every role assignment."""
    found = []
    for a in template.of_type("Microsoft.Authorization/roleAssignments"):
        role = a.properties["roleDefinitionId"]
        assert role.name == "subscription_resource_id"
        assert role.args["resource_type"] == "Microsoft.Authorization/roleDefinitions"
        found.append((str(a.body["scope"]), role.args["resource_name_1"],
                      str(a.properties["principalId"]), a.properties.get("principalType")))
    return found


def test_account_is_entra_only_private_and_tls12(plan):
    template = evaluated(plan, "data")
    (storage,) = template.of_type("Microsoft.Storage/storageAccounts")
    assert storage.body["name"] == plan.party("contoso").storage_account_name
    assert storage.body["kind"] == "StorageV2"
    assert storage.body["sku"]["name"] in ("Standard_LRS", "Standard_ZRS")
    props = storage.properties
    assert props["allowSharedKeyAccess"] is False  # no account keys, no SAS
    assert props["defaultToOAuthAuthentication"] is True
    assert props["allowBlobPublicAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["supportsHttpsTrafficOnly"] is True
    assert props["allowCrossTenantReplication"] is False
    assert props["allowedCopyScope"] == "AAD"
    assert props["isLocalUserEnabled"] is False and props["isSftpEnabled"] is False


def test_firewall_denies_all_but_the_vm_subnet_and_the_owner_ranges(upload_plan):
    template = evaluated(upload_plan, "data", party="contoso")
    (storage,) = template.of_type("Microsoft.Storage/storageAccounts")
    acls = storage.properties["networkAcls"]
    assert acls["defaultAction"] == "Deny"
    # storage ip rules take no /31 or /32: single hosts are bare addresses
    assert acls["ipRules"] == [{"action": "Allow", "value": v} for v in (
        "20.61.7.9", "20.61.8.0", "20.61.8.1", "52.12.0.0/28")]
    (rule,) = acls["virtualNetworkRules"]
    assert rule["action"] == "Allow"
    assert rule["id"].name == "resource_id"
    assert rule["id"].args["resource_type"] == "Microsoft.Network/virtualNetworks/subnets"
    assert rule["id"].args["resource_name_1"] == upload_plan.network.vnet_name
    assert rule["id"].args["resource_name_2"] == upload_plan.network.vm_subnet.name


def test_no_owner_ranges_means_only_the_vm_subnet(plan):
    (storage,) = evaluated(plan, "data", party="fabrikam").of_type(
        "Microsoft.Storage/storageAccounts")
    assert storage.properties["networkAcls"]["ipRules"] == []


def test_container_is_private_and_blobs_are_recoverable(plan):
    template = evaluated(plan, "data")
    (container,) = template.of_type("Microsoft.Storage/storageAccounts/blobServices/containers")
    assert container.body["name"] == plan.party("contoso").data_container == "contoso-data"
    assert container.properties["publicAccess"] == "None"
    (blobs,) = template.of_type("Microsoft.Storage/storageAccounts/blobServices")
    assert blobs.properties["isVersioningEnabled"] is True
    assert blobs.properties["deleteRetentionPolicy"] == {"enabled": True, "days": 7}
    assert blobs.properties["containerDeleteRetentionPolicy"] == {"enabled": True, "days": 7}


def test_versions_of_replaced_uploads_expire(plan):
    """Versioning keeps every earlier upload: a lifecycle rule deletes them 30 days after
    they were replaced (the current file is untouched), in this party's container only."""
    template = evaluated(plan, "data")
    (policy,) = template.of_type("Microsoft.Storage/storageAccounts/managementPolicies")
    assert policy.body["name"] == "default"
    (rule,) = policy.properties["policy"]["rules"]
    assert rule["enabled"] is True and rule["type"] == "Lifecycle"
    assert rule["definition"]["filters"] == {
        "blobTypes": ["blockBlob"], "prefixMatch": [f"{plan.party('contoso').data_container}/"]}
    assert rule["definition"]["actions"] == {
        "version": {"delete": {"daysAfterCreationGreaterThan": 30}}}


@pytest.mark.parametrize(("owner", "readers"), [
    ("contoso", ["woodgrove"]), ("fabrikam", ["woodgrove"]), ("woodgrove", []),
])
def test_exactly_the_parties_that_may_release_the_key_read_the_container(plan, owner, readers):
    assert set(readers) == set(plan.party(owner).releasable_by) - {owner}
    found = _assignments(evaluated(plan, "data", party=owner))
    assert found == [("container", BLOB_READER, PRINCIPALS[r], "ServicePrincipal")
                     for r in readers]


def test_uploaders_may_write_the_container_only(upload_plan):
    template = evaluated(upload_plan, "data", party="contoso")
    assert sorted(_assignments(template)) == sorted([
        ("container", BLOB_READER, PRINCIPALS["woodgrove"], "ServicePrincipal"),
        ("container", BLOB_CONTRIBUTOR, UPLOADER, "ServicePrincipal"),
    ])
    for a in template.of_type("Microsoft.Authorization/roleAssignments"):
        name = a.body["name"]  # stable and unique per container, principal and role
        assert isinstance(name, Call) and name.name == "guid"
        assert list(name.args.values()) == [
            Ref("container.id"), a.properties["principalId"],
            a.properties["roleDefinitionId"].args["resource_name_1"]]
        assert a.properties["roleDefinitionId"].args["resource_name_1"] not in TOO_BROAD


def test_outputs_name_the_account_endpoint_and_container(plan):
    outputs = evaluated(plan, "data").outputs
    assert outputs == {"storageAccountId": Ref("storage.id"),
                       "blobEndpoint": Ref("storage.properties.primaryEndpoints.blob"),
                       "containerName": Ref("container.name")}


def test_every_party_gets_valid_parameters(upload_plan):
    declared = declared_parameters(module_path("data"))
    for party in ("contoso", "fabrikam", "woodgrove"):
        params = module_parameters(upload_plan, "data", party, principal_ids=PRINCIPALS)
        assert check_parameters(declared, params) == []
        assert params["containerName"] == f"{party}-data"
        assert params["storageAccountName"] == upload_plan.party(party).storage_account_name


def test_reader_principal_ids_are_required_and_checked(plan):
    with pytest.raises(DeploymentInputError, match="principal_ids is required"):
        module_parameters(plan, "data", "contoso")
    with pytest.raises(DeploymentInputError, match="no principal id for reader 'woodgrove'"):
        module_parameters(plan, "data", "contoso", principal_ids={"contoso": PRINCIPALS["contoso"]})
    with pytest.raises(DeploymentInputError, match="not a GUID"):
        module_parameters(plan, "data", "contoso", principal_ids={"woodgrove": "woodgrove"})
    with pytest.raises(DeploymentInputError, match="takes no input 'allowed_ip_ranges'"):
        module_parameters(plan, "data", "contoso", principal_ids=PRINCIPALS,
                          allowed_ip_ranges=["20.1.1.1"])


def test_principals_outside_the_access_matrix_are_not_granted(plan):
    extra = {**PRINCIPALS, "mallory": "44444444-4444-4444-8444-444444444444"}
    params = module_parameters(plan, "data", "contoso", principal_ids=extra)
    assert params["readerPrincipalIds"] == [PRINCIPALS["woodgrove"]]
    assert params["uploaderPrincipalIds"] == []
