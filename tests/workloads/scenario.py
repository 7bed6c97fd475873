"""The reference scenario's data owners: seal their CSVs and publish them to their storage."""

from __future__ import annotations

import io
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from cotenant.azurite import Azurite
from cotenant.crypto.envelope import seal
from cotenant.crypto.wrapping import KeyWrapper
from tests.workloads.expected import PARTIES
from workloads.analytics.deploy import data_location, publish_sealed


def seal_file(path: Path, key_id: str, wrapper: KeyWrapper) -> bytes:
    """The data owner's step, on the owner's machine: a sealed copy (in memory here)."""
    sink = io.BytesIO()
    with path.open("rb") as source:
        seal(source, sink, key_id=key_id, wrapper=wrapper, content_type="text/csv")
    return sink.getvalue()


def publish(azurite: Azurite, party: str, sealed: bytes) -> tuple[str, str]:
    """Upload to a container of the party's own (unique per test run)."""
    location = data_location(party, azurite.blob_url, connection_string=azurite.connection_string)
    location = replace(location, container=f"{location.container}-{uuid.uuid4().hex[:8]}")
    publish_sealed(io.BytesIO(sealed), location)
    return location.container, location.blob


def partner_entry(
    azurite: Azurite, party: str, vault: str, key_name: str, container: str, blob: str
) -> dict[str, Any]:
    return {
        "name": party,
        "display_name": party.capitalize(),
        "key_vault": vault,
        "key_name": key_name,
        "account_url": azurite.blob_url,
        "container": container,
        "blob": blob,
        "connection_string": azurite.connection_string,
    }


def party_csv(party: str) -> Path:
    return PARTIES[party.capitalize()]
