"""Fixtures for the workloads tests: one lab and one scenario world for the whole area."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from cotenant.azurite import Azurite
from cotenant.lab.supervisor import RunningLab
from cotenant.lab.testing import lab  # noqa: F401  (session fixture)
from guest_agent.config import AgentConfig
from tests.guest_agent.lab_world import World, lab_authority

# Which keys each party's VM identity may release (the reference access matrix, minus
# Fabrikam's VM, which these tests do not need).
GRANTS = {"contoso": ["contoso"], "woodgrove": ["contoso", "fabrikam", "woodgrove"]}


@dataclass
class LabScenario:
    lab: RunningLab
    world: World
    agents: dict[str, AgentConfig]  # party -> its VM's agent config

    def agent_url(self, party: str) -> str:
        return f"http://{self.agents[party].api.listen}"


@pytest.fixture(scope="session")
def lab_scenario(lab: RunningLab, azurite: Azurite) -> Iterator[LabScenario]:  # noqa: F811
    """Vaults and keys for the three parties, per-key grants, and CVMs running the agent."""
    with lab.activate():
        world = World(lab, azurite, lab_authority()).setup()
        agents = {}
        for party, allowed in GRANTS.items():
            client_id = world.identity(party, allowed)
            probes = [{"vault_url": world.vaults[p], "name": world.keys[p]}
                      for p in world.vaults if p not in allowed]
            agents[party] = world.vm(party, "confidential", client_id, allowed,
                                     isolation_probes=probes)
        yield LabScenario(lab, world, agents)
