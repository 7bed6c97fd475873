"""``deploy_tenant``: run the plan's phase graph with as much parallelism as it allows.

Phases come from the plan (``cotenant.plan``). Each party's own chain (CVM, bootstrap,
attestation, verification) runs in a ``provision_party`` sub-orchestration; the steps that
cross parties (identity and vault, app key, key-scoped grants, each party's data storage
with read grants for the parties that may release its key) and the shared ones (network,
gateway, Bastion) are scheduled here as soon as their dependencies are done. A CVM
starts only after the grants on every key it may release exist, so its guest agent's first
release attempts meet the final grants.
"""

from __future__ import annotations

from collections.abc import Generator
from graphlib import CycleError, TopologicalSorter
from typing import Any

import azure.durable_functions as df

from orchestrators.blueprint import bp
from orchestrators.common import (
    Progress,
    StepFailed,
    checked,
    failure_message,
    retry_options,
    timing_of,
)
from orchestrators.monitor import monitor

# The per-party phases a ``provision_party`` sub-orchestration runs, in order.
PARTY_CHAIN = ("cvm", "bootstrap", "attest", "verify")


def _collapsed(plan: dict[str, Any]) -> dict[str, str]:
    """Phase name → its node, for the phases of a party's chain (``provision:<party>``)."""
    collapsed: dict[str, str] = {}
    for phase in plan["phases"]:
        kind, _, party = phase["name"].partition(":")
        if kind in PARTY_CHAIN and party:
            collapsed[phase["name"]] = f"provision:{party}"
    return collapsed


def schedule_graph(plan: dict[str, Any]) -> dict[str, list[str]]:
    """The plan's phases with each party's chain collapsed into one ``provision:<party>``
    node, whose dependencies also include the grants of every key the party may release."""
    graph: dict[str, list[str]] = {}
    collapsed = _collapsed(plan)
    for phase in plan["phases"]:
        node = collapsed.get(phase["name"], phase["name"])
        deps = graph.setdefault(node, [])
        for dep in phase["depends_on"]:
            target = collapsed.get(dep, dep)
            if target != node and target not in deps:
                deps.append(target)
    for party in plan["parties"]:
        node = f"provision:{party['party']}"
        graph[node] += [f"grants:{o}" for o in party["can_release"]
                        if f"grants:{o}" not in graph[node]]
    return graph


def remaining_path(plan: dict[str, Any], graph: dict[str, list[str]]) -> dict[str, float]:
    """Each node's longest path to the end of the deployment (estimated seconds, its own
    included). Nodes that become ready together start longest-path first, so the critical
    path's steps (the network, then the gateway) are dispatched ahead of the steps beside it
    that became ready with them (ten parties' data storage, say)."""
    cost: dict[str, float] = {}
    node_of = _collapsed(plan)
    for phase in plan["phases"]:
        node = node_of.get(phase["name"], phase["name"])
        cost[node] = cost.get(node, 0.0) + float(phase.get("estimate_seconds") or 0.0)
    successors: dict[str, list[str]] = {node: [] for node in graph}
    for node, deps in graph.items():
        for dep in deps:
            successors.setdefault(dep, []).append(node)
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError:
        raise StepFailed("the phase graph has a cycle") from None
    remaining: dict[str, float] = {}
    for node in reversed(order):  # every successor first
        remaining[node] = cost.get(node, 0.0) + max(
            (remaining[s] for s in successors.get(node, [])), default=0.0)
    return remaining


def _phase_task(context: df.DurableOrchestrationContext, node: str, plan: dict[str, Any],
                spec: dict[str, Any], timing: dict[str, float], retry: df.RetryOptions,
                results: dict[str, Any]) -> df.Task:
    """Steps get the spec, not the plan (activities rebuild it: see ``plan_of``)."""
    kind, _, party = node.partition(":")
    if kind == "resource-group":
        return context.call_activity_with_retry("ensure_resource_group", retry, {"spec": spec})
    if kind == "app-key":
        return context.call_activity_with_retry("ensure_app_key", retry,
                                                {"spec": spec, "party": party})
    if kind == "provision":
        instance = f"{context.instance_id}:{party}:{context.new_uuid()[:8]}"
        results.setdefault("instances", {})[party] = instance
        return context.call_sub_orchestrator(
            "provision_party", party_input(plan, spec, party, timing), instance_id=instance)
    if kind == "finalize":
        return context.call_activity_with_retry("finalize_tenant", retry, {
            "spec": spec, "parties": [results[f"provision:{p['party']}"]
                                      for p in plan["parties"]]})
    module = plan_module(plan, node)
    return monitor(context, spec, module, party or None, timing)


