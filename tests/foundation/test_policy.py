"""Release-policy language: grammar, Key Vault evaluation semantics, real tokens and policies."""

from __future__ import annotations

import base64
import copy
import json

import pytest

from cotenant.policy import (
    TEE_DEBUGGABLE,
    PolicyError,
    build_disk_release_policy,
    build_release_policy,
    condition_problems,
    evaluate,
    explain,
    normalize_authority,
    parse_policy,
)
from tests.conftest import FIXTURES

SAMPLES = FIXTURES / "policy"
WEU = "https://sharedweu.weu.attest.azure.net"


def jwt_claims(name: str) -> dict:
    """The payload of a real captured token (signature and expiry deliberately not checked)."""
    payload = (SAMPLES / name).read_text().strip().split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def sample_policy(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text())


@pytest.fixture(scope="module")
def cvm_token() -> dict:
    return jwt_claims("maa-cvm-guest-token-3.jwt")  # real CVM guest token, sharedweu, expired


def one_block(*conditions: dict, authority: str = WEU, combinator: str = "allOf") -> dict:
    return {"version": "1.0.0", "anyOf": [{"authority": authority, combinator: list(conditions)}]}


# ------------------------------------------------------------------ real tokens and policies


def test_seed_policy_allows_real_cvm_guest_token(cvm_token):
    decision = evaluate(build_release_policy(WEU), cvm_token)
    assert decision.allowed, decision.explanation
    assert decision.authority == WEU


def test_published_cvm_guest_policy_allows_real_token(cvm_token):
    assert evaluate(sample_policy("policy-cvm-guest.json"), cvm_token).allowed
    assert evaluate(sample_policy("policy-quickstart-release_policy-data.json"), cvm_token).allowed


def test_top_level_attestation_type_policy_denies_guest_token(cvm_token):
    policy = one_block({"claim": "x-ms-attestation-type", "equals": "sevsnpvm"})
    decision = evaluate(policy, cvm_token)
    assert not decision.allowed
    assert "x-ms-attestation-type" in decision.explanation
    assert '"azurevm"' in decision.explanation


def test_default_cvm_disk_policy_denies_guest_token(cvm_token):
    # Azure's default CVM policy is written for the platform's SEV-SNP token (top-level claims).
    assert not evaluate(sample_policy("policy-default-cvm.json"), cvm_token).allowed


def test_datadisk_policy_with_nested_anyof_allows_guest_token(cvm_token):
    assert evaluate(sample_policy("policy-cvm-datadisk.json"), cvm_token).allowed


def test_token_from_another_region_is_denied():
    token = jwt_claims("maa-cvm-guest-token.jwt")  # issued by sharedwus
    decision = evaluate(build_release_policy(WEU), token)
    assert not decision.allowed
    assert "not an authority" in decision.explanation
    assert evaluate(build_release_policy("https://sharedwus.wus.attest.azure.net"), token).allowed


def test_trusted_vm_without_tee_is_denied():
    token = jwt_claims("maa-tvm-guest-token-no-tee.jwt")
    decision = evaluate(build_release_policy(token["iss"]), token)
    assert not decision.allowed
    assert "missing" in decision.explanation


def test_platform_sevsnpvm_token_matches_top_level_policy_only():
    token = jwt_claims("maa-sevsnpvm-token.jwt")
    top_level = one_block(
        {"claim": "x-ms-attestation-type", "equals": "sevsnpvm"}, authority=token["iss"]
    )
    assert evaluate(top_level, token).allowed
    assert not evaluate(build_release_policy(token["iss"]), token).allowed


def test_azurelocal_policy_missing_claim_denies(cvm_token):
    decision = evaluate(sample_policy("policy-cvm-guest-azurelocal.json"), cvm_token)
    assert not decision.allowed
    assert "x-ms-policy.edge-compliant-cvm" in decision.explanation
    assert "missing" in decision.explanation


@pytest.mark.parametrize(
    "name",
    ["policy-cvm-guest.json", "policy-cvm-guest-azurelocal.json", "policy-default-cvm.json",
     "policy-cvm-datadisk.json", "policy-quickstart-release_policy-data.json"],
)
def test_published_policies_parse_and_round_trip(name):
    doc = sample_policy(name)
    assert parse_policy(doc).to_dict() == doc
    assert parse_policy(json.dumps(doc)).to_dict() == doc


def test_aci_template_with_placeholder_authority_is_rejected_with_path():
    with pytest.raises(PolicyError) as err:
        parse_policy(sample_policy("policy-aci-hostdata.json"))
    assert [p.path for p in err.value.problems] == ["anyOf[0].authority"]


