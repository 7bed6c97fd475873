"""gateway.bicep: WAF_v2 in Prevention with OWASP 3.2, one HTTPS listener per party (Key Vault
certificate, strict TLS policy, identity attached), probe attached."""

from __future__ import annotations

import pytest

from tests.bicep.conftest import evaluated
from tests.bicep.gateway_checks import tls_problems
from tests.bicep.template import Template


def _gateway(plan):
    template = evaluated(plan, "gateway")
    (gw,) = template.of_type("Microsoft.Network/applicationGateways")
    return template, gw.properties


def test_waf_policy_is_prevention_with_owasp_3_2(plan):
    template, props = _gateway(plan)
    (policy,) = template.of_type(
        "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies"
    )
    settings = policy.properties["policySettings"]
    assert (settings["mode"], settings["state"]) == ("Prevention", "Enabled")
    assert policy.properties["managedRules"]["managedRuleSets"] == [
        {"ruleSetType": "OWASP", "ruleSetVersion": "3.2"}
    ]
    assert props["firewallPolicy"]["id"].path == "wafPolicy.id"
    assert props["sku"] == {"name": "WAF_v2", "tier": "WAF_v2"}
    assert (plan.gateway.waf_mode, plan.gateway.waf_rule_set_version) == ("Prevention", "3.2")


def test_one_listener_per_party_port_routed_to_that_party(plan):
    _, props = _gateway(plan)
    ports = {p["name"]: p["properties"]["port"] for p in props["frontendPorts"]}
    pools = {
        p["name"]: [a["ipAddress"] for a in p["properties"]["backendAddresses"]]
        for p in props["backendAddressPools"]
    }
    routes = {}
    for rule in props["requestRoutingRules"]:
        listener_name = rule["properties"]["httpListener"]["id"].rsplit("/", 1)[1]
        (listener,) = [x for x in props["httpListeners"] if x["name"] == listener_name]
        port_name = listener["properties"]["frontendPort"]["id"].rsplit("/", 1)[1]
        pool_name = rule["properties"]["backendAddressPool"]["id"].rsplit("/", 1)[1]
        routes[ports[port_name]] = pools[pool_name]
    assert routes == {80: ["10.0.1.6"], 8080: ["10.0.1.4"], 8081: ["10.0.1.5"]}
    priorities = [r["properties"]["priority"] for r in props["requestRoutingRules"]]
    assert len(set(priorities)) == len(priorities)
    assert {x["name"] for x in props["httpListeners"]} == {
        listener.name for listener in plan.gateway.listeners
    }
    assert set(pools) == {listener.backend_pool for listener in plan.gateway.listeners}


def test_health_probe_is_attached_to_the_backend_settings_every_rule_uses(plan):
    _, props = _gateway(plan)
    (probe,) = props["probes"]
    assert probe["properties"]["path"] == "/"
    assert probe["properties"]["protocol"] == "Http"
    (settings,) = props["backendHttpSettingsCollection"]
    assert settings["properties"]["probe"]["id"].endswith(f"/probes/{probe['name']}")
    assert settings["properties"]["port"] == 80
    for rule in props["requestRoutingRules"]:
        assert rule["properties"]["backendHttpSettings"]["id"].endswith(
            f"/backendHttpSettingsCollection/{settings['name']}"
        )


def test_public_ip_has_the_dns_label(plan):
    template, props = _gateway(plan)
    (pip,) = template.of_type("Microsoft.Network/publicIPAddresses")
    assert pip.properties["dnsSettings"]["domainNameLabel"] == plan.gateway.dns_label
    assert pip.body["sku"]["name"] == "Standard"
    (frontend,) = props["frontendIPConfigurations"]
    assert frontend["properties"]["publicIPAddress"]["id"].path == "publicIp.id"
    assert template.outputs["fqdn"].path == "publicIp.properties.dnsSettings.fqdn"


def test_every_listener_is_https_with_the_key_vault_certificate(plan):
    template, props = _gateway(plan)
    assert tls_problems(template) == []
    assert {x["properties"]["protocol"] for x in props["httpListeners"]} == {"Https"}
    assert len(props["httpListeners"]) == len(plan.gateway.listeners)
    (cert,) = props["sslCertificates"]
    assert cert["properties"] == {"keyVaultSecretId": plan.gateway.tls_certificate_secret_id}
    for listener in props["httpListeners"]:
        assert listener["properties"]["sslCertificate"]["id"].endswith(
            f"/sslCertificates/{cert['name']}")
    assert "redirectConfigurations" not in props


def test_tls_policy_is_the_strict_2022_predefined_policy(plan):
    _, props = _gateway(plan)
    assert props["sslPolicy"] == {"policyType": "Predefined",
                                  "policyName": plan.gateway.ssl_policy}
    assert plan.gateway.ssl_policy == "AppGwSslPolicy20220101S"


def test_the_gateway_reads_the_certificate_with_the_spec_identity(plan):
    template, _ = _gateway(plan)
    (gw,) = template.of_type("Microsoft.Network/applicationGateways")
    assert gw.body["identity"] == {
        "type": "UserAssigned", "userAssignedIdentities": {plan.gateway.identity_id: {}}}


_REDIRECT_GATEWAY = """
param tlsCertificateUri string
param identityId string
var gw = 'agw'

resource appGateway 'Microsoft.Network/applicationGateways@2024-05-01' = {
  name: 'agw'
  location: 'northeurope'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    sslPolicy: {
      policyType: 'Predefined'
      policyName: 'AppGwSslPolicy20220101S'
    }
    sslCertificates: [
      {
        name: 'tls'
        properties: {
          keyVaultSecretId: tlsCertificateUri
        }
      }
    ]
    httpListeners: [
      {
        name: 'secure'
        properties: {
          protocol: 'Https'
          sslCertificate: {
            id: '${gw}/sslCertificates/tls'
          }
        }
      }
      {
        name: 'plain'
        properties: {
          protocol: 'Http'
        }
      }
    ]
    redirectConfigurations: [
      {
        name: 'to-secure'
        properties: {
          redirectType: 'Permanent'
          targetListener: {
            id: '${gw}/httpListeners/secure'
          }
        }
      }
    ]
    requestRoutingRules: [
      {
        name: 'plain-rule'
        properties: {
          httpListener: {
            id: '${gw}/httpListeners/plain'
          }
          PLAIN_TARGET
        }
      }
    ]
  }
}
"""


@pytest.mark.parametrize(("target", "problems"), [
    ("redirectConfiguration: {\n            id: '${gw}/redirectConfigurations/to-secure'\n"
     "          }", []),
    ("backendAddressPool: {\n            id: '${gw}/backendAddressPools/pool'\n          }",
     ["plain serves plain Http"]),
])
def test_a_plain_http_listener_is_accepted_only_as_a_redirect_to_https(
        plan, tmp_path, target, problems):
    path = tmp_path / "gateway.bicep"
    path.write_text(_REDIRECT_GATEWAY.replace("PLAIN_TARGET", target), encoding="utf-8")
    params = {"tlsCertificateUri": plan.gateway.tls_certificate_secret_id,
              "identityId": plan.gateway.identity_id}
    assert tls_problems(Template(path, params)) == problems
