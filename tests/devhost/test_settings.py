"""host.json, local.settings.json, keys and route templates."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from cotenant.devhost.routes import RouteError, compile_route
from cotenant.devhost.settings import SettingsError, load_config, timespan_seconds

from .conftest import APP


def _app(tmp_path: Path, host: dict | None = None, values: dict | None = None) -> Path:
    app = tmp_path / "function_app.py"
    app.write_text("")
    (tmp_path / "host.json").write_text(json.dumps(host or {"version": "2.0"}))
    (tmp_path / "local.settings.json").write_text(json.dumps({"Values": values or {}}))
    return app


def test_sample_app_settings() -> None:
    config = load_config(APP, overrides={"DEVHOST_SAMPLE_QUEUE": "x"})
    assert config.route_prefix == "api"
    assert config.hub_name == "DevhostSample"
    assert config.max_concurrent_activities == 8
    assert config.queues.max_dequeue_count == 5 and config.queues.base64
    assert config.storage and "127.0.0.1:10002" in config.storage  # UseDevelopmentStorage
    assert config.values["FUNCTIONS_WORKER_RUNTIME"] == "python"


def test_keys_are_generated_once_and_private(tmp_path: Path) -> None:
    app = _app(tmp_path)
    first = load_config(app).keys
    keys_file = tmp_path / ".devhost" / "keys.json"
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    again = load_config(app).keys
    assert again.master == first.master and again.default == first.default
    assert len(first.master) >= 40
    assert first.allows("f", first.default[0])
    assert not first.allows("f", first.default[0], admin=True)
    assert first.allows("f", first.master, admin=True)
    assert not first.allows("f", None) and not first.allows("f", "guess")


def test_per_function_keys(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps({"masterKey": "m" * 40, "functions": {"a": {"k": "ka"}}}))
    keys = load_config(_app(tmp_path), keys_file=keys_file).keys
    assert keys.allows("a", "ka") and not keys.allows("b", "ka")


def test_host_json_options(tmp_path: Path) -> None:
    app = _app(tmp_path, {"version": "2.0", "extensions": {
        "http": {"routePrefix": ""},
        "durableTask": {"hubName": "%HUB%", "overridableExistingInstanceStates": "AnyState"},
        "queues": {"visibilityTimeout": "00:00:30", "messageEncoding": "none"}}},
        {"HUB": "MyHub", "DEVHOST_MASTER_KEY": "m" * 40})
    config = load_config(app)
    assert config.route_prefix == "" and config.hub_name == "MyHub" and config.override_running
    assert config.queues.visibility_timeout == 30 and not config.queues.base64


def test_app_settings_override_host_json(tmp_path: Path) -> None:
    """``AzureFunctionsJobHost__<path>`` settings override host.json, case-insensitively,
    as on Azure; invalid overrides are refused like invalid host.json values."""
    app = _app(tmp_path, {"version": "2.0", "extensions": {
        "queues": {"maxPollingInterval": "00:00:02", "batchSize": 16},
        "durableTask": {"maxConcurrentActivityFunctions": 8}}},
        {"DEVHOST_MASTER_KEY": "m" * 40,
         "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.100"})
    config = load_config(app, overrides={
        "AZUREFUNCTIONSJOBHOST__Extensions__DurableTask__MaxConcurrentActivityFunctions": "32",
        "AzureFunctionsJobHost__extensions__http__routePrefix": "v1"})
    assert config.queues.max_polling_interval == pytest.approx(0.1)
    assert config.queues.batch_size == 16  # untouched
    assert config.max_concurrent_activities == 32
    assert config.route_prefix == "v1"  # a section host.json did not have
    with pytest.raises(SettingsError, match="maxConcurrentActivityFunctions"):
        load_config(app, overrides={
            "AzureFunctionsJobHost__extensions__durableTask__maxConcurrentActivityFunctions":
                "0"})


@pytest.mark.parametrize("host", [
    {"extensions": {"durableTask": {"hubName": "bad-name"}}},
    {"extensions": {"durableTask": {"maxConcurrentActivityFunctions": 0}}},
    {"extensions": {"queues": {"visibilityTimeout": "soon"}}},
])
def test_invalid_host_json(tmp_path: Path, host: dict) -> None:
    with pytest.raises(SettingsError):
        load_config(_app(tmp_path, host, {"DEVHOST_MASTER_KEY": "m" * 40}))


def test_malformed_json_is_one_clear_error(tmp_path: Path) -> None:
    app = _app(tmp_path)
    (tmp_path / "host.json").write_text("{nope")
    with pytest.raises(SettingsError, match="host.json is not valid JSON"):
        load_config(app)


def test_timespans() -> None:
    assert timespan_seconds("00:00:02") == 2
    assert timespan_seconds("1.02:00:00.5") == 93600.5


def test_route_templates() -> None:
    route = compile_route("api", "tenants/{name}/parties/{party:alpha}/{rest?}")
    assert route.match("/api/tenants/t1/parties/contoso") == {"name": "t1", "party": "contoso"}
    assert route.match("/api/tenants/t1/parties/c0ntoso") is None
    assert route.match("/api/tenants/t1/parties/contoso/x") == {
        "name": "t1", "party": "contoso", "rest": "x"}
    assert compile_route("", "files/{*path}").match("/files/a/b/c") == {"path": "a/b/c"}
    with pytest.raises(RouteError):
        compile_route("api", "x/{id:regex(^a$)}")
    with pytest.raises(RouteError):
        compile_route("api", "x/pre{id}")
