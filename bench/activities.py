"""Per-activity latency of the control plane's cloud steps against a running lab (not a test).

Starts Azurite and a lab (deployment latency = the seed's timings x ``--scale``), then calls
the activity functions of ``activities/`` directly, as the Functions worker does, and prints
for each: wall ms per call (median and max), this process's CPU ms per call and the lab
process's CPU ms per call. Figures are the overhead beyond the lab's latency model: the
activities that start a deployment are called with no wait (they return once the lab has
recorded it), the key and resource group steps have no modelled latency in the lab, and the
long-poll of a deployment's end is shown as the lag between the lab's ``ready_at`` and the
answer. The baseline in the same run: one round trip of the lab's ``/health`` (the floor of
any call) and the modelled latency of each phase.

Run: ``python bench/activities.py [--rounds 5] [--profile start_deployment]``
(``--profile NAME`` prints the top of a cProfile of that activity's calls).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cotenant.azurite import start_azurite  # noqa: E402
from cotenant.lab.testing import running_lab  # noqa: E402
from cotenant.plan import ESTIMATES  # noqa: E402


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Meter:
    """Wall, own-CPU and lab-CPU per call of named steps (optionally profiled)."""

    def __init__(self, lab_pid: int, profile: str | None) -> None:
        self.lab_pid, self.profile = lab_pid, profile
        self.rows: dict[str, list[tuple[float, float, float]]] = {}
        self.profiler = cProfile.Profile() if profile else None

    def call(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        lab0, cpu0, t0 = cpu_of(self.lab_pid), time.process_time(), time.perf_counter()
        profiling = self.profiler is not None and name == self.profile
        if profiling:
            self.profiler.enable()
        try:
            result = fn(*args)
        finally:
            if profiling:
                self.profiler.disable()
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            self.rows.setdefault(name, []).append((wall, cpu, cpu_of(self.lab_pid) - lab0))
        if isinstance(result, dict) and result.get("ok") is False:
            raise SystemExit(f"{name} failed: {result['error']}")
        return result

    def report(self, modelled: dict[str, float]) -> None:
        print(f"{'step':<34} {'calls':>5} {'median ms':>10} {'max ms':>8} {'cpu ms':>7} "
              f"{'lab cpu ms':>11} {'modelled ms':>12}")
        for name, rows in self.rows.items():
            walls = [r[0] * 1e3 for r in rows]
            print(f"{name:<34} {len(rows):>5} {statistics.median(walls):>10.1f} "
                  f"{max(walls):>8.1f} {statistics.mean(r[1] for r in rows) * 1e3:>7.1f} "
                  f"{statistics.mean(r[2] for r in rows) * 1e3:>11.1f} "
                  f"{modelled.get(name, float('nan')):>12.0f}")
        if self.profiler is not None:
            out = io.StringIO()
            order = os.environ.get("BENCH_SORT", "cumulative")  # or tottime
            pstats.Stats(self.profiler, stream=out).sort_stats(order).print_stats(40)
            print(out.getvalue())


def run(rounds: int, scale: float, profile: str | None) -> None:
    spec = yaml.safe_load((REPO / "examples" / "three-party.yaml").read_text())
    with tempfile.TemporaryDirectory(prefix="cotenant-bench-act-") as tmp:
        root = Path(tmp)
        azurite = start_azurite(root / "azurite")
        try:
            with running_lab(root / "lab", latency_scale=scale,
                             azurite_connection_string=azurite.connection_string) as lab, \
                    lab.activate():
                os.environ.update({"COTENANT_CLOUD": "lab",
                                   "AzureWebJobsStorage": azurite.connection_string})
                assert lab.process is not None
                measure(Meter(lab.process.pid, profile), lab, spec, rounds, scale)
        finally:
            azurite.stop()


def wait_idle(pid: int, timeout: float = 60.0) -> None:
    """Until the lab's start-up work (module parsing, key stock) stops using CPU."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_of(pid)
        time.sleep(0.5)
        if cpu_of(pid) - before < 0.02:
            return


