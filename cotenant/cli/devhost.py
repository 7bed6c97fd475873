"""`cotenant devhost`: serve a Python v2 function app locally, like `func start`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

if TYPE_CHECKING:
    from cotenant.devhost.server import DevHost


def register(root: typer.Typer) -> None:
    root.command("devhost")(devhost_command)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def devhost_command(
    app: Path = typer.Option(Path("function_app.py"), "--app",
                             help="The function app (Python v2 programming model)."),
    port: int = typer.Option(7071, "--port", min=0, max=65535, help="HTTP port on 127.0.0.1."),
    storage: str = typer.Option(
        "auto", "--storage",
        help="auto (tables when AzureWebJobsStorage is set), table, or memory."),
    keys: Path | None = typer.Option(
        None, "--keys", help="Keys file (default: .devhost/keys.json next to the app)."),
    no_triggers: bool = typer.Option(False, "--no-triggers",
                                     help="Do not run queue and timer triggers."),
) -> None:
    """Run the app's HTTP, queue and timer triggers and its Durable orchestrations."""
    # The host (aiohttp, the Durable SDK, the Azure SDKs) loads only for this command.
    from azure.core.exceptions import AzureError

    from cotenant.devhost.loader import AppLoadError
    from cotenant.devhost.routes import RouteError
    from cotenant.devhost.server import DevHost
    from cotenant.devhost.settings import SettingsError

    if storage not in ("auto", "table", "memory"):
        _fail("--storage must be auto, table or memory")
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s")
    host = DevHost(app, port=port, storage=None if storage == "auto" else storage,
                   keys_file=keys, triggers=not no_triggers)
    try:
        asyncio.run(_serve(host, Console()))
    except (AppLoadError, SettingsError, RouteError, ValueError) as exc:
        _fail(str(exc))
    except AzureError as exc:
        _fail(f"storage is unreachable ({type(exc).__name__}); is Azurite running? "
              "Set AzureWebJobsStorage or use --storage memory")
    except OSError as exc:
        _fail(f"cannot serve on 127.0.0.1:{port}: {exc.strerror or exc}")


async def _serve(host: DevHost, console: Console) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await host.start()
        _print_functions(host, console)
        await stop.wait()
    finally:
        await host.stop()


def _print_functions(host: DevHost, console: Console) -> None:
    """List the functions the way ``func start`` does: one line each, HTTP ones with URLs."""
    from cotenant.devhost.appsettings import resolve
    from cotenant.devhost.store import TableStore

    assert host.index is not None and host.config is not None
    prefix = f"/{host.config.route_prefix}" if host.config.route_prefix else ""
    console.print(f"[bold]Functions in {host.index.app_path.name}:[/bold]")
    for fn in host.index.functions.values():
        trigger = fn.trigger
        if fn.trigger_type == "httpTrigger":
            methods = ",".join(trigger.get("methods") or ["GET,POST"])
            level = str(trigger.get("authLevel", "FUNCTION")).lower()
            where = f"[{methods}] {host.base_url}{prefix}/{trigger.get('route') or fn.name}" \
                    f" ({level})"
        elif fn.trigger_type == "queueTrigger":
            where = f"queueTrigger {resolve(str(trigger.get('queueName')), host.config.values)}"
        elif fn.trigger_type == "timerTrigger":
            where = f"timerTrigger {trigger.get('schedule')}"
        else:
            where = fn.trigger_type
        console.print(f"  [cyan]{fn.name}[/cyan]: {where}", soft_wrap=True, highlight=False)
    store = "Azure Table storage" if isinstance(host._store, TableStore) else "memory only"
    console.print(f"Task hub {host.config.hub_name} ({store}); resumed {host.recovered} "
                  f"in-flight instance(s). Keys: {host.keys_location}. Ctrl+C to stop.",
                  soft_wrap=True, highlight=False)
