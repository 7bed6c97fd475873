"""The real agent on simulated CVMs in the lab, reporting to Azurite.

World: contoso, fabrikam and woodgrove vaults, one key each. The aggregator VM's identity may
release contoso's and fabrikam's keys, not woodgrove's: its allow-list holds the first two and
woodgrove's key is an isolation probe. The "leaky" VM's identity was granted a key wrongly: its
probe is released by the vault, which the agent must report and never keep or serve.
"""

from __future__ import annotations

import io
import json
import os
import time
import uuid
from collections.abc import Iterator

import jsonschema
import pytest
from azure.storage.queue import QueueClient

from cotenant.azurite import Azurite
from cotenant.crypto.envelope import seal
from cotenant.crypto.tokens import TokenVerifier
from cotenant.crypto.wrapping import PublicKeyWrapper
from cotenant.lab.supervisor import RunningLab
from cotenant.wire.reports import KeyOutcome, Report, json_schema
from guest_agent.client import AgentClient, AgentError
from guest_agent.config import AgentConfig
from tests.guest_agent.helpers import queue, wait_reports
from tests.guest_agent.lab_world import (
    World,
    jwk_public,
    lab_authority,
    outcomes_of,
    startup_reports,
    wait_for_api,
)

pytestmark = [pytest.mark.azurite, pytest.mark.slow]


@pytest.fixture(scope="module")
def world(lab: RunningLab, azurite: Azurite) -> Iterator[World]:
    with lab.activate():
        yield World(lab=lab, azurite=azurite, authority=lab_authority()).setup()


@pytest.fixture(scope="module")
def aggregator(world: World) -> tuple[AgentConfig, list[Report]]:
    with world.lab.activate():
        client_id = world.identity("aggregator", grants=["contoso", "fabrikam"])
        config = world.vm("aggregator", "confidential", client_id,
                          ["contoso", "fabrikam"], probes=("woodgrove",))
        reports = startup_reports(config)
        wait_for_api(f"http://{config.api.listen}")
    return config, reports


def _by_key(reports: list[Report], world: World, party: str) -> list[KeyOutcome]:
    """The start-up outcomes about ``party``'s key."""
    prefix = f"{world.vaults[party]}/keys/{world.keys[party]}"
    return [o for o in outcomes_of(reports) if o.key_id.startswith(prefix)]


def test_attests_and_releases_own_and_granted_partner_keys(
        world: World, aggregator: tuple[AgentConfig, list[Report]]) -> None:
    config, reports = aggregator
    for party in ("contoso", "fabrikam"):
        (report,) = _by_key(reports, world, party)
        assert report.event == "released", report.error
        assert report.key_version and report.key_id.endswith(report.key_version)
    status = AgentClient(f"http://{config.api.listen}").status()
    states = {k["name"]: k["state"] for k in status["keys"]}
    assert states == {"contoso-secret-key": "released", "fabrikam-secret-key": "released"}
    assert status["attested"] is True
    claims = AgentClient(f"http://{config.api.listen}").claims()  # verified by the agent
    assert claims["x-ms-runtime"]["client-payload"]["nonce"] == config.orchestration.nonce
    assert claims["x-ms-isolation-tee"]["x-ms-compliance-status"] == "azure-compliant-cvm"
    contoso = next(k for k in status["keys"] if k["name"] == "contoso-secret-key")
    assert contoso["release_policy"]["anyOf"][0]["authority"] == world.authority
    assert set(contoso["public_jwk"]) == {"kty", "n", "e"}  # public half only
    with world.lab.activate():
        _, public = world.public_key("contoso")
    assert jwk_public(contoso["public_jwk"]) == (public.public_numbers().n,
                                                 public.public_numbers().e)


def test_probe_of_a_key_without_grant_is_reported_as_the_vaults_refusal(
        world: World, aggregator: tuple[AgentConfig, list[Report]]) -> None:
    _, reports = aggregator
    (denied,) = _by_key(reports, world, "woodgrove")
    assert denied.event == "isolation-refused"
    assert denied.key_id == f"{world.vaults['woodgrove']}/keys/{world.keys['woodgrove']}"
    assert denied.error_code and denied.error_code.startswith("Forbidden")  # the vault's
    assert denied.error  # reason, verbatim
    vault = world.vaults["woodgrove"].removeprefix("https://").split(".")[0]
    attempts = [a for a in world.lab.client.audit(key=world.keys["woodgrove"])
                if a.get("vault") == vault]
    assert len(attempts) == 1  # the 403 was not retried
    assert attempts[0].get("decision") != "released"


