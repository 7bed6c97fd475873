"""The VM bootstrap: shellcheck, the dry run's plan, the systemd unit's hardening."""

from __future__ import annotations

import base64
import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

INSTALL = Path(__file__).resolve().parents[2] / "guest_agent" / "install"
BOOTSTRAP = INSTALL / "bootstrap.sh"
UNIT = INSTALL / "cotenant-guest-agent.service"
SHA = "ab" * 32
CONFIG = 'tenant = "acme"\nparty = "contoso"\n# marker-5f1e\n'


def _bootstrap(*args: str, root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(BOOTSTRAP), *args, "--root", str(root)],
                          capture_output=True, text=True, timeout=60)


def _dry_run(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    config_b64 = base64.b64encode(CONFIG.encode()).decode()
    return _bootstrap("--dry-run", "--bundle-url", "https://example.blob.core.windows.net/b.tgz",
                      "--bundle-sha256", SHA, "--config-b64", config_b64, *extra, root=tmp_path)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
@pytest.mark.parametrize("script", ["bootstrap.sh", "build-bundle.sh"])
def test_scripts_pass_shellcheck(script: str) -> None:
    result = subprocess.run(["shellcheck", "--severity=style", str(INSTALL / script)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def test_dry_run_plans_a_locked_down_install(tmp_path: Path) -> None:
    result = _dry_run(tmp_path)
    assert result.returncode == 0, result.stderr
    plan = result.stdout
    # Dedicated unprivileged user with TPM access through the tss group, no login shell.
    assert "useradd --system" in plan and "--groups tss" in plan
    assert "/usr/sbin/nologin" in plan
    # SSH: both the service and the socket (socket activation would otherwise keep port 22).
    assert "systemctl mask ssh.socket ssh.service" in plan
    assert "systemctl disable --now ssh.socket ssh.service" in plan
    # Pinned, hash-checked, offline install: no git clone, no index.
    assert "verify sha256" in plan and SHA in plan
    assert "--require-hashes" in plan and "--no-index" in plan
    assert "git clone" not in plan and "git+" not in plan
    assert "--proto =https" in plan
    # The agent's user can read (not write) the venv: installed root-owned, go=rX.
    assert "chown -R root:root /opt/cotenant-agent" in plan
    assert "chmod -R u=rwX\\,go=rX /opt/cotenant-agent" in plan  # printf %q escapes the comma
    # The hardened unit is installed and started.
    # enabled for boots, and restarted so a re-run's new configuration (challenge) applies
    assert "systemctl enable cotenant-guest-agent.service" in plan
    assert plan.index("systemctl enable cotenant-guest-agent.service") < \
        plan.index("systemctl restart cotenant-guest-agent.service")
    # The configuration's content is never echoed; the dry run touches nothing.
    assert "marker-5f1e" not in plan + result.stderr
    assert list(tmp_path.iterdir()) == []


def test_debug_keeps_ssh_and_says_so(tmp_path: Path) -> None:
    result = _dry_run(tmp_path, "--debug")
    assert result.returncode == 0, result.stderr
    assert "ssh.socket" not in result.stdout and "systemctl mask" not in result.stdout
    assert "DEBUG deployment: SSH stays enabled" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--bundle-url", "http://x/b.tgz", "--bundle-sha256", SHA, "--config-b64", "eA=="],
     "https"),
    (["--bundle-url", "https://x/b.tgz", "--bundle-sha256", "abc", "--config-b64", "eA=="],
     "64 lowercase hex"),
    (["--bundle-url", "https://x/b.tgz", "--bundle-sha256", SHA], "--config-b64"),
    (["--bundle-url", "https://x/b.tgz", "--bundle-sha256", SHA, "--config-b64", "eA==",
      "--config-file", "/etc/cotenant/agent.toml"], "not both"),
    (["--bogus"], "unknown argument"),
])
def test_bad_arguments_fail_clearly(tmp_path: Path, args: list[str], message: str) -> None:
    result = _bootstrap("--dry-run", *args, root=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr


def test_root_prefix_is_refused_outside_a_dry_run(tmp_path: Path) -> None:
    result = _bootstrap("--bundle-url", "https://x/b.tgz", "--bundle-sha256", SHA,
                        "--config-b64", "eA==", root=tmp_path)
    assert result.returncode == 2  # either "must run as root" or "--root is only for --dry-run"


def test_unit_is_hardened() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    service = parser["Service"]
    expected = {
        "User": "cotenant-agent", "SupplementaryGroups": "tss", "NoNewPrivileges": "yes",
        "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
        "CapabilityBoundingSet": "", "LimitCORE": "0", "RestrictSUIDSGID": "yes",
        "DevicePolicy": "closed", "DeviceAllow": "/dev/tpmrm0 rw",
    }
    for key, value in expected.items():
        assert service.get(key) == value, key
    exec_start = service["ExecStart"]
    assert exec_start.startswith("/opt/cotenant-agent/venv/bin/python -m guest_agent run")
    assert "/etc/cotenant/agent.toml" in exec_start
    bootstrap = BOOTSTRAP.read_text()
    assert 'PREFIX="/opt/cotenant-agent"' in bootstrap and "/etc/cotenant" in bootstrap


def test_config_file_form_for_the_control_plane_bootstrap(tmp_path: Path) -> None:
    result = _bootstrap("--dry-run", "--bundle-url", "https://x/b.tgz", "--bundle-sha256", SHA,
                        "--config-file", "/etc/cotenant/agent.toml", root=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "install /etc/cotenant/agent.toml as" in result.stdout
    assert "(0640 root:cotenant-agent)" in result.stdout


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@pytest.mark.parametrize("unit", [UNIT.name, "cotenant-analytics.service"])
def test_systemd_rates_the_unit_as_well_hardened(unit: str) -> None:
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager",
                             str(INSTALL / unit)], capture_output=True, text=True, timeout=60)
    if "Unknown option" in result.stderr or "unrecognized option" in result.stderr:
        pytest.skip("systemd-analyze is too old for --offline")
    line = next(x for x in result.stdout.splitlines() if "Overall exposure level" in x)
    exposure = float(line.split(":", 1)[1].split()[0])
    assert exposure <= 2.0, result.stdout