def test_aci_policy_loose_string_values_match_typed_claims():
    doc = sample_policy("policy-aci-encfs-v0.2.json")  # "false"/"0" against bool/int claims
    doc["anyOf"][0]["authority"] = WEU
    claims = {
        "iss": WEU,
        "x-ms-sevsnpvm-hostdata": "aaa7***7cc09d",
        "x-ms-compliance-status": "azure-compliant-uvm",
        "x-ms-sevsnpvm-is-debuggable": False,
        "x-ms-sevsnpvm-vmpl": 0,
    }
    assert evaluate(doc, claims).allowed
    assert not evaluate(doc, {**claims, "x-ms-sevsnpvm-is-debuggable": True}).allowed
    assert not evaluate(doc, {**claims, "x-ms-sevsnpvm-vmpl": 1}).allowed


def test_key_vault_base64url_policy_data_is_accepted(cvm_token):
    doc = build_release_policy(WEU)
    data = base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")
    assert parse_policy(data).to_dict() == doc
    assert evaluate(parse_policy(data.encode()), cvm_token).allowed


# ------------------------------------------------------------------ semantics


@pytest.mark.parametrize(
    ("operator", "value", "claim", "expected"),
    [
        ("equals", "sevsnpvm", "sevsnpvm", True),
        ("equals", "sevsnpvm", "tdxvm", False),
        ("notEquals", "tdxvm", "sevsnpvm", True),
        ("notEquals", "sevsnpvm", "sevsnpvm", False),
        ("less", 5, 4, True),
        ("less", 5, 5, False),
        ("lessOrEquals", 5, 5, True),
        ("lessOrEquals", 5, 6, False),
        ("greater", 2, 3, True),
        ("greater", 2, 2, False),
        ("greaterOrEquals", 2, 2, True),
        ("greaterOrEquals", 2, 1, False),
        ("greater", "9", 10, True),  # numeric, not lexicographic
        ("less", 10, "9", True),
        ("exists", True, "anything", True),
        ("equals", "false", False, True),
        ("equals", False, "false", True),
        ("equals", "true", False, False),
        ("equals", "0", 0, True),
        ("equals", 0, "0", True),
        ("equals", 1, True, False),  # boolean true is "true", not "1"
        ("equals", 8.0, 8, True),
    ],
)
def test_operators_and_loose_comparison(operator, value, claim, expected):
    policy = one_block({"claim": "tee.value", operator: value})
    decision = evaluate(policy, {"iss": WEU, "tee": {"value": claim}})
    assert decision.allowed is expected, decision.explanation


@pytest.mark.parametrize("operator", ["equals", "notEquals", "less", "greater", "exists"])
def test_missing_claim_is_false_for_every_operator(operator):
    value = True if operator == "exists" else "x"
    policy = one_block({"claim": "tee.absent", operator: value})
    decision = evaluate(policy, {"iss": WEU, "tee": {"value": 1}})
    assert not decision.allowed
    assert "missing" in decision.explanation


def test_arrays_are_not_addressable_and_objects_not_comparable():
    claims = {"iss": WEU, "pcrs": [0, 1, 2], "obj": {"a": 1}}
    assert not evaluate(one_block({"claim": "pcrs.0", "equals": "0"}), claims).allowed
    assert not evaluate(one_block({"claim": "obj", "equals": "{}"}), claims).allowed
    assert not evaluate(one_block({"claim": "obj", "notEquals": "x"}), claims).allowed
    assert evaluate(one_block({"claim": "obj", "exists": True}), claims).allowed


def test_nested_anyof_allof():
    inner = {"anyOf": [
        {"claim": "t", "equals": "tdxvm"},
        {"allOf": [{"claim": "t", "equals": "sevsnpvm"}, {"claim": "svn", "greaterOrEquals": 3}]},
    ]}
    policy = one_block({"claim": "status", "equals": "ok"}, inner)
    base = {"iss": WEU, "status": "ok"}
    assert evaluate(policy, {**base, "t": "tdxvm"}).allowed
    assert evaluate(policy, {**base, "t": "sevsnpvm", "svn": 3}).allowed
    denied = evaluate(policy, {**base, "t": "sevsnpvm", "svn": 2})
    assert not denied.allowed
    assert "none of" in denied.explanation and "svn greaterOrEquals 3 fails" in denied.explanation
    assert not evaluate(policy, {**base, "status": "bad", "t": "tdxvm"}).allowed


