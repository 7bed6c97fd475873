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
* **3** — adds ``outcomes``: the start-up pass's outcome of every key in ONE report (a
  ``KeyOutcome`` per allowed key and per isolation probe: ``released``, ``release-denied``,
  ``failed``, ``isolation-refused``, ``isolation-broken``, each with its ``key_id``, the vault's
  ``error_code``/``error`` and when it was known) instead of one report per key: ten parties
  send 20 start-up reports, not 110. ``outcomes`` is required on that event and forbidden on
  every other; a key appears once. Rotation still reports ``rotated`` per key, and the local
  API's isolation check a wrong release as a single ``isolation-broken``. Consumers of v3
  still accept v1 and v2 messages, which cannot carry ``outcomes``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
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

REPORT_SCHEMA_VERSION = 3
SUPPORTED_SCHEMA_VERSIONS = (1, 2, 3)
# Azure Storage queue messages are at most 64 KiB; base64 adds a third.
MAX_MESSAGE_BYTES = 64 * 1024
MAX_JSON_BYTES = MAX_MESSAGE_BYTES * 3 // 4 - 16
MAX_ERROR_CHARS = 2000
# Outcomes in one report: a tenant has at most 50 parties (one app key each), so an agent has
# at most 50 keys to release or probe.
MAX_OUTCOMES = 64
MAX_KEY_ID_CHARS = 1024

Event = Literal["attested", "released", "release-denied", "failed", "rotated", "heartbeat",
                "isolation-refused", "isolation-broken", "outcomes"]
EVENTS: tuple[str, ...] = Event.__args__  # type: ignore[attr-defined]
# The isolation probes' outcomes (schema version 2): always about one probed key.
ISOLATION_EVENTS = ("isolation-refused", "isolation-broken")
# What one key's release attempt or isolation probe can end as (an ``outcomes`` entry).
OutcomeEvent = Literal["released", "release-denied", "failed", "isolation-refused",
                       "isolation-broken"]
OUTCOMES_EVENT = "outcomes"

Text = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class ReportError(ValueError):
    """A queue message is not a valid report (or a report is too large to send)."""


def key_url_of(kid: str) -> str:
    """The versionless key URL of a kid (``https://vault/keys/<name>[/<version>]``), lower
    case (vault hosts and key names are case-insensitive): one key, whatever its version."""
    head, _, tail = kid.partition("/keys/")
    return f"{head}/keys/{tail.split('/')[0]}".lower()


class KeyOutcome(BaseModel):
    """What one key's release attempt (or isolation probe) ended as, in an ``outcomes``
    report: the fields of the per-key report it replaces, and when it was known."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event: OutcomeEvent
    key_id: str = Field(min_length=1, max_length=MAX_KEY_ID_CHARS,
                        description="versioned kid for released, versionless otherwise")
    key_version: str | None = Field(default=None, max_length=128)
    error_code: str | None = Field(default=None, max_length=128)
    error: str | None = Field(default=None, max_length=MAX_ERROR_CHARS)
    at: datetime

    @model_validator(mode="after")
    def _names_a_key(self) -> KeyOutcome:
        if key_name_of(self.key_id) is None:
            raise ValueError(f"key_id {self.key_id[:80]!r} names no key (…/keys/<name>)")
        return self


class Report(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1, 2, 3] = REPORT_SCHEMA_VERSION
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
    outcomes: list[KeyOutcome] | None = Field(
        default=None, max_length=MAX_OUTCOMES,
        description="event outcomes (schema 3): one per allowed key and isolation probe")
    sent_at: datetime
    idempotency_key: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]

    @model_validator(mode="after")
    def _versioned_events(self) -> Report:
        if self.event in ISOLATION_EVENTS:
            if self.schema_version < 2:
                raise ValueError(f"event {self.event!r} needs schema_version 2")
            if not self.key_id:
                raise ValueError(f"event {self.event!r} needs the probed key's key_id")
        if self.event == OUTCOMES_EVENT:
            self._check_outcomes()
        elif self.outcomes is not None:
            raise ValueError(f"event {self.event!r} carries no outcomes (only 'outcomes' does)")
        return self

    def _check_outcomes(self) -> None:
        if self.schema_version < 3:
            raise ValueError("event 'outcomes' needs schema_version 3")
        if not self.outcomes:
            raise ValueError("event 'outcomes' needs at least one outcome")
        extra = [f for f in ("key_id", "key_version", "token", "error", "error_code")
                 if getattr(self, f) is not None]
        if extra:
            raise ValueError(f"event 'outcomes' carries {', '.join(extra)} in its outcomes only")
        seen: set[str] = set()
        for outcome in self.outcomes:
            url = key_url_of(outcome.key_id)
            if url in seen:
                raise ValueError(f"key {key_name_of(outcome.key_id)!r} has two outcomes")
            seen.add(url)

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
    return Report(
        tenant=tenant, party=party, vm=vm, instance=instance, nonce=nonce, event=event,  # type: ignore[arg-type]
        key_id=key_id, key_version=key_version, token=token, error=clip(error),
        error_code=error_code, sent_at=sent_at, idempotency_key=key,
    )


def clip(error: str | None, limit: int = MAX_ERROR_CHARS) -> str | None:
    """``error`` cut to ``limit`` characters (the last one "…"); None when ``limit`` is 0."""
    if error is None or len(error) <= limit:
        return error
    return error[: limit - 1] + "…" if limit > 0 else None


def make_outcome(event: str, key_id: str, *, key_version: str | None = None,
                 error: str | None = None, error_code: str | None = None,
                 at: datetime | None = None) -> KeyOutcome:
    """One key's outcome (known ``at``, default now), its error text clipped to the bound."""
    return KeyOutcome(event=event, key_id=key_id, key_version=key_version,  # type: ignore[arg-type]
                      error=clip(error), error_code=error_code, at=at or datetime.now(UTC))


