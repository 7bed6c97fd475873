"""The web app's boundaries, served by uvicorn with two workers (no lab needed)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cotenant.azurite import free_port
from cotenant.lab.supervisor import pid_alive
from tests.workloads.browser import chromium, wait_text
from tests.workloads.serving import serve_app
from workloads.analytics.config import AppConfigError, parse_app_config
from workloads.analytics.launch import launch_app, stop_apps

AUTHORITY = "https://sharedneu.neu.attest.azure.net"


def owner_config(tmp: Path) -> dict:
    return {
        "party": "contoso",
        "display_name": "Contoso",
        "role": "owner",
        "agent_url": f"http://127.0.0.1:{free_port()}",  # nothing listens: agent is down
        "attestation_authority": AUTHORITY,
        "state_dir": str(tmp / "state"),
    }


@pytest.fixture(scope="module")
def owner_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("owner")
    with serve_app(owner_config(tmp), tmp) as url:
        yield url


def test_page_is_served_with_a_strict_content_security_policy(owner_app: str) -> None:
    response = httpx.get(owner_app + "/")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert httpx.get(owner_app + "/static/app.js").status_code == 200


def test_info_names_the_party(owner_app: str) -> None:
    info = httpx.get(owner_app + "/api/info").json()
    assert info == {"party": "contoso", "display_name": "Contoso", "role": "owner",
                    "partners": [], "k": 5}


@pytest.mark.parametrize("path", ["/api/keys", "/api/attestation", "/api/isolation"])
def test_agent_outage_is_a_json_error_without_internals(owner_app: str, path: str) -> None:
    response = httpx.get(owner_app + path)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] in ("AgentError", "AttestationUnavailable")
    assert "Traceback" not in response.text and "127.0.0.1" not in response.text


def test_owner_has_no_analytics(owner_app: str) -> None:
    for path in ("/api/analytics", "/api/analytics/events"):
        response = httpx.get(owner_app + path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "NotFound"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_only_get_is_accepted(owner_app: str, method: str) -> None:
    response = httpx.request(method, owner_app + "/api/keys", json={"vault": "https://x"})
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "MethodNotAllowed"


def test_caller_supplied_urls_and_keys_are_ignored(owner_app: str) -> None:
    # No route reads parameters: a caller cannot steer the agent to another vault or key.
    query = {"vault": "https://evil.example.com", "kid": "https://evil.example.com/keys/x",
             "url": "https://evil.example.com/data.sealed"}
    for path in ("/api/keys", "/api/attestation", "/api/isolation"):
        response = httpx.get(owner_app + path, params=query)
        assert "evil.example.com" not in response.text


def test_unknown_routes_are_json_404(owner_app: str) -> None:
    for path in ("/decrypt", "/key/release", "/api/records"):
        response = httpx.get(owner_app + path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "NotFound"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"agent_url": "http://10.0.1.5:8080"}, "loopback"),
        ({"attestation_authority": "http://sharedneu.neu.attest.azure.net"}, "https"),
        ({"role": "aggregator"}, "at least one partner"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_config_is_validated(tmp_path: Path, change: dict, problem: str) -> None:
    with pytest.raises(AppConfigError) as caught:
        parse_app_config({**owner_config(tmp_path), **change})
    assert problem in str(caught.value)


def test_config_hides_the_storage_connection_string(tmp_path: Path) -> None:
    data = {**owner_config(tmp_path), "role": "aggregator", "partners": [{
        "name": "contoso", "display_name": "Contoso",
        "key_vault": "https://contoso-kv.vault.azure.net", "key_name": "contoso-secret-key",
        "account_url": "http://127.0.0.1:10000/devstoreaccount1", "container": "contoso-data",
        "blob": "contoso-data.csv.sealed", "connection_string": "AccountKey=s3cr3t",
    }]}
    config = parse_app_config(data)
    assert "s3cr3t" not in repr(config) and "s3cr3t" not in config.model_dump_json()


@pytest.mark.browser
def test_page_in_chromium_reports_an_unverified_attestation_honestly(owner_app: str) -> None:
    with chromium() as driver:
        driver.get(owner_app + "/")
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


def test_stop_apps_stops_launched_apps_and_never_a_recycled_pid(tmp_path: Path) -> None:
    app = launch_app(parse_app_config(owner_config(tmp_path / "a")), tmp_path / "a",
                     workers=1)
    stale = tmp_path / "b"
    stale.mkdir()
    (stale / "app.pid").write_text(str(os.getpid()))  # alive, but not an analytics app
    assert stop_apps(tmp_path) == 1
    assert not pid_alive(app.pid) or not Path(f"/proc/{app.pid}/cmdline").read_bytes()
    assert not (stale / "app.pid").exists()
    with pytest.raises(httpx.HTTPError):
        httpx.get(app.url + "/api/info", timeout=2)
