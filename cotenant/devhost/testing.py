"""Run a function app in-process for tests, with the devhost's real Durable engine.

The harness starts a :class:`~cotenant.devhost.server.DevHost` on its own event loop in a
background thread and serves HTTP on a free 127.0.0.1 port, so synchronous pytest tests can
drive orchestrations directly *and* call the app's HTTP triggers (durable client bindings
work, because the management API is served too). Timers fire in real time, or immediately
after :meth:`DevHostHarness.advance` moves the harness clock forward.

Usage::

    import pytest
    from cotenant.devhost.testing import DevHostHarness

    @pytest.fixture
    def host(azurite):                       # tests/conftest.py's Azurite
        with DevHostHarness(
            "function_app.py",               # any Python v2 function app
            connection_string=azurite.connection_string,  # omit for in-memory state
            task_hub="deployTest1",          # unique per test: table <hub>History
            settings={"MY_SETTING": "x"},    # extra app settings (environment)
        ) as h:
            yield h

    def test_deploy(host):
        iid = host.start_orchestration("deploy_tenant", {"name": "t1"}, instance_id="t1")
        host.wait_for_custom_status(iid, lambda s: s and s.get("phase") == "waiting")
        host.raise_event(iid, "guest_report", {"ok": True})  # orchestrator gets the dict
        host.advance(minutes=10)                              # fires due durable timers
        status = host.wait(iid, timeout=30)                   # terminal status
        assert status.runtime_status == "Completed", status.output
        assert status.output == {...}
        # HTTP triggers (function keys added for you):
        r = host.http("POST", "/api/tenants", json={...})
        assert r.status_code == 202
        host.status(iid).history                              # list of history events

Other helpers: ``status(iid)`` (None if unknown), ``wait_until(iid, predicate)``,
``wait_for_status(iid, "Running")``, ``wait_for_history(iid, "TaskCompleted", count)``,
``terminate(iid, reason)``, ``suspend(iid)``, ``resume(iid)``, ``purge(iid)``,
``list_instances()``, ``stats`` (episodes, replayed events, replay seconds, activities),
``base_url``, ``function_key``, ``master_key``, and ``restart()`` (stop and start again on
the same storage and clock, to test resumption). ``triggers=True`` also runs queue and timer
triggers; ``keys_file`` and ``max_concurrent_activities`` override the keys file and
host.json's activity limit.

Statuses are committed views (never half-way through an episode); ``Status.history`` uses
the status API's event names (``"TaskScheduled"``, ``"TimerFired"``, ...). Errors of the
management operations raise ``cotenant.devhost.engine.EngineError`` with ``.status`` (404
unknown instance, 409 id already running, 410 instance already finished, 400 bad input).
Data raised with ``raise_event`` arrives as the value; data raised through the SDK's
``DurableOrchestrationClient.raise_event`` arrives as a JSON *string*, as with the real host.
The app's settings are put into ``os.environ`` while the host runs and restored after.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx

from . import history as h
from .clock import Clock
from .engine import Snapshot, Stats
from .server import DevHost

T = TypeVar("T")


@dataclass
class Status:
    """An orchestration instance as the status API reports it (values already decoded)."""

    instance_id: str
    name: str
    runtime_status: str
    input: Any
    output: Any
    custom_status: Any
    created_time: str
    last_updated_time: str
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.runtime_status in ("Completed", "Failed", "Terminated")


def _decode(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _status(live: Snapshot) -> Status:
    r = live.record
    return Status(r.instance_id, r.name, r.runtime_status, _decode(r.input), _decode(r.output),
                  _decode(r.custom_status), r.created, r.last_updated,
                  [h.describe(e, with_output=True) for e in live.history])


class DevHostHarness:
    """An app served by the devhost in a background thread (see the module docstring)."""

    def __init__(self, app_path: str | Path, *, connection_string: str | None = None,
                 task_hub: str | None = None, settings: dict[str, str] | None = None,
                 triggers: bool = False, keys_file: Path | None = None,
                 max_concurrent_activities: int | None = None) -> None:
        values = dict(settings or {})
        if connection_string:
            values["AzureWebJobsStorage"] = connection_string
        if task_hub:
            values["DEVHOST_TASK_HUB"] = task_hub
        self._app_path = Path(app_path)
        self._values = values
        self._triggers = triggers
        self._keys_file = keys_file
        self._limit = max_concurrent_activities
        self._storage = "table" if connection_string else "memory"
        self.clock = Clock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.host: DevHost | None = None
        self._http: httpx.Client | None = None

    # ------------------------------------------------------------- lifecycle
    def __enter__(self) -> DevHostHarness:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="devhost", daemon=True)
        self._thread.start()
        host = DevHost(self._app_path, port=0, settings=self._values, storage=self._storage,
                       keys_file=self._keys_file, clock=self.clock, triggers=self._triggers,
                       max_concurrent_activities=self._limit)
        self.host = host
        try:
            self._run(host.start())
        except BaseException:
            self.stop()
            raise
        self._http = httpx.Client(base_url=host.base_url, timeout=30)

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._loop is None:
            return
        if self.host is not None:
            self._run(self.host.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop.close()
        self._loop = None

    def restart(self) -> None:
        """Stop the host and start a new one on the same storage and clock."""
        self.stop()
        self.start()

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 60) -> T:
        if self._loop is None:
            raise RuntimeError("the harness is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    @property
    def _engine(self) -> Any:
        assert self.host is not None and self.host.engine is not None
        return self.host.engine

    # ------------------------------------------------------------- orchestrations
    def start_orchestration(self, name: str, input: Any = None,
                            instance_id: str | None = None) -> str:
        text = None if input is None else json.dumps(input)
        return self._run(self._engine.start(name, text, instance_id))

    def raise_event(self, instance_id: str, name: str, data: Any = None) -> None:
        self._run(self._engine.raise_event(instance_id, name, json.dumps(data)))

    def terminate(self, instance_id: str, reason: str = "") -> None:
        self._run(self._engine.terminate(instance_id, reason))

    def suspend(self, instance_id: str, reason: str = "") -> None:
        self._run(self._engine.suspend(instance_id, reason))

    def resume(self, instance_id: str, reason: str = "") -> None:
        self._run(self._engine.resume(instance_id, reason))

    def purge(self, instance_id: str) -> int:
        return int(self._run(self._engine.purge(instance_id)))

    def status(self, instance_id: str) -> Status | None:
        async def read() -> Status | None:
            live = await self._engine.status(instance_id)
            return None if live is None else _status(live)
        return self._run(read())

    def list_instances(self) -> list[Status]:
        async def read() -> list[Status]:
            return [s for s in [await self._engine.status(r.instance_id)
                                for r in await self._engine.records()] if s is not None]
        return [_status(live) for live in self._run(read())]

    def wait(self, instance_id: str, timeout: float = 30) -> Status:
        """Block until the instance completes, fails or is terminated."""
        async def wait() -> Status:
            return _status(await self._engine.wait(instance_id, timeout))
        return self._run(wait(), timeout + 5)

    def wait_until(self, instance_id: str, predicate: Callable[[Status], bool],
                   timeout: float = 30) -> Status:
        """Block until ``predicate(status)`` holds or the instance ends; returns the status.

        The predicate runs on the host's loop: use the status it is given, not the harness.
        """
        async def poll() -> Status:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                live = await self._engine.status(instance_id)
                if live is not None:
                    status = _status(live)
                    if predicate(status) or status.done:
                        return status
                if loop.time() > deadline:
                    raise TimeoutError(f"{instance_id} did not reach the expected state")
                await asyncio.sleep(0.02)
        return self._run(poll(), timeout + 5)

    def wait_for_custom_status(self, instance_id: str, predicate: Callable[[Any], bool],
                               timeout: float = 30) -> Status:
        """Block until ``predicate(custom_status)`` holds (or the instance ends)."""
        return self.wait_until(instance_id, lambda s: predicate(s.custom_status), timeout)

    def wait_for_status(self, instance_id: str, runtime_status: str,
                        timeout: float = 30) -> Status:
        """Block until the instance has ``runtime_status`` (e.g. "Running") or ends."""
        return self.wait_until(instance_id, lambda s: s.runtime_status == runtime_status,
                               timeout)

    def wait_for_history(self, instance_id: str, event_type: str, count: int = 1,
                         timeout: float = 30) -> Status:
        """Block until the history holds ``count`` events of ``event_type`` (e.g.
        "TaskCompleted", "TimerCreated")."""
        return self.wait_until(
            instance_id,
            lambda s: sum(e["EventType"] == event_type for e in s.history) >= count, timeout)

    def advance(self, seconds: float = 0, *, minutes: float = 0, hours: float = 0,
                days: float = 0) -> None:
        """Move the clock forward; durable timers that become due fire at once."""
        delta = timedelta(seconds=seconds, minutes=minutes, hours=hours, days=days)
        assert self.host is not None

        async def advance() -> None:
            assert self.host is not None
            self.host.timers.advance(delta)
        self._run(advance())

    @property
    def stats(self) -> Stats:
        return self._engine.stats  # type: ignore[no-any-return]

    # ------------------------------------------------------------- HTTP
    @property
    def base_url(self) -> str:
        assert self.host is not None
        return self.host.base_url

    @property
    def function_key(self) -> str:
        assert self.host is not None and self.host.config is not None
        keys = self.host.config.keys
        return keys.default[0] if keys.default else keys.master

    @property
    def master_key(self) -> str:
        assert self.host is not None and self.host.config is not None
        return self.host.config.keys.master

    def http(self, method: str, path: str, *, key: bool = True, **kwargs: Any) -> httpx.Response:
        """Call the app's HTTP API (``path`` like ``/api/...``), adding the function key."""
        assert self._http is not None
        headers = dict(kwargs.pop("headers", None) or {})
        if key:
            headers.setdefault("x-functions-key", self.function_key)
        return self._http.request(method, path, headers=headers, **kwargs)
