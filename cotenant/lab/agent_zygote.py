"""Start simulated CVMs' guest agents from a pre-imported zygote (a ``forkserver``).

A real CVM boots its own interpreter; in the lab every VM's agent is a process on one machine,
and ten of them importing the agent at once (about 1.2 s of CPU each: the Azure SDK, httpx,
cryptography, starlette/uvicorn) is the single largest cost of a many-party rehearsal on two
cores. The lab therefore starts agents the way ``multiprocessing``'s *forkserver* starts
workers: one server process imports the agent's modules once, at lab start, and forks a fresh
child for each VM boot. The child is the unmodified agent (``guest_agent.__main__.main``) with
the VM's environment, working directory and log — in its own session, so the lab stops it and
anything it started as one process group.

The forkserver imports ``cotenant.lab.agent_zygote_server`` (and nothing else): it drops the lab
operator's credentials from the server's environment, so no VM process ever inherits them, and
pre-imports the agent.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import multiprocessing.process
import os
import sys
from pathlib import Path

from cotenant.lab.lifetime import exit_with

# Variables a VM process must not inherit from the lab (the operator's credentials).
SCRUBBED = ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET",
            "IMDS_ENDPOINT", "AZURE_CLIENT_SECRET", "COTENANT_LAB_ADMIN_TOKEN")

# What ``python -m guest_agent`` keeps out (see guest_agent/__main__.py): modules only probed
# for, whose import costs CPU the agent never uses.
_UNUSED = ("aiohttp", "httpx._main")

# The agent's modules, imported once by the forkserver (not by the lab process itself).
_AGENT_MODULES = ("guest_agent.__main__", "guest_agent.agent", "guest_agent.server",
                  "guest_agent.backends.lab", "guest_agent.tee")
# What uvicorn imports by name when the agent's server starts (optional: skipped if absent).
_SERVER_MODULES = ("uvicorn.protocols.http.auto", "uvicorn.protocols.http.h11_impl",
                   "uvicorn.protocols.websockets.auto", "uvicorn.lifespan.on",
                   "uvicorn.loops.auto", "uvicorn.loops.asyncio")


def prepare_server() -> None:
    """Run in the forkserver (only there): scrub the environment, then pre-import the agent."""
    for name in SCRUBBED:
        os.environ.pop(name, None)
    for name in _UNUSED:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    for name in _AGENT_MODULES:
        importlib.import_module(name)
    for name in _SERVER_MODULES:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    # httpx imports its transport (httpcore, anyio glue) when the first client is made.
    import httpx

    httpx.Client(trust_env=False).close()



def run_agent(config: str, env: dict[str, str], cwd: str, log: str, lab_pid: int) -> None:
    """The child: become the VM's agent (new session, its environment, cwd and log)."""
    os.setsid()
    exit_with(lab_pid)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    from guest_agent.__main__ import main

    sys.exit(main(["run", "--config", config]))


class AgentLauncher:
    """Starts agent processes from the zygote; one per lab process."""

    def __init__(self) -> None:
        self._context = multiprocessing.get_context("forkserver")

    def warm(self) -> None:
        """Start the zygote now (in the background of lab start-up) rather than at first boot."""
        self._ensure_server()

    def _ensure_server(self) -> None:
        from multiprocessing import forkserver

        self._context.set_forkserver_preload(["cotenant.lab.agent_zygote_server"])
        forkserver.ensure_running()

    def start(self, config: Path, env: dict[str, str], cwd: Path, log: Path
              ) -> multiprocessing.process.BaseProcess:
        self._ensure_server()
        env = {k: v for k, v in env.items() if k not in SCRUBBED}
        process = self._context.Process(target=run_agent, name=f"agent:{cwd.name}",
                                        args=(str(config), env, str(cwd), str(log),
                                              os.getpid()),
                                        daemon=True)
        process.start()
        return process