def party_input(plan: dict[str, Any], spec: dict[str, Any], party: str,
                timing: dict[str, float]) -> dict[str, Any]:
    """What ``provision_party`` needs of the plan, and the spec for its steps."""
    me = next(p for p in plan["parties"] if p["party"] == party)
    return {"spec": spec, "party": party, "tenant": plan["tenant"], "debug": plan["debug"],
            "vm_name": me["vm_name"],
            "key_owner": {p["app_key_name"]: p["party"] for p in plan["parties"]},
            "timing": timing}


def plan_module(plan: dict[str, Any], node: str) -> str:
    for phase in plan["phases"]:
        if phase["name"] == node and phase.get("module"):
            return phase["module"]
    raise StepFailed(f"the plan has no deployment module for phase {node}")


def run_graph(context: df.DurableOrchestrationContext, graph: dict[str, list[str]],
              plan: dict[str, Any], spec: dict[str, Any], timing: dict[str, float],
              progress: Progress) -> Generator[Any, Any, dict[str, Any]]:
    """Start every node whose dependencies are done; record each as it completes."""
    retry = retry_options(timing)
    results: dict[str, Any] = {}
    running: dict[str, df.Task] = {}
    done: set[str] = set()
    remaining = remaining_path(plan, graph)
    while len(done) < len(graph):
        ready = sorted((n for n, deps in graph.items()
                        if n not in done and n not in running and all(d in done for d in deps)),
                       key=lambda n: -remaining[n])
        for node in ready:
            running[node] = _phase_task(context, node, plan, spec, timing, retry, results)
        if ready:
            progress.start(*ready)
            if "instances" in results:
                for party, instance in results["instances"].items():
                    progress.status["parties"][party]["instance"] = instance
                progress.publish()
        if not running:
            raise StepFailed("the phase graph has a cycle")
        finished = yield context.task_any(list(running.values()))
        node = next(n for n, t in running.items() if t is finished)
        del running[node]
        if finished.state.name == "FAILED":
            progress.fail(node, failure_message(finished.result))
            raise StepFailed(f"{node}: {failure_message(finished.result)}")
        results[node] = checked(finished.result or {}, node)
        done.add(node)
        progress.finish(node)
        _party_state(progress, node, results[node])
    return results


def _party_state(progress: Progress, node: str, result: dict[str, Any]) -> None:
    kind, _, party = node.partition(":")
    if not party or party not in progress.status["parties"]:
        return
    state = progress.status["parties"][party]
    if kind == "data":  # beside the party's chain: its storage, not a step of its state
        state["data"] = "ready"
        progress.publish()
        return
    label = {"party": "identity+vault", "app-key": "app-key", "grants": "grants",
             "provision": "attested"}.get(kind, kind)
    state["state"] = label
    if kind == "app-key":
        state["key_version"] = result.get("key", {}).get("version")
    if kind == "provision":
        state.update(attested=result.get("attested", False), releases=result.get("releases"))
    progress.publish()


@bp.orchestration_trigger(context_name="context")
def deploy_tenant(context: df.DurableOrchestrationContext):
    data = context.get_input()
    timing = timing_of(data)
    spec = data["spec"]
    progress = Progress(context, tenant=spec.get("name"), fingerprint=data.get("fingerprint"),
                        debug=bool(spec.get("debug")), parties={}, trust_matrix=None)
    step = "validate"
    try:
        progress.start(step)
        plan = checked((yield context.call_activity("validate_spec", spec)), step)["plan"]
        progress.status["parties"] = {p["party"]: {"state": "pending"} for p in plan["parties"]}
        progress.set(resource_group=plan["resource_group"],
                     critical_path_seconds=plan["critical_path_seconds"],
                     sequential_seconds=plan["sequential_seconds"])
        progress.finish(step)
        step = "deploy"
        results = yield from run_graph(context, schedule_graph(plan), plan, spec, timing,
                                       progress)
        final = results["finalize"]
        progress.set(trust_matrix=final["trust_matrix"], phase="succeeded")
        return {"tenant": plan["tenant"], "resource_group": plan["resource_group"],
                "trust_matrix": final["trust_matrix"], "grants": final.get("grants")}
    except Exception as exc:
        message = failure_message(exc)
        if progress.status["phase"] != "failed":
            progress.fail(step, message)
        raise StepFailed(message) from None
