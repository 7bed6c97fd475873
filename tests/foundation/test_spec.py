"""Tenant spec: the reference example, every validation rule, all problems at once with paths."""

from __future__ import annotations

import copy
import json
from ipaddress import IPv4Address

import jsonschema
import pytest
import yaml

from cotenant.spec import SpecError, is_cvm_size, load_spec, parse_spec, spec_json_schema
from tests.conftest import REPO_ROOT
from tests.foundation.specs import GATEWAY

EXAMPLE = REPO_ROOT / "examples" / "three-party.yaml"


@pytest.fixture()
def doc() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def problems_of(data: dict) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    return [(p.path, p.message) for p in err.value.problems]


def assert_problem(data: dict, path: str, fragment: str) -> None:
    problems = problems_of(data)
    assert any(p == path and fragment in m for p, m in problems), problems


# ------------------------------------------------------------------ the reference scenario


def test_reference_example_matches_the_seed_scenario():
    spec = load_spec(EXAMPLE)
    assert spec.location == "northeurope"
    assert spec.vm_size == "Standard_DC2as_v5"
    assert spec.debug is False
    assert spec.authority == "https://sharedneu.neu.attest.azure.net"
    assert spec.image.urn == "Canonical:ubuntu-24_04-lts:cvm:latest"
    net = spec.network
    assert [str(net.vnet_cidr), str(net.vm_subnet), str(net.gateway_subnet),
            str(net.bastion_subnet)] == ["10.0.0.0/16", "10.0.1.0/24", "10.0.2.0/24",
                                         "10.0.99.0/26"]
    parties = {p.name: p for p in spec.parties}
    assert {n: (str(p.private_ip), p.gateway_port, p.role) for n, p in parties.items()} == {
        "contoso": ("10.0.1.4", 8080, "owner"),
        "fabrikam": ("10.0.1.5", 8081, "owner"),
        "woodgrove": ("10.0.1.6", 80, "aggregator"),
    }
    assert {n: set(p.releasable_by) for n, p in parties.items()} == {
        "contoso": {"contoso", "woodgrove"},
        "fabrikam": {"fabrikam", "woodgrove"},
        "woodgrove": {"woodgrove"},
    }
    assert [p.display_name for p in spec.parties] == ["Contoso", "Fabrikam", "Woodgrove"]


def test_json_file_loads_like_yaml(tmp_path, doc):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(doc))
    assert load_spec(path) == load_spec(EXAMPLE)


def test_defaults_and_region_normalisation(doc):
    minimal = {"name": "tiny", "location": "West Europe", "gateway": GATEWAY,
               "parties": [{"name": "solo", "display_name": "Solo", "private_ip": "10.0.1.4",
                            "gateway_port": 80}]}
    spec = parse_spec(minimal)
    assert spec.location == "westeurope"
    assert spec.authority == "https://sharedweu.weu.attest.azure.net"
    assert spec.vm_size == "Standard_DC2as_v5"
    assert spec.parties[0].releasable_by == ["solo"]
    assert spec.parties[0].role == "owner"
    assert spec.key_rotation_days == 90


def test_dedicated_authority_allows_a_region_without_shared_endpoint(doc):
    doc["location"] = "newregion"
    doc["attestation"] = {"authority": "https://MyAttest.neu.attest.azure.net/"}
    assert parse_spec(doc).authority == "https://myattest.neu.attest.azure.net"


def test_schema_is_valid_json_schema_and_accepts_the_example(doc):
    schema = spec_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(doc, schema)
    bad = {**doc, "unexpected": 1}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


# ------------------------------------------------------------------ every rule


def test_prefix_rules(doc):
    for bad in ("Demo", "1abc", "ab", "abcdefghi", "de-mo"):
        assert_problem({**doc, "name": bad}, "name", "does not match")
    for good in ("abc", "abcdefgh", "a1b2"):
        assert parse_spec({**doc, "name": good}).name == good


def test_invalid_party_names(doc):
    doc["parties"][1]["name"] = "Fab_rikam"
    assert_problem(doc, "parties[1].name", "does not match")


