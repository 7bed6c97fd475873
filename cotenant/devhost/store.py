"""Where instances and their histories live: Azure Table storage (Azurite) or memory.

Table layout (one table per task hub, ``<hub>History``): partition = instance id;
row ``~instance`` holds the instance document; rows ``h<first event index>.<part>`` hold
the current execution's history, one segment (the events an episode appended, as one JSON
array split over rows and properties) per commit; rows ``~inbox:<key>`` hold events
received but not yet delivered to an episode (raised events, sub-orchestration results).
Every commit ends with a transaction on the partition that writes the instance row, so the
instance row is the commit point: history past its ``history_len`` is ignored on load.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables.aio import TableClient

TERMINAL = ("Completed", "Failed", "Terminated")
ACTIVE = ("Pending", "Running", "Suspended")
_CHUNK = 30_000  # characters per string property (Azure Tables: 64 KiB UTF-16)
_BATCH = 100  # operations per entity-group transaction
_ROW_CHARS = 12 * _CHUNK  # history characters per row (entities hold at most 1 MiB)
_BATCH_CHARS = 3_000_000  # per transaction (the service accepts 4 MiB)
INSTANCE_ROW = "~instance"
HISTORY_PREFIX = "h"
INBOX_PREFIX = "~inbox:"


@dataclass
class InstanceRecord:
    """What the status API reports about an instance, plus the engine's bookkeeping."""

    instance_id: str
    name: str
    runtime_status: str
    input: str | None
    created: str
    last_updated: str
    output: str | None = None
    custom_status: str | None = None
    parent_instance_id: str | None = None
    parent_task_id: int | None = None
    execution: int = 0
    history_len: int = 0
    engine: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> InstanceRecord:
        return cls(**json.loads(text))


@dataclass
class Loaded:
    record: InstanceRecord
    history: list[dict[str, Any]]
    inbox: list[tuple[str, dict[str, Any]]]


