"""Access matrix: a party can release a key only with a grant AND a policy its CVM satisfies."""

from __future__ import annotations

import yaml

from cotenant.matrix import build_access_matrix, expected_cvm_claims
from cotenant.plan import build_plan
from cotenant.policy import build_release_policy, evaluate
from cotenant.spec import parse_spec
from tests.conftest import REPO_ROOT

NEU = "https://sharedneu.neu.attest.azure.net"
PARTIES = ["contoso", "fabrikam", "woodgrove"]
KEYS = {p: f"{p}-secret-key" for p in PARTIES}


def test_grant_without_satisfiable_policy_does_not_release():
    impossible = build_release_policy(NEU, [
        {"claim": "x-ms-isolation-tee.x-ms-sevsnpvm-is-debuggable", "equals": True}])
    policies = {"contoso": impossible, "fabrikam": build_release_policy(NEU),
                "woodgrove": build_release_policy(NEU)}
    matrix = build_access_matrix(PARTIES, KEYS, {("contoso", "woodgrove"), ("fabrikam",
                                 "woodgrove")}, policies, NEU)
    entry = matrix.entry("contoso", "woodgrove")
    assert entry.granted and not entry.policy_allows and not entry.can_release
    assert matrix.can_release("fabrikam", "woodgrove")
    assert matrix.rows()[0] == ["contoso-secret-key", "-", "-", "- (policy)"]


def test_policy_without_grant_does_not_release():
    policies = {p: build_release_policy(NEU) for p in PARTIES}
    matrix = build_access_matrix(PARTIES, KEYS, {("woodgrove", "woodgrove")}, policies, NEU)
    entry = matrix.entry("contoso", "contoso")
    assert entry.policy_allows and not entry.granted and not entry.can_release
    assert matrix.releasers_of("woodgrove") == ["woodgrove"]


def test_policy_for_another_authority_does_not_release():
    weu = "https://sharedweu.weu.attest.azure.net"
    policies = {p: build_release_policy(weu) for p in PARTIES}
    matrix = build_access_matrix(PARTIES, KEYS, {("contoso", "contoso")}, policies, NEU)
    assert not matrix.can_release("contoso", "contoso")


def test_expected_claims_satisfy_the_seed_policy_only_for_their_authority():
    claims = expected_cvm_claims(NEU)
    assert evaluate(build_release_policy(NEU), claims).allowed
    assert not evaluate(build_release_policy("https://sharedweu.weu.attest.azure.net"),
                        claims).allowed


def test_extra_claims_from_the_spec_are_honoured_in_the_plan():
    doc = yaml.safe_load((REPO_ROOT / "examples" / "three-party.yaml").read_text())
    doc["extra_release_claims"] = [
        {"claim": "x-ms-isolation-tee.x-ms-sevsnpvm-is-debuggable", "equals": "false"}]
    plan = build_plan(parse_spec(doc))
    assert plan.access_matrix.can_release("contoso", "woodgrove")
    doc["extra_release_claims"] = [{"claim": "x-ms-isolation-tee.x-ms-sevsnpvm-vmpl",
                                    "greater": 0}]
    plan = build_plan(parse_spec(doc))
    assert plan.access_matrix.releasable_by("woodgrove") == []