def test_block_level_anyof():
    policy = one_block({"claim": "a", "equals": 1}, {"claim": "b", "equals": 2},
                       combinator="anyOf")
    assert evaluate(policy, {"iss": WEU, "b": 2}).allowed
    assert not evaluate(policy, {"iss": WEU, "a": 2, "b": 1}).allowed


def test_root_allof_requires_every_block():
    policy = {"version": "1.0.0", "allOf": [
        {"authority": WEU, "allOf": [{"claim": "a", "equals": 1}]},
        {"authority": "https://sharedneu.neu.attest.azure.net", "allOf": [
            {"claim": "a", "equals": 1}]},
    ]}
    decision = evaluate(policy, {"iss": WEU, "a": 1})
    assert not decision.allowed
    assert "all of its authorities" in decision.explanation


@pytest.mark.parametrize(
    ("authority", "issuer", "expected"),
    [
        (WEU, WEU, True),
        (WEU + "/", WEU, True),
        (WEU, WEU + "/", True),
        ("https://SharedWEU.weu.attest.azure.net/", WEU, True),
        (WEU + "//", WEU, False),  # only one trailing slash is ignored
        ("https://sharedweu.weu.attest.azure.net.evil.example", WEU, False),
        ("https://sharedneu.neu.attest.azure.net", WEU, False),
    ],
)
def test_authority_matching(authority, issuer, expected):
    policy = one_block({"claim": "a", "equals": 1}, authority=authority)
    assert evaluate(policy, {"iss": issuer, "a": 1}).allowed is expected


def test_issuer_argument_overrides_iss_claim():
    policy = one_block({"claim": "a", "equals": 1})
    assert evaluate(policy, {"iss": "https://other.example", "a": 1}, issuer=WEU).allowed
    assert not evaluate(policy, {"iss": WEU, "a": 1}, issuer="https://other.example").allowed


def test_token_without_issuer_is_denied():
    decision = evaluate(one_block({"claim": "a", "equals": 1}), {"a": 1})
    assert not decision.allowed and "issuer" in decision.explanation


def test_normalize_authority():
    assert normalize_authority("https://X.attest.azure.net/") == "https://x.attest.azure.net"
    assert normalize_authority(" https://x.attest.azure.net ") == "https://x.attest.azure.net"


# ------------------------------------------------------------------ grammar


@pytest.mark.parametrize(
    ("doc", "paths"),
    [
        ({"anyOf": [{"authority": WEU, "allOf": [{"claim": "a", "equals": 1}]}]}, ["version"]),
        ({"version": "1.0.0"}, [""]),
        ({"version": "1.0.0", "anyOf": []}, ["anyOf"]),
        ({"version": "1.0.0", "anyOf": [], "allOf": []}, [""]),
        ({"version": "1.0.0", "anyOf": ["x"]}, ["anyOf[0]"]),
        ({"version": "1.0.0", "anyOf": [{"allOf": [{"claim": "a", "equals": 1}]}]},
         ["anyOf[0].authority"]),
        ({"version": "1.0.0", "anyOf": [{"authority": "http://x", "allOf": [
            {"claim": "a", "equals": 1}]}]}, ["anyOf[0].authority"]),
        ({"version": "1.0.0", "anyOf": [{"authority": WEU}]}, ["anyOf[0]"]),
        (one_block({"claim": "a"}), ["anyOf[0].allOf[0]"]),
        (one_block({"claim": "a", "equals": 1, "less": 2}), ["anyOf[0].allOf[0]"]),
        (one_block({"claim": "a", "matches": "x"}),
         ["anyOf[0].allOf[0].matches", "anyOf[0].allOf[0]"]),
        (one_block({"claim": "a", "equals": {"x": 1}}), ["anyOf[0].allOf[0].equals"]),
        (one_block({"claim": "a", "equals": [1]}), ["anyOf[0].allOf[0].equals"]),
        (one_block({"claim": "a", "equals": None}), ["anyOf[0].allOf[0].equals"]),
        (one_block({"claim": "", "equals": 1}), ["anyOf[0].allOf[0].claim"]),
        (one_block({"claim": "a..b", "equals": 1}), ["anyOf[0].allOf[0].claim"]),
        (one_block({"claim": "a", "exists": False}), ["anyOf[0].allOf[0].exists"]),
        (one_block({"anyOf": []}), ["anyOf[0].allOf[0].anyOf"]),
        (one_block({"authority": WEU, "allOf": [{"claim": "a", "equals": 1}]}),
         ["anyOf[0].allOf[0].authority"]),
        ({**one_block({"claim": "a", "equals": 1}), "extra": 1}, ["extra"]),
    ],
)
def test_grammar_errors_have_paths(doc, paths):
    with pytest.raises(PolicyError) as err:
        parse_policy(doc)
    assert [p.path for p in err.value.problems] == paths


