"""An event raised while a failed commit reloads the instance is still delivered.

``raiseEvent`` stores the event in the instance's inbox, then queues it in memory. When a
commit fails meanwhile (storage dropped a connection), the engine replaces the in-memory
instance with one reloaded from the store; if that reload read the inbox before the event's
write landed, queuing the event on the replaced instance lost it (202 to the caller, the
orchestration waited until its timeout). The storage edge is slowed/failed by wrapping the
store's two write calls; the engine and the sample app are the real ones.
"""

from __future__ import annotations

import asyncio
from typing import Any

from azure.core.exceptions import ServiceRequestError

from cotenant.devhost.testing import DevHostHarness


class StorageFaults:
    """Holds the next inbox write of one event until released; fails the next commit."""

    def __init__(self, store: Any, held_event: str) -> None:
        self.store = store
        self.held_event = held_event
        self.release = asyncio.Event()
        self.holding = asyncio.Event()
        self.fail_commits = 0
        self._add_inbox, self._commit = store.add_inbox, store.commit
        store.add_inbox, store.commit = self.add_inbox, self.commit

    def undo(self) -> None:
        self.store.add_inbox, self.store.commit = self._add_inbox, self._commit

    async def add_inbox(self, instance_id: str, key: str, event: dict[str, Any]) -> None:
        if event.get("Name") == self.held_event:
            self.holding.set()
            await self.release.wait()
        await self._add_inbox(instance_id, key, event)

    async def commit(self, *args: Any, **kwargs: Any) -> None:
        if self.fail_commits:
            self.fail_commits -= 1
            raise ServiceRequestError("Server disconnected")
        await self._commit(*args, **kwargs)


def _waiting_approval(host: DevHostHarness) -> str:
    """An ``approval`` instance that waits for its event."""
    iid = host.start_orchestration("approval")
    host.wait_for_custom_status(iid, lambda s: s == {"phase": "waiting"})
    return iid


def test_event_raised_while_a_failed_commit_reloads_the_instance_is_delivered(
        host: DevHostHarness) -> None:
    iid = _waiting_approval(host)
    engine = host._engine

    async def scenario() -> None:
        faults = StorageFaults(engine.store, "Approval")
        try:
            old = engine._lives[iid]
            approval = asyncio.ensure_future(engine.raise_event(iid, "Approval", '"yes"'))
            await asyncio.wait_for(faults.holding.wait(), 10)
            faults.fail_commits = 1  # the episode of the next event fails to commit
            await engine.raise_event(iid, "Noise", '"n"')
            for _ in range(200):  # the engine reloads the instance from the store
                current = engine._lives.get(iid)
                if current is not None and current is not old and not current.draining:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the instance was not reloaded")
            faults.release.set()  # the Approval write lands after the reload read the inbox
            await asyncio.wait_for(approval, 10)
        finally:
            faults.release.set()
            faults.undo()

    host._run(scenario())
    status = host.wait(iid, timeout=20)
    assert status.runtime_status == "Completed"
    assert status.output == {"approved": "yes"}
    raised = [e["FunctionName"] for e in status.history if e["EventType"] == "EventRaised"]
    assert sorted(raised) == ["Approval", "Noise"]  # each exactly once


def test_event_is_delivered_once_when_the_reload_already_read_it(
        host: DevHostHarness) -> None:
    iid = _waiting_approval(host)
    engine = host._engine

    async def scenario() -> None:
        faults = StorageFaults(engine.store, "Approval")
        faults.fail_commits = 1  # the Approval episode fails to commit, the reload reads it
        try:
            faults.release.set()
            await engine.raise_event(iid, "Approval", '"yes"')
        finally:
            faults.undo()

    host._run(scenario())
    status = host.wait(iid, timeout=20)
    assert status.output == {"approved": "yes"}
    raised = [e for e in status.history if e["EventType"] == "EventRaised"]
    assert len(raised) == 1
