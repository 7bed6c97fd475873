"""Run activity functions: sync ones in a thread pool, async ones awaited, under one limit."""

from __future__ import annotations

import asyncio
import inspect
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from azure.functions import meta
from azure.functions.durable_functions import ActivityTriggerConverter

from .loader import FunctionIndex


@dataclass(frozen=True)
class Outcome:
    """An activity's result (JSON text) or its failure (reason and details)."""

    ok: bool
    result: str | None = None
    reason: str = ""
    details: str = ""


class ActivityRunner:
    def __init__(self, index: FunctionIndex, limit: int) -> None:
        self.index = index
        self.limit = limit
        self._sem = asyncio.Semaphore(limit)
        self._pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="activity")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def run(self, name: str, input_text: str | None) -> Outcome:
        fn = self.index.get(name, "activityTrigger")
        if fn is None:
            return Outcome(False, reason=f"The function '{name}' doesn't exist, is disabled, "
                           "or is not an activity function.")
        async with self._sem:
            try:
                value = ActivityTriggerConverter.decode(
                    meta.Datum(input_text if input_text is not None else "null", "json"),
                    trigger_metadata=None)
                kwargs = {fn.trigger_param: value}
                if inspect.iscoroutinefunction(fn.code):
                    result = await fn.code(**kwargs)
                else:
                    loop = asyncio.get_running_loop()
                    result = await loop.run_in_executor(self._pool, lambda: fn.code(**kwargs))
                encoded = ActivityTriggerConverter.encode(result, expected_type=None)
                return Outcome(True, result=encoded.value)
            except Exception as exc:  # the activity's failure is data for the orchestrator
                return Outcome(False, reason=f"Activity function '{name}' failed: {exc}",
                               details=type(exc).__name__)
