"""``python -m cotenant.devhost``: the devhost alone (same options as ``cotenant devhost``)."""

import typer

from cotenant.cli.devhost import devhost_command

if __name__ == "__main__":
    typer.run(devhost_command)
