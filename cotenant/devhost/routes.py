"""HTTP trigger route templates (ASP.NET style) compiled to matchers."""

from __future__ import annotations

import re
from dataclasses import dataclass

_PARAM = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z]+)(?:\([^)]*\))?)?(\?)?\}")
_CONSTRAINTS = {
    "int": r"-?\d+", "long": r"-?\d+", "alpha": r"[A-Za-z]+", "bool": r"(?i:true|false)",
    "guid": r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}",
    "double": r"-?\d+(?:\.\d+)?", "float": r"-?\d+(?:\.\d+)?", "decimal": r"-?\d+(?:\.\d+)?",
}


class RouteError(ValueError):
    """A route template the devhost cannot parse."""


@dataclass(frozen=True)
class Route:
    template: str
    pattern: re.Pattern[str]
    literal_segments: int

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(path)
        if found is None:
            return None
        return {k: v for k, v in found.groupdict().items() if v is not None}


def compile_route(prefix: str, template: str) -> Route:
    """``orders/{id:int}/{rest?}`` under prefix ``api`` → a case-insensitive matcher."""
    segments = [s for s in f"{prefix}/{template}".split("/") if s]
    regex = ""
    literals = 0
    for segment in segments:
        param = _PARAM.fullmatch(segment)
        if param is None:
            if "{" in segment or "}" in segment:
                raise RouteError(f"unsupported route segment {segment!r} in {template!r}")
            regex += "/" + re.escape(segment)
            literals += 1
            continue
        catch_all, name, constraint, optional = param.groups()
        if constraint and constraint.lower() not in _CONSTRAINTS:
            raise RouteError(f"unsupported route constraint {constraint!r} in {template!r}")
        body = ".*" if catch_all else _CONSTRAINTS.get((constraint or "").lower(), r"[^/]+")
        group = f"(?P<{name}>{body})"
        regex += f"(?:/{group})?" if optional or catch_all else f"/{group}"
    return Route(template, re.compile(regex or "/", re.IGNORECASE), literals)
