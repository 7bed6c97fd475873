"""``LabClient``: the programmatic interface to a running lab (its management API).

    from cotenant.lab.client import LabClient

    lab = LabClient.from_directory(".lab")          # a lab started by `cotenant lab up`
    env = lab.environ()                             # variables for SDK clients (see below)
    officer = lab.create_identity("ops")            # {"client_id", "principal_id", ...}
    url = lab.create_vault("contoso-kv")            # https://contoso-kv.vault.azure.net
    lab.grant(officer["client_id"], url, "Key Vault Crypto Officer")
    vm = lab.create_vm("contoso-vm", kind="confidential", identities=[client_id])
    token = lab.vm_token("contoso-vm", nonce="abc")  # AzureGuest flow through the VM's vTPM
    lab.audit(key="contoso-secret-key")             # release attempts

Resource manager (the ``cotenant.cloud`` lab backend): ``ensure_resource_group``,
``delete_resource_group``, ``resource_group``, ``start_deployment(rg, name, module,
parameters)``, ``get_deployment(rg, name)`` (``state`` Running/Succeeded/Failed, ``outputs``,
``error_code``, ``error``), ``set_latency_scale``, ``set_vm_kind``. Other calls:
``identities``, ``role_assignments``, ``vms``, ``get_vm`` (``security_type``), ``restart_vm``,
``set_access_policy``, ``set_faults``, ``info``, ``vault_url(name)``.

Code acting as a VM (tests, tools) gets that VM's identity tokens through the VM's IMDS:
``lab.vm_credential("contoso-vm", client_id)`` (an azure-core ``TokenCredential``), exactly as
the guest inside it would; an identity not assigned to the VM gets nothing.

Errors from the lab raise :class:`LabError` (``status``, ``code``, ``message``).
``environ()`` returns ``HTTPS_PROXY``/``NO_PROXY`` (the lab proxy that carries
``*.vault.azure.net`` and ``*.attest.azure.net`` to the lab), ``REQUESTS_CA_BUNDLE``,
``SSL_CERT_FILE``, ``IDENTITY_ENDPOINT``, ``IDENTITY_HEADER`` (azure-identity's
``ManagedIdentityCredential`` then gets lab tokens for the operator identity, the only one
assigned to the control plane), ``COTENANT_LAB_ATTESTATION_URL``, ``COTENANT_LAB_MANAGEMENT_URL``,
``COTENANT_LAB_IMDS_URL`` and, when the lab was started with Azurite,
``AZURE_STORAGE_CONNECTION_STRING``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from cotenant.lab.endpoints import LabEndpoints
from cotenant.lab.vault.names import vault_url as _vault_url
from cotenant.lab.vtpm import SoftwareVTPM


class LabError(RuntimeError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if code else message)
        self.status, self.code, self.message = status, code, message


class VmCredential:
    """Tokens for an identity of one lab VM, from that VM's IMDS (``TokenCredential``)."""

    def __init__(self, imds_url: str, client_id: str | None = None, *,
                 timeout: float = 30.0) -> None:
        self.imds_url, self.client_id, self.timeout = imds_url.rstrip("/"), client_id, timeout
        self._session = requests.Session()
        self._session.trust_env = False  # IMDS is plain loopback HTTP

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        if len(scopes) != 1:
            raise ValueError("exactly one scope is required")
        params = {"api-version": "2018-02-01", "resource": scopes[0].removesuffix("/.default")}
        if self.client_id:
            params["client_id"] = self.client_id
        try:
            response = self._session.get(f"{self.imds_url}/metadata/identity/oauth2/token",
                                         params=params, headers={"Metadata": "true"},
                                         timeout=self.timeout)
        except requests.RequestException as exc:
            raise ClientAuthenticationError(f"the lab IMDS is not answering: "
                                            f"{type(exc).__name__}") from None
        if response.status_code != 200:
            raise ClientAuthenticationError(f"the lab IMDS refused the token request "
                                            f"({response.status_code})")
        body = response.json()
        return AccessToken(body["access_token"], int(body["expires_on"]))

    def close(self) -> None:
        self._session.close()