def test_reports_validate_and_the_attested_token_verifies(
        world: World, aggregator: tuple[AgentConfig, list[Report]]) -> None:
    config, reports = aggregator
    schema = json_schema()
    for report in reports:
        jsonschema.validate(json.loads(report.to_json()), schema)
        assert (report.tenant, report.party, report.vm) == ("acme", config.party, config.vm_name)
        assert report.instance == config.orchestration.instance
        assert report.nonce == config.orchestration.nonce
    # attested at once, then ONE report of every key: releases first, then the probe
    attested, outcomes = reports
    assert [(o.event, o.key_id.split("/keys/")[1].split("/")[0]) for o in outcomes_of(reports)
            ] == [("released", world.keys["contoso"]), ("released", world.keys["fabrikam"]),
                  ("isolation-refused", world.keys["woodgrove"])]
    assert outcomes.sent_at >= attested.sent_at
    assert attested.token
    verifier = TokenVerifier([world.authority], verify=world.lab.environ()["REQUESTS_CA_BUNDLE"])
    claims = verifier.verify(attested.token, nonce=config.orchestration.nonce)
    assert claims.is_compliant_cvm and not claims.is_debuggable
    assert len({r.idempotency_key for r in reports}) == len(reports)


def test_local_api_refuses_keys_outside_the_allow_list_and_private_release(
        world: World, aggregator: tuple[AgentConfig, list[Report]]) -> None:
    config, _ = aggregator
    client = AgentClient(f"http://{config.api.listen}")
    with pytest.raises(AgentError) as err:
        client.release_private_key(world.vaults["contoso"], world.keys["contoso"])
    assert (err.value.status, err.value.code) == (403, "PrivateKeyReleaseDisabled")
    with pytest.raises(AgentError) as err:
        client.unwrap(f"https://evil.vault.azure.net/keys/{world.keys['contoso']}/abc",
                      "RSA-OAEP-256", b"\x00" * 256)
    assert (err.value.status, err.value.code) == (403, "KeyNotAllowed")


def _sealed(world: World, party: str, plaintext: bytes) -> bytes:
    key_id, public = world.public_key(party)
    out = io.BytesIO()
    seal(io.BytesIO(plaintext), out, key_id=key_id, wrapper=PublicKeyWrapper(public),
         chunk_size=64 * 1024)
    return out.getvalue()


def test_sealed_file_decrypts_through_the_api(
        world: World, aggregator: tuple[AgentConfig, list[Report]]) -> None:
    config, _ = aggregator
    client = AgentClient(f"http://{config.api.listen}")
    plaintext = os.urandom(3 * 1024 * 1024 + 17)
    with world.lab.activate():
        sealed = _sealed(world, "fabrikam", plaintext)
    assert b"".join(client.decrypt_stream(io.BytesIO(sealed))) == plaintext
    # The data key alone, for workloads that decrypt themselves.
    from cotenant.crypto.envelope import read_header

    header = read_header(io.BytesIO(sealed))
    data_key = client.unwrap(header.key_id, header.wrap_alg, header.wrapped_key)
    assert len(data_key) == 32
    # Tampering: a flipped byte in the last chunk aborts the stream.
    tampered = bytearray(sealed)
    tampered[-40] ^= 1
    with pytest.raises(AgentError):
        b"".join(client.decrypt_stream(bytes(tampered)))


