"""checkov --framework bicep over bicep/ passes with the baseline (every skip has a reason)."""

from __future__ import annotations

import os

import pytest

from tests.bicep.checkov_gate import BASELINE, CHECKOV, Finding, compare, gate, load_baseline


def _report(*failed: Finding, passed: int = 3) -> dict:
    return {"results": {
        "passed_checks": [{}] * passed,
        "failed_checks": [
            {"check_id": f.check, "file_path": f"/{f.file}", "resource": f.resource}
            for f in failed
        ],
        "parsing_errors": [],
    }}


KEY = Finding("CKV_AZURE_40", "tenant/party.bicep", "Microsoft.KeyVault/vaults/keys.diskKey")
VM = Finding("CKV_AZURE_50", "tenant/cvm.bicep", "Microsoft.Compute/virtualMachines.vm")


def test_a_finding_outside_the_baseline_fails():
    outcome = compare(_report(KEY, VM), {KEY: "a reason long enough to count"})
    assert outcome.unexpected == [VM] and not outcome.ok


def test_a_stale_baseline_entry_fails():
    outcome = compare(_report(), {KEY: "a reason long enough to count"})
    assert outcome.stale == [KEY] and not outcome.ok


def test_parse_errors_fail():
    report = _report()
    report["results"]["parsing_errors"] = ["/tenant/broken.bicep"]
    assert not compare(report, {}).ok


def test_every_baseline_entry_has_a_reason(tmp_path):
    entries, problems = load_baseline(BASELINE)
    assert entries and problems == []
    bad = tmp_path / "baseline.yaml"
    bad.write_text("- check: CKV_AZURE_1\n  file: a.bicep\n  resource: r\n- check: X\n")
    _, problems = load_baseline(bad)
    assert any("reason" in p for p in problems)
    assert any("needs check, file and resource" in p for p in problems)


def test_checkov_passes_with_the_baseline():
    if not CHECKOV.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHECKOV} is missing: `make test` installs it (`make checkov`)")
        pytest.skip("checkov is not installed: run `make checkov`")
    outcome = gate()
    assert outcome.parsing_errors == []
    assert outcome.unexpected == [], "new checkov findings: fix them or baseline them with a reason"
    assert outcome.stale == [], "baseline entries that no longer match a finding: remove them"
    assert outcome.passed > 20