class LabClient:
    def __init__(self, directory: str | Path, *, timeout: float = 30.0) -> None:
        self.directory = Path(directory).resolve()
        self.endpoints = LabEndpoints.load(self.directory)
        self._token = (self.directory / "admin-token").read_text().strip()
        self._identity_header = (self.directory / "identity-header").read_text().strip()
        self._session = requests.Session()
        self._session.trust_env = False  # management is plain loopback HTTP
        self._session.headers["Authorization"] = f"Bearer {self._token}"
        self.timeout = timeout

    @classmethod
    def from_directory(cls, directory: str | Path = ".lab") -> LabClient:
        return cls(directory)

    # -- plumbing --------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = self._session.request(method, self.endpoints.management_url + path,
                                             json=body, timeout=self.timeout)
        except requests.RequestException as exc:
            raise LabError(0, "Unreachable", f"the lab is not answering: "
                           f"{type(exc).__name__}") from None
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code >= 400:
            error = (payload or {}).get("error", {}) if isinstance(payload, dict) else {}
            raise LabError(response.status_code, str(error.get("code", "")),
                           str(error.get("message", response.text[:300])))
        return payload

    def healthy(self) -> bool:
        try:
            return self._session.get(self.endpoints.management_url + "/health",
                                     timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def environ(self) -> dict[str, str]:
        env = self.endpoints.base_environ()
        env.update({
            "IDENTITY_ENDPOINT": self.endpoints.identity_endpoint,
            "IDENTITY_HEADER": self._identity_header,
            "COTENANT_LAB_IMDS_URL": f"http://127.0.0.1:{self.endpoints.identity_port}",
            "COTENANT_LAB_DIR": str(self.directory),
        })
        if self.endpoints.azurite_connection_string:
            env["AZURE_STORAGE_CONNECTION_STRING"] = self.endpoints.azurite_connection_string
        return env

    @staticmethod
    def vault_url(name: str) -> str:
        return _vault_url(name)

    def info(self) -> dict[str, Any]:
        return self._call("GET", "/lab/info")

    # -- identities, vaults, grants ----------------------------------------------------------
    def create_identity(self, name: str, resource_group: str | None = None) -> dict[str, Any]:
        return self._call("POST", "/lab/identities",
                          {"name": name, "resource_group": resource_group})

    def identities(self) -> list[dict[str, Any]]:
        return self._call("GET", "/lab/identities")

    def operator(self) -> dict[str, Any]:
        return self.info()["operator"]

    def create_vault(self, name: str, *, rbac: bool = True, purge_protection: bool = True,
                     resource_group: str | None = None) -> str:
        return self._call("POST", "/lab/vaults", {
            "name": name, "rbac": rbac, "purge_protection": purge_protection,
            "resource_group": resource_group})["url"]

    def set_access_policy(self, vault: str, object_id: str, keys: list[str]) -> None:
        self._call("PUT", f"/lab/vaults/{vault}/access-policies",
                   {"object_id": object_id, "keys": keys})

    def grant(self, client_id: str, scope: str, role: str) -> dict[str, Any]:
        """Assign ``role`` to identity ``client_id`` at a vault or key URL."""
        return self._call("POST", "/lab/role-assignments",
                          {"client_id": client_id, "scope": scope, "role": role})

    def grant_principal(self, principal_id: str, scope: str, role: str) -> dict[str, Any]:
        return self._call("POST", "/lab/role-assignments",
                          {"principal_id": principal_id, "scope": scope, "role": role})

    def role_assignments(self) -> list[dict[str, Any]]:
        return self._call("GET", "/lab/role-assignments")

    def audit(self, key: str | None = None) -> list[dict[str, Any]]:
        return self._call("GET", "/lab/audit" + (f"?key={key}" if key else ""))

    # -- VMs -------------------------------------------------------------------------------
    def create_vm(self, name: str, kind: str = "confidential", *,
                  identities: list[str] | None = None,
                  agent_config: str | None = None) -> dict[str, Any]:
        return self._call("POST", "/lab/vms", {"name": name, "kind": kind,
                                               "identities": identities or [],
                                               "agent_config": agent_config})

    def vms(self) -> list[dict[str, Any]]:
        return self._call("GET", "/lab/vms")

    def get_vm(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/lab/vms/{name}")

    def restart_vm(self, name: str) -> dict[str, Any]:
        return self._call("POST", f"/lab/vms/{name}/restart")

    def delete_vm(self, name: str) -> None:
        self._call("DELETE", f"/lab/vms/{name}")

    def vm_credential(self, name: str, client_id: str | None = None) -> VmCredential:
        """A credential for identity ``client_id`` of VM ``name`` (its IMDS, as inside it)."""
        return VmCredential(self.endpoints.imds_url(name), client_id, timeout=self.timeout)

    def vtpm(self, name: str) -> SoftwareVTPM:
        """The software vTPM of VM ``name`` (what the guest inside it uses)."""
        return SoftwareVTPM(self.get_vm(name)["directory"])

    def vm_token(self, name: str, nonce: str | None = None, *,
                 authority: str | None = None) -> str:
        """An attestation token obtained by VM ``name`` through the AzureGuest flow."""
        session = requests.Session()
        session.proxies = {"https": self.endpoints.proxy_url}
        session.verify = self.endpoints.ca_bundle
        with session:
            return self.vtpm(name).attest(authority or self.endpoints.attestation_url, nonce,
                                          session=session)

    # -- resource manager ------------------------------------------------------------------
    def ensure_resource_group(self, name: str, location: str,
                              tags: dict[str, str] | None = None) -> dict[str, Any]:
        return self._call("PUT", f"/lab/resourcegroups/{name}",
                          {"location": location, "tags": tags or {}})

    def resource_group(self, name: str) -> dict[str, Any] | None:
        try:
            return self._call("GET", f"/lab/resourcegroups/{name}")
        except LabError as exc:
            if exc.status == 404:
                return None
            raise

    def delete_resource_group(self, name: str) -> str:
        return self._call("DELETE", f"/lab/resourcegroups/{name}")["state"]

    def start_deployment(self, resource_group: str, name: str, module: str,
                         parameters: dict[str, Any]) -> dict[str, Any]:
        return self._call("PUT", f"/lab/resourcegroups/{resource_group}/deployments/{name}",
                          {"module": module, "parameters": parameters})

    def get_deployment(self, resource_group: str, name: str, *, wait: float = 0.0
                       ) -> dict[str, Any]:
        """The deployment; with ``wait``, once it ends or ``wait`` seconds have passed."""
        query = f"?wait={wait:.3f}" if wait > 0 else ""
        return self._call("GET",
                          f"/lab/resourcegroups/{resource_group}/deployments/{name}{query}")

    def set_latency_scale(self, scale: float) -> dict[str, Any]:
        return self._call("PUT", "/lab/latency", {"scale": scale})

    def set_vm_kind(self, vm_name: str, kind: str) -> None:
        self._call("PUT", f"/lab/vm-kinds/{vm_name}", {"kind": kind})

    def set_faults(self, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Replace the fault-injection rules (see :mod:`cotenant.lab.faults`)."""
        return self._call("PUT", "/lab/faults", rules)