def test_all_grammar_errors_reported_at_once():
    doc = {"anyOf": [
        {"authority": "nope", "allOf": [{"claim": "a"}, {"claim": "b", "equals": {}}]},
        {"authority": WEU, "anyOf": [{"claim": "c", "bogus": 1, "equals": 1}]},
    ]}
    with pytest.raises(PolicyError) as err:
        parse_policy(doc)
    assert [p.path for p in err.value.problems] == [
        "version", "anyOf[0].authority", "anyOf[0].allOf[0]", "anyOf[0].allOf[1].equals",
        "anyOf[1].anyOf[0].bogus",
    ]


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]", b"\xff\xfe"])
def test_unparseable_documents(text):
    with pytest.raises(PolicyError):
        parse_policy(text)


def test_condition_problems_for_spec_extra_claims():
    assert condition_problems({"claim": "a.b", "equals": "false"}, "x[0]") == []
    assert [p.path for p in condition_problems({"claim": 3, "equals": 1}, "x[0]")] == ["x[0].claim"]


# ------------------------------------------------------------------ building


def test_build_release_policy_shape():
    policy = build_release_policy(WEU + "/", [
        {"claim": "x-ms-isolation-tee.x-ms-sevsnpvm-is-debuggable", "equals": False}])
    assert policy == {
        "version": "1.0.0",
        "anyOf": [{"authority": WEU, "allOf": [
            {"claim": "x-ms-isolation-tee.x-ms-attestation-type", "equals": "sevsnpvm"},
            {"claim": "x-ms-isolation-tee.x-ms-compliance-status",
             "equals": "azure-compliant-cvm"},
            {"claim": "x-ms-isolation-tee.x-ms-sevsnpvm-is-debuggable", "equals": False},
        ]}],
    }


def test_default_release_policy_refuses_debuggable_and_unsure_guests(cvm_token):
    policy = build_release_policy(WEU)  # no extra claims: still no debuggable guest
    assert evaluate(policy, cvm_token).allowed
    debuggable = copy.deepcopy(cvm_token)
    debuggable["x-ms-isolation-tee"]["x-ms-sevsnpvm-is-debuggable"] = True
    assert not evaluate(policy, debuggable).allowed
    unsure = copy.deepcopy(cvm_token)  # a token that does not say counts as debuggable
    del unsure["x-ms-isolation-tee"]["x-ms-sevsnpvm-is-debuggable"]
    assert not evaluate(policy, unsure).allowed
    # an extra claim can narrow the policy but never drop the base conditions
    looser = build_release_policy(WEU, [{"claim": TEE_DEBUGGABLE, "equals": True}])
    assert not evaluate(looser, debuggable).allowed and not evaluate(looser, cvm_token).allowed


def test_extra_claim_restricts_release(cvm_token):
    debuggable = copy.deepcopy(cvm_token)
    debuggable["x-ms-isolation-tee"]["x-ms-sevsnpvm-is-debuggable"] = True
    policy = build_release_policy(WEU, [
        {"claim": "x-ms-isolation-tee.x-ms-sevsnpvm-is-debuggable", "equals": "false"}])
    assert evaluate(policy, cvm_token).allowed
    assert not evaluate(policy, debuggable).allowed


def test_build_rejects_bad_extra_claim():
    with pytest.raises(PolicyError):
        build_release_policy(WEU, [{"claim": "a", "resembles": 1}])


def test_disk_policy_is_for_platform_tokens():
    policy = build_disk_release_policy([WEU, "https://sharedneu.neu.attest.azure.net/"])
    assert [b["authority"] for b in policy["anyOf"]] == [
        WEU, "https://sharedneu.neu.attest.azure.net"]
    platform = jwt_claims("maa-sevsnpvm-token.jwt")
    platform_here = {**platform, "x-ms-compliance-status": "azure-compliant-cvm"}
    assert evaluate(policy, platform_here, issuer=WEU).allowed


def test_explain_lists_every_authority_block(cvm_token):
    text = explain(sample_policy("policy-cvm-datadisk.json"), cvm_token)
    lines = text.splitlines()
    assert lines[0].startswith("allowed: https://sharedweu.weu.attest.azure.net/")
    assert len(lines) == 1 + len(sample_policy("policy-cvm-datadisk.json")["anyOf"])
    assert sum(line.endswith(": not the issuer") for line in lines) == len(lines) - 2
