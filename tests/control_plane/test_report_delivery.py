"""Guest reports reach the orchestrator however early they arrive.

An agent reports while its VM's deployment still runs, so its reports are raised before the
orchestrator waits for them. The Python Durable SDK keeps only one early event per name
(azure-functions-durable-python#507), so each report has its own name
(``cotenant.wire.reports.event_name``) and ``orchestrators.reports.wait_reports`` waits for
each name once. Runs the real SDK replay under the devhost (in memory).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cotenant.devhost.testing import DevHostHarness
from cotenant.wire.reports import (
    ATTESTATION_SUBJECT,
    event_name,
    make_report,
    report_event_name,
    subject_of,
)

APP = Path(__file__).resolve().parent / "report_app" / "function_app.py"
NONCE = "nonce-0123456789abcdef"
VAULT = "https://kv-demo-contoso.vault.azure.net"


def report(event: str, *, party: str = "woodgrove", key: str | None = None,
           nonce: str = NONCE) -> dict:
    return make_report(tenant="demo", party=party, vm=f"vm-demo-{party}", instance="demo:x",
                       nonce=nonce, event=event,
                       key_id=f"{VAULT}/keys/{key}/v1" if key else None,
                       key_version="v1" if key else None).model_dump(mode="json")


@pytest.fixture
def host() -> DevHostHarness:
    with DevHostHarness(APP) as harness:
        yield harness


def raise_report(host: DevHostHarness, instance: str, data: dict) -> None:
    host.raise_event(instance, event_name(data["nonce"], data["party"],
                                          subject_of(data["event"], data.get("key_id"))), data)


def test_every_report_raised_before_the_wait_is_received_once(host: DevHostHarness) -> None:
    expected = [("woodgrove", ATTESTATION_SUBJECT), ("woodgrove", "key:contoso-secret-key"),
                ("woodgrove", "key:fabrikam-secret-key")]
    iid = host.start_orchestration("collect", {
        "pause": 1.0, "nonce": NONCE, "timeout": 30, "expected": expected})
    sent = [report("attested"), report("released", key="contoso-secret-key"),
            report("isolation-refused", key="fabrikam-secret-key")]
    for data in [*sent, sent[1],  # a redelivery
                 report("attested", nonce="another-challenge-0000")]:  # a stale challenge
        raise_report(host, iid, data)
    status = host.wait(iid)
    assert status.runtime_status == "Completed", status.output
    got = status.output
    assert got == {f"{p}|{s}": r for (p, s), r in zip(expected, sent, strict=True)}


def test_a_missing_subject_times_out_naming_it(host: DevHostHarness) -> None:
    iid = host.start_orchestration("collect", {
        "pause": 0.0, "nonce": NONCE, "timeout": 1,
        "expected": [("woodgrove", ATTESTATION_SUBJECT), ("woodgrove", "key:k1")]})
    raise_report(host, iid, report("attested"))
    status = host.wait(iid)
    assert status.runtime_status == "Failed"
    assert "no report from woodgrove on key:k1" in status.output
    assert ATTESTATION_SUBJECT not in status.output.split("no report from", 1)[1]


def test_a_broken_isolation_ends_the_wait_at_once(host: DevHostHarness) -> None:
    iid = host.start_orchestration("collect", {
        "pause": 0.0, "nonce": NONCE, "timeout": 60,
        "expected": [("contoso", "key:fabrikam-secret-key"), ("contoso", "key:k2")]})
    broken = report("isolation-broken", party="contoso", key="fabrikam-secret-key")
    raise_report(host, iid, broken)
    status = host.wait(iid, timeout=20)
    assert status.runtime_status == "Completed"
    assert status.output == {"contoso|key:fabrikam-secret-key": broken}


def test_event_names_separate_challenges_parties_and_subjects() -> None:
    attested = make_report(tenant="t", party="p", vm="v", instance="t:i", nonce=NONCE,
                           event="attested")
    failed = make_report(tenant="t", party="p", vm="v", instance="t:i", nonce=NONCE,
                         event="failed", error="no vTPM")
    assert report_event_name(attested) == report_event_name(failed) == event_name(
        NONCE, "p", ATTESTATION_SUBJECT)
    key = f"{VAULT}/keys/contoso-secret-key"
    assert subject_of("released", f"{key}/v1") == subject_of("isolation-refused", key) \
        == subject_of("rotated", f"{key}/v2") == "key:contoso-secret-key"
    names = {event_name(NONCE, "p", "attestation"), event_name("other", "p", "attestation"),
             event_name(NONCE, "q", "attestation"), event_name(NONCE, "p", "key:k")}
    assert len(names) == 4
    assert NONCE not in event_name(NONCE, "p", "attestation")  # a digest of the challenge
