"""The scenario in the lab, checked in headless Chromium.

Three vaults with release-policy keys, per-key release grants (Contoso's key to Contoso and
Woodgrove, Fabrikam's to Fabrikam and Woodgrove), simulated CVMs running the real guest
agent, the data owners' sealed files in their own Azurite containers, and each party's web
app under uvicorn. The page's numbers are compared with values computed here from the
plaintext CSVs.
"""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from tests.workloads.browser import chromium, table_rows, wait_text
from tests.workloads.conftest import REFERENCE
from tests.workloads.expected import expected

pytestmark = [pytest.mark.browser, pytest.mark.azurite, pytest.mark.slow]


def _rows(driver, table_id: str) -> list[list[str]]:
    return table_rows(driver, f"#{table_id}")


def _assert_page_numbers(driver) -> None:
    want = expected(REFERENCE.year)
    counts = {label: int(n) for label, n in _rows(driver, "stat-record_counts")}
    assert counts == want["counts"]
    top = [
        (country, int(n), [(c.rsplit(" (", 1)[0], int(c.rsplit(" (", 1)[1][:-1]))
                           for c in cities.split(", ") if not cities.startswith("—")])
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


def test_woodgrove_page_verifies_and_aggregates_the_partners(lab_apps: dict[str, str]) -> None:
    with chromium() as driver:
        driver.get(lab_apps["woodgrove"] + "/")
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


def test_contoso_page_shows_its_own_key_and_no_analytics(lab_apps: dict[str, str]) -> None:
    with chromium() as driver:
        driver.get(lab_apps["contoso"] + "/")
        assert wait_text(driver, "party-name", lambda t: t == "Contoso")
        _assert_verified(driver)
        keys = wait_text(driver, "keys-status", lambda t: "refused" in t, 60)
        assert keys.startswith("1 of 3 keys released to this VM; 2 refused by their vaults")
        states = {row[1]: row[2] for row in _rows(driver, "key-table")}
        assert states["contoso-secret-key"] == "released"
        assert states["fabrikam-secret-key"].startswith("denied (Forbidden")
        policy = driver.find_element(By.ID, "policies").text  # as Key Vault returned it
        assert "azure-compliant-cvm" in policy and "sevsnpvm" in policy
        assert not driver.find_element(By.ID, "analytics").is_displayed()
        page = driver.page_source
        assert "Lucas Iyer" not in page and '"d":' not in page


def test_isolation_check_shows_key_vaults_refusal(lab_apps: dict[str, str]) -> None:
    with chromium() as driver:
        driver.get(lab_apps["contoso"] + "/")
        driver.find_element(By.ID, "isolation-run").click()
        status = wait_text(driver, "isolation-status",
                           lambda t: t and not t.startswith("asking"), 60)
        assert status.startswith("Isolated: Key Vault refused"), status
        rows = _rows(driver, "isolation-table")
        assert sorted(row[1] for row in rows) == ["fabrikam-secret-key", "woodgrove-secret-key"]
        assert all(row[2].startswith("refused") and row[3].startswith("403 ") for row in rows), rows
