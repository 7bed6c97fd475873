"""What ``func start`` reads before starting the host: host.json, local.settings.json, keys."""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cotenant.azurite import DEV_ACCOUNT, DEV_KEY


class SettingsError(ValueError):
    """host.json, local.settings.json or the keys file is invalid."""


_DEV_STORAGE = (
    f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
    f"BlobEndpoint=http://127.0.0.1:10000/{DEV_ACCOUNT};"
    f"QueueEndpoint=http://127.0.0.1:10001/{DEV_ACCOUNT};"
    f"TableEndpoint=http://127.0.0.1:10002/{DEV_ACCOUNT};"
)
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?$")
_HUB = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,44}$")


def timespan_seconds(value: str) -> float:
    """A .NET TimeSpan (``[d.]hh:mm:ss[.fff]``) in seconds."""
    match = _TIMESPAN.match(value.strip())
    if not match:
        raise SettingsError(f"not a TimeSpan (hh:mm:ss): {value!r}")
    days, hours, minutes, seconds, fraction = match.groups()
    total = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds)
    return total + (float(f"0.{fraction}") if fraction else 0.0)


def resolve_connection(value: str | None) -> str | None:
    """A storage connection string, with ``UseDevelopmentStorage=true`` made explicit."""
    if not value:
        return None
    if value.replace(" ", "").lower().startswith("usedevelopmentstorage=true"):
        return _DEV_STORAGE
    return value


def same_secret(presented: str, expected: str) -> bool:
    """Constant-time comparison of a presented key with an expected one. Compares UTF-8
    bytes: ``compare_digest`` refuses non-ASCII ``str`` (a TypeError, i.e. a 500), and a
    caller's key may be anything — even undecodable header bytes, which the HTTP server hands
    over as surrogate escapes (``surrogatepass`` encodes every ``str``, one-to-one)."""
    return secrets.compare_digest(presented.encode("utf-8", "surrogatepass"),
                                  expected.encode("utf-8", "surrogatepass"))


@dataclass
class Keys:
    """Function keys: ``x-functions-key`` header or ``code`` query parameter."""

    master: str
    default: list[str] = field(default_factory=list)
    per_function: dict[str, list[str]] = field(default_factory=dict)
    source: str = ""

    def allows(self, function: str, presented: str | None, *, admin: bool = False) -> bool:
        if not presented:
            return False
        accepted = [self.master] if admin else \
            [self.master, *self.default, *self.per_function.get(function, [])]
        return any(same_secret(presented, key) for key in accepted if key)


@dataclass
class QueueSettings:
    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0
    batch_size: int = 16
    max_polling_interval: float = 2.0
    base64: bool = True


@dataclass
class HostConfig:
    app_path: Path
    values: dict[str, str]
    keys: Keys
    route_prefix: str = "api"
    hub_name: str = "TestHubName"
    max_concurrent_activities: int = 10
    override_running: bool = False
    queues: QueueSettings = field(default_factory=QueueSettings)

    @property
    def storage(self) -> str | None:
        return resolve_connection(self.values.get("AzureWebJobsStorage"))

    def connection(self, name: str | None) -> str | None:
        name = name or "AzureWebJobsStorage"
        raw = self.values.get(name) or self.values.get(f"{name}__connectionString") \
            or self.values.get(f"AzureWebJobs{name}")
        return resolve_connection(raw)


HOST_OVERRIDE_PREFIX = "AzureFunctionsJobHost__"


