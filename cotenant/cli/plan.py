"""`cotenant plan FILE [--format table|json]`: what a deployment of the spec would create."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from cotenant.cli.spec import load_spec_or_exit
from cotenant.plan import Plan, build_plan


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


class Format(StrEnum):
    table = "table"
    json = "json"


def register(root: typer.Typer) -> None:
    root.command("plan")(plan_command)


def plan_command(
    file: Path = typer.Argument(..., help="Spec file (YAML or JSON)."),
    format: Format = typer.Option(Format.table, "--format", "-f", help="table or json."),
) -> None:
    """Show the deployment plan: resources, NSG, access matrix, phases, critical path."""
    plan = build_plan(load_spec_or_exit(file))
    if format is Format.json:
        typer.echo(plan.model_dump_json(indent=2))
        return
    render_plan(plan, Console())


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def render_plan(plan: Plan, console: Console) -> None:
    mode = "[bold red]DEBUG[/] (SSH, Bastion)" if plan.debug else "production (no SSH, no Bastion)"
    console.print(
        f"[bold]Tenant {plan.tenant}[/] in {plan.location}, resource group {plan.resource_group}, "
        f"{plan.vm_size}, {mode}\nattestation authority {plan.authority}; image {plan.image}; "
        f"key rotation every {plan.key_rotation_days} days"
    )
    for table in (_resources(plan), _nsg(plan), _gateway(plan), _matrix(plan), _phases(plan)):
        console.print(table)
    console.print(
        f"Critical path: [bold]{_minutes(plan.critical_path_seconds)}[/] "
        f"({' → '.join(plan.critical_path)}); sequential sum {_minutes(plan.sequential_seconds)}"
    )


def _resources(plan: Plan) -> Table:
    table = _table("Per-party resources", "party", "role", "identity", "key vault", "app key",
                   "disk key / DES", "VM / NIC", "private IP")
    for p in plan.parties:
        table.add_row(p.display_name, p.role, p.identity_name, p.vault_name, p.app_key_name,
                      f"{p.disk_key_name}\n{p.des_name}", f"{p.vm_name}\n{p.nic_name}",
                      p.private_ip)
    return table


def _nsg(plan: Plan) -> Table:
    table = _table(f"NSG {plan.network.nsg_name} on {plan.network.vm_subnet.cidr} (inbound)",
                   "priority", "name", "source", "destination", "port", "action")
    for r in plan.nsg_rules:
        port = "*" if r.protocol == "*" else f"{r.protocol.upper()} {r.destination_port}"
        name = r.name + (" (debug only)" if r.debug_only else "")
        table.add_row(str(r.priority), name, r.source, r.destination, port, r.access)
    return table


def _gateway(plan: Plan) -> Table:
    gw = plan.gateway
    table = _table(f"Application Gateway {gw.name} ({gw.sku}, WAF {gw.waf_rule_set} "
                   f"{gw.waf_rule_set_version} {gw.waf_mode}), DNS label {gw.dns_label}",
                   "listener", "party", "backend", "probe")
    for listener in gw.listeners:
        table.add_row(f":{listener.frontend_port}", listener.party,
                      f"{listener.backend_ip}:{listener.backend_port}", listener.probe_path)
    return table


def _matrix(plan: Plan) -> Table:
    matrix = plan.access_matrix
    table = _table("Access matrix (release grant AND release policy)", "key",
                   *(f"{party}'s CVM" for party in matrix.parties))
    for row in matrix.rows():
        table.add_row(*row)
    return table


def _phases(plan: Plan) -> Table:
    table = _table("Phases", "phase", "depends on", "estimate", "kind")
    on_path = set(plan.critical_path)
    for phase in plan.phases:
        name = f"[bold]{phase.name}[/]" if phase.name in on_path else phase.name
        kind = phase.kind + (f" ({phase.module})" if phase.module else "")
        table.add_row(name, ", ".join(phase.depends_on) or "-", f"{phase.estimate_seconds:.0f} s",
                      kind)
    return table