def test_duplicate_party_names(doc):
    doc["parties"][1]["name"] = "contoso"
    problems = problems_of(doc)
    assert ("parties[0].name", "duplicate party name 'contoso'") in problems
    assert ("parties[1].name", "duplicate party name 'contoso'") in problems


def test_grant_to_unknown_party(doc):
    doc["parties"][0]["releasable_by"] = ["contoso", "northwind"]
    assert_problem(doc, "parties[0].releasable_by[1]", "unknown party 'northwind'")


def test_owner_cannot_release_another_owners_key(doc):
    doc["parties"][0]["releasable_by"] = ["contoso", "fabrikam"]
    assert_problem(doc, "parties[0].releasable_by[1]", "only aggregators")


def test_key_nobody_may_release(doc):
    doc["parties"][2]["releasable_by"] = []
    assert_problem(doc, "parties[2].releasable_by", "no party may release")


def test_grant_listed_twice(doc):
    doc["parties"][2]["releasable_by"] = ["woodgrove", "woodgrove"]
    assert_problem(doc, "parties[2].releasable_by", "listed 2 times")


def test_ip_outside_vm_subnet(doc):
    doc["parties"][0]["private_ip"] = "10.0.2.4"
    assert_problem(doc, "parties[0].private_ip", "outside the VM subnet 10.0.1.0/24")


@pytest.mark.parametrize("ip", ["10.0.1.0", "10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.255"])
def test_reserved_addresses(doc, ip):
    doc["parties"][0]["private_ip"] = ip
    assert_problem(doc, "parties[0].private_ip", "reserved by Azure")


def test_first_and_last_usable_addresses_are_fine(doc):
    doc["parties"][0]["private_ip"] = "10.0.1.4"
    doc["parties"][1]["private_ip"] = "10.0.1.254"
    assert parse_spec(doc).parties[1].private_ip == IPv4Address("10.0.1.254")


def test_clashing_ips(doc):
    doc["parties"][2]["private_ip"] = "10.0.1.4"
    assert_problem(doc, "parties[2].private_ip", "already used by party 'contoso'")


def test_invalid_ip(doc):
    doc["parties"][0]["private_ip"] = "10.0.1.300"
    assert_problem(doc, "parties[0].private_ip", "IPv4")


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("gateway_subnet", "10.0.1.128/25", "overlaps network.vm_subnet"),
        ("bastion_subnet", "192.168.0.0/26", "not inside the VNet"),
        ("bastion_subnet", "10.0.99.0/27", "/26 or larger"),
        ("vm_subnet", "10.0.1.5/24", "host bits set (did you mean 10.0.1.0/24?)"),
        ("vm_subnet", "10.0.1.0/30", "too small for an Azure subnet"),
        ("vnet_cidr", "10.0.0.0/33", "not a valid IPv4 network"),
    ],
)
def test_network_rules(doc, field, value, fragment):
    doc["network"][field] = value
    assert_problem(doc, f"network.{field}", fragment)


def test_clashing_gateway_ports(doc):
    doc["parties"][1]["gateway_port"] = 8080
    assert_problem(doc, "parties[1].gateway_port", "already the gateway listener of party "
                                                   "'contoso'")


@pytest.mark.parametrize("port", [0, 65200, 70000])
def test_gateway_port_range(doc, port):
    doc["parties"][0]["gateway_port"] = port
    assert_problem(doc, "parties[0].gateway_port", "")


@pytest.mark.parametrize("size", ["Standard_D2s_v5", "Standard_DC2s_v3", "Standard_DC2es_v5",
                                  "Standard_DC3as_v5", "standard_dc2as_v5",
                                  "Standard_EC20as_v6", "Standard_DC2as_cc_v5"])
def test_unsupported_vm_sizes(doc, size):
    doc["vm_size"] = size
    assert_problem(doc, "vm_size", "not an AMD SEV-SNP Confidential VM size")


@pytest.mark.parametrize("size", ["Standard_DC2as_v5", "Standard_DC4as_v5", "Standard_DC8ads_v5",
                                  "Standard_EC20as_v5", "Standard_EC4ads_cc_v5",
                                  "Standard_DC16as_v6"])
def test_supported_vm_sizes(size):
    assert is_cvm_size(size)


