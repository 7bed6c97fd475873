"""The plan of the reference scenario, checked against the seed system's reference values."""

from __future__ import annotations

import re

import pytest
import yaml

from cotenant.plan import build_plan, critical_path
from cotenant.policy import evaluate
from cotenant.spec import load_spec, parse_spec
from tests.conftest import REPO_ROOT
from tests.foundation.specs import GATEWAY

EXAMPLE = REPO_ROOT / "examples" / "three-party.yaml"
NEU = "https://sharedneu.neu.attest.azure.net"

# seed-system.md: the NSG on the VM subnet (inbound).
SEED_NSG = [
    (100, "Allow-AppGw-HTTP", "10.0.2.0/24", "10.0.1.0/24", "Tcp", "80", "Allow"),
    (110, "Allow-InterVM-HTTPS", "10.0.1.0/24", "10.0.1.0/24", "Tcp", "443", "Allow"),
    (4000, "Deny-All-Other-Inbound", "VirtualNetwork", "VirtualNetwork", "*", "*", "Deny"),
]
SEED_NSG_DEBUG_RULE = (120, "Allow-Bastion-SSH", "10.0.99.0/26", "10.0.1.0/24", "Tcp", "22",
                       "Allow")
# seed-system.md: listeners :80 → Woodgrove, :8080 → Contoso, :8081 → Fabrikam; backend HTTP :80.
SEED_LISTENERS = {80: ("woodgrove", "10.0.1.6"), 8080: ("contoso", "10.0.1.4"),
                  8081: ("fabrikam", "10.0.1.5")}
# seed-system.md: the access matrix.
SEED_MATRIX = {"contoso": {"contoso", "woodgrove"}, "fabrikam": {"fabrikam", "woodgrove"},
               "woodgrove": {"woodgrove"}}
# seed-system.md timeline (minutes): shared infra ~2; vaults, identities, keys, DES ~4;
# CVMs + bootstrap ~12; gateway ~8; Bastion ~5 (debug); total 25-30, largely sequential.
SEED_MINUTES = {"shared": 2, "party": 4, "cvm": 12, "gateway": 8, "bastion": 5}
KEY_VAULT_NAME = re.compile(r"^[a-zA-Z](?!.*--)[a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$")


@pytest.fixture(scope="module")
def plan():
    return build_plan(load_spec(EXAMPLE))


@pytest.fixture(scope="module")
def debug_plan():
    doc = yaml.safe_load(EXAMPLE.read_text())
    return build_plan(parse_spec({**doc, "debug": True}))


def nsg_rows(plan):
    return [(r.priority, r.name, r.source, r.destination, r.protocol, r.destination_port,
             r.access) for r in plan.nsg_rules]


def test_nsg_is_exactly_the_seed_table(plan):
    assert nsg_rows(plan) == SEED_NSG
    assert all(r.direction == "Inbound" for r in plan.nsg_rules)
    assert plan.network.bastion_subnet is None
    assert plan.bastion is None


def test_debug_adds_rule_120_and_bastion(debug_plan):
    assert nsg_rows(debug_plan) == [*SEED_NSG[:2], SEED_NSG_DEBUG_RULE, SEED_NSG[2]]
    assert debug_plan.nsg_rules[2].debug_only
    assert debug_plan.network.bastion_subnet.name == "AzureBastionSubnet"
    assert debug_plan.network.bastion_subnet.cidr == "10.0.99.0/26"
    assert debug_plan.bastion.sku == "Basic"
    assert "bastion" in debug_plan.phase("finalize").depends_on


def test_network(plan):
    net = plan.network
    assert net.address_space == "10.0.0.0/16"
    assert (net.vm_subnet.name, net.vm_subnet.cidr) == ("VMSubnet", "10.0.1.0/24")
    assert (net.gateway_subnet.name, net.gateway_subnet.cidr) == ("AppGwSubnet", "10.0.2.0/24")
    assert (net.nat_gateway_name, net.nat_public_ip_name) == ("ng-demo", "pip-demo-nat")


def test_party_ips_ports_and_keys(plan):
    assert {p.party: (p.private_ip, p.gateway_port) for p in plan.parties} == {
        "contoso": ("10.0.1.4", 8080), "fabrikam": ("10.0.1.5", 8081),
        "woodgrove": ("10.0.1.6", 80)}
    for p in plan.parties:
        assert p.app_key_name == f"{p.party}-secret-key"
        assert (p.app_key_type, p.app_key_size) == ("RSA-HSM", 2048)
        assert p.disk_key_size == 3072
        assert p.vault_uri == f"https://{p.vault_name}.vault.azure.net"


