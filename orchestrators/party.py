"""``provision_party``: one party's CVM, its guest agent's attestation, and verification.

The cross-party steps (identity and vault, app key, key-scoped grants) are scheduled by
``deploy_tenant`` because they depend on other parties; this sub-orchestration runs the
party's own chain once they are in place: a fresh challenge → the CVM deployment (its secure
bootstrap parameter carries the guest agent's configuration with the challenge) → wait for the
agent's ``attested`` report and its ``outcomes`` report (one outcome per key of the tenant, in
one report: subject ``keys``) → verify the attestation token itself.

The agent releases the keys its CVM is granted and probes the others (isolation probes):
``released``/``release-denied`` and ``isolation-refused`` outcomes are the trust matrix's
evidence, each a real attempt at the owning party's vault. ``isolation-broken`` — a vault
released a key this VM must not get — fails the party, and so does a key of the tenant with
no outcome (the agent is told to try every one).
"""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from cotenant.wire.reports import ATTESTATION_SUBJECT, KEYS_SUBJECT, key_name_of
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
from orchestrators.reports import wait_reports

DEBUG_CREDENTIALS_NOTICE = ("shown because this tenant runs in debug mode (SSH through "
                            "Bastion); never use a debug tenant with real data")
# Report event → the trust matrix's outcome of that VM's attempt on that key. A broken
# isolation is a release (the vault gave the key), which the matrix flags against the spec.
OUTCOMES = {"released": "released", "release-denied": "refused", "failed": "failed",
            "isolation-refused": "refused", "isolation-broken": "released"}
BROKEN = "isolation-broken"


def key_outcomes(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The key outcomes an ``outcomes`` report carries."""
    return list(report.get("outcomes") or [])


def release_outcomes(report: dict[str, Any], key_owner: dict[str, str]
                     ) -> dict[str, dict[str, Any]]:
    """Key owner → what happened when this party's agent tried to release that owner's key."""
    outcomes: dict[str, dict[str, Any]] = {}
    for outcome in key_outcomes(report):
        owner = key_owner.get(key_name_of(outcome.get("key_id")) or "")
        if owner is None or outcome["event"] not in OUTCOMES:
            continue
        outcomes[owner] = {
            "outcome": OUTCOMES[outcome["event"]],
            "version": outcome.get("key_version"),
            "code": outcome.get("error_code"),
            "message": outcome.get("error"),
            "at": outcome.get("at"),
        }
    return outcomes


def isolation_breaches(report: dict[str, Any], key_owner: dict[str, str]) -> list[str]:
    """One line per key this party's VM must not get and its owner's vault released."""
    found = []
    for outcome in key_outcomes(report):
        if outcome["event"] != BROKEN:
            continue
        name = key_name_of(outcome.get("key_id")) or "an unknown key"
        owner = key_owner.get(name, "another party")
        found.append(f"the vault of {owner} released {name} to {report['party']}'s VM "
                     f"{report['vm']}")
    return sorted(set(found))


def missing_outcomes(report: dict[str, Any], key_owner: dict[str, str]) -> list[str]:
    """The tenant's keys the report has no outcome for, by name."""
    seen = {key_name_of(o.get("key_id")) for o in key_outcomes(report)}
    return sorted(set(key_owner) - seen)


def outcomes_problem(report: dict[str, Any], key_owner: dict[str, str]) -> str | None:
    """Why the party's key outcomes fail it: a broken isolation, or a key of the tenant the
    agent reported nothing about (it is told to try every one); None if they do not."""
    breaches = isolation_breaches(report, key_owner)
    if breaches:
        return (f"isolation broken: {'; '.join(breaches)}, which the spec does not allow (the "
                "agent discarded it unopened); a release grant beyond the spec's releasable_by "
                "exists on that key, its vault or the resource group: remove it")
    missing = missing_outcomes(report, key_owner)
    if missing:
        return (f"the guest agent of party {report['party']} reported no outcome for "
                f"{', '.join(missing)}; it must try every key of the tenant (its "
                "configuration's keys and isolation_probes)")
    return None


def attestation_failure(reports: list[dict[str, Any]]) -> str | None:
    for report in reports:
        if report["event"] == "failed" and not report.get("key_id"):
            return report.get("error") or "the guest agent reported a failure"
    return None


@bp.orchestration_trigger(context_name="context")
def provision_party(context: df.DurableOrchestrationContext):
    data = context.get_input()
    spec, party, vm_name = data["spec"], data["party"], data["vm_name"]
    timing = timing_of(data)
    retry = retry_options(timing)
    key_owner: dict[str, str] = data["key_owner"]
    progress = Progress(context, tenant=data["tenant"], party=party,
                        vm=vm_name, attested=False, releases={})
    step = f"cvm:{party}"
    try:
        challenge = yield context.call_activity_with_retry("new_challenge", retry, party)
        nonce = challenge["nonce"]
        extra: dict[str, Any] = {"nonce": nonce, "instance": context.instance_id}
        if data["debug"]:
            credentials = yield context.call_activity_with_retry(
                "new_debug_credentials", retry, party)
            extra["debug_credentials"] = {"username": credentials["username"],
                                          "password": credentials["password"]}
            progress.set(debug_credentials={**extra["debug_credentials"],
                                            "notice": DEBUG_CREDENTIALS_NOTICE})
        progress.start(step)
        yield monitor(context, spec, "cvm", party, timing, **extra)
        progress.finish(step)

        step = f"bootstrap:{party}"
        progress.start(step)
        attestation = yield from wait_reports(
            context, nonce=nonce, expected=[(party, ATTESTATION_SUBJECT)],
            timeout=timing["report_timeout_seconds"],
            what=f"the guest agent of party {party} ({vm_name}) to attest; check "
                 "that the VM runs and its agent can reach the guest-reports queue")
        reports = list(attestation.values())
        failure = attestation_failure(reports)
        if failure:
            raise StepFailed(f"the guest agent of party {party} could not attest: {failure}")
        token = reports[0].get("token")
        progress.finish(step)

        step = f"attest:{party}"
        progress.start(step)
        got = yield from wait_reports(
            context, nonce=nonce, expected=[(party, KEYS_SUBJECT)],
            timeout=timing["report_timeout_seconds"],
            what=f"the guest agent of party {party} to report its key releases and "
                 "isolation probes in one 'outcomes' report (an agent bundle built before "
                 "report schema 3 reports each key alone: rebuild and republish it)")
        outcomes = got[(party, KEYS_SUBJECT)]
        releases = release_outcomes(outcomes, key_owner)
        progress.set(releases=releases)
        problem = outcomes_problem(outcomes, key_owner)
        if problem:
            raise StepFailed(problem)
        progress.finish(step)

        step = f"verify:{party}"
        progress.start(step)
        verified = yield context.call_activity_with_retry("verify_attestation", retry, {
            "spec": spec, "party": party, "token": token, "nonce": nonce})
        attestation = checked(verified, f"verifying the attestation of party {party}")
        progress.set(attested=True, attestation=attestation["summary"])
        progress.finish(step)
        progress.set(phase="succeeded")
        return {"party": party, "attested": True, "attestation": attestation["summary"],
                "releases": releases}
    except Exception as exc:
        progress.fail(step, failure_message(exc))
        raise StepFailed(f"party {party}: {failure_message(exc)}") from None