def test_region_without_shared_attestation_fails_before_deploying(doc):
    doc["location"] = "atlantis"
    assert_problem(doc, "location", "no known shared attestation authority")


def test_dedicated_authority_must_be_https(doc):
    doc["attestation"] = {"authority": "http://myattest.example"}
    assert_problem(doc, "attestation.authority", "does not match")


def test_bad_extra_release_claim(doc):
    doc["extra_release_claims"] = [{"claim": "x-ms-isolation-tee.x-ms-sevsnpvm-is-debuggable",
                                    "equals": False},
                                   {"claim": "a", "resembles": 1}]
    problems = problems_of(doc)
    assert [p for p, _ in problems] == ["extra_release_claims[1].resembles",
                                        "extra_release_claims[1]"]


def test_key_rotation_bounds(doc):
    assert_problem({**doc, "key_rotation_days": 3}, "key_rotation_days", "greater than or equal")


def test_unknown_fields_and_missing_required(doc):
    del doc["parties"][0]["display_name"]
    doc["parties"][1]["colour"] = "blue"
    problems = problems_of(doc)
    assert ("parties[0].display_name", "Field required") in problems
    assert ("parties[1].colour", "unknown field") in problems


def test_no_parties(doc):
    assert_problem({**doc, "parties": []}, "parties", "at least 1")


def test_not_a_mapping():
    with pytest.raises(SpecError) as err:
        parse_spec(["not", "a", "mapping"])  # type: ignore[arg-type]
    assert "mapping" in str(err.value)


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML/JSON"):
        load_spec(bad)


def test_all_problems_reported_at_once(doc):
    broken = copy.deepcopy(doc)
    broken["name"] = "X"
    broken["location"] = "atlantis"
    broken["vm_size"] = "Standard_B2s"
    broken["network"]["gateway_subnet"] = "10.0.1.0/25"
    broken["parties"][0]["private_ip"] = "10.0.1.3"
    broken["parties"][1]["private_ip"] = "not-an-ip"  # this party fails to parse ...
    broken["parties"][1]["gateway_port"] = 8080
    broken["parties"][2]["gateway_port"] = 8080  # ... the others are still cross-checked
    broken["parties"][0]["releasable_by"] = ["contoso", "nobody"]
    paths = [p for p, _ in problems_of(broken)]
    assert paths == [
        "name",
        "parties[1].private_ip",
        "location",
        "vm_size",
        "network.gateway_subnet",
        "parties[0].private_ip",
        "parties[2].gateway_port",
        "parties[0].releasable_by[1]",
    ]


def test_multi_party_tenant_needs_an_aggregator(doc):
    doc["parties"][2]["role"] = "owner"
    doc["parties"][0]["releasable_by"] = ["contoso"]
    doc["parties"][1]["releasable_by"] = ["fabrikam"]
    assert_problem(doc, "parties", "needs at least one party with role aggregator")


def test_aggregator_without_any_foreign_key(doc):
    doc["parties"][0]["releasable_by"] = ["contoso"]
    doc["parties"][1]["releasable_by"] = ["fabrikam"]
    assert_problem(doc, "parties[2].role", "may release no other party's key")


def test_single_party_tenant_needs_no_aggregator():
    spec = parse_spec({"name": "solo", "gateway": GATEWAY, "parties": [
        {"name": "clinic", "display_name": "Clinic", "private_ip": "10.0.1.4",
         "gateway_port": 80}]})
    assert spec.parties[0].role == "owner"


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "examples").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_example_is_valid(path):
    assert load_spec(path).parties


def test_parsed_spec_round_trips_through_json():
    spec = load_spec(EXAMPLE)
    assert parse_spec(json.loads(spec.model_dump_json())) == spec


# ------------------------------------------------------------------ gateway TLS certificate


def test_gateway_certificate_is_required(doc):
    del doc["gateway"]
    assert ("gateway", "Field required") in problems_of(doc)


def test_gateway_certificate_secret_id_is_normalised_without_trailing_slash(doc):
    doc["gateway"]["tls_certificate_secret_id"] = "https://kv-certs.vault.azure.net/secrets/tls/"
    spec = parse_spec(doc)
    assert spec.gateway.tls_certificate_secret_id == "https://kv-certs.vault.azure.net/secrets/tls"


