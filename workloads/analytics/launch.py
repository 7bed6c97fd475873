"""Start and stop a party's analytics app as a background process (lab, demo, tests).

``launch_app`` writes the app's config (owner-only), starts ``python -m workloads.analytics``
in its own process group on a loopback port, waits until it answers and records its pid in
``<directory>/app.pid`` (``start_app`` + ``wait_ready``: several apps can start at once);
``stop_apps`` stops every app recorded under a folder. In Azure the
CVM's service manager runs the same command (``deploy.APP_COMMAND``) instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from cotenant.azurite import free_port
from cotenant.lab.supervisor import pid_alive, stop_process_group
from workloads.analytics.config import AppConfig
from workloads.analytics.deploy import app_config_toml

PID_FILE = "app.pid"
REPO = Path(__file__).resolve().parents[2]


class LaunchError(RuntimeError):
    """The app did not start; the message names its log file."""


@dataclass(frozen=True)
class LaunchedApp:
    party: str
    url: str
    pid: int
    directory: Path

    @property
    def log(self) -> Path:
        return self.directory / "app.log"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def launch_app(
    config: AppConfig,
    directory: Path,
    *,
    port: int = 0,
    workers: int = 2,
    env: Mapping[str, str] | None = None,
    timeout: float = 90.0,
) -> LaunchedApp:
    """Start the app for ``config`` (its state dir should be under ``directory``) and wait
    until it answers."""
    app, process = start_app(config, directory, port=port, workers=workers, env=env)
    wait_ready(app, process, timeout)
    return app


def start_app(
    config: AppConfig,
    directory: Path,
    *,
    port: int = 0,
    workers: int = 2,
    env: Mapping[str, str] | None = None,
) -> tuple[LaunchedApp, subprocess.Popen[bytes]]:
    """Start the app for ``config`` without waiting for it (see :func:`wait_ready`)."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    config_path = directory / "app.toml"
    _write_private(config_path, app_config_toml(config))
    port = port or free_port()
    child_env = {**os.environ, **(env or {})}
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), child_env.get("PYTHONPATH", "")) if p
    )
    with (directory / "app.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "workloads.analytics", "--config", str(config_path),
             "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
            cwd=directory, env=child_env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    app = LaunchedApp(config.party, f"http://127.0.0.1:{port}", process.pid, directory)
    (directory / PID_FILE).write_text(str(process.pid), encoding="ascii")
    return app, process


def wait_ready(app: LaunchedApp, process: subprocess.Popen[bytes],
               timeout: float = 90.0) -> None:
    """Wait until ``app`` answers; stop it and raise :class:`LaunchError` if it exits or
    does not answer within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    with httpx.Client(trust_env=False, timeout=1) as client:
        while True:
            if process.poll() is not None:
                (app.directory / PID_FILE).unlink(missing_ok=True)
                raise LaunchError(f"the {app.party} app exited; see {app.log}")
            try:
                if client.get(f"{app.url}/api/info").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                stop_app(app)
                raise LaunchError(f"the {app.party} app did not answer in time; see "
                                  f"{app.log}")
            time.sleep(0.1)


def stop_app(app: LaunchedApp) -> None:
    stop_process_group(app.pid)
    (app.directory / PID_FILE).unlink(missing_ok=True)


def stop_apps(root: Path) -> int:
    """Stop every app launched under ``root`` (all at once: each takes a moment to shut
    down); returns how many were running."""
    running = []
    for pid_file in sorted(root.glob(f"*/{PID_FILE}")):
        try:
            pid = int(pid_file.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            pid_file.unlink(missing_ok=True)
            continue
        if pid_alive(pid) and _is_analytics_app(pid):
            running.append(pid)
        pid_file.unlink(missing_ok=True)
    if running:
        with ThreadPoolExecutor(max_workers=len(running)) as pool:
            list(pool.map(stop_process_group, running))
    return len(running)


def _is_analytics_app(pid: int) -> bool:
    """Guards against a recycled pid: only stop what runs ``workloads.analytics``."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"workloads.analytics" in cmdline