def make_outcomes_report(
    *,
    tenant: str,
    party: str,
    vm: str,
    instance: str,
    nonce: str,
    outcomes: Sequence[KeyOutcome],
    now: datetime | None = None,
) -> Report:
    """The start-up pass's one report of every key outcome (schema 3), under the queue limit.

    Every outcome is kept; when the message would be too large, the outcomes' error texts are
    cut to one common length (the longest first, each ending with "…") until it fits. The
    idempotency key is the outcomes' identity (event, key, version; a failure's time), not
    their texts. Raises ``ReportError`` if even without error texts it does not fit (more keys
    or longer key ids than a tenant can have)."""
    sent_at = now or datetime.now(UTC)
    identity = [f"{o.event}|{o.key_id}|{o.key_version or ''}|"
                f"{o.at.isoformat() if o.event == 'failed' else ''}" for o in outcomes]
    key = idempotency_key(str(REPORT_SCHEMA_VERSION), tenant, party, vm, instance, nonce,
                          OUTCOMES_EVENT, *identity)

    def build(items: Sequence[KeyOutcome]) -> Report:
        return Report(tenant=tenant, party=party, vm=vm, instance=instance, nonce=nonce,
                      event=OUTCOMES_EVENT, outcomes=list(items), sent_at=sent_at,
                      idempotency_key=key)

    report = build(outcomes)
    if _fits(report):
        return report
    # The largest common error length that fits (binary search over the length).
    low, high = 0, max(len(o.error or "") for o in outcomes)
    while low < high:
        mid = (low + high + 1) // 2
        if _fits(build(_cut_errors(outcomes, mid))):
            low = mid
        else:
            high = mid - 1
    report = build(_cut_errors(outcomes, low))
    if not _fits(report):
        raise ReportError(f"{len(outcomes)} outcomes do not fit in one report even without "
                          "their error texts")
    return report


def _fits(report: Report) -> bool:
    return len(report.model_dump_json(exclude_none=True).encode()) <= MAX_JSON_BYTES


def _cut_errors(outcomes: Sequence[KeyOutcome], length: int) -> list[KeyOutcome]:
    """Each outcome's error cut to ``length`` characters (the last one "…"); none at 0."""
    return [o.model_copy(update={"error": clip(o.error, length)})
            if o.error and len(o.error) > length else o for o in outcomes]


def key_name_of(kid: str | None) -> str | None:
    """``https://vault/keys/<name>[/<version>]`` → ``<name>``."""
    if not kid or "/keys/" not in kid:
        return None
    return kid.split("/keys/", 1)[1].split("/")[0] or None


ATTESTATION_SUBJECT = "attestation"
KEYS_SUBJECT = "keys"


def subject_of(event: str, key_id: str | None) -> str:
    """What a report is about: ``attestation`` (``attested``, or ``failed`` without a key),
    ``keys`` (``outcomes``: every key's outcome of the start-up pass) or ``key:<name>`` (the
    outcome of one release, isolation probe or rotation of that key)."""
    if event == OUTCOMES_EVENT:
        return KEYS_SUBJECT
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
