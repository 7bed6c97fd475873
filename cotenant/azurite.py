"""Start and stop the Azurite storage emulator (queues, tables, blobs) on loopback.

Used by the lab, the devhost and the tests. Azurite is a Node program installed by
``npm ci`` from the project's ``package.json``; ``npx azurite`` is the fallback.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# Azurite's documented development account. It is public and only valid for the emulator.
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


class AzuriteError(RuntimeError):
    """Azurite could not be started."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with contextlib.closing(socket.socket()) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def azurite_command() -> list[str]:
    """The command that runs Azurite: the project's install first, then npx."""
    for base in (Path.cwd(), _PROJECT_ROOT):
        local = base / "node_modules" / ".bin" / "azurite"
        if local.exists():
            return [str(local)]
    found = shutil.which("azurite")
    if found:
        return [found]
    npx = shutil.which("npx")
    if npx:
        return [npx, "--yes", "azurite"]
    raise AzuriteError("Azurite is not installed: run `npm ci` in the project folder")


@dataclass
class Azurite:
    """A running Azurite process with its ports."""

    location: Path
    blob_port: int
    queue_port: int
    table_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        host = "http://127.0.0.1"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"BlobEndpoint={host}:{self.blob_port}/{DEV_ACCOUNT};"
            f"QueueEndpoint={host}:{self.queue_port}/{DEV_ACCOUNT};"
            f"TableEndpoint={host}:{self.table_port}/{DEV_ACCOUNT};"
        )

    @property
    def queue_url(self) -> str:
        return f"http://127.0.0.1:{self.queue_port}/{DEV_ACCOUNT}"

    @property
    def table_url(self) -> str:
        return f"http://127.0.0.1:{self.table_port}/{DEV_ACCOUNT}"

    @property
    def blob_url(self) -> str:
        return f"http://127.0.0.1:{self.blob_port}/{DEV_ACCOUNT}"

    def start(self, timeout: float = 60.0) -> Azurite:
        self.location.mkdir(parents=True, exist_ok=True)
        cmd = [
            *azurite_command(),
            "--silent",
            "--skipApiVersionCheck",
            "--disableTelemetry",  # offline: no attempts to reach Application Insights
            "--loose",
            "--disableProductStyleUrl",
            "--location", str(self.location),
            "--blobHost", "127.0.0.1", "--blobPort", str(self.blob_port),
            "--queueHost", "127.0.0.1", "--queuePort", str(self.queue_port),
            "--tableHost", "127.0.0.1", "--tablePort", str(self.table_port),
        ]
        log = open(self.location / "azurite.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        ports = (self.blob_port, self.queue_port, self.table_port)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AzuriteError(
                    f"Azurite exited with code {self.process.returncode}; "
                    f"see {self.location / 'azurite.log'}"
                )
            if all(_port_open(p) for p in ports):
                return self
            time.sleep(0.1)
        self.stop()
        raise AzuriteError(f"Azurite did not open its ports within {timeout:.0f}s")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, 9)
                self.process.wait(timeout=5)
        self.process = None


def start_azurite(location: Path, *, blob_port: int = 0, queue_port: int = 0,
                  table_port: int = 0) -> Azurite:
    """Start Azurite storing its data under ``location``; ports default to free ones."""
    return Azurite(
        location=location,
        blob_port=blob_port or free_port(),
        queue_port=queue_port or free_port(),
        table_port=table_port or free_port(),
    ).start()
