"""What the control plane needs to deploy the analytics app and its data (``cotenant up``).

- ``data_location(...)``: where a data owner publishes its sealed file (its own storage);
- ``publish_sealed(...)``: the data owner's upload of an already sealed file;
- ``app_config_for(plan, party, ...)``: the app's configuration for one party's CVM, from the
  deployment plan (vault URLs, key names, roles and the access matrix): ``cotenant.appconfig``,
  shared with the control plane, which writes it into each CVM's bootstrap;
- ``APP_COMMAND``: how the CVM runs the app (behind the gateway port of the party).
"""

from __future__ import annotations

import contextlib
from typing import Any, BinaryIO

from azure.core.exceptions import ResourceExistsError

from cotenant.appconfig import app_config_for
from cotenant.wire.app import AppConfig
from workloads.analytics.storage import DataLocation

__all__ = ["APP_COMMAND", "DataLocation", "app_config_for", "app_config_toml", "data_location",
           "publish_sealed"]

APP_COMMAND = (
    "python", "-m", "workloads.analytics", "--config", "{config}",
    "--host", "0.0.0.0", "--port", "80", "--workers", "2",  # noqa: S104 - behind the NSG/gateway
)


def data_location(
    party: str, account_url: str, *, connection_string: str | None = None
) -> DataLocation:
    """The conventional place of ``party``'s sealed people file in its storage account
    (the plan's ``data_container``/``data_blob``)."""
    return DataLocation(account_url, f"{party}-data", f"{party}-data.csv.sealed",
                        connection_string)


def publish_sealed(source: BinaryIO, location: DataLocation, *, credential: Any = None) -> None:
    """Upload a sealed file (the data owner's step; the plaintext never leaves its machine)."""
    container = location.container_client(credential)
    with contextlib.suppress(ResourceExistsError):
        container.create_container()
    container.get_blob_client(location.blob).upload_blob(source, overwrite=True)


def app_config_toml(config: AppConfig) -> str:
    """The config as the TOML file the CVM's app reads (contains the lab connection string,
    if any: write it with owner-only permissions)."""
    return config.to_toml()
