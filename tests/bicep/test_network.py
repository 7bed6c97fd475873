"""network.bicep: exactly the seed's NSG rules, Bastion only in debug, NAT gateway egress."""

from __future__ import annotations

from tests.bicep.conftest import evaluated

SEED_RULES = {
    100: ("Allow-AppGw-HTTP", "Allow", "Tcp", "10.0.2.0/24", "10.0.1.0/24", "80"),
    110: ("Allow-InterVM-HTTPS", "Allow", "Tcp", "10.0.1.0/24", "10.0.1.0/24", "443"),
    120: ("Allow-Bastion-SSH", "Allow", "Tcp", "10.0.99.0/26", "10.0.1.0/24", "22"),
    4000: ("Deny-All-Other-Inbound", "Deny", "*", "VirtualNetwork", "VirtualNetwork", "*"),
}


def _rules(template):
    (nsg,) = template.of_type("Microsoft.Network/networkSecurityGroups")
    return {
        r["properties"]["priority"]: (
            r["name"], r["properties"]["access"], r["properties"]["protocol"],
            r["properties"]["sourceAddressPrefix"], r["properties"]["destinationAddressPrefix"],
            r["properties"]["destinationPortRange"],
        )
        for r in nsg.properties["securityRules"]
    }


def _all_inbound(template):
    (nsg,) = template.of_type("Microsoft.Network/networkSecurityGroups")
    return {r["properties"]["direction"] for r in nsg.properties["securityRules"]}


def test_nsg_has_exactly_the_seed_rules_without_debug(plan):
    template = evaluated(plan, "network")
    assert _rules(template) == {k: v for k, v in SEED_RULES.items() if k != 120}
    assert _all_inbound(template) == {"Inbound"}


def test_nsg_adds_rule_120_only_in_debug(debug_plan):
    template = evaluated(debug_plan, "network")
    assert _rules(template) == SEED_RULES


def test_template_rules_match_the_plan(plan, debug_plan):
    for p in (plan, debug_plan):
        expected = {
            r.priority: (r.name, r.access, r.protocol, r.source, r.destination, r.destination_port)
            for r in p.nsg_rules
        }
        assert _rules(evaluated(p, "network")) == expected


def _subnets(template):
    (vnet,) = template.of_type("Microsoft.Network/virtualNetworks")
    return {s["name"]: s["properties"] for s in vnet.properties["subnets"]}


def test_bastion_subnet_only_in_debug(plan, debug_plan):
    assert set(_subnets(evaluated(plan, "network"))) == {"VMSubnet", "AppGwSubnet"}
    debug = _subnets(evaluated(debug_plan, "network"))
    assert debug["AzureBastionSubnet"]["addressPrefix"] == "10.0.99.0/26"


def test_vm_subnet_has_the_nsg_and_leaves_only_through_the_nat_gateway(plan):
    template = evaluated(plan, "network")
    vm = _subnets(template)["VMSubnet"]
    assert vm["addressPrefix"] == "10.0.1.0/24"
    assert vm["networkSecurityGroup"]["id"].path == "nsg.id"
    assert vm["natGateway"]["id"].path == "natGateway.id"
    assert vm["defaultOutboundAccess"] is False
    (nat,) = template.of_type("Microsoft.Network/natGateways")
    assert nat.body["sku"]["name"] == "Standard"
    assert [ip["id"].path for ip in nat.properties["publicIpAddresses"]] == ["natPublicIp.id"]
    (pip,) = template.of_type("Microsoft.Network/publicIPAddresses")
    assert pip.body["sku"]["name"] == "Standard"
    assert pip.properties["publicIPAllocationMethod"] == "Static"


def test_vm_subnet_reaches_key_vault_and_storage_through_service_endpoints(plan):
    vm = _subnets(evaluated(plan, "network"))["VMSubnet"]
    assert vm["serviceEndpoints"] == [{"service": "Microsoft.KeyVault"},
                                      {"service": "Microsoft.Storage"}]


def test_no_bastion_host_in_the_network_module(debug_plan):
    assert not evaluated(debug_plan, "network").of_type("Microsoft.Network/bastionHosts")
