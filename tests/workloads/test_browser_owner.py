"""The page in headless Chromium, for a data owner whose guest agent is down (no lab)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.workloads.browser import chromium, wait_text
from tests.workloads.serving import serve_app, write_config
from tests.workloads.test_app_boundaries import owner_config

pytestmark = pytest.mark.browser


def test_page_renders_and_reports_an_unverified_attestation_honestly(tmp_path: Path) -> None:
    config = write_config(tmp_path / "app.toml", owner_config(tmp_path))
    with serve_app(config, workers=1) as url, chromium() as driver:
        driver.get(url + "/")
        assert wait_text(driver, "party-name", lambda t: t == "Contoso")
        status = wait_text(driver, "attestation-status", lambda t: "checking" not in t)
        assert status.startswith("Not verified")
        assert "bad" in driver.find_element("id", "attestation-status").get_attribute("class")
        keys = wait_text(driver, "keys-status", lambda t: "loading" not in t)
        assert keys.startswith("Key status unavailable")
        assert not driver.find_element("id", "analytics").is_displayed()
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"
                  and "/api/" not in e["message"]]
        assert errors == []  # no CSP violations or script errors