def test_rotate_command_releases_and_reports_the_new_version(
        world: World, aggregator: tuple[AgentConfig, list[Report]]) -> None:
    config, _ = aggregator
    client = AgentClient(f"http://{config.api.listen}")
    with world.lab.activate():
        old_sealed = _sealed(world, "contoso", b"sealed under the old version")
        new_key = world.new_version("contoso")
    assert new_key.properties.version
    command = {"command": "rotate", "id": uuid.uuid4().hex, "instance": "rotate-acme-1",
               "nonce": "rotate-nonce-1",
               "key": {"vault_url": world.vaults["contoso"], "name": world.keys["contoso"]},
               "version": new_key.properties.version}
    sender: QueueClient = queue(config, config.queues.commands_url)
    sender.send_message(json.dumps(command))
    reports = wait_reports(config, lambda rs: any(r.event == "rotated" for r in rs))
    (rotated,) = [r for r in reports if r.event == "rotated"]
    assert rotated.key_version == new_key.properties.version
    assert (rotated.instance, rotated.nonce) == ("rotate-acme-1", "rotate-nonce-1")
    held = {k["name"]: k for k in client.keys()}  # noqa: SIM118 - a method, not a dict
    assert held["contoso-secret-key"]["version"] == new_key.properties.version
    # Files sealed under the previous version still open (that version is released on demand).
    assert b"".join(client.decrypt_stream(old_sealed)) == b"sealed under the old version"


@pytest.fixture(scope="module")
def side_vms(world: World) -> dict[str, tuple[AgentConfig, list[Report]]]:
    """A trusted-launch VM (granted, but not confidential), a confidential VM with the
    sidecar's private-key release enabled, and a "leaky" one: granted Fabrikam's key by
    mistake although its config probes it; all booted before waiting for any."""
    with world.lab.activate():
        tl_id = world.identity("tlaunch", grants=["contoso", "fabrikam"])
        sc_id = world.identity("sidecar", grants=["contoso"])
        leak_id = world.identity("leaky", grants=["contoso", "fabrikam"])  # fabrikam: wrong
        vms = {
            "tlaunch": world.vm("tlaunch", "trusted-launch", tl_id, ["contoso", "fabrikam"]),
            "sidecar": world.vm("sidecar", "confidential", sc_id, ["contoso"],
                                probes=("fabrikam",), allow_private_key_release=True,
                                heartbeat_seconds=1.0),
            "leaky": world.vm("leaky", "confidential", leak_id, ["contoso"],
                              probes=("fabrikam",), allow_private_key_release=True),
        }
    out = {name: (config, startup_reports(config)) for name, config in vms.items()}
    for config in vms.values():
        wait_for_api(f"http://{config.api.listen}")
    return out


def test_trusted_launch_vm_releases_nothing(
        side_vms: dict[str, tuple[AgentConfig, list[Report]]]) -> None:
    _, reports = side_vms["tlaunch"]
    keyed = outcomes_of(reports)
    assert len(keyed) == 2 and all(o.event == "release-denied" for o in keyed)
    assert all("policy" in (o.error or "") and o.key_version is None for o in keyed)


def test_private_key_release_when_enabled_returns_the_vault_key(
        world: World, side_vms: dict[str, tuple[AgentConfig, list[Report]]]) -> None:
    config, reports = side_vms["sidecar"]
    assert [o.event for o in outcomes_of(reports)] == ["released", "isolation-refused"]
    with world.lab.activate():
        _, public = world.public_key("contoso")
    jwk = AgentClient(f"http://{config.api.listen}").release_private_key(
        world.vaults["contoso"], world.keys["contoso"])
    assert jwk["kty"] == "RSA" and "d" in jwk
    numbers = public.public_numbers()
    assert jwk_public(jwk) == (numbers.n, numbers.e)


def test_re_attest_wipe_and_heartbeat(
        world: World, side_vms: dict[str, tuple[AgentConfig, list[Report]]]) -> None:
    config, _ = side_vms["sidecar"]
    sender = queue(config, config.queues.commands_url)
    sender.send_message(json.dumps({"command": "re-attest", "id": uuid.uuid4().hex,
                                    "instance": "check-1", "nonce": "fresh-nonce-42"}))
    reports = wait_reports(config, lambda rs: any(
        r.event == "attested" and r.nonce == "fresh-nonce-42" for r in rs)
        and any(r.event == "heartbeat" for r in rs))
    (attested,) = [r for r in reports if r.event == "attested"]
    assert attested.instance == "check-1" and attested.token
    verifier = TokenVerifier([world.authority], verify=world.lab.environ()["REQUESTS_CA_BUNDLE"])
    assert verifier.verify(attested.token, nonce="fresh-nonce-42").is_compliant_cvm
    client = AgentClient(f"http://{config.api.listen}")
    assert [k["state"] for k in client.keys()] == ["released"]  # noqa: SIM118
    sender.send_message(json.dumps({"command": "wipe", "id": uuid.uuid4().hex}))
    deadline = time.monotonic() + 10
    while client.keys()[0]["state"] != "pending":
        assert time.monotonic() < deadline, "keys were not wiped"
        time.sleep(0.1)
    assert "version" not in client.keys()[0]