class Store(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def load(self, instance_id: str) -> Loaded | None: ...
    async def active_ids(self) -> list[str]: ...
    async def records(self) -> list[InstanceRecord]: ...
    async def add_inbox(self, instance_id: str, key: str, event: dict[str, Any]) -> None: ...
    async def commit(self, record: InstanceRecord, new_events: list[dict[str, Any]],
                     consumed: list[str], *, reset_from: int | None = None) -> None: ...
    async def purge(self, instance_id: str) -> bool: ...


class MemoryStore:
    """State for one process only (no durability): the default when no storage is set."""

    def __init__(self) -> None:
        self._records: dict[str, str] = {}
        self._history: dict[str, list[str]] = {}
        self._inbox: dict[str, dict[str, str]] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def load(self, instance_id: str) -> Loaded | None:
        text = self._records.get(instance_id)
        if text is None:
            return None
        record = InstanceRecord.from_json(text)
        rows = self._history.get(instance_id, [])[: record.history_len]
        inbox = sorted(self._inbox.get(instance_id, {}).items())
        return Loaded(record, [json.loads(r) for r in rows],
                      [(k, json.loads(v)) for k, v in inbox])

    async def active_ids(self) -> list[str]:
        return [r.instance_id for r in await self.records() if r.runtime_status in ACTIVE]

    async def records(self) -> list[InstanceRecord]:
        return [InstanceRecord.from_json(t) for t in self._records.values()]

    async def add_inbox(self, instance_id: str, key: str, event: dict[str, Any]) -> None:
        self._inbox.setdefault(instance_id, {})[key] = json.dumps(event)

    async def commit(self, record: InstanceRecord, new_events: list[dict[str, Any]],
                     consumed: list[str], *, reset_from: int | None = None) -> None:
        rows = self._history.setdefault(record.instance_id, [])
        start = record.history_len - len(new_events)
        del rows[start:]
        rows.extend(json.dumps(e) for e in new_events)
        self._records[record.instance_id] = record.to_json()
        inbox = self._inbox.get(record.instance_id, {})
        for key in consumed:
            inbox.pop(key, None)

    async def purge(self, instance_id: str) -> bool:
        self._history.pop(instance_id, None)
        self._inbox.pop(instance_id, None)
        return self._records.pop(instance_id, None) is not None


def _chunks(text: str) -> dict[str, str]:
    parts = [text[i:i + _CHUNK] for i in range(0, len(text), _CHUNK)] or [""]
    return {f"D{i}": part for i, part in enumerate(parts)}


def _unchunk(entity: dict[str, Any]) -> str:
    parts = []
    index = 0
    while f"D{index}" in entity:
        parts.append(entity[f"D{index}"])
        index += 1
    return "".join(parts)


def _batches(ops: list[tuple[str, dict[str, Any]]]) -> list[list[tuple[str, dict[str, Any]]]]:
    """Entity-group transactions: at most 100 operations and about 3 MB each, in order."""
    batches: list[list[tuple[str, dict[str, Any]]]] = [[]]
    size = 0
    for op in ops:
        weight = sum(len(v) for v in op[1].values() if isinstance(v, str))
        if len(batches[-1]) >= _BATCH or (batches[-1] and size + weight > _BATCH_CHARS):
            batches.append([])
            size = 0
        batches[-1].append(op)
        size += weight
    return batches


class TableStore:
    """Durable state in one Azure Table (Azurite locally) per task hub."""

    def __init__(self, connection_string: str, task_hub: str) -> None:
        self.table_name = f"{task_hub}History"
        # Fail fast on a local emulator (≈1 s of retries); the engine resumes from the last
        # commit once storage answers again.
        self._client = TableClient.from_connection_string(
            connection_string, self.table_name, retry_total=3, retry_backoff_factor=0.2,
            retry_backoff_max=2)
        self._locks: dict[str, asyncio.Lock] = {}

    async def open(self) -> None:
        with contextlib.suppress(ResourceExistsError):
            await self._client.create_table()

    async def close(self) -> None:
        await self._client.close()

    async def load(self, instance_id: str) -> Loaded | None:
        try:
            row = await self._client.get_entity(instance_id, INSTANCE_ROW)
        except ResourceNotFoundError:
            return None
        record = InstanceRecord.from_json(_unchunk(row))
        parts: dict[str, tuple[int, str]] = {}
        inbox: list[tuple[str, dict[str, Any]]] = []
        query = self._client.query_entities(
            "PartitionKey eq @pk", parameters={"pk": instance_id})
        async for entity in query:
            key = entity["RowKey"]
            if key.startswith(INBOX_PREFIX):
                inbox.append((key[len(INBOX_PREFIX):], json.loads(_unchunk(entity))))
            elif key.startswith(HISTORY_PREFIX):
                parts[key] = (int(entity.get("Parts", 1)), _unchunk(entity))
        history: list[dict[str, Any]] = []
        segments: dict[str, list[tuple[int, str]]] = {}
        for key in sorted(parts):
            segments.setdefault(key.split(".")[0], []).append(parts[key])
        for segment in sorted(segments):
            pieces = segments[segment]
            # A crash mid-commit can leave stale parts beyond the segment's own count.
            history.extend(json.loads("".join(text for _, text in pieces[: pieces[0][0]])))
        inbox.sort(key=lambda item: item[0])
        return Loaded(record, history[: record.history_len], inbox)

    async def records(self) -> list[InstanceRecord]:
        query = self._client.query_entities("RowKey eq @rk", parameters={"rk": INSTANCE_ROW})
        return [InstanceRecord.from_json(_unchunk(e)) async for e in query]

    async def active_ids(self) -> list[str]:
        query = self._client.query_entities(
            "RowKey eq @rk and (RuntimeStatus eq 'Pending' or RuntimeStatus eq 'Running' "
            "or RuntimeStatus eq 'Suspended')",
            parameters={"rk": INSTANCE_ROW}, select=["PartitionKey"])
        return [e["PartitionKey"] async for e in query]

    async def add_inbox(self, instance_id: str, key: str, event: dict[str, Any]) -> None:
        await self._client.upsert_entity({
            "PartitionKey": instance_id, "RowKey": INBOX_PREFIX + key,
            **_chunks(json.dumps(event))})

    async def commit(self, record: InstanceRecord, new_events: list[dict[str, Any]],
                     consumed: list[str], *, reset_from: int | None = None) -> None:
        """Append one segment of history rows and write the instance row (the commit point)."""
        pk = record.instance_id
        ops: list[tuple[str, dict[str, Any]]] = []
        if reset_from is not None:
            ops += [("delete", {"PartitionKey": pk, "RowKey": key})
                    for key in await self._history_keys(pk)]
        if new_events:
            start = record.history_len - len(new_events)
            text = json.dumps(new_events, separators=(",", ":"))
            pieces = [text[i:i + _ROW_CHARS] for i in range(0, len(text), _ROW_CHARS)]
            ops += [("upsert", {"PartitionKey": pk,
                                "RowKey": f"{HISTORY_PREFIX}{start:08d}.{n:04d}",
                                "Parts": len(pieces), **_chunks(piece)})
                    for n, piece in enumerate(pieces)]
        ops += [("delete", {"PartitionKey": pk, "RowKey": INBOX_PREFIX + k}) for k in consumed]
        ops.append(("upsert", {"PartitionKey": pk, "RowKey": INSTANCE_ROW,
                               "RuntimeStatus": record.runtime_status, "Name": record.name,
                               **_chunks(record.to_json())}))
        async with self._locks.setdefault(pk, asyncio.Lock()):
            for batch in _batches(ops):
                await self._submit(batch)

    async def _history_keys(self, pk: str) -> list[str]:
        query = self._client.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": pk, "lo": HISTORY_PREFIX, "hi": HISTORY_PREFIX + "~"},
            select=["RowKey"])
        return [e["RowKey"] async for e in query]

    async def _submit(self, ops: list[tuple[str, dict[str, Any]]]) -> None:
        if not ops:
            return
        try:
            await self._client.submit_transaction(ops)
        except Exception:
            # A delete of a row that is already gone fails the whole transaction: retry
            # the operations one by one, tolerating missing rows.
            for kind, entity in ops:
                if kind == "delete":
                    with contextlib.suppress(ResourceNotFoundError):
                        await self._client.delete_entity(entity["PartitionKey"],
                                                         entity["RowKey"])
                else:
                    await self._client.upsert_entity(entity)

    async def purge(self, instance_id: str) -> bool:
        query = self._client.query_entities(
            "PartitionKey eq @pk", parameters={"pk": instance_id},
            select=["PartitionKey", "RowKey"])
        keys = [e["RowKey"] async for e in query]
        if INSTANCE_ROW not in keys:
            return False
        keys.remove(INSTANCE_ROW)
        keys.append(INSTANCE_ROW)
        for i in range(0, len(keys), _BATCH):
            await self._submit([("delete", {"PartitionKey": instance_id, "RowKey": k})
                                for k in keys[i:i + _BATCH]])
        return True
