"""Report schema: versioned, validated, under the queue limit, de-duplicable."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import jsonschema
import pytest

from cotenant.wire.reports import (
    MAX_MESSAGE_BYTES,
    ReportError,
    decode_message,
    json_schema,
    make_report,
)

BASE = dict(tenant="acme", party="contoso", vm="acme-contoso-vm", instance="acme",
            nonce="n0nce-123456")


def test_reports_validate_against_the_published_schema() -> None:
    report = make_report(**BASE, event="released",
                         key_id="https://v.vault.azure.net/keys/k/abc", key_version="abc")
    jsonschema.validate(json.loads(report.to_json()), json_schema())
    assert json.loads(report.to_json())["schema_version"] == 2
    assert json_schema()["$id"].endswith("/guest-report/v2.json")


def test_decode_accepts_base64_and_raw_json() -> None:
    report = make_report(**BASE, event="attested", token="a.b.c")
    text = report.to_json()
    assert decode_message(base64.b64encode(text.encode()).decode()) == report
    assert decode_message(text) == report


@pytest.mark.parametrize("content", [
    "not json", "W10=",  # base64 of []
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
