"""`cotenant spec validate FILE` and `cotenant spec schema`."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

from cotenant.problems import Problem
from cotenant.spec import SpecError, TenantSpec, load_spec, spec_json_schema

app = typer.Typer(help="Tenant spec files: validate them, print their JSON Schema.",
                  no_args_is_help=True)

out = Console()
err = Console(stderr=True)


def fail(problems: Iterable[Problem], code: int = 2) -> NoReturn:
    """One line per problem on stderr, then exit (2 = invalid input)."""
    for problem in problems:
        err.print(f"error: {problem}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def load_spec_or_exit(path: Path) -> TenantSpec:
    try:
        return load_spec(path)
    except SpecError as exc:
        fail(exc.problems)


@app.command("validate")
def validate(file: Path = typer.Argument(..., help="Spec file (YAML or JSON).")) -> None:
    """Check a spec; every problem is reported with its path. Exit 0 if valid, 2 if not."""
    spec = load_spec_or_exit(file)
    out.print(
        f"ok: tenant {spec.name!r} in {spec.location}: {len(spec.parties)} parties, "
        f"{spec.vm_size}, authority {spec.authority}" + (", DEBUG mode" if spec.debug else ""),
        markup=False, highlight=False, soft_wrap=True,
    )


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema of the spec file."""
    typer.echo(json.dumps(spec_json_schema(), indent=2))
