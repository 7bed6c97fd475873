"""Woodgrove's aggregation end to end through a real guest agent API and Azurite blobs.

The only stand-in is the agent's TEE edge: the partners' keys are put into the agent's key
store as if Key Vault had released them (the lab tests cover the real release). Everything
else is real: the sealed files in the partners' own containers, the agent's streaming
decryption, the app under uvicorn with two workers, and the aggregates.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from rich.console import Console

from cotenant.azurite import Azurite, free_port
from cotenant.crypto.skr import ReleasedKey
from cotenant.crypto.wrapping import PublicKeyWrapper
from guest_agent.agent import Agent
from guest_agent.backends import AttestationError
from tests.guest_agent.helpers import make_config, served
from tests.workloads.expected import assert_report_matches
from tests.workloads.scenario import partner_entry, party_csv, publish, seal_file
from tests.workloads.serving import serve_app, write_config
from workloads.analytics.summary import AnalyticsUnavailable, fetch_report, render_report

pytestmark = pytest.mark.azurite

REFERENCE = date(2026, 11, 27)
AUTHORITY = "https://sharedneu.neu.attest.azure.net"
VAULTS = {p: f"https://acme-{p}-kv.vault.azure.net" for p in ("contoso", "fabrikam")}


class NoTee:
    """The TEE edge: this test never attests (keys are placed in the store directly)."""

    name = "none"

    def attest(self, nonce: str) -> str:
        raise AttestationError("no TEE in this test")

    def decrypt(self, ciphertext: bytes, padding: object) -> bytes:
        raise AttestationError("no TEE in this test")

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def woodgrove(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("woodgrove")
    keys = {p: rsa.generate_private_key(public_exponent=65537, key_size=2048) for p in VAULTS}
    partners = []
    for party, key in keys.items():
        key_id = f"{VAULTS[party]}/keys/{party}-secret-key/v1"
        sealed = seal_file(party_csv(party), key_id, PublicKeyWrapper(key.public_key()))
        container, blob = publish(azurite, party, sealed)
        partners.append(partner_entry(azurite, party, VAULTS[party], f"{party}-secret-key",
                                      container, blob))
    agent_config = make_config(
        azurite, party="woodgrove", vm_name="acme-woodgrove-vm",
        keys=[{"vault_url": VAULTS[p], "name": f"{p}-secret-key"} for p in VAULTS],
    )
    agent = Agent.from_config(agent_config, backend=NoTee())
    for party, key in keys.items():
        ref = agent_config.find_key(VAULTS[party].removeprefix("https://"), f"{party}-secret-key")
        assert ref is not None
        agent.keys.put(ref, ReleasedKey(
            kid=f"{VAULTS[party]}/keys/{party}-secret-key/v1", version="v1", kty="RSA",
            key=key, release_policy=None, attributes={},
        ))
    app_config = {
        "party": "woodgrove", "display_name": "Woodgrove", "role": "aggregator",
        "attestation_authority": AUTHORITY, "state_dir": str(tmp / "state"),
        "reference_date": REFERENCE, "partners": partners,
    }
    try:
        with served(agent) as agent_url:
            app_config["agent_url"] = agent_url
            with serve_app(write_config(tmp / "app.toml", app_config), workers=2) as url:
                yield {"url": url, "state": tmp / "state"}
    finally:
        agent.close()


def _wait_report(url: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = httpx.get(url + "/api/analytics")
        if response.status_code == 200:
            return response.json()
        assert response.json()["error"]["code"] == "NotReady", response.text
        time.sleep(0.3)
    raise AssertionError("the aggregation did not finish")


def test_aggregates_match_the_independent_computation(woodgrove: dict) -> None:
    assert_report_matches(_wait_report(woodgrove["url"]), REFERENCE.year)


def test_progress_is_streamed_and_the_run_happened_once(woodgrove: dict) -> None:
    _wait_report(woodgrove["url"])
    events = []
    with httpx.stream("GET", woodgrove["url"] + "/api/analytics/events", timeout=30) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    steps = [e["step"] for e in events]
    assert steps[0] == "start" and steps[-1] == "done" and steps.count("start") == 1
    assert steps.count("decrypt") == 4  # two partners: decrypting, decrypted
    assert "Contoso: 250 records decrypted in memory" in [e["message"] for e in events]


def test_no_plaintext_or_key_material_on_disk_or_in_responses(woodgrove: dict) -> None:
    _wait_report(woodgrove["url"])
    first_row = party_csv("contoso").read_text(encoding="utf-8").splitlines()[1].split(",")
    name, phone, address = first_row[0], first_row[1], first_row[6]
    for path in Path(woodgrove["state"]).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for value in (name, phone, address):
                assert value.encode() not in data, path
    for route in ("/api/analytics", "/api/keys", "/api/info"):
        text = httpx.get(woodgrove["url"] + route).text
        assert name not in text and phone not in text and "PRIVATE" not in text
        assert '"d":' not in text  # no private JWK member


def test_summary_for_cotenant_up_fetches_and_prints_the_aggregates(woodgrove: dict) -> None:
    report = fetch_report(woodgrove["url"], timeout=60, poll=0.3)
    assert_report_matches(report, REFERENCE.year)
    console = Console(record=True, width=140)
    render_report(report, console)
    text = console.export_text()
    assert "All parties" in text and "Gen X" in text and "withheld" in text
    assert "Lucas Iyer" not in text


def test_summary_reports_an_unreachable_app_in_one_line() -> None:
    with pytest.raises(AnalyticsUnavailable) as caught:
        fetch_report(f"http://127.0.0.1:{free_port()}", timeout=1)
    assert "\n" not in str(caught.value)
