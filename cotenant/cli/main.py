"""Entry point of the `cotenant` command: one Typer app, one sub-app per area.

Each area registers its commands in its own module (``cotenant/cli/<area>.py``) that
exposes ``app`` (a Typer sub-app, mounted under its name) or ``register(root)`` (for
top-level commands). Add a line to ``_SUBAPPS`` or ``_TOP_LEVEL`` to mount one.
"""

from __future__ import annotations

import importlib
import sys

import typer

# (command group name, module) — each module exposes a Typer ``app``.
_SUBAPPS: list[tuple[str, str]] = [
    ("spec", "cotenant.cli.spec"),
    ("policy", "cotenant.cli.policy"),
    ("data", "cotenant.cli.data"),
    ("lab", "cotenant.cli.lab"),
]

# modules exposing ``register(root: typer.Typer) -> None`` for top-level commands.
_TOP_LEVEL: list[str] = [
    "cotenant.cli.train",
    "cotenant.cli.plan",
    "cotenant.cli.devhost",
    "cotenant.cli.up",
]


def build_app() -> typer.Typer:
    root = typer.Typer(
        name="cotenant",
        help="Deploy and operate multi-party confidential computing on Azure Confidential VMs.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    for name, module in _SUBAPPS:
        root.add_typer(importlib.import_module(module).app, name=name)
    for module in _TOP_LEVEL:
        importlib.import_module(module).register(root)
    return root


def main() -> None:
    app = build_app()
    sys.exit(app())


if __name__ == "__main__":
    main()
