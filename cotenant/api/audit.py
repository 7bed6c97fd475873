"""The audit table: key releases, attestations and tenant events, one partition per tenant.

Rows are keyed by time and an idempotency key, so a report delivered twice is stored once.
Attestation tokens are not stored, only their SHA-256 (enough to match a token later).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from cotenant.cloud.storage import StorageAccess, storage_access

AUDIT_TABLE = "cotenantaudit"


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
        self._ensure()
        moment = at or datetime.now(UTC)
        ident = key or hashlib.sha256(json.dumps(
            [tenant, kind, detail], sort_keys=True, default=str).encode()).hexdigest()
        row = f"{moment.strftime('%Y%m%dT%H%M%S.%fZ')}-{ident[:24]}"
        entity = {"PartitionKey": tenant, "RowKey": row, "kind": kind,
                  "at": moment.isoformat(), "detail": json.dumps(detail, default=str)}
        try:
            self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)
        except ResourceNotFoundError:  # the table was deleted since this client created it
            self._created = False
            self._ensure()
            self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)
        return row

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
