"""Fetch a partner's sealed file from the partner's own storage (never from a caller's URL)."""

from __future__ import annotations

from typing import BinaryIO, cast

from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
from azure.identity import ManagedIdentityCredential
from azure.storage.blob import BlobClient

from workloads.analytics.config import Partner
from workloads.analytics.deploy import DataLocation
from workloads.analytics.runonce import PublicError


def blob_client(partner: Partner) -> BlobClient:
    """In the lab the partner's Azurite container (connection string from the config); in
    Azure the partner's storage account, read with this VM's managed identity."""
    secret = partner.connection_string
    location = DataLocation(partner.account_url, partner.container, partner.blob,
                            secret.get_secret_value() if secret is not None else None)
    return location.client(None if secret is not None else ManagedIdentityCredential())


def open_sealed_blob(partner: Partner) -> BinaryIO:
    """A readable stream of the sealed file (downloaded in chunks as it is read)."""
    try:
        return cast(BinaryIO, blob_client(partner).download_blob(max_concurrency=1))
    except ResourceNotFoundError:
        raise PublicError(
            f"{partner.display_name}'s sealed file was not found in its storage"
        ) from None
    except HttpResponseError as exc:
        raise PublicError(
            f"{partner.display_name}'s storage refused the download ({exc.status_code})"
        ) from None
    except AzureError as exc:
        raise PublicError(
            f"{partner.display_name}'s storage could not be reached ({exc.__class__.__name__})"
        ) from None
