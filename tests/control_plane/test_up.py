"""`cotenant up` / `cotenant down`, the real commands, end to end.

They run in a scratch folder that links the project's app and examples (``up`` keeps its lab,
devhost state and logs in the current folder, so a developer's running stack is left alone),
with the lab's deployment latency scaled down to keep the run short. It takes 100–170 s on
the shared 2-core machine (``up`` ≈ 30–40 s, ``down`` ≈ 40 s, most of it process start-up under
load), hence ``slow``; ``make test`` runs every marker.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cotenant.lab.supervisor import running_client

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PARTIES = ("contoso", "fabrikam", "woodgrove")
# Who may release whose key in examples/three-party.yaml (key owner -> releasing VMs).
GRANTED = {"contoso": {"contoso", "woodgrove"}, "fabrikam": {"fabrikam", "woodgrove"},
           "woodgrove": {"woodgrove"}}


def _cotenant(workdir: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
        "COLUMNS": "240", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run([sys.executable, "-m", "cotenant.cli.main", *args], cwd=workdir,
                          env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _matrix_rows(out: str) -> dict[str, list[str]]:
    """``<owner>-secret-key`` row of the printed trust matrix -> its cells, in party order."""
    head = out.index("verified trust matrix")
    rows: dict[str, list[str]] = {}
    for line in out[head:].splitlines():
        cells = [c.strip() for c in line.strip().strip("│┃|").split("│")]
        if cells and cells[0].endswith("-secret-key") and len(cells) == 1 + len(PARTIES):
            rows.setdefault(cells[0].removesuffix("-secret-key"), cells[1:])
    return rows


@pytest.fixture
def workdir(tmp_path: Path):
    for name in ("function_app.py", "host.json", "examples"):
        (tmp_path / name).symlink_to(REPO / name)
    yield tmp_path
    if (tmp_path / ".devhost" / "up.json").exists() or running_client(tmp_path / ".lab"):
        down = _cotenant(tmp_path, "down", timeout=120)  # `up` failed half-way, or the test
        assert down.returncode == 0, down.stdout + down.stderr


def test_up_deploys_the_reference_scenario_and_prints_the_verified_trust_matrix(workdir):
    up = _cotenant(workdir, "up", "--latency-scale", "0.001", "--timeout", "240", timeout=420)
    out = up.stdout
    assert up.returncode == 0, (out + up.stderr)[-4000:]
    assert "deployed and verified" in out
    rows = _matrix_rows(out)
    assert set(rows) == set(PARTIES), out[out.index("verified trust matrix"):][:3000]
    for owner, cells in rows.items():
        for party, cell in zip(PARTIES, cells, strict=True):
            assert cell.endswith("✓"), f"{owner} key by {party}: {cell!r}"
            expected = "released" if party in GRANTED[owner] else "refused"
            assert cell.startswith(expected), f"{owner} key by {party}: {cell!r}"
    assert "MISMATCH" not in out
    assert "AccountKey=" not in out and "password" not in out.lower()

    down = _cotenant(workdir, "down", timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "stopped" in down.stdout
    assert not (workdir / ".devhost" / "up.json").exists()
