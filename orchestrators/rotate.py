"""``rotate_keys``: a new version of every party's app key, picked up by every agent holding it.

Per key: new version (the release policy is checked and re-applied if it went missing); then a
``rotate`` command to each party allowed to release that key; then wait until each of those
agents reports ``rotated`` with exactly the new version.
"""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from cotenant.wire.reports import key_name_of
from orchestrators.blueprint import bp
from orchestrators.common import (
    Progress,
    StepFailed,
    checked,
    failure_message,
    retry_options,
    timing_of,
)
from orchestrators.reports import wait_reports


def expected_rotations(plan: dict[str, Any], versions: dict[str, str]
                       ) -> dict[tuple[str, str], str]:
    """(agent party, key name) → the version it must report."""
    return {(grantee, p["app_key_name"]): versions[p["party"]]
            for p in plan["parties"] for grantee in p["releasable_by"]}


def confirmed(reports: list[dict[str, Any]], expected: dict[tuple[str, str], str]
              ) -> set[tuple[str, str]]:
    got = set()
    for r in reports:
        pair = (r.get("party"), key_name_of(r.get("key_id")))
        if r["event"] == "rotated" and expected.get(pair) == r.get("key_version"):
            got.add(pair)
    return got


def unconfirmed(report: dict[str, Any]) -> str:
    """Why a report does not confirm the expected rotation (for the failure message)."""
    if report["event"] == "rotated":
        return f"reported version {report.get('key_version')}, not the new one"
    return report.get("error") or f"reported {report['event']}"


@bp.orchestration_trigger(context_name="context")
def rotate_keys(context: df.DurableOrchestrationContext):
    data = context.get_input()
    plan = data["plan"]
    timing = timing_of(data)
    retry = retry_options(timing)
    progress = Progress(context, tenant=plan["tenant"], reason=data.get("reason", "manual"),
                        keys={})
    step = "new-versions"
    try:
        progress.start(step)
        before = yield context.task_all([
            context.call_activity_with_retry("read_app_key", retry,
                                             {"plan": plan, "party": p["party"]})
            for p in plan["parties"]])
        rotations = yield context.task_all([
            context.call_activity_with_retry("rotate_app_key", retry, {
                "plan": plan, "party": p["party"],
                "after_version": checked(b, f"reading the key of party {p['party']}")["version"]})
            for p, b in zip(plan["parties"], before, strict=True)])
        versions = {}
        for p, result in zip(plan["parties"], rotations, strict=True):
            rotated = checked(result, f"rotating the key of party {p['party']}")
            versions[p["party"]] = rotated["new_version"]
            progress.status["keys"][p["app_key_name"]] = {
                "old_version": rotated["old_version"], "new_version": rotated["new_version"],
                "policy_reapplied": rotated["policy_reapplied"], "confirmed_by": []}
        progress.finish(step)

        step = "commands"
        progress.start(step)
        challenge = yield context.call_activity_with_retry("new_challenge", retry, "rotation")
        nonce = challenge["nonce"]
        checked((yield context.call_activity_with_retry("send_rotate_commands", retry, {
            "plan": plan, "versions": versions, "instance": context.instance_id,
            "nonce": nonce})), step)
        progress.finish(step)

        step = "confirmations"
        progress.start(step)
        expected = expected_rotations(plan, versions)
        reports = yield from wait_reports(
            context, nonce=nonce, expected=[(agent, f"key:{key}") for agent, key in expected],
            timeout=timing["report_timeout_seconds"],
            what="every agent to report the new key versions")
        got = confirmed(list(reports.values()), expected)
        for agent, key in sorted(got):
            progress.status["keys"][key]["confirmed_by"].append(agent)
        if got != set(expected):
            raise StepFailed("not every agent took the new key version: " + "; ".join(
                f"{agent} on {key}: {unconfirmed(reports[(agent, f'key:{key}')])}"
                for agent, key in sorted(set(expected) - got)))
        progress.finish(step)
        progress.set(phase="succeeded")
        return {"tenant": plan["tenant"], "keys": progress.status["keys"]}
    except Exception as exc:
        progress.fail(step, failure_message(exc))
        raise StepFailed(failure_message(exc)) from None
