"""`cotenant policy check POLICY.json --claims CLAIMS_OR_JWT` and `cotenant policy build SPEC`."""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from cotenant.cli.spec import fail, load_spec_or_exit
from cotenant.policy import PolicyError, build_release_policy, evaluate, explain, parse_policy
from cotenant.problems import Problem

app = typer.Typer(help="Key release policies: check claims against one, build one from a spec.",
                  no_args_is_help=True)

out = Console()


def _read_text(value: str, what: str) -> str:
    """``value`` is a file path or the text itself (a token is never echoed back)."""
    path = Path(value)
    try:
        is_file = path.is_file()
    except (OSError, ValueError):  # e.g. an inline JWT longer than a file name may be
        return value
    if not is_file:
        return value
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail([Problem(what, f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}")])


def _jwt_payload(token: str) -> dict[str, Any] | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def load_claims(value: str) -> dict[str, Any]:
    """Claims from a JSON object, a JWT (payload decoded, signature NOT verified) or
    ``{"token": JWT}`` — given as text or as a file path."""
    text = _read_text(value, "claims").strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            fail([Problem("claims", f"not valid JSON: {exc}")])
        if isinstance(data, dict) and set(data) == {"token"} and isinstance(data["token"], str):
            text = data["token"].strip()
        elif isinstance(data, dict):
            return data
    payload = _jwt_payload(text)
    if payload is None:
        fail([Problem("claims", "expected a JSON object of claims or a JWT")])
    return payload


@app.command("check")
def check(
    policy: str = typer.Argument(..., help="Release policy: JSON file (or JSON/base64url text)."),
    claims: str = typer.Option(..., "--claims", "-c",
                               help="Token claims: JSON or JWT, as a file or text."),
    issuer: str = typer.Option(None, "--issuer", help="Issuer to use instead of the iss claim."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show every authority block."),
) -> None:
    """Would Key Vault release the key? Exit 0 = allowed, 1 = denied, 2 = invalid input.

    The policy decision only: a JWT's signature and expiry are not checked here.
    """
    try:
        parsed = parse_policy(_read_text(policy, "policy"))
    except PolicyError as exc:
        fail([Problem(f"policy.{p.path}" if p.path else "policy", p.message)
              for p in exc.problems])
    token_claims = load_claims(claims)
    decision = evaluate(parsed, token_claims, issuer=issuer)
    text = explain(parsed, token_claims, issuer=issuer) if verbose else decision.explanation
    out.print(text, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(0 if decision.allowed else 1)


@app.command("build")
def build(file: Path = typer.Argument(..., help="Spec file (YAML or JSON).")) -> None:
    """Print the release policy the spec's application keys get."""
    spec = load_spec_or_exit(file)
    typer.echo(json.dumps(build_release_policy(spec.authority, spec.extra_release_claims),
                          indent=2))
