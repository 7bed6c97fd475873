"""Timer triggers: 6-field NCRONTAB schedules (seconds first) or TimeSpan intervals."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from azure.functions.timer import TimerRequest
from croniter import croniter

from .clock import TimerService
from .loader import Function
from .settings import SettingsError, timespan_seconds

log = logging.getLogger("cotenant.devhost")


class Schedule:
    """Next occurrence after a time, for ``"*/5 * * * * *"`` or ``"00:05:00"``."""

    def __init__(self, expression: str) -> None:
        self.expression = expression.strip()
        self._interval: timedelta | None = None
        if ":" in self.expression and " " not in self.expression:
            self._interval = timedelta(seconds=timespan_seconds(self.expression))
            if self._interval <= timedelta():
                raise SettingsError(f"timer interval must be positive: {expression!r}")
            return
        fields = self.expression.split()
        if len(fields) != 6:
            raise SettingsError(f"NCRONTAB needs 6 fields (second minute hour day month "
                                f"day-of-week): {expression!r}")
        if not croniter.is_valid(self.expression, second_at_beginning=True):
            raise SettingsError(f"invalid NCRONTAB expression {expression!r}")

    def next_after(self, moment: datetime) -> datetime:
        if self._interval is not None:
            return moment + self._interval
        nxt = croniter(self.expression, moment, second_at_beginning=True).get_next(datetime)
        return nxt  # type: ignore[no-any-return]


class TimerTriggers:
    def __init__(self, functions: list[Function], timers: TimerService,
                 invoke: Callable[[Function, dict[str, Any]], Awaitable[Any]]) -> None:
        self.timers = timers
        self.invoke = invoke
        self.entries = [(fn, Schedule(str(fn.trigger["schedule"]))) for fn in functions]
        self._handles: list[int] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._locks = {fn.name: asyncio.Lock() for fn, _ in self.entries}
        self.fired: dict[str, int] = {fn.name: 0 for fn, _ in self.entries}

    def start(self) -> None:
        now = self.timers.clock.now()
        for fn, schedule in self.entries:
            if fn.trigger.get("runOnStartup"):
                self._run(fn, schedule, now, past_due=False)
            self._arm(fn, schedule, schedule.next_after(now))

    async def stop(self) -> None:
        for handle in self._handles:
            self.timers.cancel(handle)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _arm(self, fn: Function, schedule: Schedule, at: datetime) -> None:
        def due() -> None:
            now = self.timers.clock.now()
            self._run(fn, schedule, at, past_due=(now - at) > timedelta(seconds=1))
            self._arm(fn, schedule, schedule.next_after(max(now, at)))

        self._handles.append(self.timers.schedule(at, due))

    def _run(self, fn: Function, schedule: Schedule, at: datetime, *, past_due: bool) -> None:
        info = {"Schedule": {"AdjustForDST": True},
                "ScheduleStatus": {"Last": at.isoformat(),
                                   "Next": schedule.next_after(at).isoformat()},
                "IsPastDue": past_due}
        request = TimerRequest(past_due=past_due, schedule_status=info["ScheduleStatus"],
                                    schedule=info["Schedule"])
        task = asyncio.get_running_loop().create_task(self._invoke(fn, request, info))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _invoke(self, fn: Function, request: TimerRequest,
                      info: dict[str, Any]) -> None:
        lock = self._locks[fn.name]
        if lock.locked():
            return  # the host never overlaps invocations of one timer function
        async with lock:
            try:
                await self.invoke(fn, {fn.trigger_param: request})
                self.fired[fn.name] += 1
            except Exception as exc:
                log.warning("Executed 'Functions.%s' (Failed): %s (%s)", fn.name, exc,
                            json.dumps(info["ScheduleStatus"]))
