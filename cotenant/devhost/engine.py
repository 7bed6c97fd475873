"""The Durable engine: drives the SDK's orchestrator wrapper episode by episode.

Each instance has an inbox of new history events. Its episodes run one at a time: an
episode takes every event waiting in the inbox (so completions that arrive together are
replayed once), appends ``OrchestratorStarted`` + the events, calls the orchestrator with the
whole history, checks the returned actions against the recorded prefix (non-determinism),
assigns sequence ids to new actions exactly as the SDK does, records them
(``TaskScheduled``, ``TimerCreated``, ``SubOrchestrationInstanceCreated``), commits to the
store, and only then dispatches the work (activities, timers, sub-orchestrations).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from . import history as h
from .actions import (
    ACTIVITIES,
    NOT_EMULATED,
    SCHEDULING,
    SUB_ORCHESTRATIONS,
    ActionType,
    find_divergence,
    flatten,
)
from .activities import ActivityRunner
from .clock import TimerService
from .history import EventType
from .loader import FunctionIndex
from .store import ACTIVE, TERMINAL, InstanceRecord, Store

log = logging.getLogger("cotenant.devhost")
_OOP_LABEL = "\n\n$OutOfProcData$:"
_MIN_BATCH_WAIT = 0.002  # seconds: below this, replaying at once is cheaper than waiting
_MAX_BATCH_WAIT = 0.25
_BATCH_POLL = 0.005


class EngineError(Exception):
    """A management request the engine refuses; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Stats:
    episodes: int = 0
    replayed_events: int = 0
    activities: int = 0
    replay_seconds: float = 0.0


@dataclass(frozen=True)
class Snapshot:
    """A committed view of an instance: its record and history."""

    record: InstanceRecord
    history: list[dict[str, Any]]


@dataclass
class Live:
    """An instance loaded in memory."""

    record: InstanceRecord
    history: list[dict[str, Any]]
    leaves: list[dict[str, Any]] = field(default_factory=list)
    inbox: list[tuple[str | None, dict[str, Any]]] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    draining: bool = False
    timer_handles: dict[int, int] = field(default_factory=dict)
    in_flight: int = 0  # activities running for this instance
    results: set[int] = field(default_factory=set)  # task/timer ids with a result event
    keys: set[str] = field(default_factory=set)  # stored inbox keys already in this inbox
    finished: asyncio.Event = field(default_factory=asyncio.Event)  # parent told, if any
    encoded: list[str] = field(default_factory=list)  # JSON of history[i] once committed

    @property
    def eng(self) -> dict[str, Any]:
        return self.record.engine

    def take_seq(self) -> int:
        seq = int(self.eng.get("next_seq", 0))
        self.eng["next_seq"] = seq + 1
        return seq


_FORBIDDEN = set("/\\#?")


def check_instance_id(iid: str) -> None:
    """Instance ids are table keys and URL segments: at most 100 printable characters."""
    if not iid or len(iid) > 100 or any(c in _FORBIDDEN or not c.isprintable() for c in iid):
        raise EngineError(400, "instance ids are 1-100 printable characters without "
                          "'/', '\\', '#' or '?'")


_RESULTS = {EventType.TASK_COMPLETED: "TaskScheduledId", EventType.TASK_FAILED: "TaskScheduledId",
            EventType.SUB_ORCHESTRATION_COMPLETED: "TaskScheduledId",
            EventType.SUB_ORCHESTRATION_FAILED: "TaskScheduledId",
            EventType.TIMER_FIRED: "TimerId"}


def _result_id(evt: dict[str, Any]) -> int | None:
    """The task or timer id an event is the result of (None for other events)."""
    field_name = _RESULTS.get(evt["EventType"])
    return None if field_name is None else int(evt[field_name])


def _fresh_engine_state() -> dict[str, Any]:
    return {"next_seq": 0, "retry": {}, "retry_timers": {}, "timers": {}}


