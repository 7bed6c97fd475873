"""The lab's persistent state: one JSON document (``state.json``, mode 0600) in the lab directory.

Everything the lab materialises lives here — identities, role assignments, vaults and keys
(with their private material: the file is the lab's HSM), attestation authorities, VMs,
resource groups and deployments — so a restarted lab carries on where it stopped. The
release audit log is a separate append-only JSON-lines file (``audit.jsonl``).

All access goes through :class:`StateStore`: ``with store.edit() as state:`` mutates and
saves atomically under a lock; ``store.read()`` returns the live state for read-only use.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from cotenant.lab.ca import write_private


def new_id() -> str:
    return str(uuid.uuid4())


class Identity(BaseModel):
    """A managed identity (user-assigned, or the lab's operator identity)."""

    name: str
    client_id: str = Field(default_factory=new_id)
    principal_id: str = Field(default_factory=new_id)
    resource_group: str | None = None
    operator: bool = False


class RoleAssignment(BaseModel):
    id: str = Field(default_factory=new_id)
    principal_id: str
    scope: str  # normalised vault URL or key URL (no trailing slash)
    role: str  # built-in role name


class AccessPolicy(BaseModel):
    """A legacy vault access policy entry (key permissions only)."""

    object_id: str
    keys: list[str] = Field(default_factory=list)


class ReleasePolicyDoc(BaseModel):
    content_type: str = "application/json; charset=utf-8"
    data: str  # base64url of the policy JSON, as Key Vault stores it
    immutable: bool = False


class KeyVersion(BaseModel):
    version: str = Field(default_factory=lambda: uuid.uuid4().hex)
    kty: str
    key_size: int | None = None
    key_ops: list[str] = Field(default_factory=list)
    material: str = Field(repr=False)  # PEM (RSA) or hex (oct) — secret
    enabled: bool = True
    exportable: bool = False
    created: int = Field(default_factory=lambda: int(time.time()))
    updated: int = Field(default_factory=lambda: int(time.time()))
    not_before: int | None = None
    expires: int | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    release_policy: ReleasePolicyDoc | None = None


class Key(BaseModel):
    name: str
    versions: list[KeyVersion] = Field(default_factory=list)
    rotation_policy: dict[str, Any] | None = None
    deleted_date: int | None = None
    scheduled_purge_date: int | None = None

    @property
    def latest(self) -> KeyVersion:
        return self.versions[-1]

    def version(self, version: str | None) -> KeyVersion | None:
        if not version:
            return self.latest
        return next((v for v in self.versions if v.version == version), None)


class Vault(BaseModel):
    name: str
    resource_group: str | None = None
    location: str = "lab"
    rbac: bool = True
    access_policies: list[AccessPolicy] = Field(default_factory=list)
    soft_delete_days: int = 90
    purge_protection: bool = True
    keys: dict[str, Key] = Field(default_factory=dict)
    deleted_keys: dict[str, Key] = Field(default_factory=dict)
    # PEM of the key behind the vault's release-signing certificate — secret
    signing_key: str = Field("", repr=False)
    signing_cert: str = ""  # PEM chain (leaf first) — issued by the lab CA for the vault host
    network: dict[str, Any] = Field(default_factory=dict)


class Authority(BaseModel):
    """An attestation authority (one per region host) and its token-signing key."""

    host: str
    signing_key: str = Field(repr=False)  # PEM — secret
    cert: str  # PEM, self-signed like MAA's
    kid: str


class Vm(BaseModel):
    name: str
    kind: str
    resource_group: str | None = None
    location: str = "lab"
    vm_unique_id: str = Field(default_factory=lambda: new_id().upper())
    identities: list[str] = Field(default_factory=list)  # client ids
    hardware_public_key: str = ""  # PEM registered with the attestation service
    status: str = "stopped"  # running | stopped | deallocated
    boots: int = 0
    private_ip: str | None = None
    has_agent_config: bool = False


class ResourceGroup(BaseModel):
    name: str
    location: str
    tags: dict[str, str] = Field(default_factory=dict)
    state: str = "Exists"  # Exists | Deleting
    delete_at: float = 0.0
    resources: dict[str, dict[str, Any]] = Field(default_factory=dict)  # ARM id -> properties


class DeploymentRecord(BaseModel):
    resource_group: str
    name: str
    module: str
    parameters_digest: str
    state: str = "Running"
    error_code: str | None = None
    error: str | None = None
    outputs: dict[str, Any] = Field(default_factory=dict)
    started: float = Field(default_factory=time.time)
    ready_at: float = 0.0
    ended: float | None = None  # when it became Succeeded or Failed (ready_at or later)


class LabState(BaseModel):
    tenant_id: str = Field(default_factory=new_id)
    subscription_id: str = Field(default_factory=new_id)
    identity_signing_key: str = Field("", repr=False)
    identities: dict[str, Identity] = Field(default_factory=dict)  # by client id
    role_assignments: list[RoleAssignment] = Field(default_factory=list)
    vaults: dict[str, Vault] = Field(default_factory=dict)
    authorities: dict[str, Authority] = Field(default_factory=dict)  # by host
    vms: dict[str, Vm] = Field(default_factory=dict)
    resource_groups: dict[str, ResourceGroup] = Field(default_factory=dict)
    deployments: dict[str, DeploymentRecord] = Field(default_factory=dict)  # "rg/name"
    vm_kind_overrides: dict[str, str] = Field(default_factory=dict)  # VM name -> kind

    def operator(self) -> Identity:
        return next(i for i in self.identities.values() if i.operator)

    def identity_by_principal(self, principal_id: str) -> Identity | None:
        return next((i for i in self.identities.values() if i.principal_id == principal_id),
                    None)

    def identity_by_name(self, name: str, resource_group: str | None = None) -> Identity | None:
        return next((i for i in self.identities.values() if i.name == name
                     and (resource_group is None or i.resource_group == resource_group)), None)


class StateStore:
    """Load/save :class:`LabState` at ``directory/state.json``; thread-safe.

    Every edit is saved before ``edit`` returns, unless ``save_delay`` is given: then a
    background thread saves at most every ``save_delay`` seconds what changed (the lab
    server: a ten-party deployment makes hundreds of edits within seconds, and each save
    writes the whole state), and :meth:`flush` saves at once (at shutdown). A killed lab
    loses at most the last ``save_delay`` seconds of changes.
    """

    def __init__(self, directory: Path, *, save_delay: float | None = None) -> None:
        self.directory = directory
        self.path = directory / "state.json"
        self.audit_path = directory / "audit.jsonl"
        self._lock = threading.RLock()
        directory.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self._state = LabState.model_validate_json(self.path.read_text())
        else:
            self._state = LabState()
        self._save_delay = save_delay
        self._dirty = threading.Event()
        if save_delay is not None:
            threading.Thread(target=self._write_behind, name="lab-state-saver",
                             daemon=True).start()

    def read(self) -> LabState:
        return self._state

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    @contextlib.contextmanager
    def edit(self) -> Iterator[LabState]:
        with self._lock:
            yield self._state
            if self._save_delay is None:
                self.save()
            else:
                self._dirty.set()

    def _write_behind(self) -> None:
        assert self._save_delay is not None
        while True:
            self._dirty.wait()
            time.sleep(self._save_delay)
            self.flush()

    def flush(self) -> None:
        """Save now if anything changed since the last save."""
        if self._dirty.is_set():
            self._dirty.clear()  # an edit during the save sets it again
            self.save()

    def save(self) -> None:
        with self._lock:
            tmp = self.path.with_suffix(".tmp")
            write_private(tmp, self._state.model_dump_json().encode())
            os.replace(tmp, self.path)

    def audit(self, record: dict[str, Any]) -> None:
        """Append one release-attempt record to the audit log."""
        line = json.dumps({"time": time.time(), **record}, separators=(",", ":"))
        with self._lock, open(self.audit_path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    def audit_records(self) -> list[dict[str, Any]]:
        if not self.audit_path.exists():
            return []
        with self._lock:
            lines = self.audit_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]
