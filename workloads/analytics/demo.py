"""The analytics part of ``cotenant up`` in the lab, once the tenant is deployed.

1. Each data owner seals its CSV with the public half of its own Key Vault key (on "its
   machine": here, this process) and publishes the sealed file to its own container.
2. Each party's app is launched next to its CVM's guest agent (the lab VM's agent config
   gives the agent's loopback address).
3. Woodgrove's aggregates are fetched (the single run, through the agent) and printed, with
   each party's URL.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from azure.identity import ManagedIdentityCredential
from azure.keyvault.keys import KeyClient
from rich.console import Console
from rich.table import Table

from cotenant.crypto.envelope import seal
from cotenant.crypto.wrapping import KeyVaultWrapper
from cotenant.lab.client import LabClient
from cotenant.plan import Plan, build_plan
from guest_agent.config import load_config
from workloads.analytics.deploy import DataLocation, app_config_for, data_location, publish_sealed
from workloads.analytics.launch import LaunchedApp, start_app, stop_apps, wait_ready
from workloads.analytics.summary import fetch_report, render_report

DATA = Path(__file__).resolve().parents[1] / "data"


@contextmanager
def _environ(env: Mapping[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def publish_owner_data(
    plan: Plan, blob_url: str, connection_string: str, data_dir: Path = DATA
) -> dict[str, DataLocation]:
    """Seal and publish every owner's ``<party>-data.csv`` found in ``data_dir``.

    Run with the lab's environment applied: the data owner reads its key's public half from
    its vault (as the lab operator, Crypto Officer on the vaults it deployed)."""
    credential = ManagedIdentityCredential()
    wrapper = KeyVaultWrapper(credential)
    locations = {}
    for party in plan.parties:
        source = data_dir / f"{party.party}-data.csv"
        if party.role != "owner" or not source.is_file():
            continue
        key = KeyClient(party.vault_uri, credential).get_key(party.app_key_name)
        assert key.id is not None
        sealed = io.BytesIO()
        with source.open("rb") as plaintext:
            seal(plaintext, sealed, key_id=key.id, wrapper=wrapper, content_type="text/csv")
        sealed.seek(0)
        location = data_location(party.party, blob_url, connection_string=connection_string)
        publish_sealed(sealed, location)
        locations[party.party] = location
    return locations


def agent_url(lab: LabClient, vm_name: str) -> str:
    vm = lab.get_vm(vm_name)
    return f"http://{load_config(Path(vm['directory']) / 'agent.toml').api.listen}"


def start_demo(
    plan: Plan,
    lab: LabClient,
    root: Path,
    *,
    data_dir: Path = DATA,
    connection_string: str | None = None,
    reference_date: date | None = None,
    workers: Mapping[str, int] | None = None,
) -> dict[str, LaunchedApp]:
    """Publish the owners' sealed data and launch every party's app; party -> app.

    Storage is the lab's Azurite (``connection_string``, default: the lab's own); each app
    runs ``workers`` uvicorn workers (default 2)."""
    root = root.resolve()
    env = lab.environ()
    connection_string = connection_string or env.get("AZURE_STORAGE_CONNECTION_STRING")
    if not connection_string:
        raise RuntimeError("the lab runs without Azurite: no storage for the sealed data")
    stop_apps(root)
    with _environ(env):
        blob_url = _blob_endpoint(connection_string)
        locations = publish_owner_data(plan, blob_url, connection_string, data_dir)
    started = {}
    try:  # every app starts at once (each takes ~2 s to import and bind), then all answer
        for party in plan.parties:
            config = app_config_for(
                plan, party.party, data=locations, state_dir=root / party.party / "state",
                agent_url=agent_url(lab, party.vm_name),
                ca_bundle=Path(env["REQUESTS_CA_BUNDLE"]), reference_date=reference_date,
            )
            started[party.party] = start_app(config, root / party.party, env=env,
                                             workers=(workers or {}).get(party.party, 2))
        for app, process in started.values():
            wait_ready(app, process)
    except BaseException:
        stop_apps(root)
        raise
    return {party: app for party, (app, _) in started.items()}


def _blob_endpoint(connection_string: str) -> str:
    parts = dict(p.split("=", 1) for p in connection_string.split(";") if "=" in p)
    return parts["BlobEndpoint"].rstrip("/")


def print_demo(plan: Plan, apps: Mapping[str, LaunchedApp], console: Console) -> None:
    """Woodgrove's aggregates (waiting for the one run) and each party's analytics URL."""
    for party in plan.parties:
        if party.role == "aggregator" and party.party in apps:
            console.print(f"\n[bold]Aggregates computed inside {party.display_name}'s CVM[/bold]")
            render_report(fetch_report(apps[party.party].url), console)
    table = Table(title="Analytics apps", title_justify="left")
    table.add_column("Party")
    table.add_column("URL")
    for name, app in apps.items():
        table.add_row(plan.party(name).display_name, app.url)
    console.print(table)


def run_demo(spec_body: dict, lab: LabClient, root: Path, console: Console) -> bool:
    """``cotenant up``'s last step: start the workloads of the deployed tenant and print
    Woodgrove's aggregates and every party's URL. Failures are one line; returns success."""
    from azure.core.exceptions import AzureError

    from cotenant.spec import parse_spec

    try:
        plan = build_plan(parse_spec(spec_body))
        with console.status("sealing the owners' data and starting the analytics apps…"):
            apps = start_demo(plan, lab, root)
        print_demo(plan, apps, console)
    except (ValueError, RuntimeError, OSError, AzureError) as exc:  # spec, agent config,
        # launch, aggregates (RuntimeError subclasses), files, storage or Key Vault
        console.print(f"[bold red]analytics:[/bold red] {exc}", highlight=False)
        return False
    return True
