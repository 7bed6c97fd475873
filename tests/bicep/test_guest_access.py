"""guest-access.bicep: a guest identity may send reports and process its own commands, each
grant on one queue of the control plane's storage, nothing else."""

from __future__ import annotations

import pytest

from cotenant.deployments import DeploymentInputError, module_parameters
from tests.bicep.conftest import PRINCIPALS, REPO, evaluated
from tests.bicep.template import Template

SENDER = "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a"
PROCESSOR = "8a0f0c08-91a1-4084-bc3d-661d67233fed"


def test_each_grant_is_scoped_to_one_queue(plan):
    template = evaluated(plan, "guest-access")
    found = {
        (a.body["scope"].path, a.properties["roleDefinitionId"].args["resource_name_1"],
         a.properties["principalId"])
        for a in template.of_type("Microsoft.Authorization/roleAssignments")
    }
    assert found == {
        ("reportsQueue", SENDER, PRINCIPALS["contoso"]),
        ("commandQueue", PROCESSOR, PRINCIPALS["contoso"]),
    }
    (created,) = template.of_type("Microsoft.Storage/storageAccounts/queueServices/queues")
    assert created.body["name"] == "cmd-demo-contoso"
    (storage,) = template.of_type("Microsoft.Storage/storageAccounts", include_existing=True)
    assert storage.existing, "never creates or changes the storage account"


def test_the_reports_queue_is_the_one_the_control_plane_creates(plan):
    guest = evaluated(plan, "guest-access")
    control = Template(REPO / "bicep" / "control-plane" / "resources.bicep", {
        "location": "northeurope", "token": "abc123def4567", "tags": {},
        "cvmOrchestratorObjectId": PRINCIPALS["woodgrove"]})
    (reports,) = [q for q in guest.of_type(
        "Microsoft.Storage/storageAccounts/queueServices/queues", include_existing=True)
        if q.existing]
    (created,) = control.of_type("Microsoft.Storage/storageAccounts/queueServices/queues")
    assert reports.body["name"] == created.body["name"] == "guest-reports"


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"storage_account": "Bad_Name", "command_queue": "cmd-a", "principal_id": PRINCIPALS[
            "contoso"]}, "storage_account"),
        ({"storage_account": "stok", "command_queue": "Cmd--x", "principal_id": PRINCIPALS[
            "contoso"]}, "command_queue"),
        ({"storage_account": "stok", "command_queue": "cmd-a", "principal_id": "x"},
         "principal_id"),
    ],
)
def test_inputs_are_validated(plan, inputs, message):
    with pytest.raises(DeploymentInputError, match=message):
        module_parameters(plan, "guest-access", "contoso", **inputs)
