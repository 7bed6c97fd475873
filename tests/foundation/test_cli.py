"""The spec, plan and policy commands: output, exit codes, one line per problem, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cotenant.cli.main import build_app
from tests.conftest import FIXTURES, REPO_ROOT

EXAMPLE = str(REPO_ROOT / "examples" / "three-party.yaml")
SAMPLES = FIXTURES / "policy"


@pytest.fixture(scope="module")
def run():
    app = build_app()
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args), env={"COLUMNS": "200"})

    return invoke


def test_spec_validate_ok(run):
    result = run("spec", "validate", EXAMPLE)
    assert result.exit_code == 0, result.output
    assert "ok: tenant 'demo' in northeurope: 3 parties" in result.stdout


def test_spec_validate_reports_every_problem_on_its_own_line(run, tmp_path):
    doc = yaml.safe_load(Path(EXAMPLE).read_text())
    doc["location"] = "atlantis"
    doc["parties"][1]["gateway_port"] = 8080
    doc["parties"][2]["private_ip"] = "10.0.1.255"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = run("spec", "validate", str(path))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert [line.split(":")[1].strip() for line in lines] == [
        "location", "parties[2].private_ip", "parties[1].gateway_port"]
    assert all(line.startswith("error: ") for line in lines)
    assert "Traceback" not in result.output


def test_spec_validate_missing_file(run, tmp_path):
    result = run("spec", "validate", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: cannot read")


def test_spec_schema(run):
    result = run("spec", "schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "cotenant tenant spec"
    assert "parties" in schema["properties"]


def test_plan_json(run):
    result = run("plan", EXAMPLE, "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["priority"] for r in data["nsg_rules"]] == [100, 110, 4000]
    assert data["access_matrix"]["parties"] == ["contoso", "fabrikam", "woodgrove"]
    assert data["critical_path_seconds"] == 600 and data["sequential_seconds"] == 1650
    assert {p["name"] for p in data["phases"]} >= {"network", "gateway", "cvm:contoso"}


def test_plan_table(run):
    result = run("plan", EXAMPLE)
    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in ("Allow-AppGw-HTTP", "Deny-All-Other-Inbound", "Access matrix", "kv-demo-contoso",
                 ":8081", "Critical path: 10.0 min", "sequential sum 27.5 min"):
        assert text in out, text
    assert "Allow-Bastion-SSH" not in out


def test_plan_invalid_spec_exits_2(run, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"name": "x"}')
    result = run("plan", str(path))
    assert result.exit_code == 2
    assert "error: name:" in result.stderr and "error: parties: Field required" in result.stderr


def test_plan_bad_format(run):
    assert run("plan", EXAMPLE, "--format", "xml").exit_code == 2


def test_policy_check_allows_real_token(run):
    result = run("policy", "check", str(SAMPLES / "policy-cvm-guest.json"),
                 "--claims", str(SAMPLES / "maa-cvm-guest-token-3.jwt"))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("allowed: https://sharedweu.weu.attest.azure.net")


def test_policy_check_denies_with_explanation(run, tmp_path):
    policy = tmp_path / "top-level.json"
    policy.write_text(json.dumps({"version": "1.0.0", "anyOf": [{
        "authority": "https://sharedweu.weu.attest.azure.net/",
        "allOf": [{"claim": "x-ms-attestation-type", "equals": "sevsnpvm"}]}]}))
    token = (SAMPLES / "maa-cvm-guest-token-3.jwt").read_text().strip()
    result = run("policy", "check", str(policy), "--claims", token)  # JWT given inline
    assert result.exit_code == 1
    assert 'x-ms-attestation-type equals "sevsnpvm" fails (claim is "azurevm")' in result.stdout


def test_policy_check_claims_json_and_issuer_override(run, tmp_path):
    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps({"iss": "https://elsewhere.example", "a": {"b": False}}))
    policy = json.dumps({"version": "1.0.0", "anyOf": [{
        "authority": "https://sharedneu.neu.attest.azure.net",
        "allOf": [{"claim": "a.b", "equals": "false"}]}]})
    assert run("policy", "check", policy, "--claims", str(claims)).exit_code == 1
    result = run("policy", "check", policy, "--claims", str(claims),
                 "--issuer", "https://sharedneu.neu.attest.azure.net/")
    assert result.exit_code == 0, result.output
    wrapped = json.dumps({"token": (SAMPLES / "maa-cvm-guest-token-3.jwt").read_text()})
    assert run("policy", "check", str(SAMPLES / "policy-cvm-guest.json"),
               "--claims", wrapped).exit_code == 0


def test_policy_check_invalid_inputs_exit_2(run):
    result = run("policy", "check", str(SAMPLES / "policy-aci-hostdata.json"),
                 "--claims", str(SAMPLES / "maa-cvm-guest-token-3.jwt"))
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: policy.anyOf[0].authority: required: an https:// URL"
    result = run("policy", "check", str(SAMPLES / "policy-cvm-guest.json"),
                 "--claims", "not-a-token")
    assert result.exit_code == 2
    assert "expected a JSON object of claims or a JWT" in result.stderr


def test_policy_build(run):
    result = run("policy", "build", EXAMPLE)
    assert result.exit_code == 0
    assert json.loads(result.stdout)["anyOf"][0]["authority"] == (
        "https://sharedneu.neu.attest.azure.net")


def test_console_script_runs_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: demo\nparties: 3\n")
    proc = subprocess.run([sys.executable, "-m", "cotenant.cli.main", "plan", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: parties: Input should be a valid list", "error: gateway: Field required"]


def test_policy_check_verbose(run):
    result = run("policy", "check", str(SAMPLES / "policy-default-cvm.json"),
                 "--claims", str(SAMPLES / "maa-cvm-guest-token-3.jwt"), "--verbose")
    assert result.exit_code == 1
    assert "  - https://sharedweu.weu.attest.azure.net/: not satisfied: " in result.stdout
