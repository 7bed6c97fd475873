"""The guest agent's configuration schema: one TOML file the control plane (or the lab) writes
and the agent reads. Pure (no I/O, no environment): shared by both sides;
``guest_agent.config`` adds reading and writing the file.

Example (every field shown; optional ones carry their default)::

    schema_version = 1
    tenant = "acme"
    party = "contoso"
    vm_name = "acme-contoso-vm"
    backend = "lab"                       # "lab" | "tpm"
    allow_private_key_release = false     # sidecar-compatible POST /key/release
    heartbeat_seconds = 300.0

    [orchestration]
    instance = "acme"                     # Durable instance waiting for the report
    nonce = "c2f1…"                       # the challenge to put in the attestation

    [attestation]
    endpoint = "https://sharedneu.neu.attest.azure.net"

    [identity]
    client_id = "00000000-0000-0000-0000-000000000000"
    imds_endpoint = "http://169.254.169.254"

    [[keys]]                              # what this VM may release (own + granted partner keys)
    vault_url = "https://acme-contoso-kv.vault.azure.net"
    name = "contoso-secret-key"

    [[isolation_probes]]                  # keys this VM must NOT get (asked for once at start-up
    vault_url = "https://acme-fabrikam-kv.vault.azure.net"   # and by GET /isolation; the vault's
    name = "fabrikam-secret-key"          # refusal is reported, a release is a security failure)

    [queues]
    reports_url = "https://acct.queue.core.windows.net/guest-reports"
    commands_url = "https://acct.queue.core.windows.net/commands-contoso"
    # connection_string = "…"             # lab/Azurite only; Azure uses the managed identity
    poll_seconds = 2.0

    [api]
    listen = "127.0.0.1:8080"
    force_non_loopback = false

    [tls]
    # ca_bundle = "/path/ca.pem"          # lab CA; absent = system roots
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import tomli_w
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from cotenant.wire.fields import KeyRef, Nonce
from cotenant.wire.fields import origin_only as _origin_only
from cotenant.wire.reports import MAX_OUTCOMES

CONFIG_SCHEMA_VERSION = 1
IMDS_ENV = "AZURE_POD_IDENTITY_AUTHORITY_HOST"

Name = Annotated[str, StringConstraints(min_length=1, max_length=128,
                                        pattern=r"^[A-Za-z0-9._-]+$")]


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or invalid; the message is one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Orchestration(_Strict):
    instance: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    nonce: Nonce


class Attestation(_Strict):
    endpoint: str

    @model_validator(mode="after")
    def _check(self) -> Attestation:
        normal = _origin_only(self.endpoint, schemes=("https",), what="attestation endpoint")
        object.__setattr__(self, "endpoint", normal)
        return self


class Identity(_Strict):
    """``imds_endpoint`` is the IMDS base URL; the environment variable
    ``AZURE_POD_IDENTITY_AUTHORITY_HOST`` (azure-identity's override, set by the lab for a
    simulated VM) takes precedence, see ``AgentConfig.imds_url``."""

    client_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    imds_endpoint: str = "http://169.254.169.254"

    @model_validator(mode="after")
    def _check(self) -> Identity:
        normal = _origin_only(self.imds_endpoint, schemes=("http", "https"),
                              what="imds_endpoint", allow_path=True)
        object.__setattr__(self, "imds_endpoint", normal)
        return self


class Queues(_Strict):
    reports_url: str
    commands_url: str
    connection_string: str | None = Field(default=None, repr=False)
    poll_seconds: float = Field(default=2.0, gt=0, le=60)

    @model_validator(mode="after")
    def _check(self) -> Queues:
        for what, url in (("reports_url", self.reports_url), ("commands_url", self.commands_url)):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{what} must be an http(s) queue URL")
            if parts.query or parts.username:
                raise ValueError(f"{what} must not carry a SAS or credentials")
            if not parts.path.strip("/"):
                raise ValueError(f"{what} must name a queue")
        return self

    @staticmethod
    def queue_name(url: str) -> str:
        return urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]

    @staticmethod
    def account_url(url: str) -> str:
        parts = urlsplit(url)
        path = parts.path.rstrip("/").rsplit("/", 1)[0]
        return f"{parts.scheme}://{parts.netloc}{path}"


class Api(_Strict):
    listen: str = "127.0.0.1:8080"
    force_non_loopback: bool = False

    @property
    def host(self) -> str:
        return _split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return _split_listen(self.listen)[1]

    @model_validator(mode="after")
    def _check(self) -> Api:
        host, _ = _split_listen(self.listen)
        if not self.force_non_loopback and not is_loopback(host):
            raise ValueError(
                f"api.listen {self.listen!r} is not a loopback address; the local API binds "
                "127.0.0.1 only unless api.force_non_loopback = true"
            )
        return self


class Tls(_Strict):
    """Trust for the vault, attestation and release-signing certificates. Without
    ``ca_bundle``: ``REQUESTS_CA_BUNDLE`` / ``SSL_CERT_FILE`` (lab), else the system roots."""

    ca_bundle: Path | None = None

    def resolved_bundle(self, environ: Mapping[str, str]) -> str | None:
        """The CA bundle to use, given the process environment (``os.environ``)."""
        if self.ca_bundle is not None:
            return str(self.ca_bundle)
        for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
            if environ.get(name):
                return environ[name]
        return None


def _split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        raise ValueError(f"api.listen must be host:port, got {listen!r}")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    """True for literal loopback addresses (127.0.0.0/8, ::1); host names are not trusted."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AgentConfig(_Strict):
    """Everything the agent on one VM needs; written by the control plane, read at start.

    ``keys`` is the allow-list: what the agent releases and the local API serves.
    ``isolation_probes`` are the other keys of the tenant: this VM must never obtain them."""

    schema_version: Literal[1] = CONFIG_SCHEMA_VERSION
    tenant: Name
    party: Name
    vm_name: Name
    backend: Literal["lab", "tpm"] = "lab"
    allow_private_key_release: bool = False
    heartbeat_seconds: float = Field(default=300.0, gt=0)
    orchestration: Orchestration
    attestation: Attestation
    identity: Identity
    keys: list[KeyRef] = Field(default_factory=list, max_length=64)
    # The tenant's other keys, which this VM must NOT obtain: the agent asks their vaults for
    # them once at start-up (and on GET /isolation) and reports the refusal; a release is
    # reported as broken isolation and its response discarded unopened. Never served.
    isolation_probes: list[KeyRef] = Field(default_factory=list, max_length=64)
    queues: Queues
    api: Api = Field(default_factory=Api)
    tls: Tls = Field(default_factory=Tls)

    @model_validator(mode="after")
    def _unique_keys(self) -> AgentConfig:
        # One start-up report carries an outcome for each: bounded, and a key is one key
        # whatever the case of its vault host or name (as the report's duplicate check).
        if len(self.keys) + len(self.isolation_probes) > MAX_OUTCOMES:
            raise ValueError(f"at most {MAX_OUTCOMES} keys and isolation_probes together "
                             "(one start-up report carries an outcome for each)")
        seen = [k.label().lower() for k in self.keys]
        probed = [k.label().lower() for k in self.isolation_probes]
        for what, labels in (("keys", seen), ("isolation_probes", probed)):
            dupes = sorted({x for x in labels if labels.count(x) > 1})
            if dupes:
                raise ValueError(f"{what} listed twice: {', '.join(dupes)}")
        overlap = sorted(set(seen) & set(probed))
        if overlap:
            raise ValueError(f"keys both allowed and probed for isolation: {', '.join(overlap)}")
        return self

    def imds_url(self, environ: Mapping[str, str]) -> str:
        """The IMDS base URL, given the process environment (``os.environ``)."""
        override = environ.get(IMDS_ENV)
        if override:
            return _origin_only(override, schemes=("http", "https"), what=IMDS_ENV,
                                allow_path=True)
        return self.identity.imds_endpoint

    def find_key(self, vault: str, name: str) -> KeyRef | None:
        """The allow-listed key with this vault (URL or host) and name, or None."""
        host = urlsplit(vault).netloc if "://" in vault else vault
        for key in self.keys:
            if key.vault_host == host.lower() and key.name == name:
                return key
        return None

    def to_toml(self) -> str:
        data = self.model_dump(mode="json", exclude_none=True)
        return tomli_w.dumps(data)


def parse_config(data: dict[str, Any]) -> AgentConfig:
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()]
        ) from None
