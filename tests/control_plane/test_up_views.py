"""`cotenant up`'s views render a tenant status (no services needed)."""

from __future__ import annotations

import re

from rich.console import Console

from cotenant.cli.up import parties_table, phases_table, timeline_table, trust_matrix_table

STATUS = {
    "name": "demo", "phase": "succeeded", "runtime_status": "Completed",
    "timeline": {
        "network": {"state": "succeeded", "started": "2026-01-01T00:00:00.000Z",
                    "ended": "2026-01-01T00:00:01.100Z", "seconds": 1.1},
        "cvm:contoso": {"state": "succeeded", "started": "2026-01-01T00:00:01.100Z",
                        "ended": "2026-01-01T00:00:02.600Z", "seconds": 1.5},
    },
    "parties": [
        {"name": "contoso", "state": "succeeded", "data": "succeeded", "cvm": "succeeded",
         "bootstrap": "succeeded", "attested": True,
         "releases": {"contoso": {"outcome": "released"}, "woodgrove": {"outcome": "refused"}}},
        {"name": "woodgrove", "state": "succeeded", "cvm": "succeeded",
         "bootstrap": "succeeded", "attested": True, "releases": {}},
    ],
    "trust_matrix": [
        {"key_owner": "contoso", "party": "contoso", "outcome": "released", "version": "abc123",
         "verified": True},
        {"key_owner": "woodgrove", "party": "contoso", "outcome": "refused",
         "refusal": "Forbidden/ForbiddenByRbac", "verified": True},
        {"key_owner": "contoso", "party": "woodgrove", "outcome": "refused",
         "refusal": "Forbidden/ForbiddenByRbac", "verified": False},
    ],
}


def render(table) -> str:
    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


def test_trust_matrix_shows_releases_refusals_and_mismatches():
    text = render(trust_matrix_table(STATUS))
    assert "released vabc123 ✓" in text
    assert "refused (ForbiddenByRbac) ✓" in text
    assert "✗ MISMATCH" in text


def test_progress_and_timeline_tables():
    assert "cvm:contoso" in render(phases_table(STATUS))
    parties = render(parties_table(STATUS))
    assert "contoso:released" in parties
    # each party's data storage has its column (pending until its data phase reports)
    header, contoso, woodgrove = ([cell.strip() for cell in re.split("[┃│]", line)[1:-1]]
                                  for line in parties.splitlines()
                                  if re.match("[┃│] (party|contoso|woodgrove) ", line))
    assert header[:4] == ["party", "state", "data", "cvm"]
    assert (contoso[2], woodgrove[2]) == ("succeeded", "pending")
    text = render(timeline_table(STATUS))
    assert "makespan 2.60s" in text and "+1.10" in text
