"""Key Vault's Secure Key Release policy language: build, parse, evaluate, explain.

Grammar (``skr-protocol.md`` §2)::

    policy    := {"version": str, "anyOf" | "allOf": [authority-block, ...]}
    authority := {"authority": https-url, "anyOf" | "allOf": [condition, ...]}
    condition := {"claim": dotted.path, <operator>: scalar}
               | {"anyOf" | "allOf": [condition, ...]}

Evaluation follows Key Vault: a block applies only when the token's issuer equals its
authority (one trailing ``/`` ignored on both sides); a dotted claim path walks nested objects
(arrays cannot be addressed; object values cannot be compared); a missing claim makes its
condition false; values are compared loosely through their canonical JSON text, so the policy
string ``"false"`` matches the boolean claim ``false`` and ``"0"`` matches the integer ``0``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from cotenant.problems import Problem, join_problems

OPERATORS = ("equals", "notEquals", "less", "lessOrEquals", "greater", "greaterOrEquals", "exists")
COMBINATORS = ("anyOf", "allOf")
POLICY_VERSION = "1.0.0"

Combinator = Literal["anyOf", "allOf"]
Scalar = str | int | float | bool


class PolicyError(ValueError):
    """The policy document is not valid; ``problems`` lists every grammar error with its path."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__(join_problems(problems))


# ------------------------------------------------------------------------------ model


@dataclass(frozen=True)
class Condition:
    claim: str
    operator: str
    value: Scalar

    def to_dict(self) -> dict[str, Any]:
        return {"claim": self.claim, self.operator: self.value}

    def describe(self) -> str:
        if self.operator == "exists":
            return f"{self.claim} exists"
        return f"{self.claim} {self.operator} {json.dumps(self.value)}"


@dataclass(frozen=True)
class Group:
    combinator: Combinator
    items: tuple[Node, ...]

    def to_dict(self) -> dict[str, Any]:
        return {self.combinator: [item.to_dict() for item in self.items]}


Node = Condition | Group


@dataclass(frozen=True)
class AuthorityBlock:
    authority: str
    rule: Group

    def to_dict(self) -> dict[str, Any]:
        return {"authority": self.authority, **self.rule.to_dict()}


@dataclass(frozen=True)
class ReleasePolicy:
    version: str
    combinator: Combinator
    blocks: tuple[AuthorityBlock, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            self.combinator: [block.to_dict() for block in self.blocks],
        }

    @property
    def authorities(self) -> list[str]:
        return [block.authority for block in self.blocks]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    explanation: str
    authority: str | None = None  # the authority block that decided a release
    trace: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.allowed


# ------------------------------------------------------------------------------ parsing


def parse_policy(doc: dict | str | bytes) -> ReleasePolicy:
    """Parse and validate a release-policy document.

    ``doc`` is the JSON object, its JSON text, or the base64url text Key Vault stores in
    ``release_policy.data``. Raises :class:`PolicyError` listing every problem with its path.
    """
    data = _load_document(doc)
    problems: list[Problem] = []
    policy = _parse_root(data, problems)
    if problems or policy is None:
        raise PolicyError(problems or [Problem("", "empty policy")])
    return policy


def condition_problems(doc: Any, path: str) -> list[Problem]:
    """Grammar problems of one condition (``{"claim": ..., <op>: ...}`` or a nested group)."""
    problems: list[Problem] = []
    _parse_node(doc, path, problems)
    return problems


def _load_document(doc: dict | str | bytes) -> Any:
    if isinstance(doc, dict):
        return doc
    if isinstance(doc, bytes):
        try:
            doc = doc.decode("utf-8")
        except UnicodeDecodeError:
            raise PolicyError([Problem("", "policy is not UTF-8 text")]) from None
    if not isinstance(doc, str):
        raise PolicyError([Problem("", "policy must be a JSON object")])
    text = doc.strip()
    if text and not text.startswith("{"):
        text = _b64url_decode(text)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise PolicyError([Problem("", f"policy is not valid JSON: {exc}")]) from None


