"""Simulated CVMs: a vTPM directory and, when bootstrapped, a real guest agent process.

Creating a VM provisions its software vTPM (``<lab>/vms/<name>/``) and registers the VM's
hardware key with the attestation service (the lab state). Booting recreates the ephemeral
key and, when the VM has a guest agent configuration (``agent.toml``, written from the cvm
deployment's bootstrap parameter — the Custom Script extension's job), starts the agent
(``guest_agent run --config agent.toml``, forked from a pre-imported zygote:
``cotenant.lab.agent_zygote``) with the lab environment of that VM:
``COTENANT_LAB_VTPM_DIR``, ``COTENANT_LAB_ATTESTATION_URL``, ``AZURE_POD_IDENTITY_AUTHORITY_HOST``
(its IMDS), ``COTENANT_LAB_IMDS_URL``, ``HTTPS_PROXY``/``NO_PROXY`` and the CA bundle.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from cotenant.lab.agent_zygote import AgentLauncher
from cotenant.lab.claims import VM_KINDS
from cotenant.lab.http import HttpError
from cotenant.lab.state import StateStore, Vm
from cotenant.lab.vtpm import SoftwareVTPM


def _signal(process: BaseProcess, sig: int) -> None:
    """Signal the agent's process group (its own session), or the process itself if it has
    not yet made one."""
    assert process.pid is not None
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, sig)


def _alive(process: BaseProcess) -> bool:
    """Whether the agent process still runs (a zombie awaiting its reaper does not)."""
    assert process.pid is not None
    if not os.path.isdir("/proc/self"):  # no procfs: a zombie counts as running
        try:
            os.kill(process.pid, 0)
        except ProcessLookupError:
            return False
        return True
    try:
        with open(f"/proc/{process.pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (FileNotFoundError, ProcessLookupError, IndexError):  # gone, or going
        return False


def _terminate(processes: list[BaseProcess]) -> None:
    """SIGTERM the agents, then SIGKILL any still running 5 s later. Judged by the pid, not
    by multiprocessing's view: that comes from the zygote, which may already be gone (it
    shares the lab's process group and its SIGTERM)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for process in processes:
            _signal(process, sig)
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in processes) and time.monotonic() < deadline:
            time.sleep(0.02)
        processes = [p for p in processes if _alive(p)]
        if not processes:
            return


def _valid_name(name: str) -> bool:
    return 1 <= len(name) <= 64 and all(c.isalnum() or c in "-_" for c in name)


class VmSupervisor:
    """Creates, boots and stops simulated VMs; ``vm_env(vm)`` gives a VM's environment."""

    def __init__(self, store: StateStore, vm_env: Callable[[Vm], dict[str, str]]) -> None:
        self.store = store
        self.vm_env = vm_env
        self.root = store.directory / "vms"
        self._processes: dict[str, BaseProcess] = {}
        self.launcher = AgentLauncher()

    def directory(self, name: str) -> Path:
        return self.root / name

    def create(self, name: str, kind: str, *, identities: list[str] | None = None,
               resource_group: str | None = None, location: str = "lab",
               agent_config: str | None = None, private_ip: str | None = None) -> Vm:
        """Create (or update the configuration of) VM ``name`` and boot it."""
        if not _valid_name(name):
            raise HttpError(400, "InvalidParameter", f"invalid VM name {name!r}")
        if kind not in VM_KINDS:
            raise HttpError(400, "InvalidParameter",
                            f"unknown VM kind {kind!r}; expected one of {', '.join(VM_KINDS)}")
        state = self.store.read()
        for client_id in identities or []:
            if client_id not in state.identities:
                raise HttpError(400, "InvalidParameter", f"unknown identity {client_id}")
        directory = self.directory(name)
        directory.mkdir(parents=True, exist_ok=True)
        if agent_config is not None:
            (directory / "agent.toml").write_text(agent_config)
        with self.store.edit() as state:
            vm = state.vms.get(name)
            if vm is None or vm.kind != kind:
                vm = Vm(name=name, kind=kind)
                public = SoftwareVTPM.provision(directory, name=name,
                                                vm_unique_id=vm.vm_unique_id)
                vm.hardware_public_key = public.public_bytes(
                    serialization.Encoding.PEM,
                    serialization.PublicFormat.SubjectPublicKeyInfo).decode()
            vm.identities = list(dict.fromkeys([*vm.identities, *(identities or [])]))
            vm.resource_group = resource_group or vm.resource_group
            vm.location, vm.private_ip = location, private_ip or vm.private_ip
            vm.has_agent_config = (directory / "agent.toml").exists()
            state.vms[name] = vm
        self.boot(name)
        return self.store.read().vms[name]

    def boot(self, name: str) -> None:
        """(Re)boot: stop the agent, recreate the ephemeral key, start the agent if configured."""
        self.stop(name)
        SoftwareVTPM.new_boot(self.directory(name))
        with self.store.edit() as state:
            vm = state.vms[name]
            vm.status, vm.boots = "running", vm.boots + 1
        self._start_agent(self.store.read().vms[name])

    def _start_agent(self, vm: Vm) -> None:
        config = self.directory(vm.name) / "agent.toml"
        if not config.exists() or importlib.util.find_spec("guest_agent") is None:
            return
        directory = self.directory(vm.name)
        self._processes[vm.name] = self.launcher.start(
            config, {**os.environ, **self.vm_env(vm)}, directory, directory / "agent.log")

    def agent_running(self, name: str) -> bool:
        process = self._processes.get(name)
        return process is not None and _alive(process)

    def agent_pid(self, name: str) -> int | None:
        return self._processes[name].pid if self.agent_running(name) else None

    def stop(self, name: str, *, mark: bool = False) -> None:
        process = self._processes.pop(name, None)
        if process is not None:
            _terminate([process])
        if mark:
            with self.store.edit() as state:
                if name in state.vms:
                    state.vms[name].status = "stopped"

    def delete(self, name: str) -> None:
        self.stop(name)
        with self.store.edit() as state:
            state.vms.pop(name, None)

    def resume(self) -> None:
        """After a lab restart: boot again every VM that was running."""
        for vm in list(self.store.read().vms.values()):
            if vm.status == "running":
                self.boot(vm.name)

    def shutdown(self) -> None:
        """Stop every agent process, all at once (VM records keep their status for
        :meth:`resume`)."""
        processes = list(self._processes.values())
        self._processes.clear()
        _terminate(processes)
