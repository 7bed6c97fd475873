"""The analytics app's configuration schema: one TOML file per party, written at deployment
by the control plane (the CVM's bootstrap) or the lab (``cotenant up``) and read by the app
(``workloads.analytics.config`` adds reading the file). Pure: shared by both sides.

Every URL the app ever contacts comes from here (the local guest agent, the attestation
authority, the partners' storage); no route takes a URL, vault or key from a caller.

Example (Woodgrove, the aggregator)::

    party = "woodgrove"
    display_name = "Woodgrove"
    role = "aggregator"
    agent_url = "http://127.0.0.1:8080"
    attestation_authority = "https://sharedneu.neu.attest.azure.net"
    state_dir = "/var/lib/cotenant-analytics"
    identity_client_id = "…"                  # Azure: the VM's user-assigned identity
    # ca_bundle = "/etc/cotenant/lab-ca.pem"   # lab only; absent = system roots
    # reference_date = "2026-11-27"           # birth years = this year - age; absent = today

    [[partners]]
    name = "contoso"
    display_name = "Contoso"
    key_vault = "https://acme-contoso-kv.vault.azure.net"
    key_name = "contoso-secret-key"
    account_url = "https://acmecontoso.blob.core.windows.net"
    container = "contoso-data"
    blob = "contoso-data.csv.sealed"
    # connection_string = "..."  # lab (Azurite) only; Azure uses the VM's managed identity
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import tomli_w
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{1,30}$")]
Label = Annotated[str, StringConstraints(min_length=1, max_length=60)]
StorageName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9.-]{1,250}$")]
ClientId = Annotated[str, StringConstraints(
    pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]


class AppConfigError(ValueError):
    """The configuration is missing or invalid; ``problems`` has one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class StorageLocation:
    """A party's sealed data file in the party's own storage (account, container, blob)."""

    account_url: str
    container: str
    blob: str
    connection_string: str | None = None  # lab (Azurite) only; Azure uses identities


def _http_origin(url: str, *, https_only: bool) -> str:
    parts = urlsplit(url)
    schemes = ("https",) if https_only else ("https", "http")
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"must be an {' or '.join(schemes)} URL")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("must not carry a query, fragment or credentials")
    return url.rstrip("/")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Partner(_Strict):
    """A data owner whose sealed file this (aggregator) party analyses."""

    name: Name
    display_name: Label
    key_vault: str
    key_name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{1,127}$")]
    account_url: str
    container: StorageName
    blob: StorageName
    connection_string: SecretStr | None = None

    @field_validator("key_vault")
    @classmethod
    def _vault(cls, value: str) -> str:
        return _http_origin(value, https_only=True)

    @field_validator("account_url")
    @classmethod
    def _account(cls, value: str) -> str:
        return _http_origin(value, https_only=False)

    @model_validator(mode="after")
    def _identity_needs_https(self) -> Partner:
        if self.connection_string is None and urlsplit(self.account_url).scheme != "https":
            raise ValueError("account_url must be https when read with the managed identity")
        return self

    @property
    def vault_host(self) -> str:
        return (urlsplit(self.key_vault).hostname or "").lower()

    @property
    def location(self) -> StorageLocation:
        secret = self.connection_string
        return StorageLocation(self.account_url, self.container, self.blob,
                               secret.get_secret_value() if secret is not None else None)


class AppConfig(_Strict):
    party: Name
    display_name: Label
    role: Literal["owner", "aggregator"]
    agent_url: str = "http://127.0.0.1:8080"
    attestation_authority: str
    state_dir: Path
    identity_client_id: ClientId | None = None
    ca_bundle: Path | None = None
    reference_date: date | None = None
    k: int = Field(default=5, ge=2, le=1000)
    partners: list[Partner] = []

    @field_validator("agent_url")
    @classmethod
    def _agent(cls, value: str) -> str:
        url = _http_origin(value, https_only=False)
        if urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the guest agent's API is on loopback only")
        return url

    @field_validator("attestation_authority")
    @classmethod
    def _authority(cls, value: str) -> str:
        return _http_origin(value, https_only=True)

    @model_validator(mode="after")
    def _partners_match_role(self) -> AppConfig:
        if self.role == "aggregator" and not self.partners:
            raise ValueError("an aggregator needs at least one partner")
        if self.role == "owner" and self.partners:
            raise ValueError("only the aggregator has partners")
        names = [partner.name for partner in self.partners]
        if len(set(names)) != len(names):
            raise ValueError("partner names must be unique")
        return self

    def to_toml(self) -> str:
        """The TOML file the app reads (contains the lab connection string, if any: write it
        with owner-only permissions)."""
        data = self.model_dump(mode="json", exclude_none=True)
        for partner, original in zip(data.get("partners", []), self.partners, strict=True):
            if original.connection_string is not None:
                partner["connection_string"] = original.connection_string.get_secret_value()
        return tomli_w.dumps(data)


def parse_app_config(data: dict) -> AppConfig:
    try:
        return AppConfig.model_validate(data)
    except ValidationError as exc:
        raise AppConfigError(
            [
                f"{'.'.join(str(p) for p in error['loc']) or '(top)'}: {error['msg']}"
                for error in exc.errors(include_input=False, include_url=False)
            ]
        ) from None