def _b64url_decode(text: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return raw.decode("utf-8")
    except (binascii.Error, ValueError):
        raise PolicyError([Problem("", "policy is neither JSON nor base64url JSON")]) from None


def _combinator_of(data: dict, path: str, problems: list[Problem]) -> Combinator | None:
    present = [c for c in COMBINATORS if c in data]
    if len(present) != 1:
        what = "both anyOf and allOf" if present else "neither anyOf nor allOf"
        problems.append(Problem(path, f"needs exactly one of anyOf/allOf, has {what}"))
        return None
    return present[0]  # type: ignore[return-value]


def _items_of(data: dict, combinator: str, path: str, problems: list[Problem]) -> list | None:
    items = data[combinator]
    if not isinstance(items, list) or not items:
        problems.append(Problem(_join(path, combinator), "must be a non-empty list"))
        return None
    return items


def _unknown_keys(data: dict, allowed: Iterable[str], path: str, problems: list[Problem]) -> None:
    allowed = set(allowed)
    for key in data:
        if key not in allowed:
            problems.append(Problem(_join(path, str(key)), "unknown field"))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _parse_root(data: Any, problems: list[Problem]) -> ReleasePolicy | None:
    if not isinstance(data, dict):
        problems.append(Problem("", "policy must be a JSON object"))
        return None
    _unknown_keys(data, ("version", *COMBINATORS), "", problems)
    version = data.get("version")
    if not isinstance(version, str) or not version.strip():
        problems.append(Problem("version", "required (a string such as \"1.0.0\")"))
    combinator = _combinator_of(data, "", problems)
    if combinator is None:
        return None
    items = _items_of(data, combinator, "", problems)
    if items is None:
        return None
    blocks = [_parse_block(item, f"{combinator}[{i}]", problems) for i, item in enumerate(items)]
    if any(b is None for b in blocks) or not isinstance(version, str):
        return None
    return ReleasePolicy(version, combinator, tuple(b for b in blocks if b is not None))


def _parse_block(data: Any, path: str, problems: list[Problem]) -> AuthorityBlock | None:
    if not isinstance(data, dict):
        problems.append(Problem(path, "an authority block must be an object"))
        return None
    _unknown_keys(data, ("authority", *COMBINATORS), path, problems)
    authority = data.get("authority")
    authority_ok = isinstance(authority, str) and authority.startswith("https://")
    if not authority_ok:
        problems.append(Problem(_join(path, "authority"), "required: an https:// URL"))
    combinator = _combinator_of(data, path, problems)
    if combinator is None:
        return None
    rule = _parse_group(data, combinator, path, problems)
    if rule is None or not authority_ok:
        return None
    return AuthorityBlock(authority, rule)


def _parse_group(
    data: dict, combinator: Combinator, path: str, problems: list[Problem]
) -> Group | None:
    items = _items_of(data, combinator, path, problems)
    if items is None:
        return None
    nodes = [_parse_node(item, f"{_join(path, combinator)}[{i}]", problems) for i, item in
             enumerate(items)]
    if any(n is None for n in nodes):
        return None
    return Group(combinator, tuple(n for n in nodes if n is not None))


def _parse_node(data: Any, path: str, problems: list[Problem]) -> Node | None:
    if not isinstance(data, dict):
        problems.append(Problem(path, "a condition must be an object"))
        return None
    if "claim" not in data:
        if "authority" in data:
            problems.append(Problem(_join(path, "authority"), "only allowed in a top-level block"))
            return None
        _unknown_keys(data, COMBINATORS, path, problems)
        combinator = _combinator_of(data, path, problems)
        if combinator is None:
            return None
        return _parse_group(data, combinator, path, problems)
    return _parse_condition(data, path, problems)


def _parse_condition(data: dict, path: str, problems: list[Problem]) -> Condition | None:
    before = len(problems)
    _unknown_keys(data, ("claim", *OPERATORS), path, problems)
    claim = data["claim"]
    if not isinstance(claim, str) or not claim or any(not part for part in claim.split(".")):
        problems.append(Problem(_join(path, "claim"), "must be a dotted claim path"))
    operators = [op for op in OPERATORS if op in data]
    if len(operators) != 1:
        problems.append(
            Problem(path, f"needs exactly one operator of {', '.join(OPERATORS)}")
        )
        return None
    operator = operators[0]
    value = data[operator]
    if not _is_scalar(value):
        problems.append(
            Problem(_join(path, operator), "must be a string, number or boolean")
        )
    elif operator == "exists" and _canonical(value) != "true":
        problems.append(Problem(_join(path, operator), "exists takes true"))
    if len(problems) > before:
        return None
    return Condition(claim, operator, value)


def _is_scalar(value: Any) -> bool:
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return isinstance(value, str | int | float | bool)


# ------------------------------------------------------------------------------ evaluation


def normalize_authority(url: str) -> str:
    """Compare form of an authority/issuer URL: one trailing ``/`` removed, host lowercased."""
    url = url.strip()
    if url.endswith("/"):
        url = url[:-1]
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    host, slash, tail = rest.partition("/")
    return f"{scheme.lower()}://{host.lower()}{slash}{tail}"


_MISSING = object()


def resolve_claim(claims: dict, path: str) -> Any:
    """The value at a dotted path (``_MISSING`` when absent; arrays are not addressable)."""
    node: Any = claims
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return claims.get(path, _MISSING) if isinstance(claims, dict) else _MISSING
        node = node[part]
    return node


def _canonical(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value)


def _number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _compare(operator: str, actual: str, expected: str) -> bool:
    if operator == "equals":
        return actual == expected
    if operator == "notEquals":
        return actual != expected
    a, b = _number(actual), _number(expected)
    left, right = (a, b) if a is not None and b is not None else (actual, expected)
    if operator == "less":
        return left < right
    if operator == "lessOrEquals":
        return left <= right
    if operator == "greater":
        return left > right
    return left >= right  # greaterOrEquals


def _eval_condition(cond: Condition, claims: dict) -> tuple[bool, str]:
    actual = resolve_claim(claims, cond.claim)
    if actual is _MISSING:
        return False, f"{cond.describe()}: claim is missing"
    if cond.operator == "exists":
        return True, f"{cond.claim} exists"
    if isinstance(actual, dict | list):
        return False, f"{cond.describe()}: claim is an object/array and cannot be compared"
    ok = _compare(cond.operator, _canonical(actual), _canonical(cond.value))
    verdict = "holds" if ok else "fails"
    return ok, f"{cond.describe()} {verdict} (claim is {json.dumps(actual)})"


def _eval_node(node: Node, claims: dict) -> tuple[bool, str]:
    if isinstance(node, Condition):
        return _eval_condition(node, claims)
    results = [_eval_node(item, claims) for item in node.items]
    if node.combinator == "allOf":
        for ok, reason in results:
            if not ok:
                return False, reason
        return True, "all of [" + "; ".join(r for _, r in results) + "]"
    for ok, reason in results:
        if ok:
            return True, reason
    return False, "none of [" + "; ".join(r for _, r in results) + "]"


def evaluate(
    policy: ReleasePolicy | dict, claims: dict, *, issuer: str | None = None
) -> Decision:
    """Would Key Vault release a key with ``policy`` to a token carrying ``claims``?

    ``issuer`` defaults to ``claims["iss"]``. Token signature and lifetime are not checked
    here (that is the token verifier's job); this is the policy decision alone.
    """
    if not isinstance(policy, ReleasePolicy):
        policy = parse_policy(policy)
    if not isinstance(claims, dict):
        return Decision(False, "denied: the claims are not a JSON object")
    issuer = issuer if issuer is not None else claims.get("iss")
    if not isinstance(issuer, str) or not issuer:
        return Decision(False, "denied: the token has no issuer (iss)")
    wanted = normalize_authority(issuer)
    trace: list[str] = []
    outcomes: list[bool] = []
    for block in policy.blocks:
        if normalize_authority(block.authority) != wanted:
            trace.append(f"{block.authority}: not the issuer")
            outcomes.append(False)
            continue
        ok, reason = _eval_node(block.rule, claims)
        trace.append(f"{block.authority}: {'satisfied' if ok else 'not satisfied'}: {reason}")
        outcomes.append(ok)
    allowed = all(outcomes) if policy.combinator == "allOf" else any(outcomes)
    decided_by = _decider(allowed, policy, outcomes)
    return Decision(allowed, _explain(allowed, policy, issuer, trace), decided_by, trace)


def explain(policy: ReleasePolicy | dict, claims: dict, *, issuer: str | None = None) -> str:
    """The decision and, one line per authority block, how each block fared."""
    decision = evaluate(policy, claims, issuer=issuer)
    return "\n".join([decision.explanation, *(f"  - {line}" for line in decision.trace)])


def _decider(allowed: bool, policy: ReleasePolicy, outcomes: list[bool]) -> str | None:
    if not allowed:
        return None
    for block, ok in zip(policy.blocks, outcomes, strict=True):
        if ok:
            return block.authority
    return None


def _explain(allowed: bool, policy: ReleasePolicy, issuer: str, trace: list[str]) -> str:
    relevant = [line for line in trace if not line.endswith(": not the issuer")]
    if not relevant:
        listed = ", ".join(policy.authorities)
        return f"denied: issuer {issuer} is not an authority of this policy ({listed})"
    if allowed:
        winner = next(line for line in relevant if ": satisfied: " in line)
        return f"allowed: {winner}"
    if policy.combinator == "allOf" and len(relevant) < len(trace):
        return (
            f"denied: the policy requires all of its authorities and issuer {issuer} is only "
            "one of them"
        )
    return "denied: " + " | ".join(relevant)


# ------------------------------------------------------------------------------ building

TEE_ATTESTATION_TYPE = "x-ms-isolation-tee.x-ms-attestation-type"
TEE_COMPLIANCE_STATUS = "x-ms-isolation-tee.x-ms-compliance-status"
TEE_DEBUGGABLE = "x-ms-isolation-tee.x-ms-sevsnpvm-is-debuggable"


def build_release_policy(authority: str, extra_claims: list | None = None) -> dict:
    """The release policy of an application key: a genuine, Azure-compliant SEV-SNP CVM that
    is not debuggable (a debuggable guest's memory is open to its host), attested by
    ``authority`` (guest token: the CVM facts sit under ``x-ms-isolation-tee``), plus any
    ``extra_claims`` conditions (which can only narrow it; one repeating a base condition is
    dropped). Raises :class:`PolicyError` on a bad extra claim.
    """
    base: list[dict[str, Any]] = [
        {"claim": TEE_ATTESTATION_TYPE, "equals": "sevsnpvm"},
        {"claim": TEE_COMPLIANCE_STATUS, "equals": "azure-compliant-cvm"},
        {"claim": TEE_DEBUGGABLE, "equals": False},
    ]
    written = {json.dumps(c, sort_keys=True) for c in base}  # strict: False is not 0
    conditions = base + [c for c in extra_claims or []
                         if not isinstance(c, dict) or json.dumps(c, sort_keys=True) not in written]
    doc = {
        "version": POLICY_VERSION,
        "anyOf": [{"authority": normalize_authority(authority), "allOf": conditions}],
    }
    return parse_policy(doc).to_dict()


def build_disk_release_policy(authorities: Iterable[str]) -> dict:
    """The release policy of a CVM disk-encryption key (Azure's default CVM policy shape:
    the *platform's* SEV-SNP attestation, whose claims are top level), for ``authorities``."""
    blocks = [
        {
            "authority": normalize_authority(authority),
            "allOf": [
                {"claim": "x-ms-compliance-status", "equals": "azure-compliant-cvm"},
                {"claim": "x-ms-attestation-type", "equals": "sevsnpvm"},
            ],
        }
        for authority in authorities
    ]
    return parse_policy({"version": POLICY_VERSION, "anyOf": blocks}).to_dict()
