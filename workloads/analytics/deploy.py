"""What the control plane needs to deploy the analytics app and its data (``cotenant up``).

- ``data_location(...)``: where a data owner publishes its sealed file (its own storage);
- ``publish_sealed(...)``: the data owner's upload of an already sealed file;
- ``app_config_for(plan, party, ...)``: the app's configuration for one party's CVM, from the
  deployment plan (vault URLs, key names, roles and the access matrix);
- ``APP_COMMAND``: how the CVM runs the app (behind the gateway port of the party).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobClient, ContainerClient

from cotenant.plan import Plan
from workloads.analytics.config import AppConfig, parse_app_config

APP_COMMAND = (
    "python", "-m", "workloads.analytics", "--config", "{config}",
    "--host", "0.0.0.0", "--port", "80", "--workers", "2",  # noqa: S104 - behind the NSG/gateway
)


@dataclass(frozen=True)
class DataLocation:
    """A party's sealed data file in the party's own storage."""

    account_url: str
    container: str
    blob: str
    connection_string: str | None = None  # lab (Azurite) only; Azure uses identities

    def container_client(self, credential: Any = None) -> ContainerClient:
        if self.connection_string is not None:
            return ContainerClient.from_connection_string(self.connection_string, self.container)
        return ContainerClient(self.account_url, self.container, credential=credential)

    def client(self, credential: Any = None) -> BlobClient:
        return self.container_client(credential).get_blob_client(self.blob)


def data_location(
    party: str, account_url: str, *, connection_string: str | None = None
) -> DataLocation:
    """The conventional place of ``party``'s sealed people file in its storage account."""
    return DataLocation(account_url, f"{party}-data", f"{party}-data.csv.sealed",
                        connection_string)


def publish_sealed(source: BinaryIO, location: DataLocation, *, credential: Any = None) -> None:
    """Upload a sealed file (the data owner's step; the plaintext never leaves its machine)."""
    container = location.container_client(credential)
    with contextlib.suppress(ResourceExistsError):
        container.create_container()
    container.get_blob_client(location.blob).upload_blob(source, overwrite=True)


def app_config_for(
    plan: Plan,
    party: str,
    *,
    data: Mapping[str, DataLocation],
    state_dir: Path,
    agent_url: str = "http://127.0.0.1:8080",
    ca_bundle: Path | None = None,
    reference_date: date | None = None,
) -> AppConfig:
    """The app config of ``party``'s CVM. An aggregator's partners are the other parties
    whose keys its CVM may release (the plan's access matrix) and whose data is given."""
    me = plan.party(party)
    partners = []
    if me.role == "aggregator":
        for other in plan.parties:
            if other.party == party or other.party not in me.can_release:
                continue
            if other.party not in data:
                continue
            where = data[other.party]
            partners.append({
                "name": other.party,
                "display_name": other.display_name,
                "key_vault": other.vault_uri,
                "key_name": other.app_key_name,
                "account_url": where.account_url,
                "container": where.container,
                "blob": where.blob,
                **({"connection_string": where.connection_string}
                   if where.connection_string else {}),
            })
    config: dict[str, Any] = {
        "party": me.party,
        "display_name": me.display_name,
        "role": me.role,
        "agent_url": agent_url,
        "attestation_authority": plan.authority,
        "state_dir": str(state_dir),
        "partners": partners,
    }
    if ca_bundle is not None:
        config["ca_bundle"] = str(ca_bundle)
    if reference_date is not None:
        config["reference_date"] = reference_date
    return parse_app_config(config)


def app_config_toml(config: AppConfig) -> str:
    """The config as the TOML file the CVM's app reads (contains the lab connection string,
    if any: write it with owner-only permissions)."""
    import tomli_w

    data = config.model_dump(mode="json", exclude_none=True)
    for partner, original in zip(data.get("partners", []), config.partners, strict=True):
        if original.connection_string is not None:
            partner["connection_string"] = original.connection_string.get_secret_value()
    return tomli_w.dumps(data)
