"""bicep/control-plane: Flex Consumption (Python 3.11), keyless storage and telemetry, and the
control plane identity's least-privilege, constrained grants."""

from __future__ import annotations

import re

import pytest
import yaml

from cotenant.cloud.base import CloudError
from cotenant.cloud.settings import operator
from cotenant.deployments import module_parameters
from cotenant.plan import (
    ENCRYPTION_ROLE_ID,
    KEY_OPERATOR_DATA_ACTIONS,
    OFFICER_ROLE_ID,
    RELEASE_ROLE_ID,
)
from tests.bicep.conftest import OPERATOR_ID, ORCHESTRATOR_ID, REPO, inputs_for
from tests.bicep.template import Ref, Template

CONTROL_PLANE = REPO / "bicep" / "control-plane"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
USER_ACCESS_ADMIN = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
QUEUE_SENDER = "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a"
QUEUE_PROCESSOR = "8a0f0c08-91a1-4084-bc3d-661d67233fed"
BLOB_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
BLOB_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c989"
KEY_OPERATOR_ROLE_ID = "0d6f2b9e-4a31-4c8e-b7f5-2e9a1c3d5f70"
# Data actions that use a key's private half (or inject/extract material): the operator must
# hold none of them, on any vault.
KEY_USE_ACTIONS = ("release", "decrypt", "unwrap", "sign", "import", "export", "backup",
                   "restore", "purge")


@pytest.fixture(scope="module")
def resources() -> Template:
    return Template(CONTROL_PLANE / "resources.bicep", {
        "location": "northeurope", "token": "abc123def4567",
        "tags": {"azd-env-name": "dev"}, "cvmOrchestratorObjectId": ORCHESTRATOR_ID,
        "keyOperatorRoleId": KEY_OPERATOR_ROLE_ID,
    })


@pytest.fixture(scope="module")
def main() -> Template:
    return Template(CONTROL_PLANE / "main.bicep", {
        "environmentName": "dev", "location": "northeurope",
        "cvmOrchestratorObjectId": ORCHESTRATOR_ID,
    })


def _settings(resources: Template) -> dict[str, object]:
    (site,) = resources.of_type("Microsoft.Web/sites")
    return {s["name"]: s["value"] for s in site.properties["siteConfig"]["appSettings"]}