def test_gateway_listeners(plan):
    gw = plan.gateway
    assert gw.sku == "WAF_v2" and (gw.waf_rule_set, gw.waf_rule_set_version) == ("OWASP", "3.2")
    assert gw.waf_mode == "Prevention"
    assert {li.frontend_port: (li.party, li.backend_ip) for li in gw.listeners} == SEED_LISTENERS
    assert {(li.backend_port, li.protocol, li.probe_path) for li in gw.listeners} == {
        (80, "Http", "/")}
    assert {li.frontend_protocol for li in gw.listeners} == {"Https"}
    assert gw.ssl_policy == "AppGwSslPolicy20220101S"
    spec = load_spec(EXAMPLE)
    assert (gw.tls_certificate_secret_id, gw.identity_id) == (
        spec.gateway.tls_certificate_secret_id, spec.gateway.identity_id)
    assert len({li.rule_priority for li in gw.listeners}) == 3


def test_grants_are_release_only_and_key_scoped(plan):
    pairs = {(g.key_owner, g.grantee) for g in plan.grants}
    assert pairs == {(o, g) for o, gs in SEED_MATRIX.items() for g in gs}
    for g in plan.grants:
        owner = plan.party(g.key_owner)
        assert (g.vault_name, g.key_name) == (owner.vault_name, owner.app_key_name)
        assert g.grantee_identity == plan.party(g.grantee).identity_name
        assert g.role == "Key Vault Crypto Service Release User"
        assert g.role_definition_id == "08bbd89e-9f13-488c-ac41-acfcb10c90ab"


def test_app_keys_allow_no_server_side_decrypt_or_unwrap(plan):
    # Key Vault would otherwise decrypt for any holder of a vault-wide crypto role (the
    # operator's Crypto Officer) without an attested environment.
    for party in plan.parties:
        assert set(party.app_key_ops) == {"encrypt", "wrapKey"}


def test_disk_key_roles(plan):
    roles = {(r.principal, r.role) for r in plan.parties[0].disk_key_roles}
    assert roles == {("disk-encryption-set", "Key Vault Crypto Service Encryption User"),
                     ("confidential-vm-orchestrator", "Key Vault Crypto Service Release User")}
    orchestrator = next(r for r in plan.parties[0].disk_key_roles if r.principal_app_id)
    assert orchestrator.principal_app_id == "bf7b6499-ff71-4aa2-97a4-f372087be7f0"


def test_release_policy_is_the_seed_policy_plus_the_specs_extra_claims(plan):
    # The seed's two conditions, plus the example's one extra claim (no debuggable guests).
    for p in plan.parties:
        block = p.release_policy["anyOf"][0]
        assert p.release_policy["version"] == "1.0.0"
        assert block["authority"] == NEU
        assert {(c["claim"], c["equals"]) for c in block["allOf"]} == {
            ("x-ms-isolation-tee.x-ms-compliance-status", "azure-compliant-cvm"),
            ("x-ms-isolation-tee.x-ms-attestation-type", "sevsnpvm"),
            ("x-ms-isolation-tee.x-ms-sevsnpvm-is-debuggable", False)}


def test_disk_policy_covers_the_tenant_authority(plan):
    authorities = [b["authority"] for b in plan.disk_key_release_policy["anyOf"]]
    assert authorities[0] == NEU and len(authorities) == len(set(authorities))
    platform = {"iss": NEU, "x-ms-attestation-type": "sevsnpvm",
                "x-ms-compliance-status": "azure-compliant-cvm"}
    assert evaluate(plan.disk_key_release_policy, platform).allowed


def test_access_matrix_is_the_seed_matrix(plan):
    matrix = plan.access_matrix
    for owner, grantees in SEED_MATRIX.items():
        assert set(matrix.releasers_of(owner)) == grantees
    assert matrix.releasable_by("woodgrove") == ["contoso", "fabrikam", "woodgrove"]
    assert not matrix.can_release("fabrikam", "contoso")
    assert {p.party: p.can_release for p in plan.parties} == {
        "contoso": ["contoso"], "fabrikam": ["fabrikam"],
        "woodgrove": ["contoso", "fabrikam", "woodgrove"]}


def _seconds(plan, *prefixes):
    return sum(p.estimate_seconds for p in plan.phases if p.name.split(":")[0] in prefixes)


