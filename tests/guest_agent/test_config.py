"""AgentConfig: TOML round trip, boundary validation, loopback-only API, CLI errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from guest_agent.config import ConfigError, load_config, parse_config, write_config
from tests.guest_agent.helpers import config_data


def _base() -> dict:
    class _FakeAzurite:  # only the URLs are used; nothing is contacted
        queue_url = "http://127.0.0.1:10001/devstoreaccount1"
        connection_string = "UseDevelopmentStorage=true"

    return config_data(_FakeAzurite())  # type: ignore[arg-type]


def test_toml_round_trip(tmp_path: Path) -> None:
    config = parse_config(_base())
    path = write_config(config, tmp_path / "agent.toml")
    assert path.stat().st_mode & 0o077 == 0  # owner-only: it may hold a connection string
    again = load_config(path)
    assert again == config
    assert again.allow_private_key_release is False
    assert again.api.force_non_loopback is False
    assert again.find_key("contoso-kv.vault.azure.net", "contoso-secret-key") is not None
    assert again.find_key("https://contoso-kv.vault.azure.net", "contoso-secret-key") is not None
    assert again.find_key("evil.vault.azure.net", "contoso-secret-key") is None


def test_connection_string_is_not_in_repr() -> None:
    config = parse_config(_base())
    assert "UseDevelopmentStorage" not in repr(config)


@pytest.mark.parametrize("listen", ["0.0.0.0:8080", "10.0.1.4:8080", "localhost:8080",
                                    "[::]:8080"])
def test_non_loopback_listen_is_refused(listen: str) -> None:
    data = _base()
    data["api"] = {"listen": listen}
    with pytest.raises(ConfigError, match="not a loopback address"):
        parse_config(data)


def test_non_loopback_listen_allowed_only_when_forced() -> None:
    data = _base()
    data["api"] = {"listen": "0.0.0.0:8080", "force_non_loopback": True}
    assert parse_config(data).api.host == "0.0.0.0"


@pytest.mark.parametrize(("vault", "why"), [
    ("http://contoso-kv.vault.azure.net", "https"),
    ("https://contoso-kv.vault.azure.net/keys/x", "path"),
    ("https://user:pw@contoso-kv.vault.azure.net", "credentials"),
    ("https://contoso-kv.vault.azure.net?x=1", "query"),
])
def test_vault_url_must_be_a_plain_https_origin(vault: str, why: str) -> None:
    data = _base()
    data["keys"] = [{"vault_url": vault, "name": "k"}]
    with pytest.raises(ConfigError, match=why):
        parse_config(data)


def test_rejects_unknown_fields_duplicates_and_sas() -> None:
    data = _base()
    data["surprise"] = 1
    with pytest.raises(ConfigError, match="surprise"):
        parse_config(data)
    data = _base()
    data["keys"] = data["keys"] + [data["keys"][0]]
    with pytest.raises(ConfigError, match="listed twice"):
        parse_config(data)
    data = _base()
    data["queues"]["reports_url"] += "?sig=abc"
    with pytest.raises(ConfigError, match="SAS"):
        parse_config(data)


def test_keys_are_one_key_whatever_their_case_and_fit_one_outcomes_report() -> None:
    """The start-up pass reports one outcome per key and probe in one message: a key listed
    twice in another case, or more keys than a report carries, fail at start, not later."""
    data = _base()
    first = data["keys"][0]
    data["isolation_probes"] = [{**first, "name": first["name"].upper()}]
    with pytest.raises(ConfigError, match="both allowed and probed"):
        parse_config(data)
    data = _base()
    data["isolation_probes"] = [{**first, "name": f"other-{i}"} for i in range(64)]
    with pytest.raises(ConfigError, match="at most 64 keys and isolation_probes"):
        parse_config(data)
    data["isolation_probes"] = data["isolation_probes"][:64 - len(data["keys"])]
    assert len(parse_config(data).isolation_probes) == 64 - len(data["keys"])


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guest_agent", *args],
                          capture_output=True, text=True, timeout=60)


def test_cli_reports_config_problems_in_one_line_each(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('tenant = "acme"\n')
    result = _cli("check-config", "--config", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert all(line.startswith("error: ") for line in result.stderr.splitlines())
    assert "party" in result.stderr


def test_cli_run_refuses_a_non_loopback_bind(tmp_path: Path) -> None:
    data = _base()
    path = tmp_path / "agent.toml"
    write_config(parse_config(data), path)
    text = path.read_text().replace(data["api"]["listen"], "0.0.0.0:8080")
    path.write_text(text)
    result = _cli("run", "--config", str(path))
    assert result.returncode == 2
    assert "not a loopback address" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_run_fails_fast_when_the_api_port_is_taken(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        data = _base()
        data["api"] = {"listen": f"127.0.0.1:{taken.getsockname()[1]}"}
        path = write_config(parse_config(data), tmp_path / "agent.toml")
        result = _cli("run", "--config", str(path))
    assert result.returncode == 2
    assert "cannot listen on 127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr
