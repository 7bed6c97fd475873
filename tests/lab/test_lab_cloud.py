"""The control plane's lab backend (``cotenant.cloud.lab.LabCloud``) against a running lab."""

from __future__ import annotations

import os

import pytest

from cotenant.azurite import Azurite
from cotenant.cloud.base import NotFoundError
from cotenant.cloud.lab import LabCloud
from cotenant.lab.testing import RunningLab
from tests.lab.helpers import unique


def test_identities_are_read_by_name_within_their_resource_group(lab_env: RunningLab,
                                                                 azurite: Azurite) -> None:
    client = lab_env.client
    group, other = unique("rg"), unique("rg")
    a, b = client.create_identity("id-a", group), client.create_identity("id-b", group)
    elsewhere = client.create_identity("id-c", other)
    cloud = LabCloud.from_settings({**os.environ,
                                    "AzureWebJobsStorage": azurite.connection_string})

    found = cloud.get_identities(group, ["id-a", "id-b"])
    assert {n: (i.principal_id, i.client_id) for n, i in found.items()} == {
        "id-a": (a["principal_id"], a["client_id"]), "id-b": (b["principal_id"], b["client_id"])}
    assert cloud.get_identity(group, "id-b") == found["id-b"]
    assert cloud.get_identities(group, []) == {}
    with pytest.raises(NotFoundError) as info:  # an identity of another group is not this one
        cloud.get_identities(group, ["id-a", "id-c"])
    assert info.value.resource == f"{group}/id-c"
    assert cloud.get_identity(other, "id-c").principal_id == elsewhere["principal_id"]