# --- the analytics app's unit and install (bootstrap.sh --app-config-file)

APP_UNIT = INSTALL / "cotenant-analytics.service"


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser


def _all_values(path: Path, section: str, key: str) -> list[str]:
    """Every value of a repeatable directive (configparser keeps only the last one)."""
    current, values = "", []
    for line in path.read_text().splitlines():
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section and line.startswith(f"{key}="):
            values.append(line.split("=", 1)[1])
    return values


def test_app_unit_runs_unprivileged_with_only_the_port_80_capability() -> None:
    from cotenant.appconfig import APP_STATE_DIR
    from cotenant.cloud.bootstrap import APP_CONFIG_PATH
    from cotenant.plan import VM_BACKEND_PORT  # where the application gateway sends traffic

    unit = _unit(APP_UNIT)
    service = unit["Service"]
    expected = {
        "User": "cotenant-app", "Group": "cotenant-app",
        "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
        "PrivateTmp": "yes", "PrivateDevices": "yes", "LimitCORE": "0", "MemorySwapMax": "0",
        "RestrictSUIDSGID": "yes", "RestrictNamespaces": "yes", "LockPersonality": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "SystemCallArchitectures": "native",
        "StateDirectory": APP_STATE_DIR.name, "StateDirectoryMode": "0700", "UMask": "0077",
    }
    for key, value in expected.items():
        assert service.get(key) == value, key
    assert "User" in service and service["User"] != "root" and "DynamicUser" not in service
    assert "SupplementaryGroups" not in service  # not in tss: no vTPM for the app
    filters = _all_values(APP_UNIT, "Service", "SystemCallFilter")
    assert filters[0] == "@system-service" and "~@privileged" in filters[1]
    read_only = service["ReadOnlyPaths"].split()
    assert str(Path(APP_CONFIG_PATH).parent) in read_only and "/opt/cotenant-app" in read_only
    assert "/etc/cotenant" in service["InaccessiblePaths"]  # the agent's configuration
    assert service["ExecStart"] == (
        f"/opt/cotenant-app/venv/bin/python -m workloads.analytics --config {APP_CONFIG_PATH} "
        f"--host 0.0.0.0 --port {VM_BACKEND_PORT} --workers 2")
    after = unit["Unit"]["After"].split()
    wants = unit["Unit"]["Wants"].split()
    assert "cotenant-guest-agent.service" in after and "cotenant-guest-agent.service" in wants


def test_dry_run_with_an_app_installs_and_starts_it_after_the_agent(tmp_path: Path) -> None:
    result = _dry_run(tmp_path, "--app-config-file", "/etc/cotenant-analytics/app.toml")
    assert result.returncode == 0, result.stderr
    plan = result.stdout
    assert "useradd --system --no-create-home --home-dir /nonexistent --shell " \
           "/usr/sbin/nologin --user-group cotenant-app" in plan
    assert "-r " + str(tmp_path) + "/cotenant-bundle.dryrun/analytics.lock" in plan
    assert "(0640 root:cotenant-app)" in plan
    assert f"{tmp_path}/etc/systemd/system/cotenant-analytics.service" in plan
    assert plan.index("systemctl restart cotenant-guest-agent.service") < \
        plan.index("systemctl restart cotenant-analytics.service")
    assert list(tmp_path.iterdir()) == []


def test_without_an_app_nothing_of_it_is_installed(tmp_path: Path) -> None:
    result = _dry_run(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "cotenant-app" not in result.stdout and "analytics" not in result.stdout


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@pytest.mark.parametrize("unit", ["cotenant-guest-agent.service", "cotenant-analytics.service"])
def test_systemd_verifies_the_unit(unit: str, tmp_path: Path) -> None:
    """``systemd-analyze verify`` needs ExecStart's program: the venv's python is replaced by
    this machine's for the check only."""
    text = (INSTALL / unit).read_text()
    assert re.search(r"^ExecStart=/opt/cotenant-[a-z]+/venv/bin/python ", text, re.M)
    (tmp_path / unit).write_text(
        re.sub(r"/opt/cotenant-[a-z]+/venv/bin/python", sys.executable, text))
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(tmp_path / unit)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
