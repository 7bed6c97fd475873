"""``cotenant lab …``: run the embedded offline Azure and poke at it by hand."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from cotenant.azurite import AzuriteError
from cotenant.lab.claims import VM_KINDS
from cotenant.lab.client import LabClient, LabError
from cotenant.lab.supervisor import LabStartError, running_client, start_lab, stop_lab

app = typer.Typer(help="The lab: an embedded, offline Azure (attestation, Key Vault, "
                  "identities, resource manager, simulated CVMs).", no_args_is_help=True)
vault_app = typer.Typer(help="Key vaults in the lab.", no_args_is_help=True)
identity_app = typer.Typer(help="Managed identities in the lab.", no_args_is_help=True)
vm_app = typer.Typer(help="Simulated VMs in the lab.", no_args_is_help=True)
app.add_typer(vault_app, name="vault")
app.add_typer(identity_app, name="identity")
app.add_typer(vm_app, name="vm")

DirOption = typer.Option(Path(".lab"), "--dir", help="Lab directory (state, CA, logs).")
console = Console()


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _client(directory: Path) -> LabClient:
    client = running_client(directory)
    if client is None:
        raise _fail(f"no lab is running in {directory} (start it with `cotenant lab up`)")
    return client


@app.command()
def serve(
    directory: Path = DirOption,
    latency_scale: float = typer.Option(None, help="Deployment latency scale (default 0.01)."),
    authority: str = typer.Option(None, help="Default attestation authority URL."),
    azurite_connection_string: str = typer.Option(None, hidden=True),
) -> None:
    """Run the lab in the foreground (Ctrl-C stops it)."""
    from cotenant.lab.server import run

    run(directory, authority=authority, latency_scale=latency_scale,
        azurite_connection_string=azurite_connection_string)


@app.command()
def up(
    directory: Path = DirOption,
    latency_scale: float = typer.Option(None, help="Deployment latency scale (default 0.01)."),
    authority: str = typer.Option(None, help="Default attestation authority URL."),
    azurite: bool = typer.Option(True, help="Also start Azurite (storage emulator)."),
) -> None:
    """Start Azurite and the lab in the background, wait until healthy, print endpoints."""
    directory = directory.resolve()
    try:
        client = start_lab(directory, latency_scale=latency_scale, authority=authority,
                           azurite=azurite)
    except (AzuriteError, LabStartError) as exc:
        raise _fail(str(exc)) from None
    table = Table(title=f"lab in {directory}", show_header=False)
    env = client.environ()
    for label, value in (
        ("management", client.endpoints.management_url),
        ("proxy (HTTPS_PROXY)", client.endpoints.proxy_url),
        ("identity endpoint", client.endpoints.identity_endpoint),
        ("attestation", client.endpoints.attestation_url),
        ("vaults", "https://<name>.vault.azure.net (via the proxy)"),
        ("CA bundle", client.endpoints.ca_bundle),
        ("storage", "Azurite" if "AZURE_STORAGE_CONNECTION_STRING" in env else "not started"),
    ):
        table.add_row(label, value)
    console.print(table)
    typer.echo(f"eval \"$(cotenant lab env --dir {shlex.quote(str(directory))})\" "
               "to use it from a shell")


@app.command()
def down(directory: Path = DirOption) -> None:
    """Stop the lab (and the VMs and Azurite it started)."""
    stop_lab(directory)
    typer.echo("lab stopped")


@app.command()
def reset(directory: Path = DirOption,
          yes: bool = typer.Option(False, "--yes", help="Do not ask.")) -> None:
    """Stop the lab and delete its state (vaults, keys, identities, VMs, CA, storage)."""
    directory = directory.resolve()
    if not yes and not typer.confirm(f"delete all lab state in {directory}?"):
        raise typer.Exit(1)
    down(directory)
    if directory.exists():
        shutil.rmtree(directory)
    typer.echo(f"lab state cleared ({directory})")


@app.command()
def env(directory: Path = DirOption) -> None:
    """Print `export` lines for clients of the running lab."""
    for key, value in sorted(_client(directory.resolve()).environ().items()):
        typer.echo(f"export {key}={shlex.quote(value)}")


def _call(directory: Path, action):  # type: ignore[no-untyped-def]
    try:
        return action(_client(directory.resolve()))
    except LabError as exc:
        raise _fail(exc.message or str(exc)) from None


@vault_app.command("create")
def vault_create(name: str, directory: Path = DirOption,
                 rbac: bool = typer.Option(True, help="RBAC (else legacy access policies)."),
                 purge_protection: bool = typer.Option(True)) -> None:
    """Create a vault; prints its URL (the operator identity is Crypto Officer on it)."""
    typer.echo(_call(directory, lambda c: c.create_vault(
        name, rbac=rbac, purge_protection=purge_protection)))


@identity_app.command("create")
def identity_create(name: str, directory: Path = DirOption) -> None:
    """Create a managed identity; prints its client id."""
    typer.echo(_call(directory, lambda c: c.create_identity(name))["client_id"])


@app.command()
def grant(identity: str = typer.Option(..., "--identity", help="Client id."),
          scope: str = typer.Option(..., help="Vault URL or key URL."),
          role: str = typer.Option(..., help="e.g. 'Key Vault Crypto Service Release User'."),
          directory: Path = DirOption) -> None:
    """Assign a Key Vault data-plane role to an identity at a vault or key scope."""
    result = _call(directory, lambda c: c.grant(identity, scope, role))
    typer.echo(f"{result['role']} at {result['scope']} for {result['principal_id']}")


@vm_app.command("create")
def vm_create(name: str,
              kind: str = typer.Option("confidential", help=" | ".join(VM_KINDS)),
              identity: list[str] = typer.Option(None, "--identity", help="Client id(s)."),
              directory: Path = DirOption) -> None:
    """Create (and boot) a simulated VM."""
    if kind not in VM_KINDS:
        raise _fail(f"--kind must be one of {', '.join(VM_KINDS)}")
    vm = _call(directory, lambda c: c.create_vm(name, kind, identities=identity or []))
    typer.echo(f"{vm['name']}: {vm['kind']} ({vm['security_type']}), vmUniqueId "
               f"{vm['vm_unique_id']}")


@vm_app.command("token")
def vm_token(name: str, nonce: str = typer.Option(None, help="Nonce for the client payload."),
             authority: str = typer.Option(None, help="Attestation authority URL."),
             directory: Path = DirOption) -> None:
    """Print an attestation token the VM obtains through the AzureGuest flow."""
    from cotenant.lab.vtpm import AttestationFailed

    try:
        typer.echo(_call(directory, lambda c: c.vm_token(name, nonce, authority=authority)))
    except AttestationFailed as exc:
        raise _fail(str(exc)) from None


@vm_app.command("list")
def vm_list(directory: Path = DirOption) -> None:
    """List the simulated VMs."""
    table = Table("name", "kind", "status", "agent", "identities")
    for vm in _call(directory, lambda c: c.vms()):
        table.add_row(vm["name"], vm["kind"], vm["status"],
                      "running" if vm["agent_running"] else "-", ", ".join(vm["identities"]))
    console.print(table)