def test_flex_consumption_plan_runs_python_3_11(resources):
    (plan,) = resources.of_type("Microsoft.Web/serverfarms")
    assert plan.body["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan.properties["reserved"] is True
    (site,) = resources.of_type("Microsoft.Web/sites")
    config = site.properties["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    deployment = config["deployment"]["storage"]["authentication"]
    assert deployment == {"type": "UserAssignedIdentity",
                          "userAssignedIdentityResourceId": Ref("identity.id")}
    assert site.properties["httpsOnly"] is True
    assert site.properties["siteConfig"]["minTlsVersion"] == "1.2"
    assert site.body["tags"].name == "union"  # adds azd-service-name for `azd deploy`
    assert site.body["tags"].args["arg_2"] == {"azd-service-name": "api"}


def test_storage_has_shared_key_access_disabled(resources):
    (storage,) = resources.of_type("Microsoft.Storage/storageAccounts")
    props = storage.properties
    assert props["allowSharedKeyAccess"] is False
    assert props["defaultToOAuthAuthentication"] is True
    assert props["allowBlobPublicAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"


def test_host_storage_is_identity_based(resources):
    settings = _settings(resources)
    assert "AzureWebJobsStorage" not in settings  # no connection string
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == Ref("identity.properties.clientId")
    for service in ("blob", "queue", "table"):
        assert settings[f"AzureWebJobsStorage__{service}ServiceUri"] == Ref(
            f"storage.properties.primaryEndpoints.{service}")
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == (
        "ClientId=identity.properties.clientId;Authorization=AAD")
    assert settings["COTENANT_CLOUD"] == "azure"
    assert settings["COTENANT_STORAGE_ACCOUNT"] == Ref("storage.name")
    assert settings["COTENANT_CVM_ORCHESTRATOR_OBJECT_ID"] == ORCHESTRATOR_ID
    assert settings["COTENANT_ALLOWED_IP_RANGES"] == Ref("egressIp.properties.ipAddress")
    for name, value in settings.items():
        assert not re.search(r"AccountKey=|SharedAccessSignature|InstrumentationKey=",
                             str(value)), name


def test_guest_reports_queue_and_audit_table_exist(resources):
    queues = [q.body["name"] for q in resources.of_type(
        "Microsoft.Storage/storageAccounts/queueServices/queues")]
    tables = [t.body["name"] for t in resources.of_type(
        "Microsoft.Storage/storageAccounts/tableServices/tables")]
    assert queues == ["guest-reports"]
    assert tables == ["cotenantaudit"]


def test_app_insights_and_workspace_disable_local_auth(resources):
    (insights,) = resources.of_type("Microsoft.Insights/components")
    assert insights.properties["DisableLocalAuth"] is True
    assert insights.properties["WorkspaceResourceId"] == Ref("workspace.id")
    (workspace,) = resources.of_type("Microsoft.OperationalInsights/workspaces")
    assert workspace.properties["features"]["disableLocalAuth"] is True


def test_the_app_leaves_through_one_static_nat_address(resources):
    (site,) = resources.of_type("Microsoft.Web/sites")
    assert site.properties["virtualNetworkSubnetId"] == "vnet.id/subnets/functions"
    (vnet,) = resources.of_type("Microsoft.Network/virtualNetworks")
    (subnet,) = vnet.properties["subnets"]
    assert subnet["properties"]["natGateway"]["id"] == Ref("natGateway.id")
    assert subnet["properties"]["defaultOutboundAccess"] is False
    assert subnet["properties"]["delegations"][0]["properties"]["serviceName"] == (
        "Microsoft.App/environments")


def test_the_identity_gets_only_data_roles_on_its_own_storage_and_telemetry(resources):
    found = {
        (a.body["scope"].path, a.properties["roleDefinitionId"].args["resource_name_1"])
        for a in resources.of_type("Microsoft.Authorization/roleAssignments")
    }
    assert found == {
        ("storage", "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"),  # Storage Blob Data Owner
        ("storage", "974c5e8b-45b9-4653-ba55-5f855dd0fb88"),  # Storage Queue Data Contributor
        ("storage", "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"),  # Storage Table Data Contributor
        ("appInsights", "3913510d-42f4-4e42-8a64-420c390055eb"),  # Monitoring Metrics Publisher
    }


def test_role_assignment_rights_are_constrained_to_the_tenant_roles(main):
    (delegation,) = [a for a in main.of_type("Microsoft.Authorization/roleAssignments")
                     if a.symbol == "delegatedGrants"]
    props = delegation.properties
    assert props["roleDefinitionId"].args["resource_name_1"] == (
        "f58310d9-a9f6-439a-9e8d-f62e7b41a168")  # Role Based Access Control Administrator
    assert props["conditionVersion"] == "2.0"
    condition = props["condition"]
    depth = 0
    for char in condition:  # balanced parentheses
        depth += {"(": 1, ")": -1}.get(char, 0)
        assert depth >= 0
    assert depth == 0
    write_clause, delete_clause = condition.split(") AND ((")
    builtin = {ENCRYPTION_ROLE_ID, RELEASE_ROLE_ID, QUEUE_SENDER, QUEUE_PROCESSOR, BLOB_READER,
               BLOB_CONTRIBUTOR}
    assert _guids(delete_clause) == builtin  # plus the key operator role (a guid() call)
    assert "cotenant-key-operator" in delete_clause
    assert main.vars["delegableRoles"][0] == main.one("keyOperator").body["name"]
    # write: service principals only, for both branches below
    assert "roleAssignments/write" in write_clause and "roleAssignments/delete" in delete_clause
    assert ("(@Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:"
            "StringEqualsIgnoreCase {\\'ServicePrincipal\\'} AND ((") in write_clause
    others, to_self = write_clause.split(
        ") OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId]")
    self_id = props["principalId"]
    assert self_id == Ref("controlPlane.outputs.identityPrincipalId")
    # the tenant grant roles (release included) to anyone but the control plane itself ...
    assert _guids(others) == builtin
    assert "cotenant-key-operator" not in others
    assert others.endswith("@Request[Microsoft.Authorization/roleAssignments:PrincipalId] "
                           f"ForAnyOfAllValues:GuidNotEquals {{{self_id}}}")
    # ... and to itself only the key operator role, which cannot release
    assert _guids(to_self) == set()
    assert to_self.startswith(" ForAnyOfAnyValues:GuidEquals {guid(subscription().id, "
                              "cotenant-key-operator, dev)} AND ")
    assert to_self.endswith("@Request[Microsoft.Authorization/roleAssignments:PrincipalId] "
                            f"ForAnyOfAnyValues:GuidEquals {{{self_id}}})))")
    for clause in (write_clause, delete_clause):
        assert not _guids(clause) & {OWNER, CONTRIBUTOR, USER_ACCESS_ADMIN, OFFICER_ROLE_ID}


def _guids(text: str) -> set[str]:
    return set(re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text))


def test_the_deployer_role_has_no_data_actions_and_no_authorization_writes(main):
    role = main.one("tenantDeployer")
    (permissions,) = role.properties["permissions"]
    actions = permissions["actions"]
    assert permissions["dataActions"] == []
    assert "*" not in actions
    assert not [a for a in actions if a.startswith("Microsoft.Authorization/")
                and not a.endswith("/read")]
    assert role.properties["assignableScopes"] == [Ref("subscription().id")]
    providers = {a.split("/")[0] for a in actions}
    assert providers == {"Microsoft.Resources", "Microsoft.Network", "Microsoft.Compute",
                         "Microsoft.KeyVault", "Microsoft.ManagedIdentity",
                         "Microsoft.Storage", "Microsoft.Authorization"}
    # the parties' data accounts are Entra-only: the deployer can read no key and make no SAS
    assert {a.lower() for a in permissions["notActions"]} == {
        f"microsoft.storage/storageaccounts/{action}/action"
        for action in ("listkeys", "regeneratekey", "listaccountsas", "listservicesas")}


def test_azure_yaml_points_azd_at_the_control_plane():
    config = yaml.safe_load((REPO / "azure.yaml").read_text(encoding="utf-8"))
    assert config["infra"] == {"provider": "bicep", "path": "bicep/control-plane",
                               "module": "main"}
    assert config["services"]["api"]["host"] == "function"
    assert config["services"]["api"]["language"] == "python"


def test_key_operator_role_manages_keys_but_cannot_use_them(main):
    role = main.one("keyOperator")
    assert role.body["name"] == main.vars["keyOperatorRoleId"]
    assert role.properties["type"] == "CustomRole"
    assert role.properties["assignableScopes"] == [Ref("subscription().id")]
    (permissions,) = role.properties["permissions"]
    assert permissions["actions"] == [] and permissions["notActions"] == []
    data_actions = permissions["dataActions"]
    assert data_actions == list(KEY_OPERATOR_DATA_ACTIONS)  # what the lab enforces
    assert not [a for a in data_actions if "*" in a]
    for action in data_actions:
        assert not any(f"/{word}" in action.lower() for word in KEY_USE_ACTIONS), action
    for needed in ("keys/create/action", "keys/rotate/action", "keys/update/action",
                   "keyrotationpolicies/write"):
        assert f"Microsoft.KeyVault/vaults/{needed}" in data_actions


def test_key_operator_role_id_reaches_every_party_vault(main, resources, plan):
    # main.bicep -> resources.bicep param -> function app setting -> OperatorSettings ->
    # module_parameters -> party.bicep's vault-scope assignment
    assert main.raw["modules"]["controlPlane"]["config"]["params"]["keyOperatorRoleId"] == (
        "keyOperatorRoleId")
    assert main.outputs["COTENANT_OPERATOR_ROLE_DEFINITION_ID"] == Ref("keyOperator.name")
    settings = _settings(resources)
    assert settings["COTENANT_OPERATOR_ROLE_DEFINITION_ID"] == KEY_OPERATOR_ROLE_ID
    env = {"COTENANT_OPERATOR_PRINCIPAL_ID": OPERATOR_ID,
           "COTENANT_OPERATOR_ROLE_DEFINITION_ID": KEY_OPERATOR_ROLE_ID,
           "COTENANT_CVM_ORCHESTRATOR_OBJECT_ID": ORCHESTRATOR_ID}
    inputs = {**inputs_for("party"), **operator(env).party_inputs()}
    params = module_parameters(plan, "party", "contoso", **inputs)
    party = Template(REPO / "bicep" / "tenant" / "party.bicep", params)
    (assignment,) = [a for a in party.of_type("Microsoft.Authorization/roleAssignments")
                     if a.body["scope"].path == "vault"]
    assert assignment.properties["roleDefinitionId"].args["resource_name_1"] == (
        KEY_OPERATOR_ROLE_ID)
    assert assignment.properties["principalId"] == OPERATOR_ID


def test_azure_settings_refuse_a_missing_key_operator_role():
    env = {"COTENANT_OPERATOR_PRINCIPAL_ID": OPERATOR_ID,
           "COTENANT_CVM_ORCHESTRATOR_OBJECT_ID": ORCHESTRATOR_ID}
    with pytest.raises(CloudError, match="COTENANT_OPERATOR_ROLE_DEFINITION_ID"):
        operator(env)
