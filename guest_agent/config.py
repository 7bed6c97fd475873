"""The guest agent's configuration file.

The schema (``AgentConfig`` and its parts) lives in ``cotenant.wire.agent_config``, shared with
the control plane that writes it; this module re-exports it and reads and writes the file.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from cotenant.wire.agent_config import (
    CONFIG_SCHEMA_VERSION,
    IMDS_ENV,
    AgentConfig,
    Api,
    Attestation,
    ConfigError,
    Identity,
    Orchestration,
    Queues,
    Tls,
    is_loopback,
    parse_config,
)
from cotenant.wire.fields import KeyRef

__all__ = [
    "CONFIG_SCHEMA_VERSION", "IMDS_ENV", "AgentConfig", "Api", "Attestation", "ConfigError",
    "Identity", "KeyRef", "Orchestration", "Queues", "Tls", "is_loopback", "load_config",
    "parse_config", "write_config",
]


def load_config(path: str | Path) -> AgentConfig:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read ({exc.__class__.__name__})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: invalid TOML ({exc})"]) from None
    return parse_config(data)


def write_config(config: AgentConfig, path: str | Path) -> Path:
    """Write ``config`` as TOML readable only by the owner."""
    path = Path(path)
    path.write_text(config.to_toml(), encoding="utf-8")
    path.chmod(0o600)
    return path
