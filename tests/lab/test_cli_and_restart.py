"""`cotenant lab …` by hand, and state that survives a restart."""

from __future__ import annotations

import shlex
from pathlib import Path

import jwt
import pytest
from azure.identity import ManagedIdentityCredential
from azure.keyvault.keys import KeyClient
from typer.testing import CliRunner

from cotenant.cli.lab import app as lab_app
from cotenant.lab.client import LabClient
from cotenant.lab.testing import RunningLab
from tests.lab.helpers import make_skr_key, unique

runner = CliRunner()


def _cli(*args: str) -> str:
    result = runner.invoke(lab_app, list(args))
    assert result.exit_code == 0, result.output
    return result.output.strip()


def _exports(output: str) -> dict[str, str]:
    pairs = [shlex.split(line.removeprefix("export "))[0].split("=", 1)
             for line in output.splitlines()]
    return dict(pairs)


def test_lab_group_is_mounted() -> None:
    from cotenant.cli.main import _SUBAPPS

    assert ("lab", "cotenant.cli.lab") in _SUBAPPS


def test_cli_by_hand(lab: RunningLab) -> None:
    where = ["--dir", str(lab.directory)]
    env = _exports(_cli("env", *where))
    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "COTENANT_LAB_ATTESTATION_URL",
                 "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "HTTPS_PROXY"):
        assert env[name], name
    url = _cli("vault", "create", unique("kv"), *where)
    assert url.endswith(".vault.azure.net")
    client_id = _cli("identity", "create", unique("id"), *where)
    assert "Crypto Service Release User" in _cli(
        "grant", "--identity", client_id, "--scope", f"{url}/keys/k1",
        "--role", "Key Vault Crypto Service Release User", *where)
    vm = unique("vm")
    assert "debuggable" in _cli("vm", "create", vm, "--kind", "debuggable",
                                "--identity", client_id, *where)
    token = _cli("vm", "token", vm, "--nonce", "by-hand", *where)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["x-ms-runtime"]["client-payload"] == {"nonce": "by-hand"}
    assert claims["x-ms-isolation-tee"]["x-ms-sevsnpvm-is-debuggable"] is True


@pytest.mark.parametrize("args", [
    ["grant", "--identity", "nope", "--scope", "https://x.vault.azure.net", "--role", "Owner"],
    ["vm", "create", "v1", "--kind", "quantum"],
])
def test_cli_errors_are_one_line(lab: RunningLab, args: list[str]) -> None:
    result = runner.invoke(lab_app, [*args, "--dir", str(lab.directory)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and result.output.startswith("error: ")


def test_cli_without_a_running_lab(tmp_path: Path) -> None:
    result = runner.invoke(lab_app, ["env", "--dir", str(tmp_path)])
    assert result.exit_code == 2 and "no lab is running" in result.output


def test_up_down_and_state_survives_a_restart(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    where = ["--dir", str(tmp_path / "lab")]
    _cli("up", "--no-azurite", *where)  # Azurite alone takes ~10 s to start on a busy box
    try:
        client = LabClient(tmp_path / "lab")
        env = client.environ()
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        lab = RunningLab(tmp_path / "lab")
        lab._client = client
        key = make_skr_key(lab)
        vm = key.vm("confidential")
        ports = client.endpoints.model_dump(exclude={"pid"})
        boots = client.get_vm(vm)["boots"]

        _cli("down", *where)
        assert not client.healthy()
        _cli("up", "--no-azurite", *where)

        client = LabClient(tmp_path / "lab")
        assert client.endpoints.model_dump(exclude={"pid"}) == ports
        assert client.get_vm(vm)["boots"] == boots + 1
        officer = KeyClient(key.vault_url, ManagedIdentityCredential())
        assert officer.get_key(key.name).id == key.key.id
        assert key.releaser_client().release_key(key.name, client.vm_token(vm)).value
    finally:
        _cli("down", *where)


def test_reset_clears_the_state(tmp_path: Path) -> None:
    directory = tmp_path / "lab"
    (directory / "vms").mkdir(parents=True)
    (directory / "state.json").write_text("{}")
    assert "cleared" in _cli("reset", "--yes", "--dir", str(directory))
    assert not directory.exists()


def test_invalid_names_are_refused(lab: RunningLab) -> None:
    from cotenant.lab.client import LabError

    for call in (lambda: lab.client.create_identity("a b"),
                 lambda: lab.client.create_vault("1-not-a-vault"),
                 lambda: lab.client.create_vm("../etc", "confidential")):
        with pytest.raises(LabError) as info:
            call()
        assert info.value.status == 400
