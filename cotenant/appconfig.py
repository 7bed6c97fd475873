"""A party's analytics app configuration (``cotenant.wire.app.AppConfig``) from the plan.

The control plane writes it into the CVM's bootstrap (Azure: the partners' data in their own
storage accounts, read with the VM's managed identity); the lab's ``cotenant up`` writes it
next to the simulated CVM (Azurite containers). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

from cotenant.plan import Plan
from cotenant.wire.app import AppConfig, StorageLocation, parse_app_config

# Where the app keeps its run state on a CVM (systemd StateDirectory=cotenant-analytics).
APP_STATE_DIR = Path("/var/lib/cotenant-analytics")


def plan_storage(plan: Plan) -> dict[str, StorageLocation]:
    """Every party's sealed data file as the plan places it: its own storage account
    (``storage_account_url``), ``data_container``, ``data_blob``; no secret (identities)."""
    return {p.party: StorageLocation(p.storage_account_url, p.data_container, p.data_blob)
            for p in plan.parties}


def app_config_for(
    plan: Plan,
    party: str,
    *,
    data: Mapping[str, StorageLocation],
    state_dir: Path,
    agent_url: str = "http://127.0.0.1:8080",
    identity_client_id: str | None = None,
    ca_bundle: Path | str | None = None,
    reference_date: date | None = None,
) -> AppConfig:
    """The app config of ``party``'s CVM. An aggregator's partners are the other parties
    whose keys its CVM may release (the plan's access matrix) and whose data is given.
    Raises ``cotenant.wire.app.AppConfigError``."""
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
    optional = {"identity_client_id": identity_client_id, "reference_date": reference_date,
                "ca_bundle": str(ca_bundle) if ca_bundle is not None else None}
    config.update({k: v for k, v in optional.items() if v is not None})
    return parse_app_config(config)


def has_app(plan: Plan, party: str) -> bool:
    """Every owner shows its attestation, keys and isolation; an aggregator needs a partner
    whose key it may release (else there is nothing to compute)."""
    me = plan.party(party)
    return me.role == "owner" or any(p != party for p in me.can_release)


def azure_app_config(plan: Plan, party: str, *, identity_client_id: str,
                     agent_url: str = "http://127.0.0.1:8080",
                     ca_bundle: Path | str | None = None) -> AppConfig | None:
    """What a CVM's bootstrap writes (None: the party has no app): the partners' data where
    the plan puts it, read with the VM's user-assigned identity (``identity_client_id``),
    state in ``APP_STATE_DIR``."""
    if not has_app(plan, party):
        return None
    return app_config_for(plan, party, data=plan_storage(plan), state_dir=APP_STATE_DIR,
                          agent_url=agent_url, identity_client_id=identity_client_id,
                          ca_bundle=ca_bundle)