def with_host_overrides(host: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    """host.json with the app settings ``AzureFunctionsJobHost__<path>`` applied, as the
    Functions host does: ``__`` separates the levels and keys match case-insensitively
    (``AzureFunctionsJobHost__extensions__queues__maxPollingInterval`` = ``00:00:00.100``)."""
    merged = copy.deepcopy(host)
    for key, value in sorted(values.items()):
        if not key.lower().startswith(HOST_OVERRIDE_PREFIX.lower()):
            continue
        *parents, leaf = key[len(HOST_OVERRIDE_PREFIX):].split("__")
        node = merged
        for part in parents:
            name = next((k for k in node if k.lower() == part.lower()), part)
            if not isinstance(node.get(name), dict):
                node[name] = {}
            node = node[name]
        node[next((k for k in node if k.lower() == leaf.lower()), leaf)] = value
    return merged


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{path.name} is not valid JSON: {exc.msg} (line {exc.lineno})") \
            from exc
    if not isinstance(data, dict):
        raise SettingsError(f"{path.name} must hold a JSON object")
    return data


def _load_keys(app_dir: Path, values: dict[str, str], keys_file: Path | None) -> Keys:
    path = keys_file or app_dir / ".devhost" / "keys.json"
    data = _read_json(path)
    master = values.get("DEVHOST_MASTER_KEY") or data.get("masterKey")
    default = [k for k in (values.get("DEVHOST_FUNCTION_KEY"),
                           *(data.get("functionKeys") or {}).values()) if k]
    per_function = {name: list((keys or {}).values())
                    for name, keys in (data.get("functions") or {}).items()}
    if not master:
        # Like the host's first start: create keys and keep them where only the user reads them.
        master = secrets.token_urlsafe(32)
        default = default or [secrets.token_urlsafe(32)]
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"masterKey": master, "functionKeys": {"default": default[0]},
               "functions": data.get("functions") or {}}
        path.write_text(json.dumps(doc, indent=2))
        path.chmod(0o600)
    source = "local.settings.json" if values.get("DEVHOST_MASTER_KEY") else str(path)
    return Keys(master, default, per_function, source)


def load_config(app_path: str | Path, *, overrides: dict[str, str] | None = None,
                keys_file: Path | None = None) -> HostConfig:
    """Read host.json and local.settings.json next to ``app_path``.

    Values precedence: ``overrides`` > process environment > local.settings.json ``Values``.
    """
    path = Path(app_path).resolve()
    app_dir = path.parent
    host = _read_json(app_dir / "host.json")
    local = _read_json(app_dir / "local.settings.json")
    values = {str(k): str(v) for k, v in (local.get("Values") or {}).items()}
    for key in list(values):
        if key in os.environ:
            values[key] = os.environ[key]
    for key in ("AzureWebJobsStorage",):
        if key not in values and key in os.environ:
            values[key] = os.environ[key]
    values.update(overrides or {})
    host = with_host_overrides(host, values)
    ext = host.get("extensions") or {}
    http = ext.get("http") or {}
    durable = ext.get("durableTask") or {}
    queues = ext.get("queues") or {}
    hub = str(values.get("DEVHOST_TASK_HUB") or durable.get("hubName") or "TestHubName")
    if "%" in hub:
        hub = values.get(hub.strip("%"), "TestHubName")
    if not _HUB.match(hub):
        raise SettingsError(f"task hub name {hub!r} must be 3-45 letters and digits, "
                            "starting with a letter")
    try:
        queue_settings = QueueSettings(
            max_dequeue_count=int(queues.get("maxDequeueCount", 5)),
            visibility_timeout=timespan_seconds(str(queues.get("visibilityTimeout", "00:00:00"))),
            batch_size=int(queues.get("batchSize", 16)),
            max_polling_interval=min(2.0, timespan_seconds(
                str(queues.get("maxPollingInterval", "00:00:02")))),
            base64=str(queues.get("messageEncoding", "base64")).lower() != "none")
        config = HostConfig(
            app_path=path, values=values,
            keys=_load_keys(app_dir, values, keys_file),
            route_prefix=str(http.get("routePrefix", "api")).strip("/"),
            hub_name=hub,
            max_concurrent_activities=int(durable.get("maxConcurrentActivityFunctions",
                                                      10 * (os.cpu_count() or 1))),
            override_running=str(durable.get("overridableExistingInstanceStates", ""))
            .lower() == "anystate",
            queues=queue_settings)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"host.json: {exc}") from exc
    if config.max_concurrent_activities < 1:
        raise SettingsError("host.json: maxConcurrentActivityFunctions must be at least 1")
    return config


def apply_environment(config: HostConfig) -> dict[str, str | None]:
    """Put the app settings into the environment, as the host does for the worker.

    Returns the previous values, for :func:`restore_environment`.
    """
    previous = {key: os.environ.get(key) for key in config.values}
    for key, value in config.values.items():
        os.environ[key] = value
    return previous


def restore_environment(previous: dict[str, str | None]) -> None:
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
