"""Where instances and their histories live: Azure Table storage (Azurite) or memory.

Table layout (one table per task hub, ``<hub>History``): partition = instance id.

- Row ``~instance`` is the commit point. It holds the instance document (``D*``), the newest
  history events (the *tail*, ``T*``: events ``TailStart`` … ``history_len - 1``, as one JSON
  array split over properties) and the keys of inbox rows already delivered into the history
  but not yet deleted (``C``).
- Rows ``h<first event index>.<part>`` hold older history, one segment per flush (the tail
  moved out of the instance row: one JSON array split over rows and properties).
- Rows ``~inbox:<key>`` hold events received but not yet delivered to an episode (raised
  events, sub-orchestration results).

Most commits are one entity write (the instance row with the grown tail): an episode's new
events and its consumed inbox keys land atomically without an entity-group transaction,
whose multipart encoding costs the SDK several times a single write. When the instance row
would grow past a bound, and when an instance ends with consumed inbox rows still to delete,
the commit flushes: one transaction on the partition writes the tail as a history segment,
deletes the consumed inbox rows and writes the instance row with an empty tail — the
instance row still last, so history past the instance row's ``TailStart`` is ignored on
load, as are inbox rows listed in ``C``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

TERMINAL = ("Completed", "Failed", "Terminated")
ACTIVE = ("Pending", "Running", "Suspended")
_CHUNK = 30_000  # characters per string property (Azure Tables: 64 KiB UTF-16)
_BATCH = 100  # operations per entity-group transaction
_ROW_CHARS = 12 * _CHUNK  # history characters per row (entities hold at most 1 MiB)
_BATCH_CHARS = 3_000_000  # per transaction (the service accepts 4 MiB)
# The tail kept in the instance row: every commit rewrites it, so it stays small; past either
# bound the next commit flushes it to a history segment.
_TAIL_CHARS = 64_000
_TAIL_KEYS = 64  # consumed inbox keys awaiting deletion
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


def _chunks(text: str, prefix: str = "D") -> dict[str, str]:
    parts = [text[i:i + _CHUNK] for i in range(0, len(text), _CHUNK)] or [""]
    return {f"{prefix}{i}": part for i, part in enumerate(parts)}


def _unchunk(entity: dict[str, Any], prefix: str = "D") -> str:
    parts = []
    index = 0
    while f"{prefix}{index}" in entity:
        parts.append(entity[f"{prefix}{index}"])
        index += 1
    return "".join(parts)


@dataclass
class _Tail:
    """What the stored instance row holds besides the document: the newest history events
    (one JSON text each, from index ``start``) and the consumed inbox keys not yet deleted."""

    start: int
    events: list[str] = field(default_factory=list)
    consumed: list[str] = field(default_factory=list)

    @property
    def chars(self) -> int:
        return sum(map(len, self.events)) + sum(len(k) + 3 for k in self.consumed)

    def text(self) -> str:
        return "[" + ",".join(self.events) + "]"

    @classmethod
    def of_row(cls, row: dict[str, Any], history_len: int) -> _Tail:
        start = int(row.get("TailStart", history_len))
        tail = _unchunk(row, "T")
        return cls(start, [json.dumps(e, separators=(",", ":")) for e in json.loads(tail)]
                   if tail else [], json.loads(row.get("C") or "[]"))


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
        self._tails: dict[str, _Tail] = {}  # each instance's stored tail, as last written
        # Every stored instance id: this host is the only writer of its hub, so an id it
        # has not seen (a new sub-orchestration, mostly) is looked up without a request.
        self._known: set[str] = set()

    async def open(self) -> None:
        with contextlib.suppress(ResourceExistsError):
            await self._client.create_table()
        query = self._client.query_entities("RowKey eq @rk", parameters={"rk": INSTANCE_ROW},
                                            select=["PartitionKey"])
        self._known = {e["PartitionKey"] async for e in query}

    async def close(self) -> None:
        await self._client.close()

    async def load(self, instance_id: str) -> Loaded | None:
        if instance_id not in self._known:
            return None
        try:
            row = await self._client.get_entity(instance_id, INSTANCE_ROW)
        except ResourceNotFoundError:
            self._tails.pop(instance_id, None)
            return None
        record = InstanceRecord.from_json(_unchunk(row))
        tail = _Tail.of_row(row, record.history_len)
        delivered = set(tail.consumed)
        parts: dict[str, tuple[int, str]] = {}
        inbox: list[tuple[str, dict[str, Any]]] = []
        query = self._client.query_entities(
            "PartitionKey eq @pk", parameters={"pk": instance_id})
        async for entity in query:
            key = entity["RowKey"]
            if key.startswith(INBOX_PREFIX):
                if key[len(INBOX_PREFIX):] not in delivered:
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
        history = history[: tail.start] + [json.loads(e) for e in tail.events]
        inbox.sort(key=lambda item: item[0])
        self._tails[instance_id] = tail
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
        """Append ``new_events`` to the history, mark ``consumed`` inbox rows delivered and
        write the instance row (the commit point): one entity write, or a flush."""
        pk = record.instance_id
        async with self._locks.setdefault(pk, asyncio.Lock()):
            start = record.history_len - len(new_events)
            tail = None if reset_from is not None else await self._stored_tail(pk)
            if tail is None:  # a new instance, or a new execution of one: history restarts
                tail = _Tail(start)
            elif tail.start + len(tail.events) != start:  # the engine reloads the instance
                raise RuntimeError(f"the stored history of {pk} has "
                                   f"{tail.start + len(tail.events)} events, not {start}")
            grown = _Tail(tail.start,
                          tail.events + [json.dumps(e, separators=(",", ":"))
                                         for e in new_events],
                          tail.consumed + list(consumed))
            document = record.to_json()
            ended = record.runtime_status in TERMINAL
            if reset_from is None and grown.chars <= _TAIL_CHARS \
                    and len(grown.consumed) <= (0 if ended else _TAIL_KEYS):
                await self._client.upsert_entity(self._instance_row(record, document, grown),
                                                 mode=UpdateMode.REPLACE)
                self._tails[pk] = grown
                self._known.add(pk)
                return
            ops: list[tuple[str, dict[str, Any]]] = []
            if reset_from is not None:
                ops += [("delete", {"PartitionKey": pk, "RowKey": key})
                        for key in await self._history_keys(pk)]
            if grown.events:
                text = grown.text()
                pieces = [text[i:i + _ROW_CHARS] for i in range(0, len(text), _ROW_CHARS)]
                ops += [("upsert", {"PartitionKey": pk,
                                    "RowKey": f"{HISTORY_PREFIX}{grown.start:08d}.{n:04d}",
                                    "Parts": len(pieces), **_chunks(piece)})
                        for n, piece in enumerate(pieces)]
            ops += [("delete", {"PartitionKey": pk, "RowKey": INBOX_PREFIX + k})
                    for k in grown.consumed]
            flushed = _Tail(record.history_len)
            ops.append(("upsert", self._instance_row(record, document, flushed)))
            for batch in _batches(ops):
                await self._submit(batch)
            self._tails[pk] = flushed
            self._known.add(pk)

    async def _stored_tail(self, pk: str) -> _Tail | None:
        """The tail in the instance row of ``pk`` as this store last wrote or read it, else
        as stored (None: no instance row)."""
        tail = self._tails.get(pk)
        if tail is None and pk in self._known:
            try:
                row = await self._client.get_entity(pk, INSTANCE_ROW)
            except ResourceNotFoundError:
                return None
            tail = _Tail.of_row(row, InstanceRecord.from_json(_unchunk(row)).history_len)
        return tail

    @staticmethod
    def _instance_row(record: InstanceRecord, document: str, tail: _Tail) -> dict[str, Any]:
        row: dict[str, Any] = {"PartitionKey": record.instance_id, "RowKey": INSTANCE_ROW,
                               "RuntimeStatus": record.runtime_status, "Name": record.name,
                               "TailStart": tail.start, **_chunks(document)}
        if tail.events:
            row.update(_chunks(tail.text(), "T"))
        if tail.consumed:
            row["C"] = json.dumps(tail.consumed)
        return row

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
            # "upsert" replaces: a merge would keep chunks (D*, T*) a shorter text no longer has
            await self._client.submit_transaction(
                [(kind, entity, {"mode": UpdateMode.REPLACE}) if kind == "upsert"
                 else (kind, entity) for kind, entity in ops])
        except Exception:
            # A delete of a row that is already gone fails the whole transaction: retry
            # the operations one by one, tolerating missing rows.
            for kind, entity in ops:
                if kind == "delete":
                    with contextlib.suppress(ResourceNotFoundError):
                        await self._client.delete_entity(entity["PartitionKey"],
                                                         entity["RowKey"])
                else:
                    await self._client.upsert_entity(entity, mode=UpdateMode.REPLACE)

    async def purge(self, instance_id: str) -> bool:
        query = self._client.query_entities(
            "PartitionKey eq @pk", parameters={"pk": instance_id},
            select=["PartitionKey", "RowKey"])
        keys = [e["RowKey"] async for e in query]
        self._tails.pop(instance_id, None)
        self._known.discard(instance_id)
        if INSTANCE_ROW not in keys:
            return False
        keys.remove(INSTANCE_ROW)
        keys.append(INSTANCE_ROW)
        for i in range(0, len(keys), _BATCH):
            await self._submit([("delete", {"PartitionKey": instance_id, "RowKey": k})
                                for k in keys[i:i + _BATCH]])
        return True