@pytest.mark.parametrize(("secret_id", "fragment"), [
    ("https://kv-certs.vault.azure.net/secrets/tls/0123456789abcdef0123456789abcdef",
     "versionless"),
    ("http://kv-certs.vault.azure.net/secrets/tls", "Key Vault secret URL"),
    ("https://attacker.example.com/secrets/tls", "Key Vault secret URL"),
    ("https://kv-certs.vault.azure.net/keys/tls", "Key Vault secret URL"),
    ("https://kv-certs.vault.azure.net.evil.com/secrets/tls", "Key Vault secret URL"),
])
def test_gateway_certificate_must_be_a_versionless_key_vault_secret(doc, secret_id, fragment):
    doc["gateway"]["tls_certificate_secret_id"] = secret_id
    assert_problem(doc, "gateway.tls_certificate_secret_id", fragment)


@pytest.mark.parametrize("identity_id", [
    "id-demo-agw",
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
    "Microsoft.Compute/virtualMachines/vm1",
    "/subscriptions/not-a-guid/resourceGroups/rg/providers/"
    "Microsoft.ManagedIdentity/userAssignedIdentities/id-agw",
])
def test_gateway_identity_must_be_a_user_assigned_identity(doc, identity_id):
    doc["gateway"]["identity_id"] = identity_id
    assert_problem(doc, "gateway.identity_id", "user-assigned identity resource id")


def test_gateway_section_rejects_unknown_fields(doc):
    doc["gateway"]["http_redirect"] = True
    assert_problem(doc, "gateway.http_redirect", "unknown field")


# ------------------------------------------------------------------ data storage of a party


def test_data_uploaders_are_optional_entra_object_ids(doc):
    assert all(p.data_uploaders == [] for p in parse_spec(doc).parties)
    doc["parties"][0]["data_uploaders"] = ["3F2504E0-4F89-41D3-9A0C-0305E82C3301"]
    assert parse_spec(doc).parties[0].data_uploaders == ["3f2504e0-4f89-41d3-9a0c-0305e82c3301"]


@pytest.mark.parametrize("bad", ["alice@contoso.com", "3f2504e0-4f89-41d3-9a0c", "",
                                 "3f2504e04f8941d39a0c0305e82c3301",
                                 "{3f2504e0-4f89-41d3-9a0c-0305e82c3301}"])
def test_a_non_guid_uploader_is_refused_naming_it(doc, bad):
    doc["parties"][1]["data_uploaders"] = ["3f2504e0-4f89-41d3-9a0c-0305e82c3301", bad]
    assert_problem(doc, "parties[1].data_uploaders", f"{bad!r}: not an Entra object id")


def test_an_uploader_listed_twice_is_refused(doc):
    doc["parties"][0]["data_uploaders"] = ["3f2504e0-4f89-41d3-9a0c-0305e82c3301",
                                           "3F2504E0-4F89-41D3-9A0C-0305E82C3301"]
    assert_problem(doc, "parties[0].data_uploaders", "listed twice")


def test_data_allowed_ip_ranges_must_be_public_ipv4_networks(doc):
    doc["parties"][0]["data_allowed_ip_ranges"] = ["20.61.7.9", "52.12.0.0/28"]
    assert [str(r) for r in parse_spec(doc).parties[0].data_allowed_ip_ranges] == [
        "20.61.7.9/32", "52.12.0.0/28"]
    doc["parties"][0]["data_allowed_ip_ranges"] = ["10.0.1.0/24"]
    assert_problem(doc, "parties[0].data_allowed_ip_ranges", "not a public IPv4 range")
    doc["parties"][0]["data_allowed_ip_ranges"] = ["52.12.0.1/28"]
    assert_problem(doc, "parties[0].data_allowed_ip_ranges", "did you mean 52.12.0.0/28?")


def test_schema_describes_the_uploader_ids(doc):
    schema = spec_json_schema()
    doc["parties"][0]["data_uploaders"] = ["3f2504e0-4f89-41d3-9a0c-0305e82c3301"]
    jsonschema.validate(doc, schema)
    doc["parties"][0]["data_uploaders"] = ["alice"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)
