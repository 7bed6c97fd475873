"""The azure backend sends the right Azure REST requests (recorded at the HTTP edge)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cotenant.cloud.azure import AzureCloud
from cotenant.cloud.base import (
    CloudError,
    DeploymentState,
    OperatorSettings,
    ResourceGroupState,
)
from cotenant.cloud.queues import QueueCommands
from tests.control_plane.recording_transport import RecordingAdapter, StaticCredential

SUB = "00000000-0000-0000-0000-000000000001"
OPERATOR = "00000000-0000-0000-0000-0000000000aa"
POLICY = {"version": "1.0.0", "anyOf": [{
    "authority": "https://sharedneu.neu.attest.azure.net",
    "allOf": [{"claim": "x-ms-isolation-tee.x-ms-attestation-type", "equals": "sevsnpvm"}]}]}
SENT_XML = ("<?xml version=\"1.0\" encoding=\"utf-8\"?><QueueMessagesList><QueueMessage>"
            "<MessageId>m1</MessageId><InsertionTime>Fri, 27 Nov 2026 14:00:00 GMT</InsertionTime>"
            "<ExpirationTime>Fri, 04 Dec 2026 14:00:00 GMT</ExpirationTime>"
            "<PopReceipt>r</PopReceipt>"
            "<TimeNextVisible>Fri, 27 Nov 2026 14:00:00 GMT</TimeNextVisible></QueueMessage>"
            "</QueueMessagesList>")


@pytest.fixture
def transport() -> RecordingAdapter:
    return RecordingAdapter()


@pytest.fixture
def cloud(transport: RecordingAdapter, tmp_path: Path) -> AzureCloud:
    (tmp_path / "party.json").write_text(json.dumps({
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0", "parameters": {"vaultName": {"type": "string"}},
        "resources": []}))
    options = {"transport": transport.transport(), "retry_total": 0}
    queues = QueueCommands.from_account_url("https://acct.queue.core.windows.net",
                                            StaticCredential(), **options)
    operator = OperatorSettings(principal_id=OPERATOR, cvm_orchestrator_object_id=OPERATOR)
    return AzureCloud(subscription_id=SUB, credential=StaticCredential(), queues=queues,
                      operator=operator, templates_dir=tmp_path, **options)


def _deployment_body(state: str, error: dict | None = None) -> dict:
    props: dict = {"provisioningState": state, "outputs": {"vaultUri": {"type": "String",
                                                                        "value": "https://v/"}}}
    if error:
        props["error"] = error
    return {"id": "x", "name": "party-contoso", "properties": props,
            "tags": {"cotenant-module": "party"}}


def test_start_deployment_puts_compiled_template_with_arm_parameters(cloud, transport):
    transport.on("PUT", r"/deployments/party-contoso\?", (201, _deployment_body("Accepted")))
    dep = cloud.start_deployment("rg-demo", "party-contoso", "party",
                                 {"vaultName": "kv-contoso", "bootstrap": "s3cret"})
    assert dep.state is DeploymentState.RUNNING
    (put,) = transport.sent("PUT", r"/deployments/")
    assert put.url.startswith(f"https://management.azure.com/subscriptions/{SUB}/resourcegroups/"
                              "rg-demo/providers/Microsoft.Resources/deployments/party-contoso")
    body = put.json()
    assert body["properties"]["mode"] == "Incremental"
    assert body["properties"]["template"]["parameters"] == {"vaultName": {"type": "string"}}
    assert body["properties"]["parameters"]["vaultName"] == {"value": "kv-contoso"}
    assert put.headers["Authorization"] == "Bearer test-access-token"


def test_start_deployment_is_idempotent_while_running(cloud, transport):
    transport.on("GET", r"/deployments/party-contoso\?", (200, _deployment_body("Running")))
    dep = cloud.start_deployment("rg-demo", "party-contoso", "party", {"vaultName": "kv"})
    assert dep.state is DeploymentState.RUNNING
    assert transport.sent("PUT", r"/deployments/") == []


def test_missing_compiled_template_fails_clearly(cloud):
    with pytest.raises(CloudError, match=r"gateway.json is missing: run `bicep build"):
        cloud.start_deployment("rg-demo", "gateway", "gateway", {})


def test_failed_deployment_reports_innermost_error_and_retryability(cloud, transport):
    error = {"code": "DeploymentFailed", "message": "At least one resource failed",
             "details": [{"code": "AllocationFailed", "message": "no DCasv5 capacity"}]}
    transport.on("GET", r"/deployments/cvm-contoso\?", (200, _deployment_body("Failed", error)))
    dep = cloud.get_deployment("rg-demo", "cvm-contoso")
    assert dep.state is DeploymentState.FAILED
    assert (dep.error_code, dep.error) == ("AllocationFailed", "no DCasv5 capacity")
    assert dep.retryable
    assert dep.outputs == {"vaultUri": "https://v/"}
    assert dep.module == "party"


def test_resource_group_lifecycle(cloud, transport):
    transport.on("PUT", r"/resourcegroups/rg-demo\?", (201, {"name": "rg-demo",
                                                             "location": "northeurope"}))
    cloud.ensure_resource_group("rg-demo", "northeurope", {"cotenant-tenant": "demo"})
    (put,) = transport.sent("PUT", r"/resourcegroups/rg-demo")
    assert put.json() == {"location": "northeurope", "tags": {"cotenant-tenant": "demo"}}
    assert cloud.resource_group_state("rg-gone") is ResourceGroupState.NOT_FOUND
    transport.on("GET", r"/resourcegroups/rg-demo\?", (200, {
        "name": "rg-demo", "location": "northeurope",
        "properties": {"provisioningState": "Succeeded"}}))
    transport.on("DELETE", r"/resourcegroups/rg-demo\?", (202, None))
    assert cloud.begin_delete_resource_group("rg-demo") is ResourceGroupState.DELETING
    assert len(transport.sent("DELETE", r"/resourcegroups/rg-demo")) == 1


def test_transient_http_status_is_marked_transient(cloud, transport):
    transport.on("PUT", r"/resourcegroups/rg-demo\?", (503, {"error": {
        "code": "ServiceUnavailable", "message": "try later"}}))
    with pytest.raises(CloudError) as info:
        cloud.ensure_resource_group("rg-demo", "northeurope", {})
    assert info.value.transient and "try later" in str(info.value)


def _key_body(version: str, policy: dict | None = POLICY) -> dict:
    body = {"key": {"kid": f"https://kv-contoso.vault.azure.net/keys/contoso-secret-key/{version}",
                    "kty": "RSA-HSM", "n": "AQAB", "e": "AQAB"},
            "attributes": {"enabled": True, "exportable": True}}
    if policy is not None:
        data = base64.urlsafe_b64encode(json.dumps(policy).encode()).rstrip(b"=").decode()
        body["release_policy"] = {"contentType": "application/json; charset=utf-8",
                                  "data": data, "immutable": False}
    return body


def test_ensure_key_creates_exportable_hsm_key_with_release_policy(cloud, transport):
    transport.on("POST", r"/keys/contoso-secret-key/create", (200, _key_body("v1")))
    key = cloud.ensure_key("kv-contoso", "contoso-secret-key", release_policy=POLICY)
    (create,) = transport.sent("POST", r"/keys/contoso-secret-key/create")
    assert create.url.startswith("https://kv-contoso.vault.azure.net/keys/")
    body = create.json()
    assert body["kty"] == "RSA-HSM" and body["key_size"] == 2048
    assert body["attributes"]["exportable"] is True
    # Key Vault itself may never decrypt or unwrap with an app key: public operations only.
    assert sorted(body["key_ops"]) == ["encrypt", "wrapKey"]
    sent_policy = base64.urlsafe_b64decode(body["release_policy"]["data"] + "==")
    assert json.loads(sent_policy) == POLICY
    assert key.version == "v1" and key.release_policy == POLICY and key.exportable


def test_ensure_key_keeps_an_existing_key(cloud, transport):
    transport.on("GET", r"/keys/contoso-secret-key/\?", (200, _key_body("v1")))
    key = cloud.ensure_key("kv-contoso", "contoso-secret-key", release_policy=POLICY)
    assert key.version == "v1"
    assert transport.sent("POST", r"/create") == []


def test_ensure_key_reapplies_a_missing_release_policy(cloud, transport):
    transport.on("GET", r"/keys/contoso-secret-key/\?", (200, _key_body("v1", policy=None)))
    transport.on("PATCH", r"/keys/contoso-secret-key/\?", (200, _key_body("v1")))
    key = cloud.ensure_key("kv-contoso", "contoso-secret-key", release_policy=POLICY)
    (patch,) = transport.sent("PATCH", r"/keys/contoso-secret-key")
    assert "release_policy" in patch.json()
    assert key.release_policy == POLICY


def test_new_key_version_does_nothing_when_already_rotated(cloud, transport):
    transport.on("GET", r"/keys/contoso-secret-key/\?", (200, _key_body("v2")))
    key = cloud.new_key_version("kv-contoso", "contoso-secret-key", release_policy=POLICY,
                                after_version="v1")
    assert key.version == "v2"
    assert transport.sent("POST", r"/create") == []
    transport.on("POST", r"/keys/contoso-secret-key/create", (200, _key_body("v3")))
    assert cloud.new_key_version("kv-contoso", "contoso-secret-key", release_policy=POLICY,
                                 after_version="v2").version == "v3"


def test_key_grants_are_read_at_the_key_scope(cloud, transport):
    scope = (f"/subscriptions/{SUB}/resourceGroups/rg-demo/providers/Microsoft.KeyVault/vaults/"
             "kv-contoso/keys/contoso-secret-key")
    transport.on("GET", r"/roleAssignments\?", (200, {"value": [{
        "id": f"{scope}/providers/Microsoft.Authorization/roleAssignments/a1", "name": "a1",
        "properties": {"scope": scope, "principalId": "p-woodgrove", "roleDefinitionId":
                       f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/"
                       "08bbd89e-9f13-488c-ac41-acfcb10c90ab"}}]}))
    grants = cloud.list_key_grants("rg-demo", "kv-contoso", "contoso-secret-key")
    (sent,) = transport.sent("GET", r"/roleAssignments")
    assert "/vaults/kv-contoso/keys/contoso-secret-key/providers/" in sent.url
    assert "atScope" in sent.url
    assert [(g.principal_id, g.is_release_role) for g in grants] == [("p-woodgrove", True)]


def _assignment(scope: str, principal: str, role_id: str) -> dict:
    return {"id": f"{scope}/providers/Microsoft.Authorization/roleAssignments/{principal}",
            "name": principal, "properties": {
                "scope": scope, "principalId": principal, "roleDefinitionId":
                f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{role_id}"}}


def _role_definition(role_id: str, data_actions: list[str],
                     not_data_actions: list[str] | None = None) -> dict:
    return {"id": f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/"
                  f"{role_id}", "name": role_id,
            "type": "Microsoft.Authorization/roleDefinitions",
            "properties": {"roleName": role_id, "type": "CustomRole", "permissions": [{
                "actions": ["*"], "notActions": [], "dataActions": data_actions,
                "notDataActions": not_data_actions or []}]}}


def test_inherited_and_custom_release_capable_grants_count_as_release(cloud, transport):
    rg = f"/subscriptions/{SUB}/resourceGroups/rg-demo"
    vault = f"{rg}/providers/Microsoft.KeyVault/vaults/kv-contoso"
    custom, no_release, owner = ("c0000000-0000-0000-0000-00000000000c",
                                 "d0000000-0000-0000-0000-00000000000d",
                                 "8e3af657-a8ff-443c-a75c-2fe8c4bcb635")
    transport.on("GET", r"/roleAssignments\?", (200, {"value": [
        _assignment(f"{vault}/keys/contoso-secret-key", "p-woodgrove",
                    "08bbd89e-9f13-488c-ac41-acfcb10c90ab"),  # Crypto Service Release User
        _assignment(vault, "p-fabrikam", "14b46e9e-c2b7-41b4-b07b-48a6ebf60603"),  # Officer
        _assignment(rg, "p-custom", custom),
        _assignment(rg, "p-no-release", no_release),
        _assignment(f"/subscriptions/{SUB}", "p-owner", owner),
    ]}))
    transport.on("GET", rf"/roleDefinitions/{custom}\?", (200, _role_definition(
        custom, ["Microsoft.KeyVault/vaults/keys/*"])))
    transport.on("GET", rf"/roleDefinitions/{no_release}\?", (200, _role_definition(
        no_release, ["Microsoft.KeyVault/vaults/keys/*"],
        ["Microsoft.KeyVault/vaults/keys/release/action"])))
    transport.on("GET", rf"/roleDefinitions/{owner}\?", (200, _role_definition(owner, [])))
    for _ in range(2):
        grants = cloud.list_key_grants("rg-demo", "kv-contoso", "contoso-secret-key")
        assert {g.principal_id for g in grants if g.is_release_role} == {
            "p-woodgrove", "p-fabrikam", "p-custom"}
    # each role definition other than the built-in release-capable ones is read once
    assert len(transport.sent("GET", r"/roleDefinitions/")) == 3
    assert transport.sent("GET", r"/roleDefinitions/08bbd89e|/roleDefinitions/14b46e9e") == []


def test_purge_vault_posts_to_deleted_vaults(cloud, transport):
    transport.on("POST", r"/deletedVaults/kv-contoso/purge", (202, None))
    cloud.purge_vault("kv-contoso", "northeurope")
    (sent,) = transport.sent("POST", r"/deletedVaults/")
    assert "/locations/northeurope/deletedVaults/kv-contoso/purge?api-version=" in sent.url


def test_purge_protected_vault_says_why(cloud, transport):
    transport.on("POST", r"/deletedVaults/kv-contoso/purge", (409, {"error": {
        "code": "Conflict", "message": "purge protection"}}))
    with pytest.raises(CloudError, match="purge protection"):
        cloud.purge_vault("kv-contoso", "northeurope")


def test_send_command_creates_queue_and_base64_encodes(cloud, transport):
    transport.on("PUT", r"acct.queue.core.windows.net/cmd-contoso", (201, None))
    transport.on("POST", r"acct.queue.core.windows.net/cmd-contoso/messages", (201, SENT_XML))
    cloud.send_command("cmd-contoso", {"type": "rotate", "version": "v2"})
    (post,) = transport.sent("POST", r"/cmd-contoso/messages")
    text = post.body.split("<MessageText>")[1].split("</MessageText>")[0]
    assert json.loads(base64.b64decode(text)) == {"type": "rotate", "version": "v2"}


def test_identity_is_read_through_the_generic_resource_api(cloud, transport):
    transport.on("GET", r"/userAssignedIdentities/id-demo-contoso\?", (200, {
        "id": "x", "name": "id-demo-contoso", "location": "northeurope",
        "properties": {"principalId": "p-1", "clientId": "c-1", "tenantId": "t"}}))
    identity = cloud.get_identity("rg-demo", "id-demo-contoso")
    assert (identity.principal_id, identity.client_id) == ("p-1", "c-1")
    (sent,) = transport.sent("GET", r"/userAssignedIdentities/")
    assert "api-version=2023-01-31" in sent.url


def test_identities_are_read_one_by_one(cloud, transport):
    for n in (1, 2):
        transport.on("GET", rf"/userAssignedIdentities/id-demo-p{n}\?", (200, {
            "id": "x", "name": f"id-demo-p{n}", "location": "northeurope",
            "properties": {"principalId": f"p-{n}", "clientId": f"c-{n}", "tenantId": "t"}}))
    found = cloud.get_identities("rg-demo", ["id-demo-p1", "id-demo-p2"])
    assert {k: v.principal_id for k, v in found.items()} == {"id-demo-p1": "p-1",
                                                              "id-demo-p2": "p-2"}
    assert len(transport.sent("GET", r"/userAssignedIdentities/")) == 2


def test_vm_security_profile_is_read_from_compute(cloud, transport):
    transport.on("GET", r"/virtualMachines/vm-demo-contoso\?", (200, {
        "id": "x", "name": "vm-demo-contoso", "location": "northeurope",
        "identity": {"type": "UserAssigned", "userAssignedIdentities": {
            "/subscriptions/s/rg/id-demo-contoso": {"principalId": "p-1", "clientId": "c-1"}}},
        "properties": {"provisioningState": "Succeeded",
                       "vmId": "3c1a2b4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
                       "securityProfile": {"securityType": "ConfidentialVM"}}}))
    vm = cloud.get_vm("rg-demo", "vm-demo-contoso")
    assert (vm.security_type, vm.provisioning_state) == ("ConfidentialVM", "Succeeded")
    assert vm.vm_unique_id == "3c1a2b4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
    assert vm.principal_ids == ["p-1"]


def test_secure_parameters_never_appear_in_errors(cloud, transport):
    transport.on("PUT", r"/deployments/cvm\?", (400, {"error": {
        "code": "InvalidTemplateDeployment", "message": "The template deployment is not valid"}}))
    (cloud._templates_dir / "cvm.json").write_text(json.dumps({"parameters": {}}))
    with pytest.raises(CloudError) as info:
        cloud.start_deployment("rg-demo", "cvm", "cvm", {"adminPasswordOrKey": "S3cret!pass"})
    assert not info.value.transient
    assert "S3cret" not in str(info.value) and "InvalidTemplateDeployment" in str(info.value)


@pytest.mark.parametrize(("backend", "loaded", "absent"), [
    ("azure", "cotenant.cloud.azure", "cotenant.lab"),
    ("lab", "cotenant.cloud.lab", "cotenant.cloud.azure"),
])
def test_the_function_app_imports_only_its_configured_backend(backend, loaded, absent):
    """Loading the activities imports the configured backend (a first activity does not pay
    for it) and never the other one (the azure configuration never loads the lab)."""
    code = ("import sys, activities; "
            f"print({loaded!r} in sys.modules, any(m.startswith({absent!r}) for m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[2], timeout=120,
                            env={"PATH": "/usr/bin:/bin", "COTENANT_CLOUD": backend})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["True", "False"]
