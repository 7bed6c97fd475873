"""The data module's run-time inputs: the principal ids of the parties that may read an owner's
container (those that may release its key, the owner excluded), read from the cloud."""

from __future__ import annotations

from pathlib import Path

import yaml

from activities.data import data_inputs
from cotenant.bicep_params import check_parameters, declared_parameters
from cotenant.cloud.base import IdentityInfo
from cotenant.deployments import module_parameters, module_path
from cotenant.plan import build_plan
from cotenant.spec import parse_spec

REPO = Path(__file__).resolve().parents[2]


class Identities:
    """The cloud calls ``data_inputs`` makes (the edge), with the identities that exist."""

    def __init__(self, resource_group: str, names: list[str]) -> None:
        self.found = {(resource_group, n): f"{i:08d}-0000-4000-8000-000000000000"
                      for i, n in enumerate(names, start=1)}
        self.asked: list[str] = []

    def get_identity(self, resource_group: str, identity_name: str) -> IdentityInfo:
        self.asked.append(identity_name)
        principal = self.found[(resource_group, identity_name)]
        return IdentityInfo(name=identity_name, principal_id=principal, client_id=principal)

    def get_identities(self, resource_group: str, names) -> dict[str, IdentityInfo]:
        return {name: self.get_identity(resource_group, name) for name in names}


def test_readers_are_the_releasing_parties_and_fit_the_template():
    plan = build_plan(parse_spec(yaml.safe_load((REPO / "examples" / "ten-party.yaml")
                                                .read_text())))
    cloud = Identities(plan.resource_group, [p.identity_name for p in plan.parties])
    inputs = data_inputs(cloud, plan, "contoso")  # type: ignore[arg-type]
    assert sorted(inputs["principal_ids"]) == ["relecloud", "woodgrove"]
    assert sorted(cloud.asked) == ["id-tenparty-relecloud", "id-tenparty-woodgrove"]
    params = module_parameters(plan, "data", "contoso", **inputs)
    assert params["readerPrincipalIds"] == [inputs["principal_ids"]["woodgrove"],
                                            inputs["principal_ids"]["relecloud"]]
    assert check_parameters(declared_parameters(module_path("data")), params) == []
    cloud.asked.clear()
    assert data_inputs(cloud, plan, "woodgrove") == {"principal_ids": {}}  # type: ignore[arg-type]
    assert cloud.asked == []
