"""``%Name%`` placeholders in binding properties, resolved from app settings as the host does."""

from __future__ import annotations

import re

from .settings import SettingsError

_PLACEHOLDER = re.compile(r"%([^%]+)%")


def resolve(value: str, values: dict[str, str]) -> str:
    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise SettingsError(f"app setting {name!r} (used as %{name}%) is not defined")
        return values[name]

    return _PLACEHOLDER.sub(lookup, value)
