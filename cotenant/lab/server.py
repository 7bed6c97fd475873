"""The lab server: every service in one process and one event loop (``cotenant lab serve``).

Listeners (all on 127.0.0.1; ports reused from the previous run when free):

* HTTPS — Key Vault (``<vault>.vault.azure.net``) and attestation authorities
  (``<name>.<region>.attest.azure.net``), dispatched by ``Host``, certificates per SNI name;
* the CONNECT proxy that carries those host names to the HTTPS port (``HTTPS_PROXY``);
* HTTP — the identity token service (App Service form and IMDS);
* HTTP — the management API (:mod:`cotenant.lab.admin`, bearer ``admin-token``).

When all listen, ``endpoints.json`` is written; SIGTERM/SIGINT stop the VMs and the servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from cotenant.lab.admin import AdminApi, AdminAuth
from cotenant.lab.agent_zygote import SCRUBBED
from cotenant.lab.ca import LabCA, write_private
from cotenant.lab.endpoints import LabEndpoints
from cotenant.lab.faults import FaultInjector, FaultMiddleware, FaultRule
from cotenant.lab.http import EXCEPTION_HANDLERS, HttpError
from cotenant.lab.identity import IdentityService
from cotenant.lab.keypool import POOL
from cotenant.lab.maa import (
    DEFAULT_AUTHORITY_HOST,
    AttestationService,
    authority_url,
    is_authority_host,
)
from cotenant.lab.manager import ResourceManager
from cotenant.lab.proxy import ConnectProxy
from cotenant.lab.state import StateStore, Vm
from cotenant.lab.tls import server_context
from cotenant.lab.vault.service import VAULT_SIGNING_KEY, VAULT_SUFFIX, VaultService
from cotenant.lab.vms import VmSupervisor

# The lab saves its state in the background at most this often (see StateStore).
STATE_SAVE_DELAY = 0.1


def _bind(port: int) -> socket.socket:
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # accepted sockets inherit the listener's; without it a response written in two parts
    # (head, body) waits for the client's delayed ACK: ~40 ms per request.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    sock.setblocking(False)
    return sock


def _secret_file(path: Path) -> str:
    if not path.exists():
        write_private(path, secrets.token_urlsafe(32).encode())
    return path.read_text().strip()


class _HostDispatch:
    """Route HTTPS requests to the vault or the attestation app by ``Host``."""

    def __init__(self, vault: ASGIApp, maa: ASGIApp) -> None:
        self.vault, self.maa = vault, maa

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        host = (Request(scope).headers.get("host") or "").split(":")[0].lower()
        if host.endswith(VAULT_SUFFIX):
            await self.vault(scope, receive, send)
        elif is_authority_host(host):
            await self.maa(scope, receive, send)
        else:
            await HttpError(404, "NotFound", f"nothing is served at {host!r}")\
                .response()(scope, receive, send)


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the lab."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Lab:
    """All lab services over one state directory."""

    def __init__(self, directory: Path, *, authority: str | None = None,
                 latency_scale: float | None = None,
                 azurite_connection_string: str | None = None) -> None:
        self.directory = directory.resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.store = StateStore(self.directory, save_delay=STATE_SAVE_DELAY)
        self.ca = LabCA(self.directory / "ca")
        self.admin_token = _secret_file(self.directory / "admin-token")
        faults_file = self.directory / "faults.json"
        rules = [FaultRule.model_validate(r) for r in json.loads(faults_file.read_text())] \
            if faults_file.exists() else []
        self.faults = FaultInjector(rules)
        self.identity = IdentityService(self.store)
        self.maa = AttestationService(self.store)
        self.vaults = VaultService(self.store, self.ca, self.identity)
        self.vms = VmSupervisor(self.store, self._vm_env)
        self.authority = (authority or authority_url(DEFAULT_AUTHORITY_HOST)).rstrip("/")
        self.manager = ResourceManager(self.store, self.identity, self.vaults, self.vms,
                                       latency_scale=latency_scale, faults=self.faults)
        self.azurite_connection_string = azurite_connection_string
        self.endpoints: LabEndpoints | None = None
        self._servers: list[_Server] = []

    def _vm_env(self, vm: Vm) -> dict[str, str]:
        assert self.endpoints is not None
        env = self.endpoints.base_environ()
        env.update({
            "COTENANT_LAB_VTPM_DIR": str(self.vms.directory(vm.name)),
            "COTENANT_LAB_VM_NAME": vm.name,
            "AZURE_POD_IDENTITY_AUTHORITY_HOST": self.endpoints.imds_url(vm.name),
            "COTENANT_LAB_IMDS_URL": self.endpoints.imds_url(vm.name),
        })
        env.pop("COTENANT_LAB_MANAGEMENT_URL", None)
        if len(vm.identities) == 1:
            env["AZURE_CLIENT_ID"] = vm.identities[0]
        return env

    def _app(self, routes: list, service: str, *, extra: list[Middleware] | None = None
             ) -> Starlette:
        return Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS, middleware=[
            *(extra or []), Middleware(FaultMiddleware, service=service, injector=self.faults)])

    def _route(self, https_port: int, host: str, port: int) -> tuple[str, int] | None:
        if host.endswith(VAULT_SUFFIX) or is_authority_host(host):
            return ("127.0.0.1", https_port) if port == 443 else None
        if host in ("127.0.0.1", "localhost"):
            return "127.0.0.1", port
        return None

    async def serve(self) -> None:
        previous = None
        with contextlib.suppress(OSError, ValueError):
            previous = LabEndpoints.load(self.directory)
        socks = {name: _bind(getattr(previous, f"{name}_port", 0) if previous else 0)
                 for name in ("proxy", "https", "identity", "management")}
        ports = {name: s.getsockname()[1] for name, s in socks.items()}
        self.endpoints = LabEndpoints(
            pid=os.getpid(), proxy_port=ports["proxy"], https_port=ports["https"],
            identity_port=ports["identity"], management_port=ports["management"],
            attestation_url=self.authority, ca_bundle=str(self.ca.bundle_path),
            azurite_connection_string=self.azurite_connection_string or (
                previous.azurite_connection_string if previous else None),
        )
        # The vault fetches attestation discovery documents through the lab itself.
        os.environ.update({k: v for k, v in self.endpoints.base_environ().items()
                           if k.lower() in ("https_proxy", "no_proxy")})
        admin = AdminApi(self.store, self.identity, self.vaults, self.vms, self.faults, {
            "attestation_url": self.authority, "proxy_url": self.endpoints.proxy_url,
            "identity_endpoint": self.endpoints.identity_endpoint,
            "imds_url": f"http://127.0.0.1:{ports['identity']}"})
        https_app = _HostDispatch(self._app(self.vaults.routes(), "vault"),
                                  self._app(self.maa.routes(), "maa"))
        apps = {
            "https": https_app,
            "identity": self._app(self.identity.routes(), "identity"),
            "management": self._app([*admin.routes(), *self.manager.routes()], "manage",
                                    extra=[Middleware(AdminAuth, token=self.admin_token)]),
        }
        tls = server_context(self.ca, lambda h: h.endswith(VAULT_SUFFIX)
                             or is_authority_host(h))
        for name, app in apps.items():
            config = uvicorn.Config(app, log_level="warning", access_log=False,
                                    timeout_graceful_shutdown=2, lifespan="off")
            config.load()
            if name == "https":
                config.ssl = tls
            server = _Server(config)
            self._servers.append(server)
        proxy = ConnectProxy(lambda h, p: self._route(ports["https"], h, p))
        proxy_server = await proxy.start(socks["proxy"])
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        # The lab never uses the operator's credentials: drop them before the agents' zygote
        # starts (it imports while the servers start), so no VM process inherits them.
        for name in SCRUBBED:
            os.environ.pop(name, None)
        self.vms.launcher.warm()
        POOL.start()  # simulated HSM/vTPM keys, generated ahead while the lab is idle
        tasks = [asyncio.create_task(server.serve(sockets=[socks[name]]))
                 for server, name in zip(self._servers, apps, strict=True)]
        while not all(s.started for s in self._servers):
            if any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.02)
        await loop.run_in_executor(None, self.vms.resume)  # VMs that were running boot again
        self.endpoints.save(self.directory)
        self.manager.start(loop)
        threading.Thread(target=self._warm, name="lab-warmup", daemon=True).start()
        try:
            await asyncio.gather(*tasks)
        finally:
            proxy_server.close()
            self.manager.stop()
            await loop.run_in_executor(None, self.vms.shutdown)
            POOL.stop()
            self.store.flush()

    def _warm(self) -> None:
        """Make now, while the lab is idle, the keys a first deployment would otherwise wait
        for (50–200 ms of RSA each, under the state's lock): the default authority's token
        signing key and the vaults' release-signing key."""
        host = self.authority.removeprefix("https://").split("/")[0].lower()
        if is_authority_host(host):
            self.maa.authority(host)
        self.ca.shared_rsa_key(VAULT_SIGNING_KEY)

    def stop(self) -> None:
        for server in self._servers:
            server.should_exit = True


def run(directory: Path, *, authority: str | None = None, latency_scale: float | None = None,
        azurite_connection_string: str | None = None) -> None:
    """Run the lab in the foreground until SIGTERM/SIGINT."""
    asyncio.run(Lab(directory, authority=authority, latency_scale=latency_scale,
                    azurite_connection_string=azurite_connection_string).serve())
