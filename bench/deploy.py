"""Deployment makespan of the control plane vs the critical path and the sequential sum.

The lab's resource manager is set to the seed's phase timings scaled down 100x
(``latency_scale=0.01``); the control plane runs under the devhost (in this process) with
Azurite, and the real guest agents run in the lab's simulated CVMs. For the 3- and 10-party
scenarios it prints, from the same run:

- the measured makespan (first phase start → last phase end, from the tenant's timeline) and
  the wall time from POST to Completed;
- the critical-path lower bound of the same latency model (the plan's phase graph × scale);
- the sequential sum of the phases (what the old, sequential script does) × scale;
- makespan / critical path (target ≤ 1.15) and sequential / makespan (speed-up).

Run: ``python bench/deploy.py [--scale 0.01]`` (about 30 s on a 2-core machine at the
default scale; a larger scale shows how the fixed per-VM and per-step costs amortise).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cotenant.azurite import start_azurite  # noqa: E402
from cotenant.cli.up import APP_SETTINGS  # noqa: E402
from cotenant.devhost.testing import DevHostHarness  # noqa: E402
from cotenant.lab.testing import running_lab  # noqa: E402
from cotenant.plan import ESTIMATES, build_plan  # noqa: E402
from cotenant.spec import parse_spec  # noqa: E402

SCALE = 0.01  # seed timings / 100
SCENARIOS = (("3 parties", REPO / "examples" / "three-party.yaml", "bench3"),
             ("10 parties", REPO / "examples" / "ten-party.yaml", "bench10"))
# What `cotenant up` runs with (a longer report timeout for a loaded machine).
SETTINGS = {**APP_SETTINGS, "COTENANT_REPORT_TIMEOUT_SECONDS": "300"}
SETTINGS.pop("DEVHOST_TASK_HUB")
TARGET = 1.15


def _t(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def makespan(timeline: dict) -> float:
    entries = [e for e in timeline.values() if e.get("started") and e.get("ended")]
    return max(_t(e["ended"]) for e in entries) - min(_t(e["started"]) for e in entries)


def phase_kinds(timeline: dict) -> dict[str, float]:
    """Mean duration per phase kind (``cvm:contoso`` → ``cvm``)."""
    kinds: dict[str, list[float]] = {}
    for phase, e in timeline.items():
        if e.get("started") and e.get("ended"):
            kinds.setdefault(phase.split(":")[0], []).append(_t(e["ended"]) - _t(e["started"]))
    return {k: sum(v) / len(v) for k, v in kinds.items()}


def print_timeline(label: str, timeline: dict) -> None:
    entries = {k: e for k, e in timeline.items() if e.get("started") and e.get("ended")}
    t0 = min(_t(e["started"]) for e in entries.values())
    print(f"{label}: phase start end (s)")
    for phase, e in sorted(entries.items(), key=lambda kv: _t(kv[1]["started"])):
        print(f"  {phase:<24} {_t(e['started']) - t0:6.2f} {_t(e['ended']) - t0:6.2f}")


def run_scenario(host: DevHostHarness, path: Path, name: str, scale: float) -> dict:
    before = dataclasses.replace(host.stats)
    spec = yaml.safe_load(path.read_text())
    spec["name"] = name
    plan = build_plan(parse_spec(spec))
    started = time.monotonic()
    r = host.http("POST", "/api/tenants", json=spec)
    assert r.status_code == 202, r.text
    status = host.wait(name, timeout=900)
    wall = time.monotonic() - started
    if status.runtime_status != "Completed":
        raise SystemExit(f"{name} ended {status.runtime_status}: {status.custom_status}")
    body = host.http("GET", f"/api/tenants/{name}").json()
    stats = host.stats
    return {"makespan": makespan(body["timeline"]), "wall": wall,
            "critical": plan.critical_path_seconds * scale,
            "sequential": plan.sequential_seconds * scale,
            "parties": len(plan.parties),
            "episodes": stats.episodes - before.episodes,
            "activities": stats.activities - before.activities,
            "replay": stats.replay_seconds - before.replay_seconds,
            "phases": phase_kinds(body["timeline"]),
            "timeline": body["timeline"],
            "modelled": {k: v * scale for k, v in ESTIMATES.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=SCALE,
                        help="lab latency vs the seed's timings (default 0.01 = /100)")
    parser.add_argument("--timeline", action="store_true",
                        help="also print each phase's start and end (s from the first start)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the lab directory (agent logs) and print where it is")
    args = parser.parse_args()
    scale = args.scale
    with contextlib.ExitStack() as stack:
        tmp = tempfile.mkdtemp(prefix="cotenant-bench-") if args.keep else \
            stack.enter_context(tempfile.TemporaryDirectory(prefix="cotenant-bench-"))
        if args.keep:
            print(f"lab directory: {tmp}", flush=True)
        root = Path(tmp)
        azurite = start_azurite(root / "azurite")
        try:
            with running_lab(root / "lab", latency_scale=scale,
                             azurite_connection_string=azurite.connection_string) as lab, \
                    lab.activate(), \
                    DevHostHarness(REPO / "function_app.py",
                                   connection_string=azurite.connection_string,
                                   task_hub="benchDeploy", triggers=True,
                                   keys_file=root / "keys.json", settings=SETTINGS) as host:
                results = [(label, run_scenario(host, path, name, scale))
                           for label, path, name in SCENARIOS]
        finally:
            azurite.stop()
    print(f"deployment makespan, lab latency = seed timings x {scale} (same run)")
    print(f"{'scenario':<11} {'makespan':>9} {'wall':>7} {'critical':>9} {'sequential':>11} "
          f"{'makespan/critical':>18} {'sequential/makespan':>20}")
    for label, r in results:
        ratio = r["makespan"] / r["critical"]
        print(f"{label:<11} {r['makespan']:>8.2f}s {r['wall']:>6.2f}s {r['critical']:>8.2f}s "
              f"{r['sequential']:>10.2f}s {ratio:>17.2f}x {r['sequential'] / r['makespan']:>19.2f}x"
              f"  {'OK' if ratio <= TARGET else 'above target ' + str(TARGET)}")
    for label, r in results:
        kinds = ", ".join(f"{k} {v:.2f}/{r['modelled'].get(k, 0.0):.2f}"
                          for k, v in r["phases"].items())
        print(f"{label}: {r['episodes']} orchestration episodes, {r['replay']:.2f}s replay, "
              f"{r['activities']} activities; per phase kind, mean measured/modelled s: {kinds}")
    if args.timeline:
        for label, r in results:
            print_timeline(label, r["timeline"])
    (_, three), (_, ten) = results
    print(f"10 vs 3 parties: makespan x{ten['makespan'] / three['makespan']:.2f}, "
          f"sequential sum x{ten['sequential'] / three['sequential']:.2f}")


if __name__ == "__main__":
    main()