def measure(meter: Meter, lab: Any, spec: dict[str, Any], rounds: int, scale: float) -> None:
    wait_idle(meter.lab_pid)
    health = lab.client.healthy
    for _ in range(10):
        meter.call("baseline: lab /health", health)
    t0 = time.perf_counter()
    if rounds == 0:  # the agent path only (e.g. to sample the lab: its pid is printed)
        print(f"lab pid {meter.lab_pid}: agents' path starts", flush=True)
        agent_path(meter, lab, 100)
        meter.report({})
        return
    import activities  # noqa: F401 - what the Functions worker imports with function_app.py
    from activities import infra, keys
    print(f"import activities: {(time.perf_counter() - t0) * 1e3:.0f} ms")
    parties = [p["name"] for p in spec["parties"]]
    for i in range(rounds):
        tenant = {**spec, "name": f"actb{i}"}
        first = "ensure_resource_group (first call)" if i == 0 else "ensure_resource_group"
        meter.call(first, infra.ensure_resource_group, {"spec": tenant})
        for module, party in [("network", None), *(("party", p) for p in parties)]:
            found = meter.call(f"start_deployment {module}", infra.start_deployment,
                               {"spec": tenant, "module": module, "party": party})
            d = found["deployment"]
            result = meter.call("get_deployment (long-poll)", infra.get_deployment, {
                "resource_group": d["resource_group"], "name": d["name"],
                "wait_seconds": 5, "poll_seconds": 0.1})
            answered = time.time()
            ready_at = lab.client.get_deployment(d["resource_group"], d["name"])["ready_at"]
            assert result["deployment"]["state"] == "Succeeded", result
            meter.rows.setdefault("  end noticed after ready_at", []).append(
                (answered - ready_at, 0.0, 0.0))
        for party in parties:
            meter.call("ensure_app_key (create)", keys.ensure_app_key,
                       {"spec": tenant, "party": party})
        for party in parties:
            meter.call("ensure_app_key (exists)", keys.ensure_app_key,
                       {"spec": tenant, "party": party})
        for module in ("grants", "data", "cvm"):
            for party in parties:
                meter.call(f"start_deployment {module}", infra.start_deployment, {
                    "spec": tenant, "module": module, "party": party,
                    "extra": {"nonce": f"bench-nonce-{i}", "instance": f"bench-{i}:{party}"}})
    agent_path(meter, lab, rounds * 4)
    meter.report({"ensure_resource_group": ESTIMATES["resource-group"] * scale * 1e3,
                  "ensure_app_key (create)": ESTIMATES["app-key"] * scale * 1e3})


def agent_path(meter: Meter, lab: Any, count: int) -> None:
    """What a guest agent does at start-up, against the same lab: attest through the proxy
    (MAA), then release a granted key and probe one it is not granted (Key Vault)."""
    from azure.core.exceptions import HttpResponseError
    from azure.identity import ManagedIdentityCredential
    from azure.keyvault.keys import KeyClient

    from cotenant.cloud.keyvault import encode_policy
    from cotenant.policy import build_release_policy

    client = lab.client
    vault = client.create_vault("agentbench-kv")
    owner = KeyClient(vault, ManagedIdentityCredential())
    policy = encode_policy(build_release_policy(client.endpoints.attestation_url))
    for name in ("granted", "refused"):
        owner.create_rsa_key(name, hardware_protected=True, exportable=True,
                             release_policy=policy)
    releaser = client.create_identity("agentbench-id")
    client.grant(releaser["client_id"], f"{vault}/keys/granted",
                 "Key Vault Crypto Service Release User")
    client.create_vm("agentbench-vm", "confidential", identities=[releaser["client_id"]])
    session = requests.Session()
    session.proxies = {"https": client.endpoints.proxy_url}
    session.verify = client.endpoints.ca_bundle
    vtpm = client.vtpm("agentbench-vm")
    keys = KeyClient(vault, client.vm_credential("agentbench-vm", releaser["client_id"]))
    for i in range(count):
        token = meter.call("agent: attest (MAA)", functools.partial(
            vtpm.attest, client.endpoints.attestation_url, f"n{i}", session=session))
        meter.call("agent: release granted key", keys.release_key, "granted", token)
        try:
            meter.call("agent: probe refused key", keys.release_key, "refused", token)
        except HttpResponseError as exc:
            assert exc.status_code == 403, exc
        else:
            raise SystemExit("the lab released a key without a grant")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5,
                        help="tenants deployed (default 5; 0: the agents' path only)")
    parser.add_argument("--scale", type=float, default=0.01,
                        help="lab latency vs the seed's timings (default 0.01 = /100)")
    parser.add_argument("--profile", metavar="STEP",
                        help="cProfile the calls of this step (e.g. 'ensure_app_key (create)')")
    args = parser.parse_args()
    run(args.rounds, args.scale, args.profile)


if __name__ == "__main__":
    main()