class Engine:
    def __init__(self, index: FunctionIndex, store: Store, timers: TimerService,
                 activities: ActivityRunner, *, override_running: bool = False) -> None:
        self.index = index
        self.store = store
        self.timers = timers
        self.activities = activities
        self.override_running = override_running
        self.stats = Stats()
        self._lives: dict[str, Live] = {}
        self._loading: dict[str, asyncio.Future[Live | None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._seconds_per_event = 0.0  # replay cost, moving average

    # ------------------------------------------------------------------ lifecycle
    async def recover(self) -> int:
        """Resume every in-flight instance found in the store; returns how many."""
        ids = await self.store.active_ids()
        for iid in ids:
            live = await self._live(iid)
            if live is not None:
                await self._resume(live)
        return len(ids)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ management API
    async def start(self, name: str, input_text: str | None, instance_id: str | None = None,
                    *, parent: tuple[str, int] | None = None) -> str:
        if self.index.get(name, "orchestrationTrigger") is None:
            raise EngineError(400, f"The function '{name}' doesn't exist, is disabled, or is "
                              "not an orchestrator function.")
        iid = instance_id or uuid.uuid4().hex
        check_instance_id(iid)
        existing = await self._live(iid)
        if existing is not None:
            async with existing.lock:
                if existing.record.runtime_status in ACTIVE and not self.override_running \
                        and parent is None:
                    raise EngineError(409, f"An Orchestration instance with the status "
                                      f"{existing.record.runtime_status} already exists.")
                self._cancel_timers(existing)
            self._lives.pop(iid, None)
            existing.finished.set()  # its waiters move on to the new instance
        now = self.timers.clock.now()
        record = InstanceRecord(
            instance_id=iid, name=name, runtime_status="Pending", input=input_text,
            created=h.iso(now), last_updated=h.iso(now),
            parent_instance_id=parent[0] if parent else None,
            parent_task_id=parent[1] if parent else None,
            execution=(existing.record.execution + 1) if existing else 0,
            engine=_fresh_engine_state())
        live = Live(record, [])
        self._lives[iid] = live
        # A new sub-orchestration is first stored by its first episode's commit: until then
        # the parent's recorded SubOrchestrationInstanceCreated is what starts it again
        # after a restart (``_resume_child``) or a failed first commit (``_reload``).
        if existing is not None or parent is None:
            stale = [key for key, _ in existing.inbox if key is not None] if existing else []
            await self.store.commit(record, [], stale, reset_from=existing.record.history_len
                                    if existing else None)
        self._deliver(live, None, h.execution_started(now, name, input_text,
                                                      record.parent_instance_id))
        return iid

    async def raise_event(self, iid: str, name: str, input_text: str | None) -> None:
        live = await self._live(iid)
        if live is None:
            raise EngineError(404, f"No instance with ID '{iid}' found.")
        if live.record.runtime_status in TERMINAL:
            raise EngineError(410, f"Instance with ID {iid} is gone: either completed or failed")
        key = f"{self.timers.clock.now().timestamp():020.6f}-{uuid.uuid4().hex[:8]}"
        evt = h.event_raised(self.timers.clock.now(), name, input_text)
        await self._deliver_stored(iid, key, evt)

    async def terminate(self, iid: str, reason: str) -> None:
        live = await self._live(iid)
        if live is None:
            raise EngineError(404, f"No instance with ID '{iid}' found.")
        async with live.lock:
            rec = live.record
            if rec.runtime_status in TERMINAL:
                raise EngineError(410, f"Instance with ID {iid} is already {rec.runtime_status}")
            now = self.timers.clock.now()
            output = json.dumps(reason)
            events = [h.event(EventType.EXECUTION_TERMINATED, now, Input=output),
                      h.execution_completed(now, "Terminated", output)]
            consumed = [k for k, _ in live.inbox if k is not None]
            live.inbox.clear()
            self._cancel_timers(live)
            rec.runtime_status, rec.output = "Terminated", output
            await self._commit(live, events, consumed)
        await self._finished(live)

    async def suspend(self, iid: str, reason: str) -> None:
        """Stop running episodes; events and results keep arriving and wait in the inbox."""
        await self._set_suspended(iid, reason, suspend=True)

    async def resume(self, iid: str, reason: str) -> None:
        await self._set_suspended(iid, reason, suspend=False)

    async def _set_suspended(self, iid: str, reason: str, *, suspend: bool) -> None:
        live = await self._live(iid)
        if live is None:
            raise EngineError(404, f"No instance with ID '{iid}' found.")
        async with live.lock:
            rec = live.record
            expected = ("Pending", "Running") if suspend else ("Suspended",)
            if rec.runtime_status not in expected:
                raise EngineError(410, f"Instance {iid} is {rec.runtime_status}")
            now = self.timers.clock.now()
            kind = EventType.EXECUTION_SUSPENDED if suspend else EventType.EXECUTION_RESUMED
            if suspend:
                live.eng["suspended_from"] = rec.runtime_status
                rec.runtime_status = "Suspended"
            else:
                rec.runtime_status = live.eng.pop("suspended_from", "Running")
            await self._commit(live, [h.event(kind, now, Reason=reason)], [])
        if not suspend and live.inbox:
            self._kick(live)

    async def restart(self, iid: str, *, new_instance_id: bool) -> str:
        """Start the instance's orchestrator again with its input (a new id by default)."""
        live = await self._live(iid)
        if live is None:
            raise EngineError(404, f"No instance with ID '{iid}' found.")
        rec = live.record
        return await self.start(rec.name, rec.input, None if new_instance_id else iid)

    async def purge(self, iid: str) -> int:
        live = await self._live(iid)
        if live is None:
            return 0
        if live.record.runtime_status in ACTIVE:
            raise EngineError(400, f"Instance {iid} is {live.record.runtime_status}; "
                              "terminate it before purging")
        self._lives.pop(iid, None)
        return 1 if await self.store.purge(iid) else 0

    async def status(self, iid: str) -> Snapshot | None:
        """The instance as last committed (never half-way through an episode)."""
        live = await self._live(iid)
        if live is None:
            return None
        async with live.lock:
            return Snapshot(replace(live.record, engine={}), list(live.history))

    async def records(self) -> list[InstanceRecord]:
        stored = {r.instance_id: r for r in await self.store.records()}
        stored.update({iid: live.record for iid, live in self._lives.items()})
        return list(stored.values())

    async def wait(self, iid: str, timeout: float | None = None) -> Snapshot:
        live = await self._live(iid)
        if live is None:
            raise EngineError(404, f"No instance with ID '{iid}' found.")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            await asyncio.wait_for(live.finished.wait(), left)
            if self._lives.get(iid) is live or live.record.runtime_status in TERMINAL:
                break
            # Superseded (reloaded after a storage failure): wait on the fresh state.
            fresh = await self._live(iid)
            if fresh is None:
                raise EngineError(404, f"No instance with ID '{iid}' found.")
            live = fresh
        found = await self.status(iid)
        assert found is not None
        return found

    # ------------------------------------------------------------------ loading
    async def _live(self, iid: str) -> Live | None:
        live = self._lives.get(iid)
        if live is not None:
            return live
        pending = self._loading.get(iid)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Live | None] = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # seen by someone
        self._loading[iid] = future
        try:
            loaded = await self.store.load(iid)
            live = None
            if loaded is not None:
                for evt in loaded.history:
                    evt["IsPlayed"] = True
                live = Live(loaded.record, loaded.history, inbox=list(loaded.inbox),
                            keys={key for key, _ in loaded.inbox})
                live.results = {r for r in map(_result_id, loaded.history + [e for _, e in
                                                                             loaded.inbox])
                                if r is not None}
                if loaded.record.runtime_status in TERMINAL:
                    live.finished.set()
                if loaded.record.runtime_status in ACTIVE and loaded.history:
                    live.leaves = self._replay_leaves(live)
                self._lives[iid] = live
            future.set_result(live)
            return live
        except BaseException as exc:
            future.set_exception(exc)
            raise
        finally:
            del self._loading[iid]

    def _replay_leaves(self, live: Live) -> list[dict[str, Any]]:
        state, _ = self._invoke(live, [])
        return flatten(state.get("actions", []))

    async def _resume(self, live: Live) -> None:
        """Re-dispatch the work an instance was waiting for when the host stopped."""
        rec = live.record
        if not live.history:
            now = self.timers.clock.now()
            live.inbox.insert(0, (None, h.execution_started(now, rec.name, rec.input,
                                                            rec.parent_instance_id)))
        for evt in live.history:
            seq = int(evt["EventId"])
            if seq in live.results:  # recorded, or waiting in the inbox
                continue
            if evt["EventType"] == EventType.TASK_SCHEDULED:
                self._spawn(self._run_activity(live, seq, evt["Name"], evt.get("Input")))
            elif evt["EventType"] == EventType.SUB_ORCHESTRATION_CREATED:
                self._spawn(self._resume_child(live, seq, evt))
        for key, timer in list(live.eng.get("timers", {}).items()):
            self._arm_timer(live, int(key), h.parse_iso(timer["fire_at"]))
        if live.inbox:
            self._kick(live)

    async def _resume_child(self, parent: Live, seq: int, created: dict[str, Any]) -> None:
        child = await self._live(created["InstanceId"])
        if child is None:
            await self.start(created["Name"], created.get("Input"), created["InstanceId"],
                             parent=(parent.record.instance_id, seq))
        elif child.record.runtime_status in TERMINAL:
            await self._notify_parent(child)

    # ------------------------------------------------------------------ episodes
    async def _deliver_stored(self, iid: str, key: str, evt: dict[str, Any]) -> None:
        """Store an event in the instance's inbox, then queue it on the instance *as it is
        now*: while the store write was in flight, a failed commit may have replaced the
        in-memory instance (``_reload``), and the reloaded one may have been read before the
        write landed. Queuing on the replaced one would lose the event until a restart."""
        await self.store.add_inbox(iid, key, evt)
        current = self._lives.get(iid)
        pending = self._loading.get(iid)
        if current is None and pending is not None:
            with contextlib.suppress(Exception):  # the reload retries; it reads the inbox
                current = await asyncio.shield(pending)
        if current is not None:  # else: the next load reads it from the stored inbox
            self._deliver(current, key, evt)

    def _deliver(self, live: Live, key: str | None, evt: dict[str, Any]) -> None:
        """Queue a new event; a second result for the same task or timer, or an inbox
        event this instance already read from the store, is dropped."""
        if key is not None:
            if key in live.keys:
                return
            live.keys.add(key)
        result_of = _result_id(evt)
        if result_of is not None:
            if result_of in live.results:
                log.info("instance %s: dropped a second result for task %s",
                         live.record.instance_id, result_of)
                return
            live.results.add(result_of)
        live.inbox.append((key, evt))
        self._kick(live)

    def _kick(self, live: Live) -> None:
        if not live.draining:
            live.draining = True
            self._spawn(self._drain(live))

    async def _drain(self, live: Live) -> None:
        try:
            while live.inbox and self._lives.get(live.record.instance_id) is live:
                await self._gather_completions(live)
                async with live.lock:
                    if live.record.runtime_status in TERMINAL:
                        live.inbox.clear()
                        break
                    if live.record.runtime_status == "Suspended":
                        break
                    batch = self._take_batch(live)
                    finished = await self._episode(live, batch)
                if finished:
                    await self._finished(live)
        except Exception:
            log.exception("episode of %s failed", live.record.instance_id)
            self._spawn(self._reload(live))
        finally:
            live.draining = False

    async def _reload(self, live: Live) -> None:
        """After a failed commit: forget the in-memory state, resume from the last commit."""
        iid = live.record.instance_id
        if self._lives.get(iid) is not live:
            return
        del self._lives[iid]
        for handle in live.timer_handles.values():
            self.timers.cancel(handle)
        live.finished.set()  # waiters move on to the reloaded state
        delay = 0.5
        while True:
            await asyncio.sleep(delay)
            try:
                fresh = await self._live(iid)
            except Exception as exc:
                log.warning("instance %s: storage unavailable (%s); retrying in %.0fs", iid,
                            type(exc).__name__, delay)
                delay = min(delay * 2, 10.0)
                continue
            if fresh is not None and fresh.record.runtime_status in ACTIVE:
                await self._resume(fresh)
            elif fresh is not None and fresh.record.parent_instance_id:
                await self._notify_parent(fresh)  # in case telling the parent failed
            elif fresh is None and live.record.parent_instance_id:
                await self._restart_unstored_child(live.record)
            return

    async def _restart_unstored_child(self, rec: InstanceRecord) -> None:
        """A sub-orchestration whose first commit failed was never stored: start it again
        for its parent (as a restart would)."""
        parent = await self._live(rec.parent_instance_id or "")
        if parent is not None and parent.record.runtime_status in ACTIVE \
                and rec.parent_task_id is not None:
            await self._resume_child(parent, rec.parent_task_id, {
                "InstanceId": rec.instance_id, "Name": rec.name, "Input": rec.input})

    async def _gather_completions(self, live: Live) -> None:
        """While the instance's activities are still running, wait for more completions —
        at most as long as the coming replay is expected to take — so that a fan-out
        replays its growing history a few times rather than once per activity."""
        budget = min(self._seconds_per_event * (len(live.history) + len(live.inbox)),
                     _MAX_BATCH_WAIT)
        if not live.in_flight or budget < _MIN_BATCH_WAIT:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        while live.in_flight and loop.time() < deadline:
            await asyncio.sleep(min(_BATCH_POLL, max(0.0, deadline - loop.time())))

    def _retry_kind(self, live: Live, evt: dict[str, Any]) -> str | None:
        kind = evt["EventType"]
        if kind in (EventType.TASK_FAILED, EventType.SUB_ORCHESTRATION_FAILED) and \
                str(evt["TaskScheduledId"]) in live.eng["retry"]:
            return "failed"
        if kind == EventType.TIMER_FIRED and str(evt["TimerId"]) in live.eng["retry_timers"]:
            return "timer"
        if kind in (EventType.TASK_COMPLETED, EventType.SUB_ORCHESTRATION_COMPLETED):
            live.eng["retry"].pop(str(evt["TaskScheduledId"]), None)
        return None

    def _take_batch(self, live: Live) -> list[tuple[str | None, dict[str, Any]]]:
        """Every waiting event, except that retry events are delivered in their own episode."""
        batch: list[tuple[str | None, dict[str, Any]]] = []
        for key, evt in live.inbox:
            if self._retry_kind(live, evt) is not None:
                if not batch:
                    batch.append((key, evt))
                break
            batch.append((key, evt))
        del live.inbox[:len(batch)]
        return batch

    def _next_timestamp(self, live: Live) -> datetime:
        now = self.timers.clock.now()
        last = live.eng.get("last_started")
        if last is not None and now <= h.parse_iso(last):
            now = h.parse_iso(last) + timedelta(microseconds=1)
        live.eng["last_started"] = h.iso(now)
        return now

    def _invoke(self, live: Live, new_events: list[dict[str, Any]]) -> tuple[dict[str, Any],
                                                                           str | None]:
        """Call the SDK's orchestrator wrapper on the committed history plus ``new_events``;
        returns (state, error message or None)."""
        fn = self.index.get(live.record.name, "orchestrationTrigger")
        if fn is None:
            return {}, f"The orchestrator function '{live.record.name}' no longer exists"
        length = len(live.history) + len(new_events)
        rest = json.dumps({
            "input": live.record.input,
            "instanceId": live.record.instance_id, "isReplaying": length > 2,
            "parentInstanceId": live.record.parent_instance_id,
            "upperSchemaVersion": 1, "upperSchemaVersionNew": 2,
        })
        # A committed event no longer changes: it is encoded once, not on every replay.
        live.encoded.extend(json.dumps(e) for e in live.history[len(live.encoded):])
        events = live.encoded + [json.dumps(e) for e in new_events]
        context = '{"history":[' + ",".join(events) + "]," + rest[1:]
        self.stats.episodes += 1
        self.stats.replayed_events += length
        started = time.perf_counter()
        try:
            return json.loads(fn.code(context)), None
        except Exception as exc:
            text = str(exc)
            if _OOP_LABEL in text:
                message, _, state = text.partition(_OOP_LABEL)
                return json.loads(state), message
            return {}, f"{type(exc).__name__}: {text}"
        finally:
            elapsed = time.perf_counter() - started
            self.stats.replay_seconds += elapsed
            sample = elapsed / max(length, 1)
            self._seconds_per_event = sample if not self._seconds_per_event else \
                0.8 * self._seconds_per_event + 0.2 * sample

    async def _episode(self, live: Live, batch: list[tuple[str | None, dict[str, Any]]]) -> bool:
        """Run one episode; returns True when the instance reached a terminal state."""
        rec = live.record
        eng = live.eng
        now = self._next_timestamp(live)
        incoming = [evt for _, evt in batch]
        consumed = [key for key, _ in batch if key is not None]
        post: list[dict[str, Any]] = []
        work: list[Any] = []
        retry = self._retry_kind(live, incoming[0]) if len(incoming) == 1 else None
        if retry == "failed":
            self._on_retry_failure(live, now, incoming, post, work)
        elif retry == "timer":
            self._on_retry_timer(live, now, incoming[0], post, work)
        for evt in incoming:
            if evt["EventType"] == EventType.TIMER_FIRED:
                eng["timers"].pop(str(evt["TimerId"]), None)
                live.timer_handles.pop(int(evt["TimerId"]), None)
        if rec.runtime_status == "Pending":
            rec.runtime_status = "Running"
        new_events = [h.orchestrator_started(now), *incoming]
        state, error = self._invoke(live, new_events)
        leaves = flatten(state.get("actions", []))
        if error is None:
            error = find_divergence(live.leaves, leaves) or self._unsupported(leaves)
            if error:
                leaves = live.leaves
        if state.get("customStatus") is not None:
            rec.custom_status = json.dumps(state["customStatus"])
        continue_input: str | None = None
        if error is None:
            for index in range(len(live.leaves), len(leaves)):
                leaf = leaves[index]
                if leaf["actionType"] == ActionType.CONTINUE_AS_NEW:
                    continue_input = leaf.get("input")
                elif leaf["actionType"] in SCHEDULING:
                    self._schedule(live, index, leaf, live.take_seq(), now, post, work)
            self._cancel_dropped_timers(live, leaves)
            live.leaves = leaves
        finished = False
        if error is not None:
            rec.runtime_status = "Failed"
            rec.output = json.dumps(f"Orchestrator function '{rec.name}' failed: {error}")
            finished = True
        elif state.get("isDone") and continue_input is None and \
                not any(a["actionType"] == ActionType.CONTINUE_AS_NEW for a in leaves):
            rec.runtime_status = "Completed"
            rec.output = json.dumps(state.get("output"))
            finished = True
        elif state.get("isDone"):
            await self._continue_as_new(live, now, continue_input, consumed)
            return False
        new_events += post
        new_events.append(h.orchestrator_completed(now))
        if finished:
            new_events.append(h.execution_completed(now, rec.runtime_status, rec.output))
            self._cancel_timers(live)
            work = []
        await self._commit(live, new_events, consumed)
        for item in work:
            item()
        return finished

    def _unsupported(self, leaves: list[dict[str, Any]]) -> str | None:
        for leaf in leaves:
            if leaf.get("actionType") in NOT_EMULATED:
                kind = ActionType(leaf["actionType"]).name.lower()
                return f"the devhost does not emulate {kind} (durable entities and call_http)"
        return None

    async def _commit(self, live: Live, new_events: list[dict[str, Any]],
                      consumed: list[str]) -> None:
        rec = live.record
        rec.last_updated = h.iso(self.timers.clock.now())
        rec.history_len = len(live.history) + len(new_events)
        await self.store.commit(rec, new_events, consumed)
        for evt in new_events:
            evt["IsPlayed"] = True
        live.history.extend(new_events)

    async def _continue_as_new(self, live: Live, now: datetime, input_text: str | None,
                               consumed: list[str]) -> None:
        rec = live.record
        self._cancel_timers(live)
        old_len = rec.history_len
        live.history = []
        live.encoded = []
        live.leaves = []
        live.results = set()
        rec.history_len = 0
        rec.input = input_text
        rec.execution += 1
        rec.engine = _fresh_engine_state()
        rec.engine["last_started"] = h.iso(now)
        rec.runtime_status = "Running"
        rec.last_updated = h.iso(now)
        await self.store.commit(rec, [], consumed, reset_from=old_len)
        live.inbox.insert(0, (None, h.execution_started(now, rec.name, input_text,
                                                        rec.parent_instance_id)))

    # ------------------------------------------------------------------ scheduling
    def _schedule(self, live: Live, index: int, leaf: dict[str, Any], seq: int, now: datetime,
                  post: list[dict[str, Any]], work: list[Any]) -> None:
        kind = leaf["actionType"]
        if kind in ACTIVITIES:
            post.append(h.task_scheduled(now, seq, leaf["functionName"], leaf.get("input")))
            work.append(lambda: self._spawn(self._run_activity(
                live, seq, leaf["functionName"], leaf.get("input"))))
        elif kind in SUB_ORCHESTRATIONS:
            child_id = leaf.get("instanceId") or f"{live.record.instance_id}:{seq}"
            post.append(h.sub_orchestration_created(now, seq, leaf["functionName"], child_id,
                                                    leaf.get("input")))
            work.append(lambda: self._spawn(self._start_child(
                live, seq, leaf["functionName"], child_id, leaf.get("input"))))
        else:  # CREATE_TIMER
            fire_at = h.parse_iso(leaf["fireAt"])
            post.append(h.timer_created(now, seq, fire_at))
            if leaf.get("isCanceled"):
                return
            live.eng["timers"][str(seq)] = {"fire_at": h.iso(fire_at), "leaf": index}
            work.append(lambda: self._arm_timer(live, seq, fire_at))
        if kind not in (ActionType.CALL_ACTIVITY, ActionType.CALL_SUB_ORCHESTRATOR,
                        ActionType.CREATE_TIMER):
            live.eng["retry"][str(seq)] = {"leaf": index, "attempt": 1}

    def _on_retry_failure(self, live: Live, now: datetime, incoming: list[dict[str, Any]],
                          post: list[dict[str, Any]], work: list[Any]) -> None:
        info = live.eng["retry"].pop(str(incoming[0]["TaskScheduledId"]))
        options = live.leaves[info["leaf"]]["retryOptions"]
        timer_id = live.take_seq()
        if info["attempt"] >= int(options["maxNumberOfAttempts"]):
            # The SDK surfaces the failure once the retry timer fires: fire it now.
            incoming += [h.timer_created(now, timer_id, now),
                         h.timer_fired(now, timer_id, h.iso(now))]
            live.results.add(timer_id)
            return
        fire_at = now + timedelta(milliseconds=int(options["firstRetryIntervalInMilliseconds"]))
        post.append(h.timer_created(now, timer_id, fire_at))
        live.eng["retry_timers"][str(timer_id)] = info
        live.eng["timers"][str(timer_id)] = {"fire_at": h.iso(fire_at), "leaf": None}
        work.append(lambda: self._arm_timer(live, timer_id, fire_at))

    def _on_retry_timer(self, live: Live, now: datetime, fired: dict[str, Any],
                        post: list[dict[str, Any]], work: list[Any]) -> None:
        info = live.eng["retry_timers"].pop(str(fired["TimerId"]))
        leaf = live.leaves[info["leaf"]]
        seq = live.take_seq()
        self._schedule(live, info["leaf"], leaf, seq, now, post, work)
        live.eng["retry"][str(seq)] = {"leaf": info["leaf"], "attempt": info["attempt"] + 1}

    def _arm_timer(self, live: Live, timer_id: int, fire_at: datetime) -> None:
        execution = live.record.execution

        def fire() -> None:
            live.timer_handles.pop(timer_id, None)
            if self._current(live, execution):
                self._deliver(live, None, h.timer_fired(self.timers.clock.now(), timer_id,
                                                        h.iso(fire_at)))

        live.timer_handles[timer_id] = self.timers.schedule(fire_at, fire)

    def _cancel_dropped_timers(self, live: Live, leaves: list[dict[str, Any]]) -> None:
        for key, timer in list(live.eng["timers"].items()):
            leaf = timer.get("leaf")
            if leaf is not None and leaves[leaf].get("isCanceled"):
                del live.eng["timers"][key]
                handle = live.timer_handles.pop(int(key), None)
                if handle is not None:
                    self.timers.cancel(handle)

    def _cancel_timers(self, live: Live) -> None:
        for handle in live.timer_handles.values():
            self.timers.cancel(handle)
        live.timer_handles.clear()
        live.eng["timers"] = {}

    def _current(self, live: Live, execution: int) -> bool:
        return (self._lives.get(live.record.instance_id) is live
                and live.record.execution == execution
                and live.record.runtime_status in ACTIVE)

    async def _run_activity(self, live: Live, seq: int, name: str,
                            input_text: str | None) -> None:
        execution = live.record.execution
        live.in_flight += 1
        try:
            outcome = await self.activities.run(name, input_text)
        finally:
            live.in_flight -= 1
        self.stats.activities += 1
        if not self._current(live, execution):
            return
        now = self.timers.clock.now()
        if outcome.ok:
            evt = h.task_completed(now, seq, outcome.result)
        else:
            evt = h.task_failed(now, seq, outcome.reason, outcome.details)
        self._deliver(live, None, evt)

    async def _start_child(self, parent: Live, seq: int, name: str, child_id: str,
                           input_text: str | None) -> None:
        try:
            await self.start(name, input_text, child_id,
                             parent=(parent.record.instance_id, seq))
        except EngineError as exc:
            now = self.timers.clock.now()
            self._deliver(parent, None, h.sub_orchestration_failed(now, seq, str(exc), ""))

    async def _finished(self, live: Live) -> None:
        """Tell the parent, then wake whoever waits for this instance."""
        try:
            if live.record.parent_instance_id:
                await self._notify_parent(live)
        finally:
            live.finished.set()

    async def _notify_parent(self, child: Live) -> None:
        rec = child.record
        parent = await self._live(rec.parent_instance_id or "")
        if parent is None or parent.record.runtime_status in TERMINAL \
                or rec.parent_task_id is None:
            return
        now = self.timers.clock.now()
        if rec.runtime_status == "Completed":
            evt = h.sub_orchestration_completed(now, rec.parent_task_id, rec.output)
        else:
            reason = json.loads(rec.output) if rec.output else rec.runtime_status
            evt = h.sub_orchestration_failed(now, rec.parent_task_id, str(reason), "")
        # Delivered in memory, like an activity's result: until the parent commits it, the
        # parent's recovery finds this child ended and tells it again (``_resume_child``).
        self._deliver(parent, None, evt)