def test_phase_estimates_reproduce_the_seed_timeline(plan, debug_plan):
    assert _seconds(plan, "resource-group", "network") == SEED_MINUTES["shared"] * 60
    assert _seconds(plan, "party", "app-key", "grants") == SEED_MINUTES["party"] * 60
    assert _seconds(plan, "cvm", "bootstrap", "attest", "verify") == SEED_MINUTES["cvm"] * 60
    assert _seconds(plan, "gateway") == SEED_MINUTES["gateway"] * 60
    assert _seconds(debug_plan, "bastion") == SEED_MINUTES["bastion"] * 60
    # the seed's 25-30 minutes, sequential, and each party's data storage (not in the seed)
    assert _seconds(plan, "data") == 3 * 30
    assert plan.sequential_seconds == 26 * 60 + 3 * 30
    assert debug_plan.sequential_seconds == 31 * 60 + 3 * 30


def test_critical_path_is_far_shorter_than_sequential(plan, debug_plan):
    # Shared infrastructure then the gateway dominate: 2 + 8 minutes.
    assert plan.critical_path == ["resource-group", "network", "gateway"]
    assert plan.critical_path_seconds == 600
    assert debug_plan.critical_path_seconds == 600
    assert plan.critical_path_seconds < plan.sequential_seconds / 2


def test_critical_path_of_the_per_party_chain(plan):
    without_gateway = [p for p in plan.phases if p.name not in ("gateway", "finalize")]
    chain, length = critical_path(without_gateway)
    # network (120 s) → cvm (150) → bootstrap (60; grants were done at 90 s) → attest → verify
    party = chain[-1].split(":")[1]
    assert chain == ["resource-group", "network", f"cvm:{party}", f"bootstrap:{party}",
                     f"attest:{party}", f"verify:{party}"]
    assert length == 10 + 110 + 150 + 60 + 20 + 10


def test_phase_graph_dependencies(plan):
    names = {p.name for p in plan.phases}
    for phase in plan.phases:
        assert set(phase.depends_on) <= names, phase.name
    assert plan.phase("gateway").depends_on == ["network"]
    assert set(plan.phase("grants:contoso").depends_on) == {"app-key:contoso", "party:woodgrove"}
    assert set(plan.phase("bootstrap:woodgrove").depends_on) == {
        "cvm:woodgrove", "grants:contoso", "grants:fabrikam", "grants:woodgrove"}
    assert set(plan.phase("cvm:fabrikam").depends_on) == {"network", "party:fabrikam"}
    assert set(plan.phase("finalize").depends_on) == {
        "verify:contoso", "verify:fabrikam", "verify:woodgrove", "gateway",
        "data:contoso", "data:fabrikam", "data:woodgrove"}
    modules = {p.module for p in plan.phases if p.module}
    assert modules == {"network", "party", "grants", "cvm", "gateway", "data"}
    assert plan.phase("app-key:contoso").kind == "activity"
    assert plan.phase("party:contoso").party == "contoso"


def test_names_follow_azure_rules_and_are_unique(plan):
    vaults = [p.vault_name for p in plan.parties]
    assert all(KEY_VAULT_NAME.match(v) for v in vaults), vaults
    assert len(set(vaults)) == 3
    for field in ("identity_name", "vm_name", "nic_name", "des_name", "os_disk_name"):
        values = [getattr(p, field) for p in plan.parties]
        assert len(set(values)) == 3, field
    assert plan.resource_group == "rg-demo"
    assert re.match(r"^[a-z][a-z0-9-]{1,61}[a-z0-9]$", plan.gateway.dns_label)


def test_plan_is_deterministic_and_names_are_stable(plan):
    again = build_plan(load_spec(EXAMPLE))
    assert again.model_dump_json() == plan.model_dump_json()
    assert [p.vault_name for p in plan.parties] == [
        "kv-demo-contoso-ba295c", "kv-demo-fabrikam-96072a", "kv-demo-woodgrove-d065d6"]


def test_globally_unique_names_depend_on_tenant_and_seed():
    doc = yaml.safe_load(EXAMPLE.read_text())
    base = build_plan(parse_spec(doc))
    other = build_plan(parse_spec({**doc, "name": "other"}))
    seeded = build_plan(parse_spec({**doc, "naming_seed": "team-b"}))
    assert base.parties[0].vault_name != other.parties[0].vault_name
    assert base.parties[0].vault_name != seeded.parties[0].vault_name
    assert base.gateway.dns_label != seeded.gateway.dns_label
    assert base.parties[0].identity_name == seeded.parties[0].identity_name


