"""Report schema: versioned, validated, under the queue limit, de-duplicable."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import jsonschema
import pytest

from cotenant.wire.reports import (
    KEYS_SUBJECT,
    MAX_ERROR_CHARS,
    MAX_MESSAGE_BYTES,
    KeyOutcome,
    ReportError,
    decode_message,
    json_schema,
    make_outcome,
    make_outcomes_report,
    make_report,
    report_event_name,
    subject_of,
)

BASE = dict(tenant="acme", party="contoso", vm="acme-contoso-vm", instance="acme",
            nonce="n0nce-123456")


def test_reports_validate_against_the_published_schema() -> None:
    report = make_report(**BASE, event="released",
                         key_id="https://v.vault.azure.net/keys/k/abc", key_version="abc")
    jsonschema.validate(json.loads(report.to_json()), json_schema())
    assert json.loads(report.to_json())["schema_version"] == 3
    assert json_schema()["$id"].endswith("/guest-report/v3.json")


def test_decode_accepts_base64_and_raw_json() -> None:
    report = make_report(**BASE, event="attested", token="a.b.c")
    text = report.to_json()
    assert decode_message(base64.b64encode(text.encode()).decode()) == report
    assert decode_message(text) == report


@pytest.mark.parametrize("content", [
    "not json", "W10=",  # base64 of []
    json.dumps({"schema_version": 4}),
    json.dumps({"schema_version": 3}),
    json.dumps({"schema_version": 1, "event": "released"}),
])
def test_decode_rejects_bad_messages(content: str) -> None:
    with pytest.raises(ReportError):
        decode_message(content)


def test_unknown_event_is_rejected() -> None:
    with pytest.raises(ValueError):
        make_report(**BASE, event="exploded")


def test_idempotency_key_is_stable_for_the_same_event() -> None:
    a = make_report(**BASE, event="released", key_id="k1", key_version="1",
                    now=datetime(2026, 1, 1, tzinfo=UTC))
    b = make_report(**BASE, event="released", key_id="k1", key_version="1")
    c = make_report(**BASE, event="released", key_id="k1", key_version="2")
    assert a.idempotency_key == b.idempotency_key != c.idempotency_key
    h1 = make_report(**BASE, event="heartbeat", now=datetime(2026, 1, 1, tzinfo=UTC))
    h2 = make_report(**BASE, event="heartbeat", now=datetime(2026, 1, 2, tzinfo=UTC))
    assert h1.idempotency_key != h2.idempotency_key


def test_reports_stay_under_the_queue_limit() -> None:
    long_error = make_report(**BASE, event="failed", error="x" * 100_000)
    assert len(long_error.error or "") <= 2000
    big_token = make_report(**BASE, event="attested", token="t" * 39_000)
    assert len(base64.b64encode(big_token.to_json().encode())) < MAX_MESSAGE_BYTES
    with pytest.raises(ValueError):
        make_report(**BASE, event="attested", token="t" * 60_000)


def test_schema_requires_the_version_on_the_wire() -> None:
    document = json.loads(make_report(**BASE, event="heartbeat").to_json())
    del document["schema_version"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, json_schema())


PROBED = "https://fabrikam-kv.vault.azure.net/keys/fabrikam-secret-key"


@pytest.mark.parametrize("event", ["isolation-refused", "isolation-broken"])
def test_isolation_outcomes_are_version_2_events_about_one_key(event: str) -> None:
    report = make_report(**BASE, event=event, key_id=PROBED, error_code="Forbidden",
                         error="Caller is not authorized")
    jsonschema.validate(json.loads(report.to_json()), json_schema())
    assert decode_message(report.to_json()) == report
    with pytest.raises(ValueError, match="key_id"):
        make_report(**BASE, event=event)
    # A v1 message cannot carry them: a v1 consumer would reject the event.
    document = json.loads(report.to_json()) | {"schema_version": 1}
    with pytest.raises(ReportError, match="schema_version 2"):
        decode_message(json.dumps(document))


def test_version_1_reports_of_agents_deployed_earlier_are_still_accepted() -> None:
    document = json.loads(make_report(**BASE, event="release-denied", key_id=PROBED,
                                      error_code="Forbidden").to_json())
    document["schema_version"] = 1
    assert decode_message(json.dumps(document)).event == "release-denied"


def test_version_2_reports_are_still_accepted() -> None:
    document = json.loads(make_report(**BASE, event="isolation-refused", key_id=PROBED,
                                      error_code="Forbidden").to_json())
    document["schema_version"] = 2
    assert decode_message(json.dumps(document)).event == "isolation-refused"


OWN = "https://contoso-kv.vault.azure.net/keys/contoso-secret-key"
AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _outcomes() -> list[KeyOutcome]:
    return [make_outcome("released", f"{OWN}/abc", key_version="abc", at=AT),
            make_outcome("isolation-refused", PROBED, error_code="Forbidden/ForbiddenByRbac",
                         error="Caller is not authorized", at=AT)]


def test_one_outcomes_report_carries_every_key_outcome() -> None:
    report = make_outcomes_report(**BASE, outcomes=_outcomes(), now=AT)
    document = json.loads(report.to_json())
    jsonschema.validate(document, json_schema())
    assert document["schema_version"] == 3 and document["event"] == "outcomes"
    assert [(o["event"], o["key_id"]) for o in document["outcomes"]] == [
        ("released", f"{OWN}/abc"), ("isolation-refused", PROBED)]
    assert decode_message(base64.b64encode(report.to_json().encode())) == report
    # Raised as one event the orchestrator waits for: the "keys" subject.
    assert subject_of("outcomes", None) == KEYS_SUBJECT
    assert report_event_name(report).endswith(f":contoso:{KEYS_SUBJECT}")
    # The same outcomes are the same report (de-duplicable); another outcome is not.
    again = make_outcomes_report(**BASE, outcomes=_outcomes())
    assert again.idempotency_key == report.idempotency_key
    other = make_outcomes_report(**BASE, outcomes=_outcomes()[:1])
    assert other.idempotency_key != report.idempotency_key


def _outcomes_document(**changes: object) -> dict:
    document = json.loads(make_outcomes_report(**BASE, outcomes=_outcomes()).to_json())
    return document | changes


@pytest.mark.parametrize(("changes", "problem"), [
    ({"outcomes": []}, "at least one"),
    ({"outcomes": None}, "at least one"),
    ({"schema_version": 2}, "schema_version 3"),
    ({"key_id": PROBED}, "in its outcomes only"),
    ({"token": "a.b.c"}, "in its outcomes only"),
    ({"event": "attested"}, "carries no outcomes"),
    ({"event": "released", "key_id": f"{OWN}/abc"}, "carries no outcomes"),
])
def test_outcomes_belong_to_the_outcomes_event_of_version_3(changes: dict,
                                                             problem: str) -> None:
    with pytest.raises(ReportError, match=problem):
        decode_message(json.dumps(_outcomes_document(**changes)))


@pytest.mark.parametrize("change", [
    {"event": "attested"}, {"event": "rotated"}, {"event": "heartbeat"}, {"event": "outcomes"},
    {"event": "exploded"}, {"key_id": "https://v.vault.azure.net/secrets/s"}, {"key_id": ""},
    {"at": None}, {"surprise": 1}, {"error": "x" * (MAX_ERROR_CHARS + 1)},
])
def test_an_outcome_is_one_key_s_release_or_probe(change: dict) -> None:
    document = _outcomes_document()
    document["outcomes"][1] = {**document["outcomes"][1], **change}
    with pytest.raises(ReportError, match="outcomes.1"):
        decode_message(json.dumps(document))


@pytest.mark.parametrize("other", [
    PROBED,  # the same probe twice
    f"{PROBED}/v2",  # the same key, another version
    PROBED.replace("fabrikam-kv", "Fabrikam-KV").replace("fabrikam-secret",
                                                         "Fabrikam-Secret"),  # any case
])
def test_a_key_has_one_outcome(other: str) -> None:
    document = _outcomes_document()
    document["outcomes"].append({**document["outcomes"][1], "key_id": other,
                                 "event": "isolation-broken"})
    with pytest.raises(ReportError, match="(?i)fabrikam-secret-key.*two outcomes"):
        decode_message(json.dumps(document))
    # The same name in another vault is another key.
    document["outcomes"][-1]["key_id"] = PROBED.replace("fabrikam-kv", "other-kv")
    assert len(decode_message(json.dumps(document)).outcomes or []) == 3


def test_the_outcomes_are_bounded() -> None:
    many = [make_outcome("isolation-refused", f"https://kv{i}.vault.azure.net/keys/k{i}")
            for i in range(65)]
    with pytest.raises(ValueError, match="64"):
        make_outcomes_report(**BASE, outcomes=many)


def test_fifty_long_outcomes_fit_one_message_with_their_errors_cut_evenly() -> None:
    name = "k" * 120
    outcomes = [make_outcome("isolation-refused" if i % 2 else "failed",
                             f"https://kv-tenant-party-{i:03d}.vault.azure.net/keys/{name}{i}",
                             error_code="Forbidden/ForbiddenByRbac",
                             error=f"{i}:" + "é" * 3000)  # two UTF-8 bytes each
                for i in range(49)]
    outcomes.append(make_outcome("released", f"{OWN}/{'0' * 32}", key_version="0" * 32))
    report = make_outcomes_report(**BASE, outcomes=outcomes)
    text = report.to_json()
    assert len(text.encode()) <= MAX_MESSAGE_BYTES * 3 // 4
    assert len(base64.b64encode(text.encode())) < MAX_MESSAGE_BYTES
    kept = report.outcomes or []
    assert [(o.event, o.key_id) for o in kept] == [(o.event, o.key_id) for o in outcomes]
    errors = [o.error or "" for o in kept[:-1]]
    assert len({len(e) for e in errors}) == 1 and 100 < len(errors[0]) < MAX_ERROR_CHARS
    assert all(e.endswith("…") and e.startswith(f"{i}:") for i, e in enumerate(errors))
    assert kept[-1].error is None and kept[-1].key_version == "0" * 32
    assert decode_message(text) == report
    # Short errors are never cut.
    small = make_outcomes_report(**BASE, outcomes=_outcomes())
    assert (small.outcomes or [])[1].error == "Caller is not authorized"
    # Nothing fits when the key ids alone are too long.
    huge = [make_outcome("failed", f"https://kv{i}.vault.azure.net/keys/{'n' * 990}")
            for i in range(60)]
    with pytest.raises(ReportError, match="do not fit"):
        make_outcomes_report(**BASE, outcomes=huge)
