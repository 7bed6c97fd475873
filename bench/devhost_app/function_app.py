"""The app bench/devhost.py measures: fan-out/fan-in and a sequence of one small activity."""

from __future__ import annotations

import azure.durable_functions as df

app = df.DFApp()


def checksum(value: int) -> int:
    """The activity's work: a little CPU, the same in the devhost and in the baseline."""
    total = value
    for i in range(200):
        total = (total * 31 + i) % 1_000_003
    return total


@app.activity_trigger(input_name="value")
def work(value: int) -> int:
    return checksum(value)


@app.orchestration_trigger(context_name="context")
def fan_out(context: df.DurableOrchestrationContext):
    count = context.get_input()
    results = yield context.task_all([context.call_activity("work", i) for i in range(count)])
    return sum(results)


@app.orchestration_trigger(context_name="context")
def sequence(context: df.DurableOrchestrationContext):
    total = 0
    for i in range(context.get_input()):
        total += yield context.call_activity("work", i)
    return total
