"""`cotenant train`: the confidential training job, run against a CVM's guest agent.

The data owner seals ``diabetes.csv`` first (``cotenant data encrypt``); this command sends
the sealed file to the VM's guest agent, which decrypts it inside the VM as a stream; the
job trains XGBoost on it in memory and seals the trained model back to the data owner's key.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from workloads.training.run import TrainingRun


def register(root: typer.Typer) -> None:
    root.command("train")(train_command)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def train_command(
    data: Path = typer.Argument(..., help="The sealed training data (sealed diabetes.csv)."),
    agent_url: str = typer.Option(
        "http://127.0.0.1:8080", "--agent-url", help="The guest agent's local API (loopback)."
    ),
    lab_vm: str | None = typer.Option(
        None, "--lab-vm", help="Run in the lab, on this simulated CVM (its agent's API)."
    ),
    lab_dir: Path = typer.Option(Path(".lab"), "--lab-dir", help="The lab's directory."),
    owner_public_key: Path | None = typer.Option(
        None, "--owner-public-key",
        help="PEM public key of the data owner's key (default: as reported by the agent).",
    ),
    model_out: Path | None = typer.Option(
        None, "--model-out", help="Where to write the sealed model (default: <data>.model.sealed)."
    ),
) -> None:
    """Train XGBoost on sealed data inside the CVM; print accuracy and the report."""
    # The training stack (pandas, scikit-learn, XGBoost: ~1.7 s to import) loads only for
    # this command, not for every `cotenant` command.
    from cotenant.crypto.errors import CryptoError
    from guest_agent.client import AgentClient, AgentError
    from workloads.training.job import TrainingDataError
    from workloads.training.owner_key import OwnerKeyError, owner_wrapper
    from workloads.training.run import data_owner_key_id, run_training

    model_path = model_out or data.with_name(data.name + ".model.sealed")
    if lab_vm is not None:
        agent_url = lab_agent_url(lab_dir, lab_vm)
    try:
        with AgentClient(agent_url) as agent:
            wrapper = owner_wrapper(agent, data_owner_key_id(data), owner_public_key)
            with model_path.open("wb") as sink:
                run = run_training(agent, data, sink, wrapper)
    except ValueError as exc:  # a bad --agent-url
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{exc.filename or data}: {exc.strerror or exc.__class__.__name__}")
    except (AgentError, CryptoError, OwnerKeyError, TrainingDataError) as exc:
        model_path.unlink(missing_ok=True)
        _fail(str(exc))
    print_run(run, model_path, Console())


def lab_agent_url(lab_dir: Path, vm_name: str) -> str:
    """The local API of the guest agent running in lab VM ``vm_name``."""
    from cotenant.lab.client import LabError
    from cotenant.lab.supervisor import running_client
    from guest_agent.config import ConfigError, load_config

    client = running_client(lab_dir)
    if client is None:
        _fail(f"no lab is running in {lab_dir} (start it with `cotenant lab up`)")
    try:
        vm = client.get_vm(vm_name)
    except LabError as exc:
        _fail(f"lab VM {vm_name}: {exc.message}")
    if not vm.get("agent_running"):
        _fail(f"lab VM {vm_name} runs no guest agent (deploy it with its agent config first)")
    try:
        config = load_config(Path(vm["directory"]) / "agent.toml")
    except ConfigError as exc:
        _fail(f"lab VM {vm_name}: {exc}")
    return f"http://{config.api.listen}"


def print_run(run: TrainingRun, model_path: Path, console: Console) -> None:
    table = Table(title="Confidential training (XGBoost, 80/20 split, random_state=42)")
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("accuracy", f"{run.result.accuracy:.4f}")
    table.add_row("rows", f"{run.result.train_rows} train / {run.result.test_rows} test")
    table.add_row("data owner's key", run.data_key_id)
    table.add_row("sealed model", str(model_path))
    console.print(table)
    console.print(run.result.report, markup=False, highlight=False)
