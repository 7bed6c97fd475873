"""Durable engine overhead per activity against a plain asyncio.gather ceiling.

    python bench/devhost.py [--fan-out 1000] [--sequence 200] [--storage memory|table|both]

For each workload the same activity function (``checksum`` in bench/devhost_app) runs:

* ``ceiling``  plain asyncio: ``gather`` of ``run_in_executor`` (fan-out) or awaited one by
  one (sequence), on a thread pool as large as the devhost's activity limit;
* ``devhost``  an orchestration in the devhost (real SDK replay), state in memory and/or in
  Azure Table storage (an Azurite the bench starts).

Overhead per activity = (devhost wall time - ceiling wall time) / activities. Episodes,
replayed history events and replay seconds show what history growth costs (a sequence of n
replays O(n^2) events; a fan-out's completions are batched into a few episodes).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
APP = ROOT / "bench" / "devhost_app" / "function_app.py"
sys.path.insert(0, str(APP.parent))

from cotenant.azurite import start_azurite  # noqa: E402
from cotenant.devhost.testing import DevHostHarness  # noqa: E402
from function_app import checksum  # noqa: E402

LIMIT = 20  # activity concurrency, the same for the ceiling and the devhost


async def _ceiling(kind: str, count: int) -> float:
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=LIMIT) as pool:
        started = time.perf_counter()
        if kind == "fan_out":
            await asyncio.gather(*(loop.run_in_executor(pool, checksum, i)
                                   for i in range(count)))
        else:
            for i in range(count):
                await loop.run_in_executor(pool, checksum, i)
        return time.perf_counter() - started


def _devhost(host: DevHostHarness, kind: str, count: int) -> dict[str, float]:
    before = host.stats
    episodes, events, replay = before.episodes, before.replayed_events, before.replay_seconds
    started = time.perf_counter()
    status = host.wait(host.start_orchestration(kind, count), timeout=600)
    wall = time.perf_counter() - started
    if status.runtime_status != "Completed":
        raise SystemExit(f"{kind} ended {status.runtime_status}: {status.output}")
    after = host.stats
    return {"wall": wall, "episodes": after.episodes - episodes,
            "events": after.replayed_events - events, "replay": after.replay_seconds - replay}


def _report(storage: str, kind: str, count: int, ceiling: float,
            run: dict[str, float]) -> None:
    overhead_ms = (run["wall"] - ceiling) / count * 1000
    print(f"{kind:8} n={count:5}  {storage:6}  devhost {run['wall']:7.3f}s  "
          f"ceiling {ceiling:6.3f}s  ratio {run['wall'] / ceiling:6.1f}x  "
          f"overhead {overhead_ms:6.3f} ms/activity  episodes {run['episodes']:4.0f}  "
          f"replayed events {run['events']:7.0f}  replay {run['replay']:6.3f}s")


def _run_all(storage: str, workloads: list[tuple[str, int]],
             connection_string: str | None) -> list[float]:
    overheads = []
    with DevHostHarness(APP, connection_string=connection_string,
                        task_hub=f"bench{int(time.time())}",
                        max_concurrent_activities=LIMIT) as host:
        _devhost(host, "fan_out", 20)  # warm up the pool, the SDK and the store
        for kind, count in workloads:
            ceiling = asyncio.run(_ceiling(kind, count))
            run = _devhost(host, kind, count)
            _report(storage, kind, count, ceiling, run)
            if kind == "fan_out":
                overheads.append((run["wall"] - ceiling) / count * 1000)
    return overheads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fan-out", type=int, default=1000)
    parser.add_argument("--sequence", type=int, default=200)
    parser.add_argument("--storage", choices=("memory", "table", "both"), default="both")
    args = parser.parse_args()
    workloads = [("fan_out", args.fan_out), ("sequence", args.sequence)]
    overheads: list[float] = []
    if args.storage in ("memory", "both"):
        overheads += _run_all("memory", workloads, None)
    if args.storage in ("table", "both"):
        with tempfile.TemporaryDirectory() as folder:
            azurite = start_azurite(Path(folder))
            try:
                overheads += _run_all("table", workloads, azurite.connection_string)
            finally:
                azurite.stop()
    worst = max(overheads)
    verdict = "meets" if worst <= 2.0 else "misses"
    print(f"fan-out overhead (worst storage): {worst:.3f} ms/activity — {verdict} the "
          f"2 ms target")


if __name__ == "__main__":
    main()
