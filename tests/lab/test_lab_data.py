"""The lab's "data" module: each party's storage account recorded, container-scoped blob roles
for exactly the parties that may release the owner's key, the container made in Azurite."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from azure.storage.blob import BlobServiceClient

from cotenant.deployments import module_parameters
from cotenant.lab.data import BLOB_CONTRIBUTOR, BLOB_READER, container_scope, deploy_data
from cotenant.lab.endpoints import LabEndpoints
from cotenant.lab.http import HttpError
from cotenant.lab.state import Identity, ResourceGroup, StateStore
from cotenant.plan import Plan, build_plan
from cotenant.spec import parse_spec

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "three-party.yaml"
UPLOADER = "7c1e2d3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
RG = "rg-labdata"


def _plan() -> Plan:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["name"] = "labdata"
    data["parties"][0]["data_uploaders"] = [UPLOADER]
    return build_plan(parse_spec(data))


def _store(directory: Path, azurite: str | None, *, network: bool = True) -> StateStore:
    store = StateStore(directory)
    with store.edit() as state:
        group = state.resource_groups[RG] = ResourceGroup(name=RG, location="northeurope")
        if network:
            vnet = (f"/subscriptions/{state.subscription_id}/resourceGroups/{RG}/providers/"
                    "Microsoft.Network/virtualNetworks/vnet-labdata")
            group.resources[vnet] = {"cidr": "10.0.0.0/16"}
        for party in ("contoso", "fabrikam", "woodgrove"):
            identity = Identity(name=f"id-labdata-{party}", resource_group=RG)
            state.identities[identity.client_id] = identity
    LabEndpoints(pid=1, proxy_port=1, https_port=1, identity_port=1, management_port=1,
                 attestation_url="https://lab", ca_bundle="/dev/null",
                 azurite_connection_string=azurite).save(directory)
    return store


def _params(plan: Plan, store: StateStore, party: str) -> dict:
    ids = {i.name.rsplit("-", 1)[-1]: i.principal_id for i in store.read().identities.values()}
    return module_parameters(plan, "data", party, principal_ids=ids)


def _grants(store: StateStore) -> set[tuple[str, str, str]]:
    names = {i.principal_id: i.name.rsplit("-", 1)[-1] for i in store.read().identities.values()}
    return {(names.get(a.principal_id, a.principal_id), a.scope.rsplit("/", 1)[-1], a.role)
            for a in store.read().role_assignments}


@pytest.mark.azurite
def test_owners_storage_grants_read_to_the_releasing_parties_only(tmp_path, azurite):
    plan = _plan()
    store = _store(tmp_path, azurite.connection_string)
    outputs = {p.party: deploy_data(store, RG, _params(plan, store, p.party))
               for p in plan.parties}
    assert _grants(store) == {
        ("woodgrove", "contoso-data", BLOB_READER),
        ("woodgrove", "fabrikam-data", BLOB_READER),
        (UPLOADER, "contoso-data", BLOB_CONTRIBUTOR),
    }
    sub = store.read().subscription_id
    contoso = plan.party("contoso")
    scope = container_scope(sub, RG, contoso.storage_account_name, "contoso-data")
    assert {a.scope for a in store.read().role_assignments} >= {scope}
    account = store.read().resource_groups[RG].resources[outputs["contoso"]["storageAccountId"]]
    assert account["allowSharedKeyAccess"] is False
    assert account["networkAcls"]["defaultAction"] == "Deny"
    assert outputs["contoso"]["containerName"] == "contoso-data"
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    assert outputs["contoso"]["blobEndpoint"] == service.url
    names = {c.name for c in service.list_containers()}
    assert {"contoso-data", "fabrikam-data", "woodgrove-data"} <= names
    # deploying again changes nothing (ARM incremental mode is idempotent)
    deploy_data(store, RG, _params(plan, store, "contoso"))
    assert len(store.read().role_assignments) == 3


def test_without_azurite_the_endpoint_is_the_accounts(tmp_path):
    plan = _plan()
    store = _store(tmp_path, None)
    outputs = deploy_data(store, RG, _params(plan, store, "fabrikam"))
    account = plan.party("fabrikam").storage_account_name
    assert outputs["blobEndpoint"] == f"https://{account}.blob.core.windows.net/"


def test_failures_azure_would_report(tmp_path):
    plan = _plan()
    store = _store(tmp_path / "a", None, network=False)
    with pytest.raises(HttpError) as err:
        deploy_data(store, RG, _params(plan, store, "contoso"))
    assert err.value.code == "InvalidVirtualNetworkRule"
    store = _store(tmp_path / "b", None)
    params = {**_params(plan, store, "contoso"),
              "readerPrincipalIds": ["44444444-4444-4444-8444-444444444444"]}
    with pytest.raises(HttpError) as err:
        deploy_data(store, RG, params)
    assert err.value.code == "PrincipalNotFound"
    assert store.read().role_assignments == []
    deploy_data(store, RG, _params(plan, store, "contoso"))
    with store.edit() as state:
        state.resource_groups["rg-other"] = ResourceGroup(name="rg-other", location="x")
        vnet = next(iter(state.resource_groups[RG].resources))
        state.resource_groups["rg-other"].resources[vnet.replace(RG, "rg-other")] = {}
    with pytest.raises(HttpError) as err:
        deploy_data(store, "rg-other", _params(plan, store, "contoso"))
    assert err.value.code == "StorageAccountAlreadyTaken"


def test_the_lab_deploys_the_module_and_its_group_deletion_removes_the_grants(lab_env):
    from cotenant.deployments import deployment_name
    from cotenant.lab.data import data_assignments

    client = lab_env.client
    data = yaml.safe_load(EXAMPLE.read_text())
    data["name"] = "labdat2"
    data["parties"][0]["data_uploaders"] = [UPLOADER]
    plan = build_plan(parse_spec(data))
    rg = plan.resource_group
    client.ensure_resource_group(rg, plan.location, {"tenant": plan.tenant})

    def deploy(module: str, party: str | None = None, **inputs) -> dict:
        name = deployment_name(plan, module, party)
        client.start_deployment(rg, name, module, module_parameters(plan, module, party,
                                                                    **inputs))
        done = client.get_deployment(rg, name, wait=20)
        assert done["state"] == "Succeeded", done
        return done["outputs"]

    deploy("network")
    ids = {p.party: client.create_identity(p.identity_name, rg)["principal_id"]
           for p in plan.parties}
    outputs = deploy("data", "contoso", principal_ids=ids)
    assert outputs["containerName"] == "contoso-data"
    assert outputs["storageAccountId"].endswith(plan.party("contoso").storage_account_name)
    names = {v: k for k, v in ids.items()}
    mine = [a for a in client.role_assignments() if f"/resourceGroups/{rg}/" in a["scope"]]
    assert {(names.get(p, p), c, r) for p, c, r in data_assignments(mine)} == {
        ("woodgrove", "contoso-data", BLOB_READER), (UPLOADER, "contoso-data", BLOB_CONTRIBUTOR)}
    client.delete_resource_group(rg)
    deadline = time.monotonic() + 30
    while client.resource_group(rg) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.resource_group(rg) is None
    # the uploader is no identity of the group: its grant goes with the container's group
    assert not [a for a in client.role_assignments() if f"/resourceGroups/{rg}/" in a["scope"]]
