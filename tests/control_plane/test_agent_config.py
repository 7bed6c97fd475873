"""The guest agent configuration the control plane writes: least privilege per party.

Only the keys the party's CVM is granted (the plan's access matrix) are in the agent's
allow-list; every other key of the tenant is an isolation probe. The cloud is the outermost
edge here: a stand-in answers only the two questions ``agent_config`` asks it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from activities.agent import agent_config
from cotenant.cloud.base import AgentSettings
from cotenant.cloud.settings import LAB_AGENT_INSTALL
from cotenant.lab.client import LabClient
from cotenant.plan import Plan, build_plan
from cotenant.spec import parse_spec
from cotenant.wire.agent_config import AgentConfig, parse_config

REPO = Path(__file__).resolve().parents[2]


class _SettingsOnlyCloud:
    def agent_settings(self) -> AgentSettings:
        return AgentSettings(backend="lab", install=LAB_AGENT_INSTALL,
                             queue_account_url="http://127.0.0.1:10001/devstoreaccount1")

    vault_url = staticmethod(LabClient.vault_url)


@pytest.fixture(scope="module")
def plan() -> Plan:
    return build_plan(parse_spec(yaml.safe_load((REPO / "examples/three-party.yaml").read_text())))


def _config(plan: Plan, party: str) -> AgentConfig:
    return agent_config(_SettingsOnlyCloud(), plan, party,  # type: ignore[arg-type]
                        nonce="n0nce-123456789", instance="demo", client_id="cid")


def _owners(plan: Plan, refs: list) -> list[str]:
    by_key = {(LabClient.vault_url(p.vault_name), p.app_key_name): p.party for p in plan.parties}
    return sorted(by_key[(r.vault_url, r.name)] for r in refs)


def test_the_aggregator_may_release_every_key_and_probes_none(plan: Plan) -> None:
    config = _config(plan, "woodgrove")
    assert _owners(plan, config.keys) == ["contoso", "fabrikam", "woodgrove"]
    assert config.isolation_probes == []


@pytest.mark.parametrize(("party", "others"), [("contoso", ["fabrikam", "woodgrove"]),
                                               ("fabrikam", ["contoso", "woodgrove"])])
def test_an_owner_holds_only_its_key_and_probes_every_other(plan: Plan, party: str,
                                                            others: list[str]) -> None:
    config = _config(plan, party)
    assert _owners(plan, config.keys) == [party]
    assert _owners(plan, config.isolation_probes) == others
    assert config.find_key(config.isolation_probes[0].vault_url,
                           config.isolation_probes[0].name) is None  # never served
    for other in others:
        assert config.find_key(LabClient.vault_url(plan.party(other).vault_name),
                               plan.party(other).app_key_name) is None


def test_allow_list_and_probes_together_cover_the_tenant_once_per_party(plan: Plan) -> None:
    every = sorted(p.party for p in plan.parties)
    for party in plan.parties:
        config = _config(plan, party.party)
        assert _owners(plan, config.keys) == sorted(party.can_release)
        assert sorted(_owners(plan, config.keys) + _owners(plan, config.isolation_probes)) \
            == every
        assert parse_config(_toml_round_trip(config)) == config


def _toml_round_trip(config: AgentConfig) -> dict:
    import tomllib

    return tomllib.loads(config.to_toml())


def test_a_key_cannot_be_both_allowed_and_probed(plan: Plan) -> None:
    data = _config(plan, "contoso").model_dump(mode="json", exclude_none=True)
    data["isolation_probes"].append(data["keys"][0])
    with pytest.raises(ValueError, match="both allowed and probed"):
        parse_config(data)
