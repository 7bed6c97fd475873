"""A blueprint module, registered by function_app.py as a well-made app does."""

from __future__ import annotations

import os
import time
from pathlib import Path

import azure.durable_functions as df
import azure.functions as func

bp = df.Blueprint()


def _journal(line: str) -> None:
    path = os.environ.get("DEVHOST_SAMPLE_JOURNAL")
    if path:
        with Path(path).open("a") as f:
            f.write(line + "\n")


@bp.queue_trigger(arg_name="msg", queue_name="%DEVHOST_SAMPLE_QUEUE%",
                  connection="AzureWebJobsStorage")
def on_message(msg: func.QueueMessage) -> None:
    body = msg.get_body().decode()
    _journal(f"queue:{body}:{msg.dequeue_count}")
    if body.startswith("slow:"):  # "slow:<seconds>": outlasts a short lease
        time.sleep(float(body.split(":", 1)[1]))
        _journal(f"queue-done:{body}:{msg.dequeue_count}")
    if body.startswith("fail"):
        raise RuntimeError("cannot process " + body)


@bp.timer_trigger(arg_name="timer", schedule="*/1 * * * * *", run_on_startup=True)
def every_second(timer: func.TimerRequest) -> None:
    _journal(f"timer:{timer.past_due}")
