"""Fetch a partner's sealed file from the partner's own storage (never from a caller's URL).

In the lab the partner's Azurite container (connection string from the config); in Azure the
partner's storage account, read with this VM's managed identity (``identity_client_id`` of
the config: the party's user-assigned identity; the partner granted it read access).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, BinaryIO, cast

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.identity import ManagedIdentityCredential
from azure.storage.blob import BlobClient, ContainerClient

from cotenant.wire.app import AppConfig, Partner, StorageLocation
from workloads.analytics.pipeline import OpenBlob
from workloads.analytics.runonce import PublicError


@dataclass(frozen=True)
class DataLocation(StorageLocation):
    """A party's sealed data file in the party's own storage, with its storage clients."""

    def container_client(self, credential: Any = None, **options: Any) -> ContainerClient:
        """``options``: azure-core client options (e.g. ``transport``)."""
        if self.connection_string is not None:
            return ContainerClient.from_connection_string(self.connection_string,
                                                          self.container, **options)
        return ContainerClient(self.account_url, self.container, credential=credential,
                               **options)

    def client(self, credential: Any = None, **options: Any) -> BlobClient:
        return self.container_client(credential, **options).get_blob_client(self.blob)


def managed_identity(config: AppConfig) -> TokenCredential:
    """This VM's managed identity (the party's user-assigned one when the config names it)."""
    if config.identity_client_id is None:
        return ManagedIdentityCredential()
    return ManagedIdentityCredential(client_id=config.identity_client_id)


def open_sealed_blob(partner: Partner, credential: TokenCredential | None = None,
                     **options: Any) -> BinaryIO:
    """A readable stream of the sealed file (downloaded in chunks as it is read).
    ``credential`` is used when the partner has no (lab) connection string."""
    location = DataLocation(**asdict(partner.location))
    if location.connection_string is None and credential is None:
        raise PublicError(f"no identity to read {partner.display_name}'s storage with")
    try:
        return cast(BinaryIO, location.client(credential, **options)
                    .download_blob(max_concurrency=1))
    except ResourceNotFoundError:
        raise PublicError(
            f"{partner.display_name}'s sealed file was not found in its storage"
        ) from None
    except ClientAuthenticationError as exc:  # no token from IMDS, or storage refused it
        status = f" ({exc.status_code})" if exc.status_code else ""
        raise PublicError(
            f"this VM's identity could not read {partner.display_name}'s storage{status}"
        ) from None
    except HttpResponseError as exc:
        raise PublicError(
            f"{partner.display_name}'s storage refused the download ({exc.status_code})"
        ) from None
    except AzureError as exc:
        raise PublicError(
            f"{partner.display_name}'s storage could not be reached ({exc.__class__.__name__})"
        ) from None


def sealed_blob_opener(config: AppConfig, **options: Any) -> OpenBlob:
    """How the aggregation opens each partner's file: one managed-identity credential for
    the run (tokens cached by it), created only if some partner is read with an identity.
    ``options``: azure-core client options for the storage clients."""
    needs_identity = any(p.connection_string is None for p in config.partners)
    credential = managed_identity(config) if needs_identity else None

    def open_blob(partner: Partner) -> BinaryIO:
        return open_sealed_blob(partner, credential, **options)

    return open_blob
