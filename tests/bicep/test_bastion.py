"""bastion.bicep: exists only for debug tenants."""

from __future__ import annotations

from cotenant.bicep_params import parse_bicep
from cotenant.deployments import module_parameters, module_path
from tests.bicep.conftest import evaluated
from tests.bicep.template import Template


def test_debug_deployment_creates_a_basic_bastion_in_the_bastion_subnet(debug_plan):
    template = evaluated(debug_plan, "bastion")
    (bastion,) = template.of_type("Microsoft.Network/bastionHosts")
    assert bastion.body["sku"] == {"name": "Basic"}
    (config,) = bastion.properties["ipConfigurations"]
    subnet = config["properties"]["subnet"]["id"]
    assert subnet.args["resource_name_2"] == "AzureBastionSubnet"
    assert bastion.body["name"] == debug_plan.bastion.name


def test_every_resource_is_conditioned_on_debug():
    for symbol, resource in parse_bicep(module_path("bastion"))["resources"].items():
        assert resource["config"].get("condition") == "debug", symbol


def test_without_debug_the_module_deploys_nothing(debug_plan):
    params = {**module_parameters(debug_plan, "bastion"), "debug": False}
    assert Template(module_path("bastion"), params).deployed() == []
