"""The analytics app's configuration derived from the reference deployment plan."""

from __future__ import annotations

import tomllib
from pathlib import Path

from cotenant.plan import build_plan
from cotenant.spec import load_spec
from workloads.analytics.config import parse_app_config
from workloads.analytics.deploy import app_config_for, app_config_toml, data_location

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "three-party.yaml"


def _plan():
    return build_plan(load_spec(EXAMPLE))


def _data(plan, secret: str | None = None):
    return {p.party: data_location(p.party, f"https://{p.party}.blob.core.windows.net",
                                   connection_string=secret)
            for p in plan.parties if p.role == "owner"}


def test_aggregator_gets_exactly_the_partners_the_access_matrix_allows(tmp_path: Path) -> None:
    plan = _plan()
    [aggregator] = [p for p in plan.parties if p.role == "aggregator"]
    config = app_config_for(plan, aggregator.party, data=_data(plan), state_dir=tmp_path)
    assert config.role == "aggregator"
    assert config.attestation_authority == plan.authority.rstrip("/")
    partners = {p.name: p for p in config.partners}
    expected = {p.party for p in plan.parties
                if p.party != aggregator.party and p.party in aggregator.can_release
                and p.role == "owner"}
    assert set(partners) == expected and expected
    for name, partner in partners.items():
        owner = plan.party(name)
        assert partner.key_vault == owner.vault_uri.rstrip("/")
        assert partner.key_name == owner.app_key_name
        assert partner.container == f"{name}-data"


def test_owners_get_no_partners(tmp_path: Path) -> None:
    plan = _plan()
    for party in (p for p in plan.parties if p.role == "owner"):
        config = app_config_for(plan, party.party, data=_data(plan), state_dir=tmp_path)
        assert config.role == "owner" and config.partners == []


def test_toml_round_trips_and_keeps_the_lab_connection_string(tmp_path: Path) -> None:
    plan = _plan()
    [aggregator] = [p for p in plan.parties if p.role == "aggregator"]
    config = app_config_for(plan, aggregator.party, data=_data(plan, "AccountKey=abc"),
                            state_dir=tmp_path)
    text = app_config_toml(config)
    again = parse_app_config(tomllib.loads(text))
    assert again == config
    assert all(p.connection_string.get_secret_value() == "AccountKey=abc"
               for p in again.partners)
