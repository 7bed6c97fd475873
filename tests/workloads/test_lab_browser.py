"""The scenario in the lab, checked in headless Chromium.

Three vaults with release-policy keys, per-key release grants (Contoso's key to Contoso and
Woodgrove, Fabrikam's to Fabrikam and Woodgrove), simulated CVMs running the real guest
agent, the data owners' sealed files in their own Azurite containers, and each party's web
app under uvicorn. The page's numbers are compared with values computed here from the
plaintext CSVs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import date

import pytest
from selenium.webdriver.common.by import By

from cotenant.azurite import Azurite
from cotenant.crypto.wrapping import PublicKeyWrapper
from tests.guest_agent.lab_world import lab_authority
from tests.workloads.browser import chromium, table_rows, wait_text
from tests.workloads.conftest import LabScenario
from tests.workloads.expected import expected
from tests.workloads.scenario import partner_entry, party_csv, publish, seal_file
from tests.workloads.serving import serve_app, write_config

pytestmark = [pytest.mark.browser, pytest.mark.azurite, pytest.mark.slow]

REFERENCE = date(2026, 11, 27)
OWNERS = ("contoso", "fabrikam")


@pytest.fixture(scope="module")
def scenario(
    lab_scenario: LabScenario, azurite: Azurite, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("scenario")
    world, lab = lab_scenario.world, lab_scenario.lab
    with lab.activate(), contextlib.ExitStack() as stack:
        partners = []
        for party in OWNERS:  # the data owners' step, on their own machines
            key_id, public = world.public_key(party)
            sealed = seal_file(party_csv(party), key_id, PublicKeyWrapper(public))
            container, blob = publish(azurite, party, sealed)
            partners.append(partner_entry(azurite, party, world.vaults[party],
                                          world.keys[party], container, blob))
        urls = {}
        for party in lab_scenario.agents:
            app = {
                "party": party, "display_name": party.capitalize(),
                "role": "aggregator" if party == "woodgrove" else "owner",
                "agent_url": lab_scenario.agent_url(party),
                "attestation_authority": lab_authority(),
                "ca_bundle": lab.client.endpoints.ca_bundle,
                "state_dir": str(tmp / party), "reference_date": REFERENCE,
                "partners": partners if party == "woodgrove" else [],
            }
            config = write_config(tmp / f"{party}.toml", app)
            workers = 2 if party == "woodgrove" else 1  # Woodgrove: one run across workers
            urls[party] = stack.enter_context(serve_app(config, workers=workers))
        yield urls


def _rows(driver, table_id: str) -> list[list[str]]:
    return table_rows(driver, f"#{table_id}")


def _assert_page_numbers(driver) -> None:
    want = expected(REFERENCE.year)
    counts = {label: int(n) for label, n in _rows(driver, "stat-record_counts")}
    assert counts == want["counts"]
    top = [
        (country, int(n), [(c.rsplit(" (", 1)[0], int(c.rsplit(" (", 1)[1][:-1]))
                           for c in cities.split(", ") if c])
        for country, n, cities in _rows(driver, "stat-top_countries")
    ]
    assert top == want["top_countries"]
    generations = {label: int(n) for label, n, _ in _rows(driver, "stat-generations")}
    assert generations == want["generations"]
    salary = {label: float(avg)
              for label, _, avg in _rows(driver, "stat-average_salary_by_country")}
    assert salary.keys() == want["salary_by_country"].keys()
    for country, mean in want["salary_by_country"].items():
        assert abs(salary[country] - mean) <= 0.01
    by_party = {label: float(avg)
                for label, _, avg in _rows(driver, "stat-average_salary_by_party")}
    assert abs(by_party["All parties"] - want["salary_combined"]) <= 0.01
    for party, mean in want["salary_by_party"].items():
        assert abs(by_party[party] - mean) <= 0.01
    eyes = [(label, int(n)) for label, n in _rows(driver, "stat-eye_colors")]
    assert eyes == want["eye_colors"]
    favorites = [(label, int(n)) for label, n in _rows(driver, "stat-favorite_colors")]
    assert favorites == want["favorite_colors"]


def _assert_verified(driver) -> None:
    status = wait_text(driver, "attestation-status", lambda t: "checking" not in t, 60)
    assert status.startswith("Verified by this app"), status
    claims = {row[0]: row[1] for row in _rows(driver, "claims")}
    assert claims["Hardware isolation"] == "sevsnpvm"
    assert claims["Compliance"] == "azure-compliant-cvm"
    assert claims["Debuggable"] == "no"


def test_woodgrove_page_verifies_and_aggregates_the_partners(scenario: dict[str, str]) -> None:
    with chromium() as driver:
        driver.get(scenario["woodgrove"] + "/")
        assert wait_text(driver, "party-name", lambda t: t == "Woodgrove")
        _assert_verified(driver)
        status = wait_text(driver, "analytics-status",
                           lambda t: t.startswith(("Aggregates ready", "Analytics failed")), 120)
        assert status == "Aggregates ready", status
        progress = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#progress li")]
        assert any("Contoso's key released" in line for line in progress)
        assert any("Fabrikam: 250 records decrypted" in line for line in progress)
        _assert_page_numbers(driver)
        keys = wait_text(driver, "keys-status", lambda t: t.startswith("3 of"), 60)
        assert keys == "3 of 3 keys released to this VM"


def test_contoso_page_shows_its_own_key_and_no_analytics(scenario: dict[str, str]) -> None:
    with chromium() as driver:
        driver.get(scenario["contoso"] + "/")
        assert wait_text(driver, "party-name", lambda t: t == "Contoso")
        _assert_verified(driver)
        keys = wait_text(driver, "keys-status", lambda t: t.startswith("1 of"), 60)
        assert keys == "1 of 1 keys released to this VM"
        [row] = _rows(driver, "key-table")
        assert row[1] == "contoso-secret-key" and row[2] == "released"
        policy = driver.find_element(By.ID, "policies").text  # as Key Vault returned it
        assert "azure-compliant-cvm" in policy and "sevsnpvm" in policy
        assert not driver.find_element(By.ID, "analytics").is_displayed()
        page = driver.page_source
        assert "Lucas Iyer" not in page and '"d":' not in page


def test_isolation_check_shows_key_vaults_refusal(scenario: dict[str, str]) -> None:
    with chromium() as driver:
        driver.get(scenario["contoso"] + "/")
        driver.find_element(By.ID, "isolation-run").click()
        status = wait_text(driver, "isolation-status",
                           lambda t: t and not t.startswith("asking"), 60)
        assert status.startswith("Isolated: Key Vault refused"), status
        rows = _rows(driver, "isolation-table")
        assert sorted(row[1] for row in rows) == ["fabrikam-secret-key", "woodgrove-secret-key"]
        assert all(row[2] == "refused" and row[3].startswith("403 ") for row in rows), rows
