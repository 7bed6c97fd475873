"""Run-time inputs of the "data" module (a party's own storage for its sealed data file)."""

from __future__ import annotations

from typing import Any

from cotenant.cloud.base import Cloud
from cotenant.deployments import data_readers
from cotenant.plan import Plan


def data_inputs(target: Cloud, plan: Plan, party: str) -> dict[str, Any]:
    """``principal_ids`` of the parties that may read ``party``'s data container (those allowed
    to release its key, the owner excluded), read from their identities like the grants'."""
    readers = {reader: plan.party(reader).identity_name for reader in data_readers(plan, party)}
    found = target.get_identities(plan.resource_group, readers.values())
    return {"principal_ids": {reader: found[name].principal_id
                              for reader, name in readers.items()}}