def test_isolation_check_shows_the_partner_vaults_refusal(
        world: World, side_vms: dict[str, tuple[AgentConfig, list[Report]]]) -> None:
    config, _ = side_vms["sidecar"]
    (result,) = AgentClient(f"http://{config.api.listen}").isolation_check()
    assert (result["name"], result["released"], result["status"]) == (
        world.keys["fabrikam"], False, 403)
    assert "authorized" in result["message"].lower() or result["code"].startswith("Forbidden")


def _attempts_on(world: World, party: str, config: AgentConfig) -> list[str]:
    """The decisions of ``party``'s vault on its key for the identity of ``config``'s VM."""
    caller = next(i["principal_id"] for i in world.lab.client.identities()
                  if i["client_id"] == config.identity.client_id)
    vault = world.vaults[party].removeprefix("https://").split(".")[0]
    return [a["decision"] for a in world.lab.client.audit(key=world.keys[party])
            if a.get("vault") == vault and a.get("caller") == caller]


def _serves_nothing_of(client: AgentClient, world: World, party: str) -> None:
    """Neither the private key nor a file sealed to ``party``'s key, however asked."""
    with world.lab.activate():
        sealed = _sealed(world, party, f"{party}'s data".encode())
    with pytest.raises(AgentError) as err:
        client.release_private_key(world.vaults[party], world.keys[party])
    assert (err.value.status, err.value.code) == (403, "KeyNotAllowed")
    with pytest.raises(AgentError) as err:
        b"".join(client.decrypt_stream(sealed))
    assert (err.value.status, err.value.code) == (403, "KeyNotAllowed")
    assert [k["name"] for k in client.keys()] == [world.keys["contoso"]]  # noqa: SIM118


def test_local_api_never_serves_a_probe_key_even_when_asked(
        world: World, side_vms: dict[str, tuple[AgentConfig, list[Report]]]) -> None:
    """The sidecar may hand private keys to local callers, but only allow-listed ones: its
    probe (Fabrikam's key, refused by the vault) is refused by the API before any vault."""
    config, _ = side_vms["sidecar"]
    before = _attempts_on(world, "fabrikam", config)
    assert before and set(before) == {"denied"}  # the start-up probe (+ isolation checks)
    _serves_nothing_of(AgentClient(f"http://{config.api.listen}"), world, "fabrikam")
    assert _attempts_on(world, "fabrikam", config) == before  # the API asked no vault


def test_a_probe_the_vault_releases_is_reported_broken_and_never_kept_or_served(
        world: World, side_vms: dict[str, tuple[AgentConfig, list[Report]]]) -> None:
    config, reports = side_vms["leaky"]
    (broken,) = _by_key(reports, world, "fabrikam")
    assert broken.event == "isolation-broken"  # inside the one outcomes report
    assert [o.event for o in outcomes_of(reports)] == ["released", "isolation-broken"]
    assert broken.error_code == "IsolationBroken" and broken.key_version is None
    assert "discarded" in (broken.error or "")
    # The vault really released it to this VM's identity (the wrong grant works) ...
    assert _attempts_on(world, "fabrikam", config) == ["released"]
    # ... but the agent holds only its allowed key and serves nothing of Fabrikam's.
    client = AgentClient(f"http://{config.api.listen}")
    assert [k["state"] for k in client.keys()] == ["released"]  # noqa: SIM118 (contoso's)
    _serves_nothing_of(client, world, "fabrikam")
    # The isolation check shows the release, and reports it again.
    (result,) = client.isolation_check()
    assert result["released"] is True
    again = wait_reports(config, lambda rs: any(r.event == "isolation-broken" for r in rs))
    assert {r.key_id for r in again if r.event == "isolation-broken"} == {broken.key_id}
    assert "outcomes" not in {r.event for r in again}  # a single report, not a batch
