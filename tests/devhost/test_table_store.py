"""The Table store's layout: the history tail in the instance row, flushes, consumed inbox rows.

Each test writes through one ``TableStore`` and reads back through a second one (what a
restarted devhost does), against Azurite.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from cotenant.azurite import Azurite
from cotenant.devhost.store import INSTANCE_ROW, InstanceRecord, TableStore

from .conftest import unique


def _run(azurite: Azurite, body: Callable[[str], Awaitable[None]]) -> None:
    asyncio.run(body(unique("store")))


def _record(iid: str, history_len: int, *, status: str = "Running",
            custom: str | None = None) -> InstanceRecord:
    return InstanceRecord(instance_id=iid, name="orchestrator", runtime_status=status,
                          input='{"spec": 1}', created="2026-11-27T00:00:00.000000Z",
                          last_updated="2026-11-27T00:00:00.000000Z", custom_status=custom,
                          history_len=history_len)


def _event(index: int, size: int = 100) -> dict[str, Any]:
    return {"EventType": 4, "EventId": index, "IsPlayed": False,
            "Timestamp": "2026-11-27T00:00:00.000000Z", "Name": f"step{index}",
            "Input": json.dumps({"n": index, "pad": "x" * size})}


async def _open(connection_string: str, hub: str) -> TableStore:
    store = TableStore(connection_string, hub)
    await store.open()
    return store


async def _rows(store: TableStore, iid: str) -> dict[str, dict[str, Any]]:
    query = store._client.query_entities("PartitionKey eq @pk", parameters={"pk": iid})
    return {e["RowKey"]: dict(e) async for e in query}


def test_history_survives_many_commits_across_tail_flushes(azurite: Azurite) -> None:
    """Commits of varied size (some larger than the tail bound) keep every event, in order,
    for a fresh reader; most commits write only the instance row."""

    async def body(hub: str) -> None:
        writer = await _open(azurite.connection_string, hub)
        history: list[dict[str, Any]] = []
        sizes = [50, 200, 5_000, 20_000, 90_000, 300, 40_000, 10, 70_000, 2_000]
        for n, size in enumerate(sizes * 3):
            events = [_event(len(history) + i, size) for i in range(1 + n % 3)]
            history += events
            await writer.commit(_record("i1", len(history)), events, [])
        rows = await _rows(writer, "i1")
        await writer.close()
        segments = [k for k in rows if k.startswith("h")]
        assert 0 < len({k.split(".")[0] for k in segments}) < len(sizes) * 3  # some flushes
        assert "T0" in rows[INSTANCE_ROW]  # the newest events wait in the instance row

        reader = await _open(azurite.connection_string, hub)
        loaded = await reader.load("i1")
        await reader.close()
        assert loaded is not None
        assert loaded.history == history
        assert loaded.record.history_len == len(history)

    _run(azurite, body)


def test_consumed_inbox_events_are_not_delivered_again(azurite: Azurite) -> None:
    """A consumed inbox row may outlive its commit (deleted at the next flush); a reader
    must not deliver it again, and the flush at the end deletes it."""

    async def body(hub: str) -> None:
        writer = await _open(azurite.connection_string, hub)
        await writer.commit(_record("i2", 1), [_event(0)], [])
        await writer.add_inbox("i2", "k1", {"EventType": 14, "Name": "first"})
        await writer.add_inbox("i2", "k2", {"EventType": 14, "Name": "second"})
        await writer.commit(_record("i2", 2), [_event(1)], ["k1"])

        reader = await _open(azurite.connection_string, hub)
        loaded = await reader.load("i2")
        assert loaded is not None
        assert [key for key, _ in loaded.inbox] == ["k2"]
        assert len(loaded.history) == 2

        # The reader carries on (as a restarted host would) and the instance ends: flushed.
        await reader.commit(_record("i2", 3, status="Completed"), [_event(2)], ["k2"])
        rows = await _rows(reader, "i2")
        assert not [k for k in rows if k.startswith("~inbox:")]
        assert "T0" not in rows[INSTANCE_ROW] and "C" not in rows[INSTANCE_ROW]
        again = await reader.load("i2")
        assert again is not None and [e["EventId"] for e in again.history] == [0, 1, 2]
        assert again.inbox == []
        await writer.close()
        await reader.close()

    _run(azurite, body)


def test_an_instance_that_ends_with_nothing_to_delete_keeps_its_tail(
        azurite: Azurite) -> None:
    """Ending is one more entity write when no inbox row waits for deletion (a deployment
    monitor's last commit): the history stays in the instance row and loads whole."""

    async def body(hub: str) -> None:
        writer = await _open(azurite.connection_string, hub)
        await writer.commit(_record("i6", 1), [_event(0)], [])
        await writer.commit(_record("i6", 3, status="Completed"), [_event(1), _event(2)], [])
        rows = await _rows(writer, "i6")
        assert list(rows) == [INSTANCE_ROW] and "T0" in rows[INSTANCE_ROW]
        reader = await _open(azurite.connection_string, hub)
        loaded = await reader.load("i6")
        assert loaded is not None and loaded.record.runtime_status == "Completed"
        assert loaded.history == [_event(0), _event(1), _event(2)]
        await writer.close()
        await reader.close()

    _run(azurite, body)


def test_a_shorter_document_leaves_no_stale_chunks(azurite: Azurite) -> None:
    """The instance row is replaced, not merged: a custom status that shrinks below a
    chunk boundary must not keep the old second chunk."""

    async def body(hub: str) -> None:
        writer = await _open(azurite.connection_string, hub)
        await writer.commit(_record("i3", 1, custom="y" * 70_000), [_event(0)], [])
        await writer.commit(_record("i3", 2, custom='"small"'), [_event(1)], [])
        reader = await _open(azurite.connection_string, hub)
        loaded = await reader.load("i3")
        assert loaded is not None and loaded.record.custom_status == '"small"'
        await writer.close()
        await reader.close()

    _run(azurite, body)


def test_a_commit_that_does_not_follow_the_stored_history_is_refused(
        azurite: Azurite) -> None:
    """New events must start where the stored history ends: a commit that would leave a
    gap (or overwrite stored events) fails, and the engine reloads the instance."""

    async def body(hub: str) -> None:
        writer = await _open(azurite.connection_string, hub)
        await writer.commit(_record("i4", 2), [_event(0), _event(1)], [])
        with pytest.raises(RuntimeError, match="has 2 events, not 4"):
            await writer.commit(_record("i4", 5), [_event(4)], [])
        with pytest.raises(RuntimeError, match="has 2 events, not 1"):
            await writer.commit(_record("i4", 2), [_event(1, 7)], [])
        reader = await _open(azurite.connection_string, hub)
        loaded = await reader.load("i4")
        assert loaded is not None and loaded.history == [_event(0), _event(1)]
        await writer.close()
        await reader.close()

    _run(azurite, body)


def test_stored_instances_are_known_at_open_and_unknown_ids_cost_no_request(
        azurite: Azurite) -> None:
    """The host is its hub's only writer: it reads the stored ids once when it opens, then
    answers "no such instance" (a new sub-orchestration's id) without asking storage."""

    async def body(hub: str) -> None:
        writer = await _open(azurite.connection_string, hub)
        await writer.commit(_record("i5", 1), [_event(0)], [])
        reader = await _open(azurite.connection_string, hub)
        calls: list[str] = []
        get_entity = reader._client.get_entity

        async def counted(*args: Any, **kwargs: Any) -> Any:
            calls.append(args[0])
            return await get_entity(*args, **kwargs)

        reader._client.get_entity = counted  # type: ignore[method-assign]
        assert await reader.load("never-stored") is None
        assert calls == []
        loaded = await reader.load("i5")
        assert loaded is not None and len(loaded.history) == 1 and calls == ["i5"]
        await reader.commit(_record("i6", 1), [_event(0)], [])  # new: no lookup either
        assert calls == ["i5"]
        assert await reader.purge("i6") and await reader.load("i6") is None
        await writer.close()
        await reader.close()

    _run(azurite, body)
