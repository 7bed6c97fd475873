"""The versioned report a guest agent sends to the ``guest-reports`` queue.

One JSON object per queue message, base64-encoded like the Azure Functions queue trigger
expects (``decode_message`` accepts base64 or raw JSON). ``Report.model_json_schema()`` is the
published schema; ``schema_version`` changes only on incompatible changes.

Versions:

* **1** — ``attested``, ``released``, ``release-denied``, ``failed``, ``rotated``, ``heartbeat``.
* **2** — adds the isolation probes' outcomes: ``isolation-refused`` (the vault of a key this
  VM must not get refused it: the expected answer) and ``isolation-broken`` (the vault
  RELEASED it: a security failure; the agent discarded the response unopened). Both carry
  the probed key's versionless ``key_id`` and the vault's ``error_code``/``error``. A v1
  consumer rejects them (closed event set), hence the new version. Consumers of v2 still
  accept v1 messages (agents deployed before the change), which cannot carry v2 events.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from cotenant.wire.codec import decode_json, first_problem

REPORT_SCHEMA_VERSION = 2
SUPPORTED_SCHEMA_VERSIONS = (1, 2)
# Azure Storage queue messages are at most 64 KiB; base64 adds a third.
MAX_MESSAGE_BYTES = 64 * 1024
MAX_JSON_BYTES = MAX_MESSAGE_BYTES * 3 // 4 - 16
MAX_ERROR_CHARS = 2000

Event = Literal["attested", "released", "release-denied", "failed", "rotated", "heartbeat",
                "isolation-refused", "isolation-broken"]
EVENTS: tuple[str, ...] = Event.__args__  # type: ignore[attr-defined]
# The isolation probes' outcomes (schema version 2): always about one probed key.
ISOLATION_EVENTS = ("isolation-refused", "isolation-broken")

Text = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class ReportError(ValueError):
    """A queue message is not a valid report (or a report is too large to send)."""


class Report(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1, 2] = REPORT_SCHEMA_VERSION
    tenant: Text
    party: Text
    vm: Text
    instance: Text
    nonce: Text
    event: Event
    key_id: str | None = Field(default=None, max_length=1024, description="versioned kid URL")
    key_version: str | None = Field(default=None, max_length=128)
    token: str | None = Field(default=None, max_length=40_000, description="MAA JWT (attested)")
    error: str | None = Field(default=None, max_length=MAX_ERROR_CHARS)
    error_code: str | None = Field(default=None, max_length=128)
    sent_at: datetime
    idempotency_key: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]

    @model_validator(mode="after")
    def _versioned_events(self) -> Report:
        if self.event in ISOLATION_EVENTS:
            if self.schema_version < 2:
                raise ValueError(f"event {self.event!r} needs schema_version 2")
            if not self.key_id:
                raise ValueError(f"event {self.event!r} needs the probed key's key_id")
        return self

    def to_json(self) -> str:
        text = self.model_dump_json(exclude_none=True)
        if len(text.encode()) > MAX_JSON_BYTES:
            raise ReportError(f"report is {len(text)} bytes, over the {MAX_JSON_BYTES} limit")
        return text


def idempotency_key(*parts: str | None) -> str:
    """A stable key: the same logical event yields the same key, so consumers can de-duplicate."""
    joined = "\x1f".join(p or "" for p in parts)
    return hashlib.sha256(joined.encode()).hexdigest()


def make_report(
    *,
    tenant: str,
    party: str,
    vm: str,
    instance: str,
    nonce: str,
    event: str,
    key_id: str | None = None,
    key_version: str | None = None,
    token: str | None = None,
    error: str | None = None,
    error_code: str | None = None,
    now: datetime | None = None,
) -> Report:
    sent_at = now or datetime.now(UTC)
    # Heartbeats are distinct events; everything else de-duplicates on its content.
    stamp = sent_at.isoformat() if event in ("heartbeat", "failed") else None
    key = idempotency_key(
        str(REPORT_SCHEMA_VERSION), tenant, party, vm, instance, nonce, event, key_id,
        key_version, stamp,
    )
    if error is not None and len(error) > MAX_ERROR_CHARS:
        error = error[: MAX_ERROR_CHARS - 1] + "…"
    return Report(
        tenant=tenant, party=party, vm=vm, instance=instance, nonce=nonce, event=event,  # type: ignore[arg-type]
        key_id=key_id, key_version=key_version, token=token, error=error,
        error_code=error_code, sent_at=sent_at, idempotency_key=key,
    )


def key_name_of(kid: str | None) -> str | None:
    """``https://vault/keys/<name>[/<version>]`` → ``<name>``."""
    if not kid or "/keys/" not in kid:
        return None
    return kid.split("/keys/", 1)[1].split("/")[0] or None


ATTESTATION_SUBJECT = "attestation"


def subject_of(event: str, key_id: str | None) -> str:
    """What a report is about: ``attestation`` (``attested``, or ``failed`` without a key) or
    ``key:<name>`` (the outcome of a release, an isolation probe or a rotation of that key)."""
    name = key_name_of(key_id)
    return ATTESTATION_SUBJECT if name is None else f"key:{name}"


def event_name(nonce: str, party: str, subject: str) -> str:
    """The Durable Functions event a report is raised as (and the orchestrator waits for).

    One name per challenge, reporting party and subject — never one shared name. The Python
    Durable SDK keeps a single early event per name: events raised before the orchestrator
    waits for that name (e.g. while it still monitors the VM's deployment, during which the
    agent already reports) overwrite each other, and the kept one is handed to every later
    wait for that name (azure-functions-durable-python#507). With a name per subject each
    name is raised once per boot (a redelivery repeats the same content) and waited for once.
    """
    challenge = hashlib.sha256(nonce.encode()).hexdigest()[:16]
    return f"report:{challenge}:{party}:{subject}"


def report_event_name(report: Report) -> str:
    return event_name(report.nonce, report.party, subject_of(report.event, report.key_id))


def decode_message(content: str | bytes) -> Report:
    """Parse a queue message (base64 JSON, or raw JSON) into a validated ``Report``."""
    try:
        data = decode_json(content, limit=MAX_MESSAGE_BYTES)
    except ValueError as exc:
        raise ReportError(str(exc)) from None
    if data.get("schema_version") not in SUPPORTED_SCHEMA_VERSIONS:
        raise ReportError(f"unsupported schema_version {data.get('schema_version')!r}")
    try:
        return Report.model_validate(data)
    except ValidationError as exc:
        raise ReportError(f"invalid report: {first_problem(exc)}") from None


def json_schema() -> dict:
    """The published JSON schema (``schema_version`` is required on the wire)."""
    schema = Report.model_json_schema()
    schema["required"] = ["schema_version", *schema.get("required", [])]
    schema["$id"] = f"https://cotenant.dev/schemas/guest-report/v{REPORT_SCHEMA_VERSION}.json"
    return schema
