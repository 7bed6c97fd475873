"""The analytics app's configuration: the schema is shared with the control plane
(``cotenant.wire.app``, see its docstring for an example); this module reads the file."""

from __future__ import annotations

import tomllib
from pathlib import Path

from cotenant.wire.app import AppConfig, AppConfigError, Partner, parse_app_config

__all__ = ["AppConfig", "AppConfigError", "Partner", "load_app_config", "parse_app_config"]


def load_app_config(path: str | Path) -> AppConfig:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise AppConfigError([f"{path}: cannot read ({exc.__class__.__name__})"]) from None
    return parse_app_config(data)
