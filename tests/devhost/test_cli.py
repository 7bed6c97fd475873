"""`cotenant devhost`: clear one-line errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from cotenant.azurite import free_port
from cotenant.cli.devhost import register


def _app() -> typer.Typer:
    root = typer.Typer()
    register(root)
    root.command("noop", hidden=True)(lambda: None)  # keep `devhost` a sub-command
    return root


def test_missing_app_is_one_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["devhost", "--app", str(tmp_path / "nope.py")])
    assert result.exit_code == 2
    assert "error: no function app at" in result.output
    assert "Traceback" not in result.output


def test_invalid_settings_are_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "function_app.py").write_text("import azure.functions as func\n"
                                              "app = func.FunctionApp()\n")
    (tmp_path / "host.json").write_text(json.dumps(
        {"extensions": {"durableTask": {"hubName": "no-dashes"}}}))
    result = CliRunner().invoke(_app(), ["devhost", "--app", str(tmp_path / "function_app.py"),
                                         "--storage", "memory"])
    assert result.exit_code == 2
    assert "task hub name" in result.output and "Traceback" not in result.output


def test_unknown_storage_kind(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["devhost", "--storage", "cosmos"])
    assert result.exit_code == 2 and "--storage must be" in result.output


def test_unreachable_storage_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "function_app.py").write_text("import azure.functions as func\n"
                                              "app = func.FunctionApp()\n")
    dead = f"http://127.0.0.1:{free_port()}/devstoreaccount1"
    (tmp_path / "local.settings.json").write_text(json.dumps({"Values": {
        "AzureWebJobsStorage": "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                               f"AccountKey=a2V5;TableEndpoint={dead};QueueEndpoint={dead};"}}))
    result = CliRunner().invoke(_app(), ["devhost", "--app", str(tmp_path / "function_app.py"),
                                         "--port", "0"])
    assert result.exit_code == 2
    assert "storage is unreachable" in result.output and "AccountKey" not in result.output
