"""Run checkov over bicep/ and hold its findings to bicep/checkov-baseline.yaml.

Fails on a finding the baseline does not list, on a baseline entry that matches no finding
(stale), on an entry without a reason, and on files checkov could not parse. Used by
``make checkov`` (``python -m tests.bicep.checkov_gate``) and by tests/bicep/test_checkov.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
BICEP = REPO / "bicep"
BASELINE = BICEP / "checkov-baseline.yaml"
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"


@dataclass(frozen=True)
class Finding:
    check: str
    file: str  # relative to bicep/
    resource: str

    def __str__(self) -> str:
        return f"{self.check} {self.file} {self.resource}"


@dataclass
class Outcome:
    passed: int = 0
    parsing_errors: list[str] = field(default_factory=list)
    unexpected: list[Finding] = field(default_factory=list)
    stale: list[Finding] = field(default_factory=list)
    accepted: list[Finding] = field(default_factory=list)
    baseline_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.parsing_errors or self.unexpected or self.stale
                    or self.baseline_problems)


def load_baseline(path: Path = BASELINE) -> tuple[dict[Finding, str], list[str]]:
    """Baseline entries → reason, and problems with the file itself."""
    entries = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    result: dict[Finding, str] = {}
    problems = []
    for index, entry in enumerate(entries):
        try:
            finding = Finding(entry["check"], entry["file"], entry["resource"])
        except (KeyError, TypeError):
            problems.append(f"entry {index}: needs check, file and resource")
            continue
        reason = str(entry.get("reason") or "").strip()
        if len(reason) < 20:
            problems.append(f"{finding}: the reason it does not apply is missing or too short")
        if finding in result:
            problems.append(f"{finding}: listed twice")
        result[finding] = reason
    return result, problems


def run_checkov(directory: Path = BICEP, checkov: Path = CHECKOV) -> dict:
    """Checkov's JSON report for ``directory`` (bicep framework only)."""
    completed = subprocess.run(
        [str(checkov), "--framework", "bicep", "-d", str(directory), "-o", "json",
         "--soft-fail", "--skip-download"],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"},  # offline, deterministic
    )
    if completed.returncode != 0:
        raise RuntimeError(f"checkov failed ({completed.returncode}): {completed.stderr[-2000:]}")
    report = json.loads(completed.stdout)
    return report[0] if isinstance(report, list) else report


def compare(report: dict, baseline: dict[Finding, str]) -> Outcome:
    results = report.get("results") or {}
    findings = {
        Finding(r["check_id"], r["file_path"].lstrip("/"), r["resource"])
        for r in results.get("failed_checks") or []
    }
    return Outcome(
        passed=len(results.get("passed_checks") or []),
        parsing_errors=list(results.get("parsing_errors") or []),
        unexpected=sorted(findings - set(baseline), key=str),
        stale=sorted(set(baseline) - findings, key=str),
        accepted=sorted(findings & set(baseline), key=str),
    )


def gate() -> Outcome:
    baseline, problems = load_baseline()
    outcome = compare(run_checkov(), baseline)
    outcome.baseline_problems = problems
    return outcome


def main() -> int:
    if not CHECKOV.exists():
        print(f"checkov is not installed at {CHECKOV}: run `make checkov`", file=sys.stderr)
        return 2
    outcome = gate()
    for finding in outcome.unexpected:
        print(f"FAILED (not in the baseline): {finding}")
    for finding in outcome.stale:
        print(f"STALE baseline entry (no longer found): {finding}")
    for problem in outcome.baseline_problems + outcome.parsing_errors:
        print(f"ERROR: {problem}")
    print(f"checkov: {outcome.passed} passed, {len(outcome.accepted)} accepted by the baseline, "
          f"{len(outcome.unexpected)} failed")
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
