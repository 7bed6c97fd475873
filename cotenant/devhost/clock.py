"""A wall clock that tests can fast-forward, and timers that fire by it."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta


class Clock:
    """UTC time = real time + an offset that only grows (``advance``)."""

    def __init__(self) -> None:
        self._offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def advance(self, delta: timedelta) -> None:
        if delta < timedelta():
            raise ValueError("the clock only moves forward")
        self._offset += delta


class TimerService:
    """Runs callbacks at clock times; re-evaluates its deadline whenever the clock advances."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._heap: list[tuple[datetime, int, Callable[[], None]]] = []
        self._cancelled: set[int] = set()
        self._ids = itertools.count()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def schedule(self, at: datetime, callback: Callable[[], None]) -> int:
        handle = next(self._ids)
        heapq.heappush(self._heap, (at, handle, callback))
        self._wake.set()
        return handle

    def cancel(self, handle: int) -> None:
        self._cancelled.add(handle)

    def advance(self, delta: timedelta) -> None:
        self.clock.advance(delta)
        self._wake.set()

    def pending(self) -> int:
        return sum(1 for _, h, _ in self._heap if h not in self._cancelled)

    def next_due(self) -> datetime | None:
        live = [at for at, h, _ in self._heap if h not in self._cancelled]
        return min(live) if live else None

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            now = self.clock.now()
            while self._heap and self._heap[0][0] <= now:
                _, handle, callback = heapq.heappop(self._heap)
                if handle in self._cancelled:
                    self._cancelled.discard(handle)
                    continue
                callback()
            delay = (self._heap[0][0] - now).total_seconds() if self._heap else 3600.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, min(delay, 3600.0)))
