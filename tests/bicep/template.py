"""Evaluate a parsed Bicep template for given parameter values (test helper, no Bicep CLI).

``Template(path, params)`` resolves parameters, variables, ``concat``, conditionals, ``!``,
``==``, ``+``, property/index access on plain values, ``loadJsonContent``, string
interpolation and ``for`` loops, so tests can assert on the resources a deployment with those
parameters would declare. Anything that only exists in Azure (``nsg.id``, ``guid(...)``,
``resourceId(...)``) stays symbolic: a :class:`Ref` (``Ref("des.identity.principalId")``) or a
:class:`Call` (``Call("resource_id", {...})``).

pycep-parser renders identifiers and string literals alike; a string is taken as an identifier
only when it names a parameter, variable or loop variable in scope — the templates avoid string
literals that collide with those names.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cotenant.bicep_params import parse_bicep

_INTERPOLATION = re.compile(r"\$\{([^}]*)\}")


@dataclass(frozen=True)
class Ref:
    """A value Azure computes at deployment time, e.g. ``Ref("vault.id")``."""

    path: str

    def __str__(self) -> str:
        return self.path

    @property
    def root(self) -> str:
        return self.path.split(".")[0].split("[")[0]


@dataclass(frozen=True)
class Call:
    """A Bicep function evaluated by ARM, with its (evaluated) arguments."""

    name: str
    args: dict[str, Any] = field(hash=False)

    def __str__(self) -> str:
        shown = ", ".join(str(v) for v in self.args.values() if v is not None)
        return f"{self.name}({shown})"


@dataclass
class Resource:
    symbol: str
    type: str
    api_version: str
    existing: bool
    body: dict[str, Any]

    @property
    def properties(self) -> dict[str, Any]:
        return self.body.get("properties") or {}


class Template:
    def __init__(self, path: str | Path, params: dict[str, Any]):
        self.path = Path(path)
        self.raw = parse_bicep(self.path)
        self.resource_symbols = set(self.raw.get("resources") or {}) | set(
            self.raw.get("modules") or {}
        )
        self.params = dict(params)
        self.vars: dict[str, Any] = {}
        scope = {**self.params}
        for name, var in (self.raw.get("variables") or {}).items():
            self.vars[name] = self.eval(var["value"], scope)
            scope[name] = self.vars[name]
        self.scope = scope
        self.resources: dict[str, list[Resource]] = {}
        for symbol, res in (self.raw.get("resources") or {}).items():
            self.resources[symbol] = self._expand(symbol, res)
        self.outputs = {
            name: self.eval(out["value"], scope)
            for name, out in (self.raw.get("outputs") or {}).items()
        }

    # ---------------------------------------------------------------- queries

    def of_type(self, rtype: str, *, include_existing: bool = False) -> list[Resource]:
        return [
            r
            for instances in self.resources.values()
            for r in instances
            if r.type.lower() == rtype.lower() and (include_existing or not r.existing)
        ]

    def one(self, symbol: str) -> Resource:
        instances = self.resources[symbol]
        assert len(instances) == 1, f"{symbol}: {len(instances)} instances"
        return instances[0]

    def deployed(self) -> list[Resource]:
        return [r for instances in self.resources.values() for r in instances if not r.existing]

    # ---------------------------------------------------------------- evaluation

    def _expand(self, symbol: str, res: dict[str, Any]) -> list[Resource]:
        config = res["config"]
        make = lambda body: Resource(  # noqa: E731
            symbol, res["type"], res["api_version"], bool(res.get("existing")), body
        )
        if "loop_type" in config:
            return [make(body) for body in self._loop(config, self.scope)]
        if "condition" in config and "config" in config:
            if not self.eval(config["condition"], self.scope):
                return []
            return [make(self.eval(config["config"], self.scope))]
        return [make(self.eval(config, self.scope))]

    def _loop(self, node: dict[str, Any], scope: dict[str, Any]) -> list[Any]:
        detail = node["loop_type"]["detail"]
        array = self.eval(detail["array_name"], scope)
        assert isinstance(array, list), f"loop over non-list {detail['array_name']!r}"
        out = []
        for index, item in enumerate(array):
            inner = {**scope, detail["item_name"]: item}
            if detail.get("index_name"):
                inner[detail["index_name"]] = index
            if node.get("condition") is not None and not self.eval(node["condition"], inner):
                continue
            out.append(self.eval(node["config"], inner))
        return out

    def eval(self, node: Any, scope: dict[str, Any]) -> Any:
        if isinstance(node, str):
            return self._string(node, scope)
        if isinstance(node, list):
            return [self.eval(item, scope) for item in node]
        if not isinstance(node, dict):
            return node
        if "loop_type" in node:
            return self._loop(node, scope)
        if set(node) == {"operator"}:
            return self._operator(node["operator"], scope)
        if set(node) == {"function"}:
            return self._function(node["function"], scope)
        return {self._key(key, scope): self.eval(value, scope) for key, value in node.items()}

    def _key(self, key: str, scope: dict[str, Any]) -> str:
        """Object keys arrive with their quotes (``"'azd-service-name'"``, ``"'${id}'"``)."""
        if len(key) < 2 or not key[0] == key[-1] == "'":
            return key
        inner = key[1:-1]
        return str(self._string(inner, scope)) if "${" in inner else inner

    def _string(self, text: str, scope: dict[str, Any]) -> Any:
        if text in scope:
            return scope[text]
        if text in self.resource_symbols:
            return Ref(text)
        if "${" not in text:
            return text

        def substitute(match: re.Match[str]) -> str:
            value = self._dotted(match.group(1).strip(), scope)
            return value.path if isinstance(value, Ref) else str(value)

        return _INTERPOLATION.sub(substitute, text)

    def _dotted(self, expr: str, scope: dict[str, Any]) -> Any:
        head, *rest = expr.split(".")
        return self._access(self._string(head, scope), list(rest))

    def _access(self, value: Any, path: list[str | int]) -> Any:
        for part in path:
            if isinstance(value, Call):
                value = Ref(f"{value.name}()")
            if isinstance(value, Ref):
                step = f"[{part}]" if isinstance(part, int) else f".{part}"
                value = Ref(f"{value.path}{step}")
            elif isinstance(value, dict | list):
                value = value[part]
            else:
                raise AssertionError(f"cannot read .{part} of {value!r}")
        return value

    def _operator(self, op: dict[str, Any], scope: dict[str, Any]) -> Any:
        kind, operands = op["type"], op["operands"]
        if kind == "conditional":
            branch = "true_value" if self.eval(operands["condition"], scope) else "false_value"
            return self.eval(operands[branch], scope)
        if kind == "not":
            return not self.eval(operands["bool_value"], scope)
        if kind == "property_accessor":
            base = self.eval(operands["operand_1"], scope)
            return self._access(base, _path(operands["operand_2"]))
        left = self.eval(operands["operand_1"], scope)
        right = self.eval(operands["operand_2"], scope)
        if kind == "index_accessor":
            return Ref(f"{left.path}[{right}]") if isinstance(left, Ref) else left[right]
        if kind == "equals":
            return left == right
        if kind == "not_equals":
            return left != right
        if kind == "add":
            return left + right
        if kind == "and":
            return left and right
        if kind == "or":
            return left or right
        raise AssertionError(f"operator {kind!r} not supported by the test evaluator")

    def _function(self, fn: dict[str, Any], scope: dict[str, Any]) -> Any:
        kind, params = fn["type"], fn.get("parameters") or {}
        args = {key: self.eval(value, scope) for key, value in params.items()}
        if kind == "concat" and all(isinstance(v, list) for v in args.values()):
            return [item for value in args.values() for item in value]
        if kind == "empty":
            return not args["item_to_test"]
        if kind == "load_json_content":
            return json.loads((self.path.parent / args["file_path"]).read_text(encoding="utf-8"))
        return Call(kind, args)


def _path(node: Any) -> list[str | int]:
    """``a.b[0].c`` arrives right-nested: operand_2 is a name or another accessor."""
    if isinstance(node, str | int):
        return [node]
    operator = node["operator"]
    operands = operator["operands"]
    if operator["type"] == "index_accessor":
        return [*_path(operands["operand_1"]), operands["operand_2"]]
    return [*_path(operands["operand_1"]), *_path(operands["operand_2"])]


def identifiers_in(node: Any) -> set[str]:
    """Every bare string and interpolated name in a raw (unevaluated) pycep node."""
    found: set[str] = set()
    if isinstance(node, str):
        found.add(node)
        for inner in _INTERPOLATION.findall(node):
            found.update(re.findall(r"[A-Za-z_]\w*", inner))
    elif isinstance(node, list):
        for item in node:
            found |= identifiers_in(item)
    elif isinstance(node, dict):
        for value in node.values():
            found |= identifiers_in(value)
    return found
