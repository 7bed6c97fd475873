"""The devhost: one asyncio process serving an app's triggers and its Durable engine."""

from __future__ import annotations

import asyncio
import logging
import warnings
from pathlib import Path
from typing import Any

from aiohttp import web
from azure.durable_functions.models.utils import http_utils

from . import sdk_speedups
from .activities import ActivityRunner
from .admin import AdminApi
from .clock import Clock, TimerService
from .engine import Engine
from .http_triggers import HttpTriggers, call_function, index_http
from .invocation import InvocationContext, wants_context
from .loader import FunctionIndex, load_app
from .management import ManagementApi
from .settings import HostConfig, apply_environment, load_config, restore_environment
from .store import MemoryStore, Store, TableStore

log = logging.getLogger("cotenant.devhost")
_SUPPORTED_TRIGGERS = {"httpTrigger", "queueTrigger", "timerTrigger", "orchestrationTrigger",
                       "activityTrigger"}


class DevHost:
    """Runs ``function_app.py`` like ``func start``: call ``await start()`` then ``stop()``.

    ``storage``: "table" (Azure Table storage from ``AzureWebJobsStorage``), "memory", or
    None to use tables whenever a storage connection is configured.
    """

    def __init__(self, app_path: str | Path, *, port: int = 7071, host: str = "127.0.0.1",
                 settings: dict[str, str] | None = None, storage: str | None = None,
                 keys_file: Path | None = None, clock: Clock | None = None,
                 triggers: bool = True, max_concurrent_activities: int | None = None) -> None:
        self.app_path = Path(app_path)
        self.port = port
        self.host = host
        self.settings = settings or {}
        self.storage = storage
        self.keys_file = keys_file
        self.clock = clock or Clock()
        self.triggers_enabled = triggers
        self.max_concurrent_activities = max_concurrent_activities
        self.config: HostConfig | None = None
        self.index: FunctionIndex | None = None
        self.engine: Engine | None = None
        self.management: ManagementApi | None = None
        self.timers = TimerService(self.clock)
        self.recovered = 0
        self._store: Store | None = None
        self._runner: web.AppRunner | None = None
        self._activities: ActivityRunner | None = None
        self._listeners: list[Any] = []
        self._saved_environment: dict[str, str | None] = {}

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def keys_location(self) -> str:
        return self.config.keys.source if self.config else ""

    async def start(self) -> None:
        config = load_config(self.app_path, overrides=self.settings, keys_file=self.keys_file)
        self.config = config
        self._saved_environment = apply_environment(config)
        sdk_speedups.install()
        # The SDK warns about every event that arrives before the orchestrator waits for it
        # ("Potential duplicate Task completion"), then keeps it for that wait; the control
        # plane's reports arrive early by design (an agent reports during its VM's deployment).
        warnings.filterwarnings("ignore", message="Potential duplicate Task completion",
                                category=UserWarning)
        self.index = load_app(config.app_path)
        self._store = self._make_store(config)
        await self._store.open()
        self.timers.start()
        self._activities = ActivityRunner(
            self.index, self.max_concurrent_activities or config.max_concurrent_activities)
        self.engine = Engine(self.index, self._store, self.timers, self._activities,
                             override_running=config.override_running)
        self.management = ManagementApi(self.engine, config.hub_name, config.keys.master)
        http = HttpTriggers(index_http(self.index, config.route_prefix), config.keys,
                            self.management.client_binding, self.invoke)
        app = web.Application(middlewares=[self.management.middleware],
                              client_max_size=100 * 1024 * 1024)
        app.add_routes(self.management.routes())
        app.add_routes(AdminApi(self.index, config.keys, self.invoke).routes())
        app.router.add_route("*", "/{tail:.*}", http.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            server = site._server
            assert server is not None
            self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        for fn in self.index.functions.values():
            if fn.trigger_type not in _SUPPORTED_TRIGGERS:
                log.warning("function %s: %s is not emulated by the devhost; it will not run",
                            fn.name, fn.trigger_type)
        self.recovered = await self.engine.recover()
        if self.triggers_enabled:
            await self._start_listeners(config)

    async def _start_listeners(self, config: HostConfig) -> None:
        from .queue_triggers import QueueListener
        from .timer_triggers import TimerTriggers

        assert self.index is not None
        for fn in self.index.by_trigger("queueTrigger"):
            listener = QueueListener(fn, config, self.invoke)
            await listener.start()
            self._listeners.append(listener)
        timer_fns = self.index.by_trigger("timerTrigger")
        if timer_fns:
            triggers = TimerTriggers(timer_fns, self.timers, self.invoke)
            triggers.start()
            self._listeners.append(triggers)

    def _make_store(self, config: HostConfig) -> Store:
        kind = self.storage or ("table" if config.storage else "memory")
        if kind == "memory":
            return MemoryStore()
        if not config.storage:
            raise ValueError("table storage needs AzureWebJobsStorage (a connection string)")
        return TableStore(config.storage, config.hub_name)

    async def invoke(self, fn: Any, kwargs: dict[str, Any]) -> Any:
        """Call a function with its bindings; durable client bindings are filled in here."""
        client = fn.binding_of("durableClient")
        if client is not None and client["name"] not in kwargs:
            assert self.management is not None
            kwargs[client["name"]] = self.management.client_binding(self.base_url)
        if wants_context(fn.code, {b["name"] for b in fn.bindings}):
            assert self.index is not None
            kwargs["context"] = InvocationContext(fn.name, str(self.index.app_path.parent))
        return await call_function(fn, kwargs)

    async def stop(self) -> None:
        for listener in self._listeners:
            await listener.stop()
        self._listeners.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.engine is not None:
            await self.engine.close()
        await self.timers.stop()
        if self._activities is not None:
            self._activities.close()
        if self._store is not None:
            await self._store.close()
        # The SDK keeps one aiohttp session per process, bound to the loop that made it.
        await http_utils._close_session()
        http_utils._session_lock = asyncio.Lock()
        restore_environment(self._saved_environment)
        self._saved_environment = {}
