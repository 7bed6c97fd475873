"""Confidential training in the lab: the owner seals diabetes.csv, the CVM's agent decrypts it
as a stream, the job trains, and the model comes back sealed to the owner's key."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from typer.testing import CliRunner

from cotenant.cli.main import build_app
from cotenant.crypto.envelope import open_sealed, read_header
from cotenant.crypto.wrapping import PublicKeyWrapper
from guest_agent.client import AgentClient
from tests.guest_agent.lab_world import wait_for_api
from tests.workloads.conftest import LabScenario
from tests.workloads.scenario import seal_file
from tests.workloads.test_training_job import DIABETES, plain_accuracy
from workloads.training.run import MODEL_CONTENT_TYPE, run_training

pytestmark = [pytest.mark.azurite, pytest.mark.slow]


@pytest.fixture(scope="module")
def owner_vm(lab_scenario: LabScenario, tmp_path_factory: pytest.TempPathFactory):
    """Contoso, the data owner, seals diabetes.csv with its key; Contoso's CVM trains."""
    tmp = tmp_path_factory.mktemp("training")
    with lab_scenario.lab.activate():
        key_id, public = lab_scenario.world.public_key("contoso")
    sealed = tmp / "diabetes.csv.sealed"
    sealed.write_bytes(seal_file(DIABETES, key_id, PublicKeyWrapper(public)))
    pem = tmp / "owner-public.pem"
    pem.write_bytes(public.public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo))
    url = lab_scenario.agent_url("contoso")
    wait_for_api(url)
    return {"url": url, "sealed": sealed, "pem": pem, "key_id": key_id, "tmp": tmp,
            "vm": lab_scenario.agents["contoso"].vm_name,
            "lab_dir": str(lab_scenario.lab.directory)}


def _wait_released(client: AgentClient, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entries = client.keys()
        if any(e["name"] == "contoso-secret-key" and e["state"] == "released" for e in entries):
            return
        time.sleep(0.2)
    raise AssertionError(f"key not released: {client.keys()}")


def test_sealed_training_matches_the_plain_run_and_seals_the_model(owner_vm: dict) -> None:
    with AgentClient(owner_vm["url"]) as agent:
        _wait_released(agent)
        sink = io.BytesIO()
        run = run_training(agent, owner_vm["sealed"], sink,
                           PublicKeyWrapper.from_pem(owner_vm["pem"]))
        assert run.result.accuracy == plain_accuracy()
        assert round(run.result.accuracy, 4) == 0.7208
        header = read_header(io.BytesIO(sink.getvalue()))
        assert header.key_id == owner_vm["key_id"] and header.content_type == MODEL_CONTENT_TYPE
        # Only the owner's key opens the model: here through the attested VM's agent.
        model = open_sealed(io.BytesIO(sink.getvalue()), agent.unwrap).read()
        assert model == run.result.model
        assert b"Pregnancies" not in sink.getvalue()  # sealed, not plaintext


def test_cotenant_train_runs_on_a_lab_vm_and_prints_the_report(owner_vm: dict) -> None:
    out = Path(owner_vm["tmp"]) / "model.sealed"
    result = CliRunner().invoke(build_app(), [
        "train", str(owner_vm["sealed"]), "--lab-vm", owner_vm["vm"],
        "--lab-dir", owner_vm["lab_dir"], "--model-out", str(out),
        # no --owner-public-key: the agent reports the released key's public half
    ])
    assert result.exit_code == 0, result.output
    assert "0.7208" in result.output and "precision" in result.output
    assert read_header(out.open("rb")).key_id == owner_vm["key_id"]
    with AgentClient(owner_vm["url"]) as agent, out.open("rb") as sealed:
        assert open_sealed(sealed, agent.unwrap).read().startswith(b"{")  # XGBoost JSON


def test_cotenant_train_refuses_a_plaintext_file(owner_vm: dict) -> None:
    result = CliRunner().invoke(build_app(), [
        "train", str(DIABETES), "--agent-url", owner_vm["url"],
        "--owner-public-key", str(owner_vm["pem"]),
    ])
    assert result.exit_code == 2
    assert "not a cotenant sealed file" in result.output
    assert "Traceback" not in result.output


def test_cotenant_train_names_a_missing_lab_vm(owner_vm: dict) -> None:
    result = CliRunner().invoke(build_app(), [
        "train", str(owner_vm["sealed"]), "--lab-vm", "no-such-vm",
        "--lab-dir", owner_vm["lab_dir"],
    ])
    assert result.exit_code == 2
    assert "lab VM no-such-vm" in result.output and "Traceback" not in result.output
