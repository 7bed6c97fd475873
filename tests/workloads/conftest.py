"""Fixtures for the workloads tests: one lab and one scenario world for the whole area."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import pytest

from cotenant.azurite import Azurite
from cotenant.crypto.wrapping import PublicKeyWrapper
from cotenant.lab.supervisor import RunningLab
from cotenant.lab.testing import lab  # noqa: F401  (session fixture)
from guest_agent.config import AgentConfig
from tests.guest_agent.lab_world import World, lab_authority
from tests.workloads.scenario import partner_entry, party_csv, publish, seal_file
from tests.workloads.serving import serve_app

REFERENCE = date(2026, 11, 27)  # birth years = 2026 - age
OWNERS = ("contoso", "fabrikam")

# Which keys each party's VM identity may release (the reference access matrix, minus
# Fabrikam's VM, which these tests do not need).
GRANTS = {"contoso": ["contoso"], "woodgrove": ["contoso", "fabrikam", "woodgrove"]}
# How each VM's agent learns the keys it must NOT get: Contoso's agent lists every key (as the
# control plane configures it; the vaults refuse the others at release), Woodgrove's would
# probe explicitly (``isolation_probes``).
ALLOW_LIST_EVERY_KEY = {"contoso"}


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
    with lab.activate():  # the lab's environment only while setting up
        world = World(lab, azurite, lab_authority()).setup()
        agents = {}
        for party, allowed in GRANTS.items():
            client_id = world.identity(party, allowed)
            others = [{"vault_url": world.vaults[p], "name": world.keys[p]}
                      for p in world.vaults if p not in allowed]
            if party in ALLOW_LIST_EVERY_KEY:
                agents[party] = world.vm(party, "confidential", client_id, list(world.vaults))
            else:
                agents[party] = world.vm(party, "confidential", client_id, allowed,
                                         isolation_probes=others)
    yield LabScenario(lab, world, agents)


@pytest.fixture(scope="session")
def lab_apps(
    lab_scenario: LabScenario, azurite: Azurite, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """The owners' sealed files in their own containers, and each party's web app running
    next to its CVM's agent: party -> base URL (plus "<party>:state" -> its state dir)."""
    tmp = tmp_path_factory.mktemp("apps")
    world, lab_ = lab_scenario.world, lab_scenario.lab
    with contextlib.ExitStack() as stack:
        urls = {}
        with lab_.activate():  # the apps inherit the lab's environment at start
            partners = []
            for party in OWNERS:  # the data owners' step, on their own machines
                key_id, public = world.public_key(party)
                sealed = seal_file(party_csv(party), key_id, PublicKeyWrapper(public))
                container, blob = publish(azurite, party, sealed)
                partners.append(partner_entry(azurite, party, world.vaults[party],
                                              world.keys[party], container, blob))
            for party in lab_scenario.agents:
                app = {
                    "party": party, "display_name": party.capitalize(),
                    "role": "aggregator" if party == "woodgrove" else "owner",
                    "agent_url": lab_scenario.agent_url(party),
                    "attestation_authority": lab_authority(),
                    "ca_bundle": lab_.client.endpoints.ca_bundle,
                    "state_dir": str(tmp / party / "state"), "reference_date": REFERENCE,
                    "partners": partners if party == "woodgrove" else [],
                }
                workers = 2 if party == "woodgrove" else 1  # Woodgrove: one run across workers
                urls[party] = stack.enter_context(serve_app(app, tmp / party, workers=workers))
                urls[f"{party}:state"] = str(tmp / party / "state")
        yield urls
