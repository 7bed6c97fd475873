"""Negative tests: weakened copies of the templates must be caught by the same checks.

Each case edits one security fact in a copy of a module and asserts that the check the
structural tests rely on now reports it — so the checks do not pass vacuously.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cotenant.deployments import module_parameters, module_path
from cotenant.plan import RELEASE_ROLE_ID
from tests.bicep.conftest import inputs_for, party_for
from tests.bicep.gateway_checks import tls_problems
from tests.bicep.template import Template

CRYPTO_USER = "12338af0-0e69-4776-bea7-57ae8d297424"


def _load(plan, module: str, tmp_path: Path, replace: tuple[str, str] | None = None) -> Template:
    source = module_path(module)
    text = source.read_text(encoding="utf-8")
    if replace is not None:
        old, new = replace
        assert old in text, f"the tampering {old!r} no longer applies to {source.name}"
        text = text.replace(old, new)
    target = tmp_path / source.name
    target.write_text(text, encoding="utf-8")
    shutil.copy(source.parent / "roles.json", tmp_path / "roles.json")
    params = module_parameters(plan, module, party_for(module), **inputs_for(module))
    return Template(target, params)


def grant_problems(template: Template) -> list[str]:
    problems = []
    for a in template.of_type("Microsoft.Authorization/roleAssignments"):
        role = a.properties["roleDefinitionId"].args["resource_name_1"]
        if str(a.body["scope"]) != "key":
            problems.append(f"{a.symbol}: scope {a.body['scope']} is not the key")
        if role != RELEASE_ROLE_ID:
            problems.append(f"{a.symbol}: role {role} is not the release role")
    return problems


def nsg_problems(template: Template) -> list[str]:
    (nsg,) = template.of_type("Microsoft.Network/networkSecurityGroups")
    problems = []
    for rule in nsg.properties["securityRules"]:
        props = rule["properties"]
        if props["access"] == "Allow" and props["sourceAddressPrefix"] in {"*", "Internet"}:
            problems.append(f"{rule['name']} admits the Internet")
        if props["destinationPortRange"] == "22" and props["priority"] == 120:
            problems.append("rule 120 outside debug")
    return problems


def cvm_problems(template: Template) -> list[str]:
    (vm,) = template.of_type("Microsoft.Compute/virtualMachines")
    (nic,) = template.of_type("Microsoft.Network/networkInterfaces")
    problems = []
    if vm.properties["securityProfile"]["securityType"] != "ConfidentialVM":
        problems.append("not a confidential VM")
    disk = vm.properties["storageProfile"]["osDisk"]["managedDisk"]["securityProfile"]
    if disk["securityEncryptionType"] != "DiskWithVMGuestState":
        problems.append("OS disk not confidentially encrypted")
    if any("publicIPAddress" in c["properties"] for c in nic.properties["ipConfigurations"]):
        problems.append("public IP on the NIC")
    if "settings" in template.one("bootstrap").properties:
        problems.append("bootstrap in plain settings")
    return problems


def waf_problems(template: Template) -> list[str]:
    (policy,) = template.of_type(
        "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies")
    settings = policy.properties["policySettings"]
    return [] if (settings["mode"], settings["state"]) == ("Prevention", "Enabled") else [
        "WAF not preventing"]


BLOB_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
BLOB_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c989"


def storage_problems(template: Template) -> list[str]:
    (storage,) = template.of_type("Microsoft.Storage/storageAccounts")
    props = storage.properties
    problems = []
    if props["allowSharedKeyAccess"] is not False:
        problems.append("shared keys allowed")
    if props["allowBlobPublicAccess"] is not False:
        problems.append("anonymous blob access allowed")
    if props["minimumTlsVersion"] != "TLS1_2" or props["supportsHttpsTrafficOnly"] is not True:
        problems.append("TLS below 1.2 or plain HTTP")
    if props["networkAcls"]["defaultAction"] != "Deny":
        problems.append("firewall open by default")
    (container,) = template.of_type("Microsoft.Storage/storageAccounts/blobServices/containers")
    if container.properties["publicAccess"] != "None":
        problems.append("public container")
    for a in template.of_type("Microsoft.Authorization/roleAssignments"):
        role = a.properties["roleDefinitionId"].args["resource_name_1"]
        if str(a.body["scope"]) != "container":
            problems.append(f"{a.symbol}: scope {a.body['scope']} is not the container")
        expected = BLOB_READER if a.symbol == "readers" else BLOB_CONTRIBUTOR
        if role != expected:
            problems.append(f"{a.symbol}: role {role}")
    return problems


CASES = [
    ("grants", grant_problems, ("scope: key\n", "scope: vault\n")),
    ("grants", grant_problems, ("roles.keyVaultCryptoServiceReleaseUser)\n",
                                f"'{CRYPTO_USER}')\n")),
    ("network", nsg_problems, ("sourceAddressPrefix: gatewaySubnetPrefix",
                               "sourceAddressPrefix: 'Internet'")),
    ("network", nsg_problems, ("debug ? debugRules : []", "debugRules")),
    ("cvm", cvm_problems, ("securityType: 'ConfidentialVM'", "securityType: 'TrustedLaunch'")),
    ("cvm", cvm_problems, ("securityEncryptionType: 'DiskWithVMGuestState'",
                           "securityEncryptionType: 'VMGuestStateOnly'")),
    ("cvm", cvm_problems, ("          subnet: {\n",
                           "          publicIPAddress: {\n            id: 'pip'\n          }\n"
                           "          subnet: {\n")),
    ("cvm", cvm_problems, ("    protectedSettings: {", "    settings: {")),
    ("data", storage_problems, ("allowSharedKeyAccess: false", "allowSharedKeyAccess: true")),
    ("data", storage_problems, ("allowBlobPublicAccess: false", "allowBlobPublicAccess: true")),
    ("data", storage_problems, ("minimumTlsVersion: 'TLS1_2'", "minimumTlsVersion: 'TLS1_0'")),
    ("data", storage_problems, ("defaultAction: 'Deny'", "defaultAction: 'Allow'")),
    ("data", storage_problems, ("publicAccess: 'None'", "publicAccess: 'Blob'")),
    ("data", storage_problems, ("  scope: container\n", "  scope: storage\n")),
    ("data", storage_problems, ("roles.storageBlobDataReader)\n",
                                "roles.storageBlobDataContributor)\n")),
    ("gateway", waf_problems, ("mode: 'Prevention'", "mode: 'Detection'")),
    ("gateway", tls_problems, ("protocol: 'Https'", "protocol: 'Http'")),
    ("gateway", tls_problems, ("policyName: 'AppGwSslPolicy20220101S'",
                               "policyName: 'AppGwSslPolicy20150501'")),
    ("gateway", tls_problems, ("type: 'UserAssigned'", "type: 'None'")),
    ("gateway", tls_problems, ("keyVaultSecretId: tlsCertificateUri",
                               "data: 'MIIKpfx'\n          password: 'pfx-password'")),
    ("gateway", tls_problems, ("        sslCertificate: {\n          id: ",
                               "        hostName: {\n          id: ")),
]


@pytest.mark.parametrize(("module", "check"), sorted({(m, c) for m, c, _ in CASES},
                                                    key=lambda x: x[0]))
def test_the_real_templates_pass_the_checks(plan, tmp_path, module, check):
    assert check(_load(plan, module, tmp_path)) == []


@pytest.mark.parametrize(("module", "check", "tampering"), CASES,
                         ids=[f"{m}:{t[1].strip()[:30]}" for m, _, t in CASES])
def test_a_weakened_template_is_caught(plan, tmp_path, module, check, tampering):
    assert check(_load(plan, module, tmp_path, tampering)) != []
