"""Run the aggregation once per deployment, whatever the number of web workers.

Every worker calls ``RunOnce.start(job)`` at start-up. An exclusive, non-blocking
``flock`` on ``<state_dir>/run.lock`` elects one of them; it runs the job in a background
thread while holding the lock, and is the only writer of ``progress.jsonl``. A worker that
finds a finished run (its last event is ``done`` or ``failed``) does nothing, so a restart
does not run it again either. If the elected worker died mid-run the lock is free again and
the next worker to start re-runs from scratch.

Only progress messages and the final k-anonymous aggregates are written; never key
material or anyone's records.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("workloads.analytics")

TERMINAL = ("done", "failed")
Progress = Callable[[str, str], None]  # (step, message)
Job = Callable[[Progress], dict[str, Any]]  # returns the report (JSON-ready)


class RunOnce:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.progress_path = state_dir / "progress.jsonl"
        self._lock_fd: int | None = None
        self._thread: threading.Thread | None = None

    def start(self, job: Job) -> bool:
        """Start the job here if this process is elected and no run finished; True if so."""
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.state_dir / "run.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        if self.finished():
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            return False
        self._lock_fd = fd
        self.progress_path.write_text("", encoding="utf-8")  # a fresh (or re-)run
        self._thread = threading.Thread(target=self._run, args=(job,), daemon=True,
                                        name="analytics-run")
        self._thread.start()
        return True

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, job: Job) -> None:
        try:
            self._append({"step": "start", "message": "analytics run started"})
            report = job(self._progress)
            self._append({"step": "done", "message": "aggregates ready", "report": report})
        except Exception as exc:  # reported to the page; the message is written to be shown
            log.warning("analytics run failed: %s", exc.__class__.__name__)
            self._append({"step": "failed", "message": _public_message(exc)})
        finally:
            assert self._lock_fd is not None
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _progress(self, step: str, message: str) -> None:
        self._append({"step": step, "message": message})

    def _append(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, separators=(",", ":")) + "\n"
        with self.progress_path.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def events(self, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Complete events from byte ``offset`` on, and the offset after them."""
        try:
            with self.progress_path.open("rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except FileNotFoundError:
            return [], offset
        end = data.rfind(b"\n") + 1
        lines = data[:end].splitlines()
        return [json.loads(line) for line in lines if line], offset + end

    def finished(self) -> dict[str, Any] | None:
        """The terminal event of a finished run, if any."""
        events, _ = self.events()
        if events and events[-1].get("step") in TERMINAL:
            return events[-1]
        return None


def _public_message(exc: Exception) -> str:
    """Exceptions raised by the job carry messages written for the page; others do not."""
    if isinstance(exc, PublicError):
        return str(exc)
    return f"internal error ({exc.__class__.__name__})"


class PublicError(RuntimeError):
    """A failure whose message is safe to show (no secrets, no personal data)."""
