"""The dependency direction of the architecture, enforced on the source (AST, no imports run).

``function_app → orchestrators/activities → cotenant`` and ``guest_agent → cotenant``: the
shared library and the Durable code never reach into the guest agent, the workloads or the
function app; orchestrators use only pure modules (no cloud clients, no I/O, no clocks); the
guest agent's own wheel packages every cotenant module it imports.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EDGES = ("guest_agent", "workloads", "function_app")
IMPURE_COTENANT = ("cotenant.cloud", "cotenant.lab", "cotenant.devhost", "cotenant.api",
                   "cotenant.cli", "cotenant.azurite")
IO_LIBS = ("requests", "httpx", "socket", "subprocess", "urllib.request", "http.client",
           "azure.core", "azure.storage", "azure.identity", "azure.keyvault", "azure.mgmt",
           "azure.data", "azure.functions", "time", "random", "secrets", "uuid", "os", "threading",
           "asyncio")
# Imported only by the lab attestation backend, which a real VM never selects.
LAB_ONLY = {"guest_agent/backends/lab.py": ("cotenant.lab",)}
# The operator's command line is an edge like function_app: `cotenant up` and `cotenant train`
# compose the lab, the control plane, the guest agent's client and the workloads.
EDGE_FOLDERS = ("cotenant/cli",)
# The lab plays the simulated VMs: its zygote boots each VM's guest agent, as the VM's init
# would (``cotenant.lab.agent_zygote``). The only place the library may reach the agent.
VM_BOOT = {"cotenant/lab/agent_zygote.py": {"guest_agent.__main__", "guest_agent.__main__.main"}}
# Known debt, kept from growing (file -> edge modules it may still import). Empty: the agent's
# configuration schema moved to cotenant.wire.agent_config, shared by both sides.
KNOWN_DEBT: dict[str, set[str]] = {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every module ``source`` imports (absolute names; relative imports resolved)."""
    found: set[str] = set()
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _within(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _sources(*folders: str) -> list[Path]:
    paths: list[Path] = []
    for folder in folders:
        target = REPO / folder
        paths.extend([target] if target.suffix == ".py" else sorted(target.rglob("*.py")))
    return paths


def _imports(path: Path) -> set[str]:
    names = imports_of(path.read_text(), _module_name(path),
                       is_package=path.name == "__init__.py")
    skip = LAB_ONLY.get(str(path.relative_to(REPO)), ())
    return {n for n in names if not _within(n, skip)}


def _module_file(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def cotenant_closure(roots: Iterable[Path]) -> dict[str, set[str]]:
    """The cotenant modules reachable from ``roots``, each with everything it imports."""
    graph: dict[str, set[str]] = {}
    pending = [n for root in roots for n in _imports(root) if _within(n, ("cotenant",))]
    while pending:
        name = pending.pop()
        path = _module_file(name)
        if path is None or _module_name(path) in graph:
            continue  # a name imported from a module (not a module itself), or seen
        deps = _imports(path)
        graph[_module_name(path)] = deps
        for parent in range(1, len(name.split("."))):  # importing a.b.c runs a and a.b
            pending.append(".".join(name.split(".")[:parent]))
        pending.extend(d for d in deps if _within(d, ("cotenant",)))
    return graph


def test_the_checker_sees_absolute_relative_and_nested_imports() -> None:
    source = ("import guest_agent.reports\nfrom .x import y\n"
              "def f():\n    from workloads import app\n")
    names = imports_of(source, "cotenant.api.events")
    assert {"guest_agent.reports", "cotenant.api.x.y", "workloads.app"} <= names
    assert {n for n in names if _within(n, EDGES)} == {"guest_agent.reports", "workloads",
                                                    "workloads.app"}
    assert not _within("guest_agentx", EDGES)


@pytest.mark.parametrize("folder", ["cotenant", "orchestrators", "activities"])
def test_the_library_and_the_durable_code_never_import_the_edges(folder: str) -> None:
    offenders = {}
    for path in _sources(folder):
        where = str(path.relative_to(REPO))
        if _within(where.replace("/", ".").removesuffix(".py"),
                   [f.replace("/", ".") for f in EDGE_FOLDERS]):
            continue
        edges = {n for n in _imports(path) if _within(n, EDGES)} - VM_BOOT.get(where, set())
        assert KNOWN_DEBT.get(where, set()) <= edges, f"{where}: debt paid, shrink KNOWN_DEBT"
        offenders[where] = sorted(edges - KNOWN_DEBT.get(where, set()))
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_shared_library_never_imports_the_durable_code() -> None:
    offenders = {str(p.relative_to(REPO)): sorted(
        n for n in _imports(p) if _within(n, ("orchestrators", "activities")))
        for p in _sources("cotenant")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_activities_never_import_orchestrators() -> None:
    offenders = {str(p.relative_to(REPO)): sorted(
        n for n in _imports(p) if _within(n, ("orchestrators",))) for p in _sources("activities")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_orchestrators_use_only_pure_modules_all_the_way_down() -> None:
    roots = _sources("orchestrators")
    direct = {str(p.relative_to(REPO)): sorted(
        n for n in _imports(p) if _within(n, IMPURE_COTENANT + IO_LIBS + ("activities",)))
        for p in roots}
    assert {k: v for k, v in direct.items() if v} == {}
    closure = cotenant_closure(roots)
    impure = {module: sorted(n for n in deps if _within(n, IMPURE_COTENANT + IO_LIBS))
              for module, deps in closure.items()}
    assert {k: v for k, v in impure.items() if v} == {}


def test_the_wire_formats_are_pure() -> None:
    closure = cotenant_closure(_sources("cotenant/wire"))
    for module, deps in closure.items():
        assert not [n for n in deps if _within(n, EDGES + IMPURE_COTENANT + IO_LIBS)], module


def test_the_guest_agent_wheel_packages_every_cotenant_module_it_imports() -> None:
    project = tomllib.loads((REPO / "guest_agent" / "pyproject.toml").read_text())
    packaged = set(project["tool"]["setuptools"]["packages"])
    bundle = (REPO / "guest_agent" / "install" / "build-bundle.sh").read_text()
    closure = cotenant_closure(_sources("guest_agent"))
    assert {"cotenant.wire.reports", "cotenant.wire.commands",
            "cotenant.wire.agent_config"} <= set(closure)
    for module in closure:
        package = module if _module_file(module).name == "__init__.py" else \
            module.rpartition(".")[0]
        assert package in packaged, f"{module} is imported by guest_agent but not packaged"
        if package != "cotenant":
            folder = package.replace(".", "/")
            assert f'cp -R "$REPO/{folder}" "$STAGE/src/{folder}"' in bundle, package
    assert not [m for m in closure if _within(m, IMPURE_COTENANT)]


def test_the_guest_agent_still_prints_the_report_schema() -> None:
    result = subprocess.run([sys.executable, "-m", "guest_agent", "report-schema"],
                            capture_output=True, text=True, cwd=REPO, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert '"schema_version"' in result.stdout
    assert "guest-report/v3.json" in result.stdout
