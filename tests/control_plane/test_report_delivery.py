"""Guest reports reach the orchestrator however early they arrive.

An agent reports while its VM's deployment still runs, so its reports are raised before the
orchestrator waits for them. The Python Durable SDK keeps only one early event per name
(azure-functions-durable-python#507), so each report has its own name
(``cotenant.wire.reports.event_name``) and ``orchestrators.reports.wait_reports`` waits for
each name once. Runs the real SDK replay under the devhost (in memory); the start-up pass's
``outcomes`` report also goes the whole way: queue → the real queue trigger (Azurite) →
audit table (a row per outcome) → one event.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from cotenant.api.audit import audit_log
from cotenant.azurite import Azurite
from cotenant.devhost.testing import DevHostHarness
from cotenant.wire.reports import (
    ATTESTATION_SUBJECT,
    KEYS_SUBJECT,
    event_name,
    make_outcome,
    make_outcomes_report,
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


def outcomes(*, party: str = "woodgrove", nonce: str = NONCE, tenant: str = "demo",
             instance: str = "demo:x") -> dict:
    """The start-up pass's report: woodgrove released contoso's key, fabrikam's refused it."""
    at = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    return make_outcomes_report(
        tenant=tenant, party=party, vm=f"vm-demo-{party}", instance=instance, nonce=nonce,
        outcomes=[make_outcome("released", f"{VAULT}/keys/contoso-secret-key/v1",
                               key_version="v1", at=at),
                  make_outcome("isolation-refused",
                               "https://kv-demo-fabrikam.vault.azure.net/keys/fabrikam-secret-key",
                               error_code="Forbidden", error="Caller is not authorized", at=at),
                  make_outcome("failed", "https://kv-demo-northwind.vault.azure.net/keys/"
                               "northwind-secret-key", error_code="HTTP404", at=at)],
    ).model_dump(mode="json")


def test_every_report_raised_before_the_wait_is_received_once(host: DevHostHarness) -> None:
    expected = [("woodgrove", ATTESTATION_SUBJECT), ("woodgrove", KEYS_SUBJECT)]
    iid = host.start_orchestration("collect", {
        "pause": 1.0, "nonce": NONCE, "timeout": 30, "expected": expected})
    sent = [report("attested"), outcomes()]
    for data in [*sent, sent[1],  # a redelivery
                 report("attested", nonce="another-challenge-0000"),  # a stale challenge
                 outcomes(party="contoso")]:  # another party's
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
    assert subject_of("outcomes", None) == KEYS_SUBJECT != ATTESTATION_SUBJECT
    names = {event_name(NONCE, "p", "attestation"), event_name("other", "p", "attestation"),
             event_name(NONCE, "q", "attestation"), event_name(NONCE, "p", "key:k")}
    assert len(names) == 4
    assert NONCE not in event_name(NONCE, "p", "attestation")  # a digest of the challenge


@pytest.fixture
def routed(azurite: Azurite) -> DevHostHarness:
    """The app with the real guest-reports queue trigger, on Azurite."""
    with DevHostHarness(APP, connection_string=azurite.connection_string,
                        task_hub=f"rd{uuid.uuid4().hex[:8]}", triggers=True) as harness:
        yield harness


def _send(azurite: Azurite, *reports: dict) -> QueueClient:
    import json

    queue = QueueClient.from_connection_string(azurite.connection_string, "guest-reports",
                                               message_encode_policy=TextBase64EncodePolicy())
    for data in reports:
        queue.send_message(json.dumps({k: v for k, v in data.items() if v is not None}))
    return queue


def test_an_outcomes_report_is_one_event_and_one_audit_row_per_outcome(
        routed: DevHostHarness, azurite: Azurite) -> None:
    tenant = f"rd{uuid.uuid4().hex[:8]}"
    instance = f"{tenant}:woodgrove"
    iid = routed.start_orchestration("collect", {
        "pause": 0.0, "nonce": NONCE, "timeout": 30,
        "expected": [("woodgrove", ATTESTATION_SUBJECT), ("woodgrove", KEYS_SUBJECT)]},
        instance_id=instance)
    attested = make_report(tenant=tenant, party="woodgrove", vm="vm-demo-woodgrove",
                           instance=instance, nonce=NONCE, event="attested",
                           token="a.b.c").model_dump(mode="json")
    batch = outcomes(tenant=tenant, instance=instance)
    queue = _send(azurite, attested, batch, batch)  # the batch delivered twice
    status = routed.wait(iid, timeout=30)
    assert status.runtime_status == "Completed", status.output
    assert status.output[f"woodgrove|{KEYS_SUBJECT}"] == batch  # one event, the whole report
    deadline = time.monotonic() + 20
    while queue.get_queue_properties().approximate_message_count:
        assert time.monotonic() < deadline, "the reports were not all routed"
        time.sleep(0.2)
    events = audit_log({"AzureWebJobsStorage": azurite.connection_string}).events(tenant)
    # one row per outcome, as if each were its own report; the redelivery adds none
    assert sorted(e["kind"] for e in events) == [
        "guest:attested", "guest:failed", "guest:isolation-refused", "guest:released"]
    by_kind = {e["kind"]: e for e in events}
    refused = by_kind["guest:isolation-refused"]
    assert refused["key_id"].endswith("/keys/fabrikam-secret-key")
    assert (refused["party"], refused["vm"], refused["instance"]) == (
        "woodgrove", "vm-demo-woodgrove", instance)
    assert (refused["error_code"], refused["error"]) == ("Forbidden", "Caller is not authorized")
    assert refused["at"] == "2026-11-27T12:00:00+00:00"  # when the agent knew it
    assert by_kind["guest:released"]["key_version"] == "v1"
    assert by_kind["guest:attested"]["token_sha256"] and "token" not in by_kind["guest:attested"]


def test_an_invalid_outcomes_report_is_quarantined_with_its_reason(
        azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio
    import base64
    import json

    from cotenant.api.events import QUARANTINE_QUEUE, route_report

    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    tenant = f"rq{uuid.uuid4().hex[:8]}"
    document = outcomes(tenant=tenant, instance=f"{tenant}:woodgrove")
    document["outcomes"].append({**document["outcomes"][1], "event": "isolation-broken"})
    unused = object()  # never reached: an invalid report is not routed
    assert asyncio.run(route_report(unused, json.dumps(document).encode())) == "quarantined"  # type: ignore[arg-type]
    queue = QueueClient.from_connection_string(azurite.connection_string, QUARANTINE_QUEUE)
    mine = []
    for message in queue.receive_messages(max_messages=32, visibility_timeout=1):
        entry = json.loads(message.content)
        if tenant in base64.b64decode(entry["message_base64"]).decode():
            mine.append(entry["reason"])
            queue.delete_message(message)
    assert len(mine) == 1
    assert "fabrikam-secret-key" in mine[0] and "two outcomes" in mine[0]
