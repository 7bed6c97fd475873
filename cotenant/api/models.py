"""Request and response models of the control plane's HTTP API (the OpenAPI document's
schemas come from these)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProblemItem(_Model):
    path: str
    message: str


class ErrorDetail(_Model):
    code: str
    message: str
    problems: list[ProblemItem] | None = None


class ErrorResponse(_Model):
    error: ErrorDetail


class Links(_Model):
    status: str
    audit: str | None = None
    rotate: str | None = None
    delete: str | None = None


class Accepted(_Model):
    """A deployment, teardown or rotation that was started (or already exists)."""

    tenant: str
    operation: Literal["deploy", "teardown", "rotate"]
    instance_id: str
    outcome: Literal["started", "existing", "restarted"]
    runtime_status: str
    links: Links


class PhaseEntry(_Model):
    state: Literal["pending", "running", "succeeded", "failed"]
    started: str | None = None
    ended: str | None = None
    seconds: float | None = None
    error: str | None = None


class ReleaseOutcome(_Model):
    outcome: Literal["released", "refused", "failed", "missing"]
    version: str | None = None
    code: str | None = None
    message: str | None = None
    at: str | None = None


class DebugCredentials(_Model):
    username: str
    password: str
    notice: str


class PartyStatus(_Model):
    name: str
    state: str
    vm: str | None = None
    identity: str | None = None
    vault: str | None = None
    app_key: str | None = None
    key_version: str | None = None
    grants_on_key: list[str] = Field(default_factory=list,
                                     description="parties whose identity may release this key")
    cvm: str = "pending"
    bootstrap: str = "pending"
    storage_account: str | None = Field(
        default=None, description="the party's own storage account for its sealed data")
    data_container: str | None = None
    data: str = Field(default="pending", description="state of the party's data phase "
                      "(storage account, container and read grants)")
    attested: bool = False
    attestation: dict[str, Any] | None = None
    releases: dict[str, ReleaseOutcome] = Field(
        default_factory=dict, description="key owner → outcome of this VM's release attempt")
    debug_credentials: DebugCredentials | None = Field(
        default=None, description="only for tenants whose spec enables debug mode")


class TrustCell(_Model):
    key_owner: str
    key: str
    party: str
    vm: str
    expected: Literal["release", "refuse"]
    granted: bool
    outcome: Literal["released", "refused", "failed", "missing"]
    version: str | None = None
    refusal: str | None = None
    verified: bool


class PhaseError(_Model):
    phase: str
    message: str


class Operation(_Model):
    instance_id: str
    runtime_status: str
    phase: str | None = None
    output: Any = None
    errors: list[PhaseError] = Field(default_factory=list)


class TenantStatus(_Model):
    name: str
    runtime_status: str
    phase: str
    created: str | None = None
    updated: str | None = None
    resource_group: str | None = None
    debug: bool = False
    notice: str | None = Field(default=None, description="debug mode notice, when enabled")
    critical_path_seconds: float | None = None
    parties: list[PartyStatus] = Field(default_factory=list)
    timeline: dict[str, PhaseEntry] = Field(default_factory=dict)
    trust_matrix: list[TrustCell] | None = None
    errors: list[PhaseError] = Field(default_factory=list)
    teardown: Operation | None = None
    rotations: list[Operation] = Field(default_factory=list)


class TenantSummary(_Model):
    name: str
    runtime_status: str
    phase: str
    created: str | None = None
    updated: str | None = None


class TenantList(_Model):
    tenants: list[TenantSummary]


class AuditEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    kind: str
    at: str


class AuditLogResponse(_Model):
    tenant: str
    events: list[AuditEvent]
