"""The bundle a CVM installs (``guest_agent/install/build-bundle.sh``): the guest agent and the
analytics app, each wheel and dependency pinned by SHA-256, the app without the control
plane's or the lab's code and without any data file."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest

from cotenant.appconfig import azure_app_config
from cotenant.plan import build_plan
from cotenant.spec import load_spec
from tests.control_plane.test_layering import _imports, _module_file, _module_name, _within

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "guest_agent" / "install" / "build-bundle.sh"
APP_PROJECT = REPO / "workloads" / "analytics" / "pyproject.toml"
# uvicorn loads the app by name ("workloads.analytics.asgi:create_app"), not by an import.
APP_ROOTS = ("workloads.analytics.__main__", "workloads.analytics.asgi")


def _closure(roots: tuple[str, ...]) -> set[str]:
    """Every first-party module (cotenant, guest_agent, workloads) the app can import."""
    seen: set[str] = set()
    pending = list(roots)
    while pending:
        name = pending.pop()
        path = _module_file(name)
        if path is None or _module_name(path) in seen:
            continue
        seen.add(_module_name(path))
        parts = name.split(".")
        pending.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        pending.extend(n for n in _imports(path)
                       if _within(n, ("cotenant", "guest_agent", "workloads")))
    return seen


def _excluded() -> set[str]:
    found = re.search(r"^for name in (.*?); do\n\s+rm -f -- \"\$STAGE/app-src/workloads/"
                      r"analytics/\$name\"", BUILD.read_text(), re.M)
    assert found is not None
    return set(found.group(1).split())


def test_the_app_wheel_holds_exactly_what_the_app_imports() -> None:
    closure = _closure(APP_ROOTS)
    agent = set(tomllib.loads((REPO / "guest_agent" / "pyproject.toml").read_text())
                ["tool"]["setuptools"]["packages"])
    app = set(tomllib.loads(APP_PROJECT.read_text())["tool"]["setuptools"]["packages"])
    for module in closure:
        package = module if _module_file(module).name == "__init__.py" else \
            module.rpartition(".")[0]
        assert package in agent | app, f"{module} is imported by the app but not packaged"
    # No control-plane or lab code reaches the VM (cotenant.plan, cotenant.lab, …).
    assert not [m for m in closure if _within(m, ("cotenant",))
                and not _within(m, ("cotenant.crypto", "cotenant.wire"))
                and m != "cotenant"]
    shipped = {p.name for p in (REPO / "workloads" / "analytics").glob("*.py")} - _excluded()
    imported = {m.rpartition(".")[2] + ".py" for m in closure
                if m.startswith("workloads.analytics.")} | {"__init__.py"}
    assert shipped == imported  # every shipped module is used; every excluded one is not
    assert "deploy.py" in _excluded() and "demo.py" in _excluded()


def test_the_app_wheel_pins_the_same_versions_as_the_project() -> None:
    root = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {d.split("==")[0].lower(): d for d in
            root["dependencies"] + root["optional-dependencies"]["workloads"]}
    for dependency in tomllib.loads(APP_PROJECT.read_text())["project"]["dependencies"]:
        name, _, version = dependency.partition("==")
        assert version, f"{dependency} is not pinned"
        if name != "cotenant-guest-agent":
            assert pins[name.lower()] == dependency


@pytest.mark.slow
def test_the_bundle_installs_the_app_offline_with_every_hash_checked(tmp_path: Path) -> None:
    """build-bundle.sh for this Python, then the bootstrap's own install command into a fresh
    venv; the installed app validates an Azure app config and loads its ASGI app."""
    version = f"{sys.version_info.major}{sys.version_info.minor}"
    out = tmp_path / "out"
    build = subprocess.run(["bash", str(BUILD), str(out), "--python-version", version],
                           capture_output=True, text=True, timeout=240,
                           env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
                                "HOME": str(tmp_path)})
    assert build.returncode == 0, build.stderr[-3000:]
    digest = build.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    with tarfile.open(out / "bundle.tar.gz") as bundle:
        names = set(bundle.getnames())
    assert {"requirements.lock", "analytics.lock"} <= names
    wheels = {n.removeprefix("wheels/") for n in names if n.endswith(".whl")}
    app_lock = (out / "analytics.lock").read_text().splitlines()
    agent_lock = (out / "requirements.lock").read_text().splitlines()
    assert all(re.fullmatch(r"[a-z0-9.-]+==\S+ --hash=sha256:[0-9a-f]{64}", x)
               for x in app_lock + agent_lock)
    assert len(app_lock) == len([w for w in wheels if w.split("-")[0].replace("_", "-")
                                 in {x.split("==")[0] for x in app_lock}])
    assert not [x for x in agent_lock if x.startswith(("azure-identity", "azure-storage-blob",
                                                       "cotenant-analytics"))]
    assert [x for x in app_lock if x.startswith("cotenant-guest-agent==")]

    venv = tmp_path / "venv"  # pip runs from here into the venv (same flags as bootstrap.sh)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index",
         "--find-links", str(out / "wheels"),
         "--require-hashes", "--only-binary=:all:", "--no-cache-dir", "-r",
         str(out / "analytics.lock")], capture_output=True, text=True, timeout=240)
    assert install.returncode == 0, install.stderr[-3000:]

    plan = build_plan(load_spec(REPO / "examples" / "three-party.yaml"))
    aggregator = next(p.party for p in plan.parties if p.role == "aggregator")
    config = azure_app_config(plan, aggregator,
                              identity_client_id="3f2c9a57-1d2e-4b6a-9c8d-0123456789ab")
    assert config is not None
    (tmp_path / "app.toml").write_text(config.to_toml())
    outside = tmp_path / "elsewhere"  # not the repository: only the installed code
    outside.mkdir()
    check = subprocess.run([str(python), "-m", "workloads.analytics", "--config",
                            str(tmp_path / "app.toml"), "--check-config"],
                           capture_output=True, text=True, timeout=60, cwd=outside)
    assert check.returncode == 0, check.stderr
    probe = subprocess.run([str(python), "-c", (
        "import importlib.util as u, pathlib, workloads.analytics.asgi as a, "
        "workloads.analytics.storage\n"
        "print(sorted(m for m in ('workloads.analytics.deploy', 'workloads.analytics.demo', "
        "'workloads.training', 'cotenant.plan', 'cotenant.lab') if u.find_spec(m)))\n"
        "print((pathlib.Path(a.__file__).parent / 'static' / 'index.html').is_file())\n"
        "print(sorted(p.name for p in pathlib.Path(a.__file__).parents[1].rglob('*.csv')))")],
        capture_output=True, text=True, timeout=60, cwd=outside)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split("\n")[:3] == ["[]", "True", "[]"]
    bad = (tmp_path / "bad.toml")
    bad.write_text(config.to_toml().replace('role = "aggregator"', 'role = "root"'))
    refused = subprocess.run([str(python), "-m", "workloads.analytics", "--config", str(bad),
                              "--check-config"], capture_output=True, text=True, timeout=60,
                             cwd=outside)
    assert refused.returncode == 2 and "role" in refused.stderr
