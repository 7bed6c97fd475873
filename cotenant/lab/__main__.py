"""``python -m cotenant.lab serve --dir DIR`` — the same as ``cotenant lab serve``."""

from cotenant.cli.lab import app

if __name__ == "__main__":
    app(prog_name="cotenant lab")