def test_long_names_still_fit_key_vault_rules():
    spec = parse_spec({
        "name": "abcdefgh",
        "gateway": GATEWAY,
        "parties": [
            {"name": "longpartyna1", "display_name": "A", "private_ip": "10.0.1.4",
             "gateway_port": 80, "releasable_by": ["longpartyna1", "longpartyna2"]},
            {"name": "longpartyna2", "display_name": "B", "private_ip": "10.0.1.5",
             "gateway_port": 81, "role": "aggregator"},
        ],
    })
    vaults = [p.vault_name for p in build_plan(spec).parties]
    assert all(KEY_VAULT_NAME.match(v) and len(v) <= 24 for v in vaults), vaults
    assert vaults[0] != vaults[1]
    accounts = [p.storage_account_name for p in build_plan(spec).parties]
    assert all(re.fullmatch(r"[a-z0-9]{3,24}", a) for a in accounts), accounts
    assert accounts[0] != accounts[1]


def test_storage_accounts_are_global_names_per_tenant_and_seed():
    doc = yaml.safe_load(EXAMPLE.read_text())
    base = build_plan(parse_spec(doc)).parties[0]
    other = build_plan(parse_spec({**doc, "name": "other"})).parties[0]
    seeded = build_plan(parse_spec({**doc, "naming_seed": "team-b"})).parties[0]
    assert len({base.storage_account_name, other.storage_account_name,
                seeded.storage_account_name}) == 3
    assert base.storage_account_url == f"https://{base.storage_account_name}.blob.core.windows.net"
    assert (base.data_container, base.data_blob) == ("contoso-data", "contoso-data.csv.sealed")


def test_plan_json_has_nsg_matrix_and_phases(plan):
    data = plan.model_dump(mode="json")
    assert {"nsg_rules", "access_matrix", "phases", "critical_path_seconds",
            "sequential_seconds", "grants", "gateway"} <= set(data)


def test_ten_party_example_scales():
    plan = build_plan(load_spec(REPO_ROOT / "examples" / "ten-party.yaml"))
    matrix = plan.access_matrix
    owners = [p.party for p in plan.parties if p.role == "owner"]
    assert len(plan.parties) == 10 and len(owners) == 8
    assert matrix.releasable_by("woodgrove") == [*owners, "woodgrove"]
    assert matrix.releasable_by("relecloud") == [*owners[:4], "relecloud"]
    assert not matrix.can_release("litware", "relecloud")
    assert not any(matrix.can_release(a, b) for a in owners for b in owners if a != b)
    # per-party work runs in parallel: the critical path does not grow with the party count
    assert plan.critical_path_seconds == 600
    assert plan.sequential_seconds == 120 + 10 * (80 + 30 + 240) + 480
    assert all(p.release_policy["anyOf"][0]["allOf"][-1] == {
        "claim": "x-ms-isolation-tee.x-ms-sevsnpvm-is-debuggable", "equals": False}
        for p in plan.parties)


def test_each_party_plan_carries_its_data_uploaders_and_ranges():
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["parties"][0]["data_uploaders"] = ["3f2504e0-4f89-41d3-9a0c-0305e82c3301"]
    doc["parties"][0]["data_allowed_ip_ranges"] = ["20.61.7.9"]
    contoso, fabrikam, _ = build_plan(parse_spec(doc)).parties
    assert contoso.data_uploaders == ["3f2504e0-4f89-41d3-9a0c-0305e82c3301"]
    assert contoso.data_allowed_ip_ranges == ["20.61.7.9/32"]
    assert (fabrikam.data_uploaders, fabrikam.data_allowed_ip_ranges) == ([], [])


@pytest.mark.parametrize("example", ["three-party.yaml", "ten-party.yaml"])
def test_data_phases_run_beside_the_critical_path(example):
    plan = build_plan(load_spec(REPO_ROOT / "examples" / example))
    assert plan.critical_path == ["resource-group", "network", "gateway"]
    assert plan.critical_path_seconds == 600
    for party in plan.parties:
        phase = plan.phase(f"data:{party.party}")
        assert (phase.module, phase.party, phase.kind) == ("data", party.party, "deployment")
        # after the subnet's storage endpoint and the identities its container grants
        readers = [g for g in party.releasable_by if g != party.party]
        assert set(phase.depends_on) == {"network", *(f"party:{r}" for r in readers)}
        assert phase.name in plan.phase("finalize").depends_on
        # done 150 s in (resource group, network, then 30 s), long before the gateway
        needed, todo = set(), [phase.name]
        while todo:
            name = todo.pop()
            needed.add(name)
            todo += plan.phase(name).depends_on
        chain, length = critical_path([p for p in plan.phases if p.name in needed])
        assert chain == ["resource-group", "network", phase.name]
        assert length == 10 + 110 + 30
