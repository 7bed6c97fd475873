"""The lab's "data" module (``bicep/tenant/data.bicep``): a party's own storage for its sealed
data file.

The lab has no storage service of its own: the storage account is recorded in the resource
group like the other lab resources (with the security settings the Bicep module sets), the
container-scoped role assignments are recorded in the lab state ("Storage Blob Data Reader" for
the reader parties' CVM identities, "Storage Blob Data Contributor" for the owner's uploaders,
scope = the container's ARM id), and the container itself is made in the lab's Azurite when the
lab runs with one (``--azurite-connection-string``), where the owners publish and the VMs read.
Azurite does not enforce Entra roles: the recorded assignments are what tests and tools check.
"""

from __future__ import annotations

from typing import Any

from cotenant.lab.endpoints import LabEndpoints
from cotenant.lab.http import HttpError
from cotenant.lab.state import RoleAssignment, StateStore

__all__ = [
    "BLOB_CONTRIBUTOR",
    "BLOB_READER",
    "container_scope",
    "data_assignments",
    "deploy_data",
]

BLOB_READER = "Storage Blob Data Reader"
BLOB_CONTRIBUTOR = "Storage Blob Data Contributor"
_STORAGE = "Microsoft.Storage/storageAccounts"


def container_scope(subscription_id: str, resource_group: str, account: str,
                    container: str) -> str:
    """The ARM id of a blob container (the scope of its role assignments)."""
    return (f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}/providers/"
            f"{_STORAGE}/{account}/blobServices/default/containers/{container}")


def deploy_data(store: StateStore, rg: str, p: dict[str, Any]) -> dict[str, Any]:
    """Materialise one deployment of data.bicep with parameters ``p``; its outputs.

    Fails like Azure would (``HttpError``: the resource manager marks the deployment Failed)
    when the account name is taken in another resource group, the network phase has not made
    the VM subnet, or a reader principal does not exist."""
    state = store.read()
    account, container = p["storageAccountName"], p["containerName"]
    account_id = (f"/subscriptions/{state.subscription_id}/resourceGroups/{rg}/providers/"
                  f"{_STORAGE}/{account}")
    scope = container_scope(state.subscription_id, rg, account, container)
    _check(store, rg, p, account_id)
    _ensure_azurite_container(store, container)
    with store.edit() as state:
        resources = state.resource_groups[rg].resources
        resources[account_id] = {
            "kind": "StorageV2", "sku": "Standard_LRS", "allowSharedKeyAccess": False,
            "allowBlobPublicAccess": False, "minimumTlsVersion": "TLS1_2",
            "supportsHttpsTrafficOnly": True,
            "networkAcls": {"defaultAction": "Deny", "ipRules": list(p["allowedIpRanges"]),
                            "virtualNetworkRules": [p["vmSubnetName"]]},
        }
        resources[scope] = {"publicAccess": "None"}
        for role, key in ((BLOB_READER, "readerPrincipalIds"),
                          (BLOB_CONTRIBUTOR, "uploaderPrincipalIds")):
            for pid in p[key]:
                _assign(state.role_assignments, str(pid).lower(), scope, role)
    return {"storageAccountId": account_id, "blobEndpoint": _blob_endpoint(store, account),
            "containerName": container}


def data_assignments(assignments: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """``(principal_id, container, role)`` of the blob-data role assignments among the lab's
    role assignments (as ``LabClient.role_assignments()`` returns them)."""
    return [(a["principal_id"], a["scope"].rsplit("/", 1)[-1], a["role"])
            for a in assignments if a["role"] in (BLOB_READER, BLOB_CONTRIBUTOR)
            and "/blobServices/default/containers/" in a["scope"]]


def _check(store: StateStore, rg: str, p: dict[str, Any], account_id: str) -> None:
    state = store.read()
    for group in state.resource_groups.values():
        taken = [rid for rid in group.resources
                 if rid.lower().endswith(f"/{_STORAGE}/{p['storageAccountName']}".lower())]
        if group.name != rg and taken:
            raise HttpError(409, "StorageAccountAlreadyTaken",
                            f"the storage account name {p['storageAccountName']} is taken")
    vnet_id = account_id.split("/providers/")[0] + \
        f"/providers/Microsoft.Network/virtualNetworks/{p['vnetName']}"
    if vnet_id not in state.resource_groups[rg].resources:
        raise HttpError(400, "InvalidVirtualNetworkRule",
                        f"subnet {p['vnetName']}/{p['vmSubnetName']} not found in {rg} "
                        "(the network phase makes it and its Microsoft.Storage endpoint)")
    for pid in p["readerPrincipalIds"]:
        if state.identity_by_principal(str(pid).lower()) is None:
            raise HttpError(400, "PrincipalNotFound", f"principal {pid} does not exist")


def _assign(assignments: list[RoleAssignment], principal_id: str, scope: str,
            role: str) -> None:
    if not any((a.principal_id, a.scope, a.role) == (principal_id, scope, role)
               for a in assignments):
        assignments.append(RoleAssignment(principal_id=principal_id, scope=scope, role=role))


def _azurite(store: StateStore) -> str | None:
    try:
        return LabEndpoints.load(store.directory).azurite_connection_string
    except (OSError, ValueError):
        return None


def _ensure_azurite_container(store: StateStore, container: str) -> None:
    connection = _azurite(store)
    if connection is None:
        return
    from azure.core.exceptions import AzureError, ResourceExistsError
    from azure.storage.blob import BlobServiceClient

    try:
        BlobServiceClient.from_connection_string(connection).create_container(container)
    except ResourceExistsError:
        pass
    except AzureError as exc:
        raise HttpError(503, "ServiceUnavailable",
                        f"the lab's Azurite did not create container {container}: "
                        f"{type(exc).__name__}") from None


def _blob_endpoint(store: StateStore, account: str) -> str:
    connection = _azurite(store)
    if connection is not None:
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(connection).url
    return f"https://{account}.blob.core.windows.net/"
