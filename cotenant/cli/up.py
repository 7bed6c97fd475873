"""``cotenant up`` / ``cotenant down``: the whole system offline, on this machine.

``up`` starts Azurite and the lab (``cotenant lab up``), then the control plane under the
devhost (``cotenant devhost``) on the lab cloud, posts a tenant spec (the reference scenario by
default), follows the deployment live, and prints the verified trust matrix (which party's VM
released which key, and which attempts the other parties' vaults refused) and the phase
timeline. Everything keeps running in the background until ``cotenant down``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import typer
import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from cotenant.azurite import AzuriteError, free_port
from cotenant.lab.client import LabClient
from cotenant.lab.supervisor import (
    LabStartError,
    pid_alive,
    running_client,
    stop_lab,
    stop_process_group,
)
from cotenant.lab.supervisor import start_lab as start_lab_in

console = Console()
LAB_DIR = Path(".lab")
DEVHOST_DIR = Path(".devhost")
STATE_FILE = DEVHOST_DIR / "up.json"
SPEC = Path("examples/three-party.yaml")
APP = Path("function_app.py")
# The lab's deployment latencies: the seed's phase timings scaled down 100x.
LATENCY_SCALE = 0.01
# The control plane's timing for the lab (bench/deploy.py measures with these): a deployment
# step waits for the lab's answer (long poll) instead of sleeping between polls, and the
# guest-reports queue is polled every 0.1 s at most when idle (host.json's 0.5 s suits Azure,
# where every poll is a billed transaction; the lab's deployments last seconds, not minutes).
APP_SETTINGS = {"COTENANT_CLOUD": "lab", "COTENANT_POLL_SECONDS": "0.1",
                "COTENANT_DEPLOYMENT_WAIT_SECONDS": "4",
                "COTENANT_RETRY_FIRST_SECONDS": "0.5", "COTENANT_REPORT_TIMEOUT_SECONDS": "180",
                "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.100",
                "DEVHOST_TASK_HUB": "cotenant"}
_STYLE = {"succeeded": "green", "running": "yellow", "failed": "bold red", "pending": "dim"}


def _fail(message: str) -> typer.Exit:
    console.print(f"[bold red]error:[/bold red] {message}", highlight=False)
    return typer.Exit(2)


def register(root: typer.Typer) -> None:
    root.command("up")(up)
    root.command("down")(down)


# ------------------------------------------------------------------------------ services


def start_lab(latency_scale: float) -> LabClient:
    client = running_client(LAB_DIR.resolve())
    if client is not None:
        with contextlib.suppress(Exception):
            client.set_latency_scale(latency_scale)
        return client
    try:
        return start_lab_in(LAB_DIR, latency_scale=latency_scale)
    except (AzuriteError, LabStartError) as exc:
        raise _fail(f"the lab did not start: {exc}") from None


def _devhost_state() -> dict[str, Any] | None:
    try:
        state = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return None
    return state if pid_alive(int(state.get("pid", 0))) else None


def start_devhost(lab: LabClient, port: int) -> dict[str, Any]:
    running = _devhost_state()
    if running is not None:
        return running
    storage = lab.environ().get("AZURE_STORAGE_CONNECTION_STRING")
    if not storage:
        raise _fail("the lab runs without Azurite; run `cotenant lab down` and `cotenant up`")
    DEVHOST_DIR.mkdir(exist_ok=True)
    env = {**os.environ, **lab.environ(), **APP_SETTINGS, "AzureWebJobsStorage": storage}
    port = port or free_port()
    with open(DEVHOST_DIR / "devhost.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cotenant.cli.main", "devhost", "--app", str(APP),
             "--port", str(port), "--keys", str(DEVHOST_DIR / "keys.json")],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True)
    state = {"pid": process.pid, "port": port, "base_url": f"http://127.0.0.1:{port}"}
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise _fail(f"the devhost exited; see {DEVHOST_DIR / 'devhost.log'}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{state['base_url']}/api/openapi.yaml", timeout=2).status_code == 200:
                STATE_FILE.write_text(json.dumps(state))
                return state
        time.sleep(0.2)
    stop_process_group(process.pid)
    raise _fail(f"the devhost did not answer within 90s; see {DEVHOST_DIR / 'devhost.log'}")


def _function_key() -> str:
    keys = json.loads((DEVHOST_DIR / "keys.json").read_text())
    return str(keys["functionKeys"]["default"])


# ------------------------------------------------------------------------------ views


def _cell(text: str, state: str) -> Text:
    return Text(text, style=_STYLE.get(state, ""))


def phases_table(status: dict[str, Any]) -> Table:
    table = Table(title=f"tenant {status['name']}: {status['phase']}", title_justify="left")
    for column in ("phase", "state", "seconds"):
        table.add_column(column)
    for name, entry in sorted(status["timeline"].items(), key=lambda kv: kv[1].get("started")
                              or ""):
        seconds = f"{entry['seconds']:.2f}" if entry.get("seconds") is not None else ""
        table.add_row(name, _cell(entry["state"], entry["state"]), seconds)
    return table


def parties_table(status: dict[str, Any]) -> Table:
    table = Table(title="parties", title_justify="left")
    for column in ("party", "state", "data", "cvm", "bootstrap", "attested", "releases"):
        table.add_column(column)
    for party in status["parties"]:
        releases = ", ".join(f"{owner}:{r['outcome']}" for owner, r in
                             sorted(party["releases"].items()))
        data = party.get("data", "pending")  # its storage account, container and read grants
        table.add_row(party["name"], party["state"], _cell(data, data),
                      _cell(party["cvm"], party["cvm"]),
                      _cell(party["bootstrap"], party["bootstrap"]),
                      _cell("yes", "succeeded") if party["attested"] else _cell("no", "pending"),
                      releases)
    return table


def trust_matrix_table(status: dict[str, Any]) -> Table:
    cells = {(c["key_owner"], c["party"]): c for c in status["trust_matrix"] or []}
    parties = [p["name"] for p in status["parties"]]
    table = Table(title="verified trust matrix (rows: keys, columns: the VM that tried to "
                  "release it)", title_justify="left")
    table.add_column("key")
    for party in parties:
        table.add_column(f"{party}'s VM")
    for owner in parties:
        row: list[Text | str] = [f"{owner}-secret-key"]
        for party in parties:
            c = cells.get((owner, party))
            if c is None:
                row.append("")
                continue
            mark = "✓" if c["verified"] else "✗ MISMATCH"
            if c["outcome"] == "released":
                row.append(_cell(f"released v{(c['version'] or '')[:8]} {mark}", "succeeded"))
            else:
                code = (c.get("refusal") or "").rsplit("/", 1)[-1]
                why = f" ({code})" if code else ""
                row.append(_cell(f"{c['outcome']}{why} {mark}",
                                 "pending" if c["verified"] else "failed"))
        table.add_row(*row)
    return table


def timeline_table(status: dict[str, Any], width: int = 30) -> Table:
    entries = [(n, e) for n, e in status["timeline"].items() if e.get("started")]
    times = {n: (_t(e["started"]), _t(e.get("ended") or e["started"])) for n, e in entries}
    start = min(t[0] for t in times.values())
    end = max(t[1] for t in times.values())
    span = max(end - start, 1e-6)
    table = Table(title=f"phase timeline (makespan {span:.2f}s)", title_justify="left")
    for column in ("phase", "start", "seconds", ""):
        table.add_column(column)
    for name, (a, b) in sorted(times.items(), key=lambda kv: kv[1]):
        left = min(int((a - start) / span * width), width - 1)
        bar = " " * left + "█" * max(1, min(int((b - a) / span * width), width - left))
        table.add_row(name, f"+{a - start:.2f}", f"{b - a:.2f}", Text(bar, style="cyan"))
    return table


def _t(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


# ------------------------------------------------------------------------------ commands


def follow(http: httpx.Client, name: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        while time.monotonic() < deadline:
            r = http.get(f"/api/tenants/{name}")
            if r.status_code == 200:
                status = r.json()
                live.update(Group(phases_table(status), parties_table(status)))
                if status["runtime_status"] in ("Completed", "Failed", "Terminated"):
                    return status
            time.sleep(0.3)
    raise _fail(f"tenant {name} did not finish within {timeout:.0f}s")


def up(
    spec: Path = typer.Option(SPEC, "--spec", help="The tenant spec to deploy."),
    port: int = typer.Option(0, "--port", help="Devhost port (default: a free one)."),
    latency_scale: float = typer.Option(LATENCY_SCALE, "--latency-scale",
                                        help="Lab deployment latency vs the seed's timings."),
    timeout: float = typer.Option(600, "--timeout", help="Seconds to wait for the tenant."),
) -> None:
    """Start Azurite, the lab and the control plane; deploy a tenant; show it verified."""
    if not APP.exists():
        raise _fail(f"{APP} not found: run `cotenant up` in the project folder")
    try:
        body = yaml.safe_load(spec.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise _fail(f"cannot read {spec}: {exc}") from None
    with console.status("starting Azurite and the lab…"):
        lab = start_lab(latency_scale)
    with console.status("starting the control plane (devhost)…"):
        host = start_devhost(lab, port)
    console.print(f"control plane: {host['base_url']}/api  (OpenAPI: "
                  f"{host['base_url']}/api/openapi.yaml)", highlight=False)
    with httpx.Client(base_url=host["base_url"], timeout=30,
                      headers={"x-functions-key": _function_key()}) as http:
        r = http.post("/api/tenants", json=body)
        if r.status_code >= 400:
            error = r.json().get("error", {})
            for problem in error.get("problems") or []:
                console.print(f"  {problem['path']}: {problem['message']}", highlight=False)
            raise _fail(error.get("message", r.text))
        name = r.json()["tenant"]
        status = follow(http, name, timeout)
    if status["runtime_status"] != "Completed":
        for error in status["errors"]:
            console.print(f"[red]{error['phase']}[/red]: {error['message']}", highlight=False)
        raise _fail(f"tenant {name} {status['runtime_status'].lower()}")
    console.print(trust_matrix_table(status))
    console.print(timeline_table(status))
    console.print(f"[green]tenant {name} deployed and verified[/green]: every party attested "
                  "with a token the control plane verified itself. `cotenant down` stops it all.")
    from workloads.analytics.demo import run_demo  # the workloads: data, apps, aggregates

    run_demo(body, lab, LAB_DIR / "apps", console)


def down(purge: bool = typer.Option(False, "--purge", help="Also delete the lab's and the "
                                    "devhost's state.")) -> None:
    """Stop the control plane, the lab and Azurite started by `cotenant up`."""
    from workloads.analytics.launch import stop_apps

    state = _devhost_state()
    with ThreadPoolExecutor(max_workers=2) as pool:  # independent: stopped at once
        apps = pool.submit(stop_apps, LAB_DIR / "apps")  # the analytics apps `up` started
        if state is not None:
            stop_process_group(int(state["pid"]))
        apps.result()
    with contextlib.suppress(FileNotFoundError):
        STATE_FILE.unlink()
    stop_lab(LAB_DIR)
    if purge:
        shutil.rmtree(LAB_DIR, ignore_errors=True)
        for path in (DEVHOST_DIR / "keys.json", DEVHOST_DIR / "devhost.log"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    console.print("stopped: control plane, lab, Azurite" + (" (state deleted)" if purge
                                                            else ""))
