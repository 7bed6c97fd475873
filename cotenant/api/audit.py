"""The audit table: key releases, attestations and tenant events, one partition per tenant.

Rows are keyed by time and an idempotency key, so a report delivered twice is stored once (a
guest report's rows are at the times it gives). A report of several key outcomes is one row
per outcome, written in one entity-group transaction.
Attestation tokens are not stored, only their SHA-256 (enough to match a token later).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from cotenant.cloud.storage import StorageAccess, storage_access
from cotenant.wire.reports import Report, idempotency_key

AUDIT_TABLE = "cotenantaudit"


# An entity-group transaction holds at most 100 operations, all in one partition.
TRANSACTION_LIMIT = 100


@dataclass(frozen=True)
class AuditRow:
    """One audit event: its kind, detail, idempotency key (the same key at the same time is
    the same row) and when it happened (default: when it is recorded)."""

    kind: str
    detail: dict[str, Any]
    key: str | None = None
    at: datetime | None = None


class AuditLog:
    def __init__(self, table: TableClient) -> None:
        self._table = table
        self._created = False

    def _ensure(self) -> None:
        if not self._created:
            with contextlib.suppress(ResourceExistsError):
                self._table.create_table()
            self._created = True

    def record(self, tenant: str, kind: str, detail: dict[str, Any], *,
               at: datetime | None = None, key: str | None = None) -> str:
        """Store one event; returns its row key (the same key again overwrites, not adds)."""
        return self.record_many(tenant, [AuditRow(kind, detail, key=key, at=at)])[0]

    def record_many(self, tenant: str, rows: list[AuditRow]) -> list[str]:
        """Store events of one tenant: they share its partition, so each hundred is one
        entity-group transaction (one request); returns their row keys."""
        self._ensure()
        entities = [_entity(tenant, row) for row in rows]
        for first in range(0, len(entities), TRANSACTION_LIMIT):
            batch = entities[first:first + TRANSACTION_LIMIT]
            try:
                self._write(batch)
            except (ResourceNotFoundError, TableTransactionError) as exc:
                if not _table_missing(exc):
                    raise
                self._created = False  # the table was deleted since this client created it
                self._ensure()
                self._write(batch)
        return [e["RowKey"] for e in entities]

    def _write(self, entities: list[dict[str, Any]]) -> None:
        if len(entities) == 1:  # a plain request: no multipart encoding
            self._table.upsert_entity(entities[0], mode=UpdateMode.REPLACE)
        else:
            self._table.submit_transaction(
                [("upsert", e, {"mode": UpdateMode.REPLACE}) for e in entities])

    def events(self, tenant: str, limit: int = 500) -> list[dict[str, Any]]:
        self._ensure()
        safe = tenant.replace("'", "''")
        rows = self._table.query_entities(f"PartitionKey eq '{safe}'", results_per_page=limit)
        out = []
        for row in rows:
            out.append({"kind": row["kind"], "at": row["at"], **json.loads(row["detail"])})
            if len(out) >= limit:
                break
        return sorted(out, key=lambda e: e["at"])


def _entity(tenant: str, row: AuditRow) -> dict[str, Any]:
    moment = row.at or datetime.now(UTC)
    ident = row.key or hashlib.sha256(json.dumps(
        [tenant, row.kind, row.detail], sort_keys=True, default=str).encode()).hexdigest()
    return {"PartitionKey": tenant,
            "RowKey": f"{moment.strftime('%Y%m%dT%H%M%S.%fZ')}-{ident[:24]}",
            "kind": row.kind, "at": moment.isoformat(),
            "detail": json.dumps(row.detail, default=str)}


def _table_missing(exc: HttpResponseError) -> bool:
    return exc.status_code == 404 or exc.error_code == "TableNotFound"


def audit_log(env: Mapping[str, str] | None = None) -> AuditLog:
    """The audit log in the app's storage account (``AzureWebJobsStorage``, either form)."""
    access = storage_access(env)
    if access is None:
        raise RuntimeError("AzureWebJobsStorage is not configured")
    return _audit_log(access)


@functools.lru_cache(maxsize=8)
def _audit_log(access: StorageAccess) -> AuditLog:
    """One client per storage account and process: its connections are reused and the table
    is created once, not on every record."""
    return AuditLog(access.table(AUDIT_TABLE))


def token_digest(token: str | None) -> str | None:
    return hashlib.sha256(token.encode()).hexdigest() if token else None


def report_event(report: dict[str, Any]) -> dict[str, Any]:
    """The audit detail of a guest report (no token, only its digest)."""
    return {
        "event": report["event"], "party": report["party"], "vm": report["vm"],
        "instance": report["instance"], "key_id": report.get("key_id"),
        "key_version": report.get("key_version"), "error": report.get("error"),
        "error_code": report.get("error_code"),
        "token_sha256": token_digest(report.get("token")), "sent_at": report.get("sent_at"),
    }


def report_rows(report: Report) -> list[AuditRow]:
    """A guest report's audit rows, each at the time the agent gives: one for the report, or
    one per key outcome of an ``outcomes`` report (kind ``guest:<outcome event>``, as if
    each had been its own report). A redelivered report rewrites the same rows."""
    data = report.model_dump(mode="json")
    if not report.outcomes:
        return [AuditRow(f"guest:{report.event}", report_event(data),
                         key=report.idempotency_key, at=report.sent_at)]
    return [AuditRow(f"guest:{outcome.event}",
                     report_event({**data, **outcome.model_dump(mode="json")}),
                     key=idempotency_key(report.idempotency_key, outcome.key_id),
                     at=outcome.at)
            for outcome in report.outcomes]
