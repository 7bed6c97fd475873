"""Fixtures for the workloads tests: one lab holding the reference tenant, as deployed.

``lab_scenario`` materialises the reference plan (examples/three-party.yaml) in the lab the
way a deployment leaves it: per-party vaults and app keys with the plan's release policy,
per-key release grants from the access matrix, and CVMs running the real guest agent.
``lab_apps`` then runs the analytics part of ``cotenant up`` (``workloads.analytics.demo``):
the owners seal and publish their data, every party's app starts next to its agent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from azure.identity import ManagedIdentityCredential

from cotenant.azurite import Azurite, free_port
from cotenant.lab.supervisor import RunningLab
from cotenant.lab.testing import lab  # noqa: F401  (session fixture)
from cotenant.plan import Plan, build_plan
from cotenant.spec import load_spec
from guest_agent.config import AgentConfig
from tests.guest_agent.helpers import config_data, make_config
from tests.guest_agent.lab_world import World
from workloads.analytics.demo import start_demo
from workloads.analytics.launch import stop_apps

REFERENCE = date(2026, 11, 27)  # birth years = 2026 - age
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "three-party.yaml"
# How each VM's agent learns the keys it must NOT get: Contoso's lists every key (the vaults
# refuse the ones not granted, as with the control plane's configs); Fabrikam's probes them
# explicitly (``isolation_probes``); Woodgrove may release every key.
ALLOW_LIST_EVERY_KEY = {"contoso"}


@dataclass
class LabScenario:
    lab: RunningLab
    plan: Plan
    world: World
    agents: dict[str, AgentConfig]  # party -> its VM's agent config

    def agent_url(self, party: str) -> str:
        return f"http://{self.agents[party].api.listen}"


def _agent_config(world: World, azurite: Azurite, plan: Plan, party: str,
                  client_id: str) -> AgentConfig:
    me = plan.party(party)
    every = [p.party for p in plan.parties]
    allowed = every if party in ALLOW_LIST_EVERY_KEY else me.can_release
    probes = [] if party in ALLOW_LIST_EVERY_KEY else [p for p in every if p not in allowed]
    ref = lambda p: {"vault_url": world.vaults[p], "name": world.keys[p]}  # noqa: E731
    return make_config(azurite, **config_data(
        azurite, party=party, vm_name=me.vm_name,
        attestation={"endpoint": plan.authority}, identity={"client_id": client_id},
        keys=[ref(p) for p in allowed], isolation_probes=[ref(p) for p in probes],
        api={"listen": f"127.0.0.1:{free_port()}"},
    ))


@pytest.fixture(scope="session")
def lab_scenario(lab: RunningLab, azurite: Azurite) -> Iterator[LabScenario]:  # noqa: F811
    plan = build_plan(load_spec(EXAMPLE))
    with lab.activate():  # the lab's environment only while setting up
        world = World(lab, azurite, plan.authority)
        world.credential = ManagedIdentityCredential()
        for party in plan.parties:
            world.vaults[party.party] = lab.client.create_vault(party.vault_name)
            world.keys[party.party] = party.app_key_name
            world.new_version(party.party)
        agents = {}
        for party in plan.parties:
            client_id = world.identity(party.party, party.can_release)
            agents[party.party] = config = _agent_config(world, azurite, plan, party.party,
                                                         client_id)
            lab.client.create_vm(party.vm_name, "confidential", identities=[client_id],
                                 agent_config=config.to_toml())
    yield LabScenario(lab, plan, world, agents)


@pytest.fixture(scope="session")
def lab_apps(
    lab_scenario: LabScenario, azurite: Azurite, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """party -> its app's URL (plus ``"<party>:state"`` -> the app's state dir)."""
    root = tmp_path_factory.mktemp("apps")
    apps = start_demo(lab_scenario.plan, lab_scenario.lab.client, root,
                      connection_string=azurite.connection_string, reference_date=REFERENCE,
                      workers={"contoso": 1, "fabrikam": 1, "woodgrove": 2})
    try:
        urls = {name: app.url for name, app in apps.items()}
        urls.update({f"{name}:state": str(app.directory / "state") for name, app in apps.items()})
        yield urls
    finally:
        stop_apps(root)
