"""The parameters a Bicep file declares, read with pycep-parser (no Bicep CLI needed).

Shared by the tests (the parameter contract of ``cotenant.deployments``) and by the lab's
resource manager, which validates every deployment's parameters against the real template:

    declared = declared_parameters("bicep/tenant/cvm.bicep")
    problems = check_parameters(declared, values)   # [] when the values fit the template

A parameter is *required* when it has no default value and its type is not nullable (``string?``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pycep import BicepParser

__all__ = ["BicepParseError", "ParamInfo", "check_parameters", "declared_parameters", "parse_bicep"]

_NULLABLE = re.compile(r"^\s*param\s+(\w+)\s+[\w.]+(?:\[\])?\?", re.MULTILINE)
_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "securestring": (str,),
    "int": (int,),
    "bool": (bool,),
    "object": (dict,),
    "secureobject": (dict,),
    "array": (list, tuple),
}


class BicepParseError(ValueError):
    """The file is missing or is not Bicep that pycep-parser understands."""


@dataclass(frozen=True)
class ParamInfo:
    type: str
    required: bool
    secure: bool
    allowed: tuple[Any, ...] | None = None
    min_length: int | None = None
    max_length: int | None = None
    min_value: int | None = None
    max_value: int | None = None
    description: str | None = None


@lru_cache(maxsize=64)
def _parse_cached(path: Path, mtime_ns: int, size: int) -> dict[str, Any]:
    del mtime_ns, size  # cache keys only: a changed file is parsed again
    try:
        return BicepParser().parse(file_path=path)
    except Exception as exc:  # lark raises many exception types; callers get one
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BicepParseError(f"{path.name}: cannot parse Bicep: {first}") from None


def parse_bicep(path: str | Path) -> dict[str, Any]:
    """The pycep-parser JSON of a Bicep file (cached per file version). Do not mutate it."""
    path = Path(path).resolve()
    try:
        stat = path.stat()
    except OSError as exc:
        raise BicepParseError(f"{path}: {exc.strerror or exc}") from None
    return _parse_cached(path, stat.st_mtime_ns, stat.st_size)


def declared_parameters(path: str | Path) -> dict[str, ParamInfo]:
    """Every parameter the Bicep file declares, in declaration order."""
    path = Path(path)
    template = parse_bicep(path)
    nullable = set(_NULLABLE.findall(path.read_text(encoding="utf-8")))
    result: dict[str, ParamInfo] = {}
    for name, raw in (template.get("parameters") or {}).items():
        decorators = {d["type"]: d.get("argument") for d in raw.get("decorators") or []}
        ptype = str(raw.get("type"))
        allowed = decorators.get("allowed")
        result[name] = ParamInfo(
            type=ptype,
            required=raw.get("default") is None and name not in nullable,
            secure="secure" in decorators or ptype.startswith("secure"),
            allowed=tuple(allowed) if isinstance(allowed, list) else None,
            min_length=decorators.get("min_length"),
            max_length=decorators.get("max_length"),
            min_value=decorators.get("min_value"),
            max_value=decorators.get("max_value"),
            description=_unescape(decorators.get("description")),
        )
    return result


def _unescape(text: Any) -> str | None:
    return text.replace("\\'", "'") if isinstance(text, str) else None


def check_parameters(declared: dict[str, ParamInfo], values: dict[str, Any]) -> list[str]:
    """Problems (one line each) of passing ``values`` to a template declaring ``declared``.

    Checks missing required parameters, unknown ones, the value's type, ``@allowed``,
    ``@minLength``/``@maxLength`` and ``@minValue``/``@maxValue``. Values of secure parameters
    never appear in the messages.
    """
    problems = [f"missing required parameter {n!r}" for n, p in declared.items()
                if p.required and n not in values]
    problems += [f"unknown parameter {n!r}" for n in values if n not in declared]
    for name, value in values.items():
        info = declared.get(name)
        if info is not None and not (value is None and not info.required):
            problems += _value_problems(name, info, value)
    return problems


def _value_problems(name: str, info: ParamInfo, value: Any) -> list[str]:
    expected = _PYTHON_TYPES.get(info.type.lower())
    if expected is not None:
        is_bool = isinstance(value, bool)
        if not isinstance(value, expected) or (is_bool and bool not in expected):
            return [f"parameter {name!r} must be of type {info.type}, not {type(value).__name__}"]
    shown = "(secure value)" if info.secure else repr(value)
    problems = []
    if info.allowed is not None and value not in info.allowed:
        problems.append(f"parameter {name!r}: {shown} is not one of {list(info.allowed)}")
    if isinstance(value, str | list | tuple | dict):
        if info.min_length is not None and len(value) < info.min_length:
            problems.append(f"parameter {name!r} is shorter than {info.min_length}")
        if info.max_length is not None and len(value) > info.max_length:
            problems.append(f"parameter {name!r} is longer than {info.max_length}")
    if isinstance(value, int) and not isinstance(value, bool):
        if info.min_value is not None and value < info.min_value:
            problems.append(f"parameter {name!r} is below {info.min_value}")
        if info.max_value is not None and value > info.max_value:
            problems.append(f"parameter {name!r} is above {info.max_value}")
    return problems
