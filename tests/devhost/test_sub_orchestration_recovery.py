"""A sub-orchestration is first stored by its first episode's commit (no separate write at
its start): a child whose first commit fails was never stored, and the engine starts it again
for its parent. (A child's result reaches the parent in memory; after a restart the parent's
recovery tells it again: ``test_durability``'s inbox test.)"""

from __future__ import annotations

from typing import Any

from azure.core.exceptions import ServiceRequestError

from cotenant.devhost.testing import DevHostHarness

from .conftest import Journal, unique


class FailFirstChildCommit:
    """Fails the first commit of every sub-orchestration (a dropped storage connection)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.failed: list[str] = []
        self._commit = store.commit
        store.commit = self.commit

    def undo(self) -> None:
        self.store.commit = self._commit

    async def commit(self, record: Any, *args: Any, **kwargs: Any) -> None:
        if record.parent_instance_id and record.instance_id not in self.failed:
            self.failed.append(record.instance_id)
            raise ServiceRequestError("Server disconnected")
        await self._commit(record, *args, **kwargs)


def test_child_whose_first_commit_fails_is_started_again(host: DevHostHarness,
                                                         journal: Journal) -> None:
    faults = FailFirstChildCommit(host._engine.store)
    try:
        iid = host.start_orchestration("parent", {"input": ["Oslo", "Rome"]},
                                       instance_id=unique("p"))
        status = host.wait(iid, timeout=30)
    finally:
        faults.undo()
    assert faults.failed, "no child commit was failed"
    assert status.runtime_status == "Completed"
    assert status.output == {"child": ["Hello Oslo!", "Hello Rome!"]}
    created = [e for e in status.history if e["EventType"] == "SubOrchestrationInstanceCreated"]
    completed = [e for e in status.history
                 if e["EventType"] == "SubOrchestrationInstanceCompleted"]
    assert len(created) == 1 and len(completed) == 1
    child = host.status(created[0]["InstanceId"])
    assert child is not None and child.runtime_status == "Completed"
    # The child's first episode was replayed after the failed commit, never committed twice.
    assert [e["EventType"] for e in child.history].count("ExecutionStarted") == 1
