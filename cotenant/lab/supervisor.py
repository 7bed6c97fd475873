"""Start, find and stop lab server processes (used by ``cotenant lab up|down`` and the tests)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from cotenant.azurite import Azurite, start_azurite
from cotenant.lab.client import LabClient
from cotenant.lab.endpoints import ENDPOINTS_FILE, LabEndpoints


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs. A zombie does not: a process this one did not start (the lab,
    the devhost or an app started by an earlier command) is reaped by init, which may take
    seconds — waiting for that made every stop take 2-3 s."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (FileNotFoundError, ProcessLookupError):  # gone meanwhile
        return False
    except (OSError, IndexError):  # no procfs: assume it runs
        return True


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def stop_process_group(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM the process group led by ``pid`` (a process we started); SIGKILL if it hangs."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def running_client(directory: Path) -> LabClient | None:
    """A client for the lab serving ``directory``, or None when none is running."""
    try:
        endpoints = LabEndpoints.load(directory)
    except (OSError, ValueError):
        return None
    if not pid_alive(endpoints.pid):
        return None
    client = LabClient(directory)
    return client if client.healthy() else None


class LabStartError(RuntimeError):
    pass


class RunningLab:
    """A lab server process over ``directory``."""

    def __init__(self, directory: Path, *, latency_scale: float | None = 0.001,
                 authority: str | None = None,
                 azurite_connection_string: str | None = None) -> None:
        self.directory = Path(directory).resolve()
        self.latency_scale = latency_scale
        self.authority = authority
        self.azurite_connection_string = azurite_connection_string
        self.process: subprocess.Popen[bytes] | None = None
        self._client: LabClient | None = None

    @property
    def client(self) -> LabClient:
        assert self._client is not None, "the lab is not running"
        return self._client

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "cotenant.lab", "serve", "--dir", str(self.directory)]
        if self.latency_scale is not None:
            cmd += ["--latency-scale", str(self.latency_scale)]
        if self.authority:
            cmd += ["--authority", self.authority]
        if self.azurite_connection_string:
            cmd += ["--azurite-connection-string", self.azurite_connection_string]
        return cmd

    def start(self, timeout: float = 60.0) -> RunningLab:
        self.directory.mkdir(parents=True, exist_ok=True)
        endpoints = self.directory / ENDPOINTS_FILE  # a stale file names another pid
        log = open(self.directory / "lab.log", "ab")  # noqa: SIM115 - owned by the process
        env = {k: v for k, v in os.environ.items()
               if k not in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER")}
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env,
                                        start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LabStartError(f"the lab exited with code {self.process.returncode}; "
                                    f"see {self.directory / 'lab.log'}")
            if endpoints.exists():
                with contextlib.suppress(ValueError, OSError):
                    if LabEndpoints.load(self.directory).pid == self.process.pid:
                        self._client = LabClient(self.directory)
                        if self._client.healthy():
                            return self
            time.sleep(0.05)
        self.stop()
        raise LabStartError(f"the lab did not become healthy within {timeout:.0f}s")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            stop_process_group(self.process.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
        self.process = None
        self._client = None

    def restart(self) -> RunningLab:
        self.stop()
        return self.start()

    def environ(self) -> dict[str, str]:
        return self.client.environ()

    @contextlib.contextmanager
    def activate(self) -> Iterator[RunningLab]:
        """Apply :meth:`environ` to ``os.environ`` for the duration of the block."""
        env = self.environ()
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield self
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


AZURITE_FILE = "azurite.json"  # the lab's Azurite (pid, ports), kept to reuse its ports


def start_lab_azurite(directory: Path) -> Azurite:
    """The lab's Azurite: the running one, else a new one (on its former ports if free)."""
    record = directory / AZURITE_FILE
    ports: dict[str, int] = {}
    if record.exists():
        saved = json.loads(record.read_text())
        if pid_alive(saved["pid"]):
            return Azurite(location=Path(saved["location"]), blob_port=saved["blob_port"],
                           queue_port=saved["queue_port"], table_port=saved["table_port"])
        ports = {k: saved[k] for k in ("blob_port", "queue_port", "table_port")
                 if port_free(saved[k])}
    azurite = start_azurite(directory / "azurite", **ports)
    assert azurite.process is not None
    record.write_text(json.dumps({
        "pid": azurite.process.pid, "location": str(azurite.location),
        "blob_port": azurite.blob_port, "queue_port": azurite.queue_port,
        "table_port": azurite.table_port}))
    return azurite


def start_lab(directory: Path, *, latency_scale: float | None = None,
              authority: str | None = None, azurite: bool = True) -> LabClient:
    """The lab serving ``directory`` (started in the background with its Azurite unless it
    runs). Raises ``AzuriteError`` or ``LabStartError``."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    client = running_client(directory)
    if client is None:
        storage = start_lab_azurite(directory) if azurite else None
        client = RunningLab(directory, latency_scale=latency_scale, authority=authority,
                            azurite_connection_string=storage.connection_string
                            if storage else None).start().client
    return client


def stop_lab(directory: Path) -> None:
    """Stop the lab serving ``directory`` (its VMs end with it) and its Azurite."""
    directory = directory.resolve()
    client = running_client(directory)
    if client is not None:
        stop_process_group(client.endpoints.pid)
    record = directory / AZURITE_FILE
    if record.exists():  # kept: the next start reuses Azurite's ports
        pid = json.loads(record.read_text())["pid"]
        if pid_alive(pid):
            stop_process_group(pid)
