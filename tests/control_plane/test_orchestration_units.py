"""Pure pieces of the orchestrators: the phase graph they schedule and report bookkeeping."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from cotenant.plan import build_plan
from cotenant.spec import parse_spec
from cotenant.wire.reports import key_name_of
from orchestrators.deploy import schedule_graph
from orchestrators.party import missing_outcomes, outcomes_problem, release_outcomes
from orchestrators.rotate import confirmed, expected_rotations

REPO = Path(__file__).resolve().parents[2]


def plan(name: str = "three-party.yaml") -> dict:
    spec = yaml.safe_load((REPO / "examples" / name).read_text())
    return build_plan(parse_spec(spec)).model_dump(mode="json")


def test_each_party_chain_is_one_node_after_the_grants_it_needs():
    graph = schedule_graph(plan())
    assert "cvm:contoso" not in graph and "verify:woodgrove" not in graph
    assert set(graph["provision:woodgrove"]) == {
        "network", "party:woodgrove", "grants:contoso", "grants:fabrikam", "grants:woodgrove"}
    # contoso's agent probes the others' keys: they must exist for their vaults to refuse it
    assert set(graph["provision:contoso"]) == {"network", "party:contoso", "grants:contoso",
                                               "app-key:fabrikam", "app-key:woodgrove"}
    assert set(graph["finalize"]) == {"provision:contoso", "provision:fabrikam",
                                      "provision:woodgrove", "gateway", "data:contoso",
                                      "data:fabrikam", "data:woodgrove"}
    # each party's storage beside its chain, once the readers' identities exist
    assert set(graph["data:contoso"]) == {"network", "party:woodgrove"}
    assert graph["data:woodgrove"] == ["network"]
    assert graph["gateway"] == ["network"]


def test_graph_is_acyclic_and_complete_for_ten_parties():
    from graphlib import TopologicalSorter

    graph = schedule_graph(plan("ten-party.yaml"))
    order = list(TopologicalSorter(graph).static_order())
    assert order[0] == "resource-group" and order[-1] == "finalize"
    assert sum(n.startswith("provision:") for n in graph) == 10


def _outcomes(*outcomes: dict) -> dict:
    """An ``outcomes`` report of contoso's agent, as the orchestrator receives it."""
    return {"event": "outcomes", "party": "contoso", "vm": "vm-demo-contoso",
            "outcomes": list(outcomes)}


def test_release_outcomes_map_key_ids_to_owners():
    owners = {"contoso-secret-key": "contoso", "fabrikam-secret-key": "fabrikam"}
    report = _outcomes(
        {"event": "released", "key_id": "https://kv/keys/contoso-secret-key/abc",
         "key_version": "abc", "at": "2026-11-27T12:00:00Z"},
        {"event": "release-denied", "key_id": "https://kv2/keys/fabrikam-secret-key",
         "error_code": "Forbidden/ForbiddenByRbac", "at": "2026-11-27T12:00:01Z"},
        {"event": "released", "key_id": "https://kv/keys/unknown-key/1"},
    )
    got = release_outcomes(report, owners)
    assert got["contoso"]["outcome"] == "released" and got["contoso"]["version"] == "abc"
    assert got["contoso"]["at"] == "2026-11-27T12:00:00Z"
    assert got["fabrikam"]["outcome"] == "refused"
    assert set(got) == {"contoso", "fabrikam"}
    assert missing_outcomes(report, owners) == []
    assert key_name_of(None) is None and key_name_of("https://kv/secrets/x") is None


def test_a_key_without_outcome_is_named_missing():
    owners = {"contoso-secret-key": "contoso", "fabrikam-secret-key": "fabrikam",
              "woodgrove-secret-key": "woodgrove"}
    report = _outcomes({"event": "released", "key_id": "https://kv/keys/contoso-secret-key/1",
                        "key_version": "1"},
                       {"event": "released", "key_id": "https://kv/keys/unknown-key/1"})
    assert missing_outcomes(report, owners) == ["fabrikam-secret-key", "woodgrove-secret-key"]
    assert missing_outcomes(_outcomes(), owners) == sorted(owners)
    # the step fails naming them
    assert outcomes_problem(report, owners) == (
        "the guest agent of party contoso reported no outcome for fabrikam-secret-key, "
        "woodgrove-secret-key; it must try every key of the tenant (its configuration's keys "
        "and isolation_probes)")
    complete = _outcomes(*report["outcomes"], *[
        {"event": "isolation-refused", "key_id": f"https://kv{i}/keys/{name}"}
        for i, name in enumerate(("fabrikam-secret-key", "woodgrove-secret-key"))])
    assert outcomes_problem(complete, owners) is None


def test_rotation_needs_every_grantee_with_the_exact_new_version():
    p = plan()
    expected = expected_rotations(p, {"contoso": "v2", "fabrikam": "f2", "woodgrove": "w2"})
    assert expected[("woodgrove", "contoso-secret-key")] == "v2"
    assert ("fabrikam", "contoso-secret-key") not in expected
    stale = {"event": "rotated", "party": "woodgrove",
             "key_id": "https://kv/keys/contoso-secret-key/v1", "key_version": "v1"}
    good = {**stale, "key_id": "https://kv/keys/contoso-secret-key/v2", "key_version": "v2"}
    assert confirmed([stale], expected) == set()
    assert confirmed([good], expected) == {("woodgrove", "contoso-secret-key")}


