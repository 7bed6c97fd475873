"""The local API's boundaries, against a real served agent (before any key is released).

The TEE is the outermost edge: ``SealedTee`` (helpers) refuses to attest, so nothing here can
depend on key material; the lab-backed tests exercise the released path.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import pytest

from cotenant.azurite import Azurite
from cotenant.wire.reports import make_outcome
from guest_agent.agent import Agent
from guest_agent.client import AgentClient, AgentError
from guest_agent.retry import Backoff
from tests.guest_agent.helpers import VAULT, SealedTee, drain_reports, make_config, served

pytestmark = pytest.mark.azurite


@pytest.fixture(scope="module")
def api(azurite: Azurite) -> Iterator[tuple[Agent, str]]:
    agent = Agent.from_config(make_config(azurite), backend=SealedTee())
    try:
        with served(agent) as url:
            yield agent, url
    finally:
        agent.close()


def test_status_is_sidecar_compatible_and_secret_free(api: tuple[Agent, str]) -> None:
    agent, url = api
    status = AgentClient(url).status()
    assert status["message"] == "Status OK"
    assert status["attested"] is False
    assert {k["name"] for k in status["keys"]} == {"contoso-secret-key", "fabrikam-secret-key"}
    text = json.dumps(status)
    assert agent.config.queues.connection_string not in text
    assert agent.config.orchestration.nonce not in text


def test_private_key_release_is_off_by_default(api: tuple[Agent, str]) -> None:
    _, url = api
    with pytest.raises(AgentError) as err:
        AgentClient(url).release_private_key(VAULT, "contoso-secret-key")
    assert (err.value.status, err.value.code) == (403, "PrivateKeyReleaseDisabled")


@pytest.mark.parametrize("key_id", [
    "https://evil.example.com/keys/contoso-secret-key",           # caller-chosen URL
    "https://contoso-kv.vault.azure.net/keys/woodgrove-secret-key",  # not granted
    "https://contoso-kv.vault.azure.net:8443/keys/contoso-secret-key",  # other port = other host
    "http://contoso-kv.vault.azure.net/keys/contoso-secret-key",   # not https
    "contoso-secret-key",
])
def test_unwrap_refuses_keys_outside_the_allow_list(api: tuple[Agent, str], key_id: str) -> None:
    _, url = api
    with pytest.raises(AgentError) as err:
        AgentClient(url).unwrap(key_id, "RSA-OAEP-256", b"\x00" * 256)
    assert (err.value.status, err.value.code) == (403, "KeyNotAllowed")


def test_unwrap_with_an_unreleased_key_is_refused(api: tuple[Agent, str]) -> None:
    _, url = api
    with pytest.raises(AgentError) as err:
        AgentClient(url).unwrap(f"{VAULT}/keys/contoso-secret-key", "RSA-OAEP-256", b"x" * 256)
    assert err.value.status == 422
    assert "not been released" in err.value.message


def test_attest_only_against_the_configured_authority(api: tuple[Agent, str]) -> None:
    _, url = api
    with pytest.raises(AgentError) as err:
        AgentClient(url).attest("n0nce-xyz", maa_endpoint="https://evil.example.com")
    assert (err.value.status, err.value.code) == (400, "AttestationEndpointNotAllowed")
    with pytest.raises(AgentError) as err:  # configured authority, but this VM has no TEE
        AgentClient(url).attest("n0nce-xyz")
    assert (err.value.status, err.value.code) == (503, "AttestationFailed")


def test_errors_are_json_and_bounded(api: tuple[Agent, str]) -> None:
    _, url = api
    with httpx.Client(base_url=url, trust_env=False) as http:
        big = http.post("/keys/unwrap", content=b"{" + b" " * 70_000 + b"}")
        assert big.status_code == 413
        assert big.json()["error"]["code"] == "RequestTooLarge"
        bad = http.post("/keys/unwrap", content=b"[1]")
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "BadRequest"
        wrapped = base64.b64encode(b"x").decode()
        missing = http.post("/keys/unwrap", json={"alg": "RSA-OAEP-256", "wrapped_key": wrapped})
        assert missing.status_code == 400 and "key_id" in missing.json()["error"]["message"]
        unknown = http.get("/nope")
        assert unknown.status_code == 404 and "error" in unknown.json()
        wrong_method = http.get("/keys/unwrap")
        assert wrong_method.status_code == 405 and "error" in wrong_method.json()


def test_foreign_host_names_are_refused(api: tuple[Agent, str]) -> None:
    _, url = api
    with httpx.Client(base_url=url, trust_env=False) as http:
        rebinding = http.get("/status", headers={"Host": "attacker.example.com"})
        assert rebinding.status_code == 400
        assert rebinding.json()["error"]["code"] == "InvalidHost"
        assert http.get("/status", headers={"Host": "localhost:1234"}).status_code == 200


def test_failed_startup_attestation_is_retried_then_reported(azurite: Azurite) -> None:
    tee = SealedTee()
    agent = Agent.from_config(make_config(azurite), backend=tee)
    agent.attest_backoff = Backoff(base_seconds=0.01, cap_seconds=0.02)
    try:
        agent.bootstrap()
        reports = drain_reports(agent.config)
    finally:
        agent.close()
    assert tee.attempts == 3
    assert [(r.event, r.error_code) for r in reports] == [("failed", "attestation")]
    assert "no TEE" in (reports[0].error or "")


def _sealed_for(key_id: str) -> bytes:
    import io

    from cryptography.hazmat.primitives.asymmetric import rsa

    from cotenant.crypto.envelope import seal
    from cotenant.crypto.wrapping import PublicKeyWrapper

    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    out = io.BytesIO()
    seal(io.BytesIO(b"secret rows"), out, key_id=key_id, wrapper=PublicKeyWrapper(public))
    return out.getvalue()


def test_sealed_decrypt_refuses_before_streaming(api: tuple[Agent, str]) -> None:
    _, url = api
    client = AgentClient(url)
    foreign = _sealed_for("https://evil.vault.azure.net/keys/contoso-secret-key/0123abcd")
    with pytest.raises(AgentError) as err:
        b"".join(client.decrypt_stream(foreign))
    assert (err.value.status, err.value.code) == (403, "KeyNotAllowed")
    with pytest.raises(AgentError) as err:
        b"".join(client.decrypt_stream(b"plain text, not sealed" * 100))
    assert (err.value.status, err.value.code) == (422, "Crypto.not_sealed")
    with pytest.raises(AgentError) as err:  # allowed key, but this VM cannot attest
        b"".join(client.decrypt_stream(_sealed_for(f"{VAULT}/keys/contoso-secret-key/v1")))
    assert (err.value.status, err.value.code) == (503, "AttestationFailed")


def test_reports_held_back_by_an_unreachable_queue_are_delivered_later(
        azurite: Azurite) -> None:
    import time

    from tests.guest_agent.helpers import queue, unique

    config = make_config(azurite)
    late = f"{azurite.queue_url}/{unique('ga-late')}"
    config = config.model_copy(update={"queues": config.queues.model_copy(
        update={"reports_url": late})})
    agent = Agent.from_config(config, backend=SealedTee())
    agent.attest_backoff = Backoff(base_seconds=0.01, cap_seconds=0.02)
    agent.outbox_retry_seconds = 0.1
    try:
        agent.bootstrap()  # the queue does not exist yet: the report waits in the outbox
        assert agent.reporter.pending == 1
        agent.start_background()
        queue(config, late).create_queue()
        deadline = time.monotonic() + 10
        while agent.reporter.pending and time.monotonic() < deadline:
            time.sleep(0.05)
        assert agent.reporter.pending == 0
        assert [r.event for r in drain_reports(config)] == ["failed"]
    finally:
        agent.close()


def test_a_start_up_step_that_fails_unexpectedly_is_that_keys_failure(
        azurite: Azurite) -> None:
    """One release or probe raising something unforeseen must not cost the control plane
    the one report of every key's outcome (it would wait for it until its timeout)."""
    config = make_config(azurite)
    agent = Agent.from_config(config, backend=SealedTee())
    refs = [*config.keys, *config.isolation_probes]
    broken = refs[0]

    def attempt(ref, ctx, **_):
        if ref == broken:
            raise RuntimeError("a defect")
        return None, make_outcome("released", ref.kid + "/v1", key_version="v1")

    agent.attest = lambda ctx: True  # the outermost edge: no attestation service here
    agent.try_release = attempt
    agent.try_probe = attempt
    try:
        agent.bootstrap()
    finally:
        agent.close()
    (report,) = [r for r in drain_reports(config) if r.event == "outcomes"]
    failed = [o for o in report.outcomes if o.event == "failed"]
    assert [(o.key_id, o.error_code) for o in failed] == [(broken.kid, "RuntimeError")]
    assert "a defect" not in (failed[0].error or "")  # no exception text, only its type
    assert len(report.outcomes) == len(refs)
