"""One aggregation run per deployment, however many worker processes start."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from workloads.analytics.runonce import PublicError, RunOnce


def _worker(state_dir: str, marker_dir: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    def job(progress):
        Path(marker_dir, f"ran-{multiprocessing.current_process().pid}").touch()
        progress("compute", "working")
        time.sleep(0.5)
        return {"answer": 42}

    run = RunOnce(Path(state_dir))
    barrier.wait()
    run.start(job)
    run.wait(10)


def test_concurrent_workers_elect_a_single_run(tmp_path: Path) -> None:
    state, markers = tmp_path / "state", tmp_path / "markers"
    markers.mkdir()
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(4)
    workers = [
        context.Process(target=_worker, args=(str(state), str(markers), barrier))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(20)
    assert len(list(markers.iterdir())) == 1
    final = RunOnce(state).finished()
    assert final == {"step": "done", "message": "aggregates ready", "report": {"answer": 42}}
    events, _ = RunOnce(state).events()
    assert [e["step"] for e in events] == ["start", "compute", "done"]


def test_a_finished_run_is_not_repeated_after_a_restart(tmp_path: Path) -> None:
    calls = []
    first = RunOnce(tmp_path)
    assert first.start(lambda progress: calls.append(1) or {})
    first.wait(5)
    assert not RunOnce(tmp_path).start(lambda progress: calls.append(2) or {})
    assert calls == [1]


def test_failures_show_only_public_messages(tmp_path: Path) -> None:
    def leaky(progress):
        raise ValueError("secret-token-abc")

    run = RunOnce(tmp_path / "a")
    run.start(leaky)
    run.wait(5)
    assert run.finished() == {"step": "failed", "message": "internal error (ValueError)"}

    def public(progress):
        raise PublicError("Contoso's key was not released in time")

    run = RunOnce(tmp_path / "b")
    run.start(public)
    run.wait(5)
    assert run.finished()["message"] == "Contoso's key was not released in time"
