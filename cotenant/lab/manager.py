"""The lab's resource manager: resource groups and deployments of the tenant Bicep modules.

Not ARM REST: a small management API (wrapped by ``LabClient``) at the ``cotenant.cloud``
level. A deployment names a module of ``bicep/tenant`` (``cotenant.deployments.MODULES``) and
passes plain parameter values; they are checked against the parameters the real ``.bicep``
file declares (``cotenant.bicep_params``): unknown, missing or mistyped parameters are refused
(400, naming each parameter). Accepted deployments run asynchronously, as in ARM: the module is
materialised in the lab at once, in the background (resources appear while a deployment runs;
a CVM boots and its bootstrap starts the guest agent during its deployment), and the deployment
stays ``Running`` until the module's provisioning latency (the plan's phase estimates ×
``latency_scale``) has passed and the materialisation is done; then it is ``Succeeded`` with
outputs shaped like the Bicep outputs, or ``Failed`` with an error code and message. A due
deployment is finished by the background tick or by the first read after its time, whichever
comes first, so a busy lab does not report completions late. Re-deploying the same name with
the same parameters returns the existing deployment (idempotent).

Routes: ``PUT|GET|DELETE /lab/resourcegroups/{rg}`` (``{location, tags}``),
``PUT|GET /lab/resourcegroups/{rg}/deployments/{name}`` (``{module, parameters}``),
``GET /lab/resourcegroups/{rg}/deployments``, ``PUT|GET /lab/latency`` (``{scale}``),
``PUT /lab/vm-kinds/{vm}`` (``{kind}``: the kind the next cvm deployment of that VM gets —
how negative tests make a tenant VM debuggable, trusted-launch or standard).

Failed deployments on demand: a fault rule for service ``deployments`` (path matched against
``/<rg>/<deployment>/<module>``, kind ``error``) makes a deployment end ``Failed`` with the
code of its ``status`` (503 → ``ServiceUnavailable``, 409 → ``Conflict``, 429 →
``TooManyRequests``, else ``InternalServerError``) — transient codes for retry tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import json
import re
import threading
import time
import tomllib
from concurrent.futures import Future, ThreadPoolExecutor
from types import ModuleType
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cotenant.crypto.encoding import b64url_encode
from cotenant.deployments import MODULES, module_path
from cotenant.lab.claims import VM_KINDS
from cotenant.lab.data import deploy_data
from cotenant.lab.faults import FaultInjector
from cotenant.lab.http import HttpError, json_body
from cotenant.lab.identity import IdentityService
from cotenant.lab.state import DeploymentRecord, Key, ResourceGroup, RoleAssignment, StateStore
from cotenant.lab.vault import keys as kv
from cotenant.lab.vault.rbac import group_scope, role_name
from cotenant.lab.vault.service import VaultService, vault_url
from cotenant.lab.vms import VmSupervisor
from cotenant.plan import DISK_KEY_SIZE, ESTIMATES

DEFAULT_LATENCY_SCALE = 0.01
# The address the network module reports as the tenant's egress (a public-looking constant).
LAB_EGRESS_IP = "20.50.0.1"
RG_DELETE_SECONDS = 60.0
MAX_WAIT_SECONDS = 30.0  # longest wait a deployment read may ask for
_RG_NAME = re.compile(r"^[-\w._()]{1,90}$")
_HEREDOC = re.compile(r"<<-?\s*['\"]?(\w+)['\"]?[^\n]*\n(.*?)\n\s*\1\s*$", re.S | re.M)


_FAULT_CODES = {409: "Conflict", 429: "TooManyRequests", 500: "InternalServerError",
                503: "ServiceUnavailable", 504: "GatewayTimeout"}


class DeploymentFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def agent_config_from_bootstrap(script: str) -> str | None:
    """The guest agent configuration carried by a cvm bootstrap parameter.

    The Custom Script extension would run the script; the lab takes the agent's TOML from it:
    the parameter itself when it is TOML, else the first heredoc in it whose body is a TOML
    table (``cat > agent.toml <<'EOF' … EOF``).
    """
    candidates = [script] + [m.group(2) + "\n" for m in _HEREDOC.finditer(script)]
    for text in candidates:
        try:
            if tomllib.loads(text):
                return text
        except tomllib.TOMLDecodeError:
            continue
    return None


def _bicep_params() -> ModuleType:
    """``cotenant.bicep_params``, imported on first use: pycep/lark take a while to load and
    the lab should answer health checks before that."""
    return importlib.import_module("cotenant.bicep_params")


def _digest(module: str, parameters: dict[str, Any]) -> str:
    raw = json.dumps({"module": module, "parameters": parameters}, sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


class ResourceManager:
    def __init__(self, store: StateStore, identity: IdentityService, vaults: VaultService,
                 vms: VmSupervisor, *, latency_scale: float | None = None,
                 faults: FaultInjector | None = None) -> None:
        self.store, self.identity, self.vaults, self.vms = store, identity, vaults, vms
        self.faults = faults or FaultInjector()
        self.latency_scale = DEFAULT_LATENCY_SCALE if latency_scale is None else latency_scale
        # deployment key -> its materialisation (running or done; its result = the outputs)
        self._work: dict[str, Future[dict[str, Any]]] = {}
        self._work_lock = threading.Lock()
        self._finishing: set[str] = set()  # deployments being finished right now
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="lab-deploy")
        self._deleting: set[str] = set()  # resource groups whose deletion is under way
        self._task: asyncio.Task[None] | None = None

    # -- ids -------------------------------------------------------------------------------
    def arm_id(self, rg: str, provider: str, *names: str) -> str:
        sub = self.store.read().subscription_id
        return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{provider}/" + "/".join(
            names)

    # -- resource groups -------------------------------------------------------------------
    def ensure_group(self, name: str, location: str, tags: dict[str, str]) -> ResourceGroup:
        if not _RG_NAME.match(name):
            raise HttpError(400, "InvalidResourceGroupName", f"invalid resource group {name!r}")
        with self.store.edit() as state:
            group = state.resource_groups.get(name)
            if group is not None and group.state == "Deleting":
                raise HttpError(409, "ResourceGroupBeingDeleted",
                                f"resource group {name} is being deleted")
            if group is None:
                group = state.resource_groups[name] = ResourceGroup(name=name, location=location)
            group.tags = {str(k): str(v) for k, v in tags.items()}
            return group

    def begin_delete_group(self, name: str) -> ResourceGroup | None:
        with self.store.edit() as state:
            group = state.resource_groups.get(name)
            if group is not None and group.state != "Deleting":
                group.state = "Deleting"
                group.delete_at = time.time() + RG_DELETE_SECONDS * self.latency_scale
            return group

    def _delete_group(self, name: str) -> None:
        with self.store.lock:
            vms = [v.name for v in self.store.read().vms.values() if v.resource_group == name]
        for vm in vms:
            self.vms.delete(vm)
        with self.store.edit() as state:
            vaults = {n for n, v in state.vaults.items() if v.resource_group == name}
            principals = {i.principal_id for i in state.identities.values()
                          if i.resource_group == name}
            scopes = tuple(vault_url(v) for v in vaults)
            group = group_scope(state.subscription_id, name)
            state.role_assignments = [
                a for a in state.role_assignments
                if a.principal_id not in principals and a.scope != group
                and not a.scope.lower().startswith(group + "/")  # ARM ids in the group
                and not a.scope.startswith(scopes or ("\0",))]
            for vault in vaults:
                del state.vaults[vault]
            state.identities = {k: i for k, i in state.identities.items()
                                if i.resource_group != name}
            state.deployments = {k: d for k, d in state.deployments.items()
                                 if d.resource_group != name}
            del state.resource_groups[name]

    # -- deployments -----------------------------------------------------------------------
    def start_deployment(self, rg: str, name: str, module: str,
                         parameters: dict[str, Any]) -> DeploymentRecord:
        if module not in MODULES:
            raise HttpError(400, "InvalidTemplate",
                            f"unknown module {module!r}; expected one of {', '.join(MODULES)}")
        bicep = _bicep_params()
        try:
            declared = bicep.declared_parameters(module_path(module))
        except bicep.BicepParseError as exc:
            raise HttpError(400, "InvalidTemplate", str(exc)) from None
        problems = bicep.check_parameters(declared, parameters)
        if problems:
            raise HttpError(400, "InvalidTemplateDeployment",
                            f"deployment {name} ({module}.bicep): " + "; ".join(problems))
        digest = _digest(module, parameters)
        key = f"{rg}/{name}"
        with self.store.edit() as state:
            group = state.resource_groups.get(rg)
            if group is None or group.state != "Exists":
                raise HttpError(404, "ResourceGroupNotFound", f"resource group {rg} not found")
            existing = state.deployments.get(key)
            if existing is not None and existing.parameters_digest == digest \
                    and existing.state in ("Running", "Succeeded"):
                return existing
            delay = ESTIMATES.get(module, 30.0) * self.latency_scale
            record = DeploymentRecord(resource_group=rg, name=name, module=module,
                                      parameters_digest=digest, ready_at=time.time() + delay)
            # The work is known before the record is visible: a record without work is
            # one a restart interrupted. (Lock order: the state's, then the work's.)
            with self._work_lock:
                self._work[key] = self._pool.submit(
                    getattr(self, f"_deploy_{module}"), rg, parameters)
            state.deployments[key] = record
        return record

    def get_deployment(self, rg: str, name: str) -> DeploymentRecord:
        key = f"{rg}/{name}"
        record = self.store.read().deployments.get(key)
        if record is None:
            raise HttpError(404, "DeploymentNotFound", f"deployment {name} not found in {rg}")
        if record.state == "Running" and record.ready_at <= time.time():
            self._finish_if_done(key, record)
        return record

    def tick(self) -> None:
        """Finish due deployments and start due resource group deletions (periodically)."""
        now = time.time()
        state = self.store.read()
        for group in list(state.resource_groups.values()):
            if group.state == "Deleting" and group.delete_at <= now \
                    and group.name not in self._deleting:
                self._deleting.add(group.name)
                self._pool.submit(self._delete_group, group.name).add_done_callback(
                    lambda _, name=group.name: self._deleting.discard(name))
        for key, record in list(state.deployments.items()):
            if record.state == "Running" and record.ready_at <= now:
                self._finish_if_done(key, record)

    def _finish_if_done(self, key: str, record: DeploymentRecord) -> None:
        """Finish a due deployment once its materialisation is done (exactly once)."""
        with self._work_lock:
            if record.state != "Running" or key in self._finishing:
                return
            work = self._work.get(key)
            if work is not None and not work.done():
                return
            self._work.pop(key, None)
            self._finishing.add(key)
        try:
            self._finish(record, work)  # takes the state's lock: not under the work's
        finally:
            with self._work_lock:
                self._finishing.discard(key)

    def _finish(self, record: DeploymentRecord, work: Future[dict[str, Any]] | None) -> None:
        try:
            if work is None:
                raise DeploymentFailed("DeploymentInterrupted", "the lab restarted while the "
                                       "deployment was running; deploy again")
            outputs = work.result()
            fault = self.faults.pick("deployments", "PUT",
                                     f"/{record.resource_group}/{record.name}/{record.module}")
            if fault is not None and fault.kind in ("error", "throttle"):
                raise DeploymentFailed(_FAULT_CODES.get(fault.status, "InternalServerError"),
                                       "the deployment failed (lab fault injection)")
            with self.store.edit():
                record.state, record.outputs, record.ended = "Succeeded", outputs, time.time()
        except (DeploymentFailed, HttpError) as exc:
            self._fail(record, exc.code, exc.message)
        except Exception as exc:  # a lab defect must not leave the deployment Running forever
            self._fail(record, "InternalServerError",
                       f"the lab could not deploy {record.module}: {type(exc).__name__}")

    def _fail(self, record: DeploymentRecord, code: str, message: str) -> None:
        with self.store.edit():
            record.state, record.error_code, record.error = "Failed", code, message
            record.ended = time.time()

    # -- module materialisation ------------------------------------------------------------
    def _record(self, rg: str, arm_id: str, properties: dict[str, Any]) -> None:
        with self.store.edit() as state:
            state.resource_groups[rg].resources[arm_id] = properties

    def _deploy_network(self, rg: str, p: dict[str, Any]) -> dict[str, Any]:
        net = "Microsoft.Network"
        vnet_id = self.arm_id(rg, net, "virtualNetworks", p["vnetName"])
        self._record(rg, vnet_id, {"cidr": p["vnetCidr"], "vmSubnet": p["vmSubnetPrefix"],
                                   "gatewaySubnet": p["gatewaySubnetPrefix"]})
        return {
            "vnetId": vnet_id,
            "vmSubnetId": f"{vnet_id}/subnets/{p['vmSubnetName']}",
            "gatewaySubnetId": f"{vnet_id}/subnets/{p['gatewaySubnetName']}",
            "nsgId": self.arm_id(rg, net, "networkSecurityGroups", p["nsgName"]),
            "natGatewayId": self.arm_id(rg, net, "natGateways", p["natGatewayName"]),
            "egressIpAddress": LAB_EGRESS_IP,
        }

    def _grant(self, principal_id: str, scope: str, role: str) -> str:
        with self.store.edit() as state:
            for a in state.role_assignments:
                if (a.principal_id, a.scope, a.role) == (principal_id, scope, role):
                    return a.id
            assignment = RoleAssignment(principal_id=principal_id, scope=scope, role=role)
            state.role_assignments.append(assignment)
            return assignment.id

    def _deploy_party(self, rg: str, p: dict[str, Any]) -> dict[str, Any]:
        location = p["location"]
        identity = self.identity.create(p["identityName"], rg)
        existing = self.store.read().vaults.get(p["vaultName"])
        if existing is not None and existing.resource_group != rg:
            raise DeploymentFailed("VaultAlreadyExists",
                                   f"vault name {p['vaultName']} is already in use")
        try:
            operator_role = role_name(p["operatorRoleDefinitionId"])
        except ValueError as exc:
            raise DeploymentFailed("RoleDefinitionDoesNotExist", str(exc)) from None
        vault = self.vaults.create_vault(p["vaultName"], resource_group=rg, location=location,
                                         operator_role=None)
        url = vault_url(vault.name)
        disk_key = p["diskKeyName"]
        # As party.bicep: RSA-HSM of the plan's disk-key size (3072; was 2048 here).
        request = {"kty": "RSA-HSM", "key_size": DISK_KEY_SIZE, "attributes": {"exportable": True},
                   "release_policy": {"data": b64url_encode(json.dumps(
                       p["diskKeyReleasePolicy"]).encode()), "immutable": False}}
        # Made before the state's lock (an empty key stock generates its key on the spot).
        version = None if disk_key in vault.keys else kv.new_version(request)
        with self.store.edit():
            vault.network = {"allowedIpRanges": p["allowedIpRanges"],
                             "vmSubnet": p["vmSubnetName"], "defaultAction": "Deny"}
            if version is not None and disk_key not in vault.keys:
                vault.keys[disk_key] = Key(name=disk_key, versions=[version])
        des = self.identity.create(f"{p['desName']}-identity", rg)
        key_scope = f"{url}/keys/{disk_key}"
        self._grant(des.principal_id, key_scope, "Key Vault Crypto Service Encryption User")
        self._grant(p["cvmOrchestratorObjectId"], key_scope,
                    "Key Vault Crypto Service Release User")
        self._grant(p["operatorPrincipalId"], url, operator_role)
        des_id = self.arm_id(rg, "Microsoft.Compute", "diskEncryptionSets", p["desName"])
        self._record(rg, des_id, {"key": key_scope, "principalId": des.principal_id})
        latest = self.store.read().vaults[vault.name].keys[disk_key].latest
        return {
            "identityId": self.arm_id(rg, "Microsoft.ManagedIdentity",
                                      "userAssignedIdentities", identity.name),
            "identityName": identity.name, "identityPrincipalId": identity.principal_id,
            "identityClientId": identity.client_id,
            "vaultId": self.arm_id(rg, "Microsoft.KeyVault", "vaults", vault.name),
            "vaultName": vault.name, "vaultUri": url + "/",
            "diskKeyId": f"{url}/keys/{disk_key}/{latest.version}",
            "desId": des_id, "desPrincipalId": des.principal_id,
        }

    def _deploy_grants(self, rg: str, p: dict[str, Any]) -> dict[str, Any]:
        vault = self.store.read().vaults.get(p["vaultName"])
        if vault is None or p["keyName"] not in vault.keys:
            raise DeploymentFailed("ResourceNotFound", f"key {p['keyName']} not found in vault "
                                   f"{p['vaultName']}")
        scope = f"{vault_url(vault.name)}/keys/{p['keyName']}"
        ids = [self._grant(str(pid), scope, "Key Vault Crypto Service Release User")
               for pid in p["principalIds"]]
        key_id = self.arm_id(rg, "Microsoft.KeyVault", "vaults", vault.name, "keys",
                             p["keyName"])
        return {"keyId": key_id, "roleAssignmentIds": [
            self.arm_id(rg, "Microsoft.Authorization", "roleAssignments", i) for i in ids]}

    def _deploy_cvm(self, rg: str, p: dict[str, Any]) -> dict[str, Any]:
        identity = self.store.read().identity_by_name(p["identityName"], rg)
        if identity is None:
            raise DeploymentFailed("ResourceNotFound",
                                   f"identity {p['identityName']} not found in {rg}")
        des_id = self.arm_id(rg, "Microsoft.Compute", "diskEncryptionSets", p["desName"])
        if des_id not in self.store.read().resource_groups[rg].resources:
            raise DeploymentFailed("ResourceNotFound", f"disk encryption set {p['desName']} "
                                   f"not found in {rg}")
        kind = self.store.read().vm_kind_overrides.get(p["vmName"], "confidential")
        config = agent_config_from_bootstrap(p["bootstrapScript"])
        directory = self.vms.directory(p["vmName"])
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "bootstrap.sh").write_text(p["bootstrapScript"])
        vm = self.vms.create(p["vmName"], kind, identities=[identity.client_id],
                             resource_group=rg, location=p["location"], agent_config=config,
                             private_ip=p["privateIpAddress"])
        return {
            "vmId": self.arm_id(rg, "Microsoft.Compute", "virtualMachines", vm.name),
            "vmName": vm.name,
            "nicId": self.arm_id(rg, "Microsoft.Network", "networkInterfaces", p["nicName"]),
            "privateIpAddress": p["privateIpAddress"],
            "identityPrincipalId": identity.principal_id,
        }

    def _deploy_data(self, rg: str, p: dict[str, Any]) -> dict[str, Any]:
        return deploy_data(self.store, rg, p)

    def _deploy_gateway(self, rg: str, p: dict[str, Any]) -> dict[str, Any]:
        gateway_id = self.arm_id(rg, "Microsoft.Network", "applicationGateways",
                                 p["gatewayName"])
        self._record(rg, gateway_id, {"backends": p["backends"]})
        return {"gatewayId": gateway_id, "publicIpAddress": "127.0.0.1",
                "fqdn": f"{p['dnsLabel']}.{p['location']}.cloudapp.azure.com"}

    def _deploy_bastion(self, rg: str, p: dict[str, Any]) -> dict[str, Any]:
        bastion_id = self.arm_id(rg, "Microsoft.Network", "bastionHosts", p["bastionName"])
        if p["debug"]:
            self._record(rg, bastion_id, {"vnet": p["vnetName"]})
        return {"bastionId": bastion_id if p["debug"] else ""}

    # -- background ------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._task = loop.create_task(self._run())
        threading.Thread(target=self._warm, name="bicep-warmup", daemon=True).start()

    @staticmethod
    def _warm() -> None:
        """Parse every module once in the background (pycep is slow; results are cached), and
        import what the data module's Azurite container needs (else ten deployments wait on
        that import at once)."""
        for module in MODULES:
            bicep = _bicep_params()
            with contextlib.suppress(bicep.BicepParseError):
                bicep.declared_parameters(module_path(module))
        with contextlib.suppress(ImportError):
            importlib.import_module("azure.storage.blob")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await run_in_threadpool(self.tick)
            await asyncio.sleep(0.05)

    # -- HTTP ------------------------------------------------------------------------------
    async def put_group(self, request: Request) -> JSONResponse:
        body = await json_body(request)
        location, tags = body.get("location"), body.get("tags") or {}
        if not isinstance(location, str) or not location or not isinstance(tags, dict):
            raise HttpError(400, "InvalidParameter", "location (string) and tags (object)")
        group = self.ensure_group(request.path_params["rg"], location, tags)
        return JSONResponse(group.model_dump(exclude={"resources"}))

    async def get_group(self, request: Request) -> JSONResponse:
        group = self.store.read().resource_groups.get(request.path_params["rg"])
        if group is None:
            raise HttpError(404, "ResourceGroupNotFound", "resource group not found")
        return JSONResponse(group.model_dump())

    async def delete_group(self, request: Request) -> JSONResponse:
        group = self.begin_delete_group(request.path_params["rg"])
        return JSONResponse({"state": group.state if group else "NotFound"})

    async def put_deployment(self, request: Request) -> JSONResponse:
        body = await json_body(request)
        module, parameters = body.get("module"), body.get("parameters")
        if not isinstance(module, str) or not isinstance(parameters, dict):
            raise HttpError(400, "InvalidParameter", "body needs module (string) and "
                            "parameters (object)")
        record = self.start_deployment(request.path_params["rg"], request.path_params["name"],
                                       module, parameters)
        return JSONResponse(record.model_dump(), status_code=201)

    async def get_deployment_route(self, request: Request) -> JSONResponse:
        """The deployment; with ``?wait=<seconds>`` (at most 30), answered when it ends or
        that time has passed — one request instead of a poll every few hundred ms."""
        try:
            wait = float(request.query_params.get("wait", "0"))
        except ValueError:
            wait = -1.0
        if not 0.0 <= wait <= MAX_WAIT_SECONDS:
            raise HttpError(400, "InvalidParameter",
                            f"wait must be a number of seconds from 0 to {MAX_WAIT_SECONDS:.0f}")
        rg, name = request.path_params["rg"], request.path_params["name"]
        deadline = time.monotonic() + wait
        record = self.get_deployment(rg, name)
        while record.state == "Running" and (left := deadline - time.monotonic()) > 0:
            due = record.ready_at - time.time()
            await asyncio.sleep(min(left, due) if due > 0 else min(left, 0.02))
            record = self.get_deployment(rg, name)
        return JSONResponse(record.model_dump())

    async def list_deployments(self, request: Request) -> JSONResponse:
        rg = request.path_params["rg"]
        with self.store.lock:
            return JSONResponse([d.model_dump() for d in self.store.read().deployments.values()
                                 if d.resource_group == rg])

    async def latency(self, request: Request) -> JSONResponse:
        if request.method == "PUT":
            scale = (await json_body(request)).get("scale")
            if not isinstance(scale, int | float) or isinstance(scale, bool) or scale < 0:
                raise HttpError(400, "InvalidParameter", "scale must be a number >= 0")
            self.latency_scale = float(scale)
        return JSONResponse({"scale": self.latency_scale,
                             "seconds": {m: ESTIMATES.get(m, 30.0) * self.latency_scale
                                         for m in MODULES}})

    async def vm_kind(self, request: Request) -> JSONResponse:
        kind = (await json_body(request)).get("kind")
        if kind not in VM_KINDS:
            raise HttpError(400, "InvalidParameter", f"kind must be one of {VM_KINDS}")
        with self.store.edit() as state:
            state.vm_kind_overrides[request.path_params["vm"]] = str(kind)
        return JSONResponse({"vm": request.path_params["vm"], "kind": kind})

    def routes(self) -> list[Route]:
        base = "/lab/resourcegroups/{rg}"
        return [
            Route(base, self.put_group, methods=["PUT"]),
            Route(base, self.get_group, methods=["GET"]),
            Route(base, self.delete_group, methods=["DELETE"]),
            Route(base + "/deployments", self.list_deployments, methods=["GET"]),
            Route(base + "/deployments/{name}", self.put_deployment, methods=["PUT"]),
            Route(base + "/deployments/{name}", self.get_deployment_route, methods=["GET"]),
            Route("/lab/latency", self.latency, methods=["GET", "PUT"]),
            Route("/lab/vm-kinds/{vm}", self.vm_kind, methods=["PUT"]),
        ]