def test_steps_carry_the_spec_and_activities_rebuild_the_same_plan():
    from activities.common import plan_of
    from orchestrators.deploy import party_input

    spec = yaml.safe_load((REPO / "examples" / "ten-party.yaml").read_text())
    full = build_plan(parse_spec(spec))
    rebuilt = plan_of({"spec": spec})
    assert rebuilt == full
    assert plan_of({"spec": dict(reversed(list(spec.items())))}) is rebuilt  # cached per spec
    assert plan_of({"plan": full.model_dump(mode="json")}) == full
    doc = full.model_dump(mode="json")
    given = party_input(doc, spec, "contoso", {"poll_seconds": 1.0})
    assert "plan" not in given and given["spec"] == spec
    assert given["vm_name"] == full.party("contoso").vm_name
    assert given["key_owner"] == {p.app_key_name: p.party for p in full.parties}
    # the plan is several times the spec: it stays out of every step's input and history
    assert len(json.dumps(given)) * 5 < len(json.dumps(doc))


def test_ready_steps_start_longest_remaining_path_first():
    """When the network ends, the gateway (480 s to go, the critical path) must be dispatched
    before the ten parties' data storage (30 s each) that became ready with it."""
    from orchestrators.deploy import remaining_path

    doc = plan("ten-party.yaml")
    graph = schedule_graph(doc)
    remaining = remaining_path(doc, graph)
    estimate = {p["name"]: p["estimate_seconds"] for p in doc["phases"]}
    assert remaining["finalize"] == estimate["finalize"]
    assert remaining["gateway"] == estimate["gateway"] + estimate["finalize"]
    assert remaining["resource-group"] == doc["critical_path_seconds"]
    chain = sum(estimate[f"{k}:contoso"] for k in ("cvm", "bootstrap", "attest", "verify"))
    assert remaining["provision:contoso"] == chain + estimate["finalize"]
    after_network = [n for n, deps in graph.items() if "network" in deps]
    assert {"gateway", "data:contoso", "provision:contoso"} <= set(after_network)
    order = sorted(after_network, key=lambda n: -remaining[n])
    assert order[0] == "gateway"
    assert all(n.startswith("data:") for n in order[-10:])  # 30 s to go: last


def test_a_cyclic_phase_graph_is_refused():
    import pytest

    from orchestrators.common import StepFailed
    from orchestrators.deploy import remaining_path

    doc = plan()
    graph = schedule_graph(doc)
    graph["network"] = [*graph["network"], "gateway"]
    with pytest.raises(StepFailed, match="cycle"):
        remaining_path(doc, graph)


def test_the_plan_outline_schedules_exactly_like_the_plan():
    """deploy_tenant keeps only the outline of the plan in its history (replayed every
    episode): it must yield the same graph, priorities and party inputs as the full plan."""
    from orchestrators.deploy import party_input, remaining_path

    spec = yaml.safe_load((REPO / "examples" / "ten-party.yaml").read_text())
    full = build_plan(parse_spec(spec))
    doc, outline = full.model_dump(mode="json"), full.outline()
    assert schedule_graph(outline) == schedule_graph(doc)
    assert remaining_path(outline, schedule_graph(outline)) == \
        remaining_path(doc, schedule_graph(doc))
    for party in full.parties:
        assert party_input(outline, spec, party.party, {}) == \
            party_input(doc, spec, party.party, {})
    assert {k: doc[k] for k in ("tenant", "resource_group", "debug", "critical_path_seconds",
                                "sequential_seconds")}.items() <= outline.items()
    assert len(json.dumps(outline)) * 4 < len(json.dumps(doc))


def test_isolation_probe_outcomes_are_the_matrix_evidence_and_a_release_breaks_it():
    from orchestrators.party import isolation_breaches

    owners = {"contoso-secret-key": "contoso", "fabrikam-secret-key": "fabrikam",
              "woodgrove-secret-key": "woodgrove"}
    released = {"event": "released", "key_id": "https://kv/keys/contoso-secret-key/abc",
                "key_version": "abc"}
    probe = {"event": "isolation-refused", "key_id": "https://kv2/keys/fabrikam-secret-key",
             "error_code": "Forbidden/ForbiddenByRbac", "error": "Caller is not authorized"}
    got = release_outcomes(_outcomes(released, probe), owners)
    assert got["fabrikam"]["outcome"] == "refused"
    assert got["fabrikam"]["code"] == "Forbidden/ForbiddenByRbac"
    refused = {"event": "isolation-refused",
               "key_id": "https://kv3/keys/woodgrove-secret-key", "error_code": "Forbidden"}
    assert isolation_breaches(_outcomes(released, probe, refused), owners) == []
    # A probe the vault released, among the others of the report: named, a "released" cell
    broken = {"event": "isolation-broken",
              "key_id": "https://kv3/keys/woodgrove-secret-key", "error_code": "IsolationBroken"}
    assert isolation_breaches(_outcomes(released, probe, broken), owners) == [
        "the vault of woodgrove released woodgrove-secret-key to contoso's VM vm-demo-contoso"]
    # it fails the party, before anything else is checked
    assert outcomes_problem(_outcomes(broken), owners).startswith(
        "isolation broken: the vault of woodgrove released woodgrove-secret-key to contoso's")
    assert release_outcomes(_outcomes(broken), owners)["woodgrove"]["outcome"] == "released"
