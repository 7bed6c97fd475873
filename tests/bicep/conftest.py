"""Fixtures for the Bicep tests: the reference scenario's plan (debug and not) and the
run-time inputs the orchestrator would pass to each module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cotenant.deployments import module_parameters, module_path
from cotenant.plan import Plan, build_plan
from cotenant.spec import parse_spec
from tests.bicep.template import Template

REPO = Path(__file__).resolve().parents[2]
REFERENCE_SPEC = REPO / "examples" / "three-party.yaml"

OPERATOR_ID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
KEY_OPERATOR_ROLE_ID = "5c0e8f3a-7d21-4b6e-9a43-1e2f3d4c5b6a"
ORCHESTRATOR_ID = "9a5d1c7e-2b3f-4e8a-b6c1-7d0e5f4a3b21"
PRINCIPALS = {
    "contoso": "11111111-1111-4111-8111-111111111111",
    "fabrikam": "22222222-2222-4222-8222-222222222222",
    "woodgrove": "33333333-3333-4333-8333-333333333333",
}
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ7h0Zt2x3Sm7bX0dQv1cS0aE9sFq8r2d5v4w3y6z9Ab test"
PASSWORD = "Vq7#kd92-Lm4pXz8!Rt6uWb3"
SCRIPT = "#!/bin/sh\nset -eu\necho bootstrap\n"


def reference_plan(*, debug: bool = False) -> Plan:
    data = yaml.safe_load(REFERENCE_SPEC.read_text(encoding="utf-8"))
    data["debug"] = debug
    return build_plan(parse_spec(data))


@pytest.fixture(scope="session")
def plan() -> Plan:
    return reference_plan()


@pytest.fixture(scope="session")
def debug_plan() -> Plan:
    return reference_plan(debug=True)


def inputs_for(module: str, *, password: bool = False) -> dict[str, Any]:
    """The keyword inputs the orchestrator passes to ``module_parameters`` for ``module``."""
    if module == "party":
        return {
            "operator_principal_id": OPERATOR_ID,
            "operator_role_definition_id": KEY_OPERATOR_ROLE_ID,
            "cvm_orchestrator_object_id": ORCHESTRATOR_ID,
            "allowed_ip_ranges": ["20.50.1.7", "52.10.0.0/28"],
        }
    if module in ("grants", "data"):
        return {"principal_ids": PRINCIPALS}
    if module == "cvm":
        credential = {"admin_password": PASSWORD} if password else {"ssh_public_key": SSH_KEY}
        return {"admin_username": "cvmops7", "bootstrap_script": SCRIPT, **credential}
    if module == "guest-access":
        return {"storage_account": "stcotenantabc123def4567", "command_queue": "cmd-demo-contoso",
                "principal_id": PRINCIPALS["contoso"]}
    return {}


def party_for(module: str) -> str | None:
    return "contoso" if module in {"party", "grants", "cvm", "guest-access", "data"} else None


def evaluated(plan: Plan, module: str, party: str | None = None, **overrides: Any) -> Template:
    """The module's template evaluated with the parameters the orchestrator passes."""
    party = party or party_for(module)
    inputs = {**inputs_for(module), **overrides}
    params = module_parameters(plan, module, party, **inputs)
    return Template(module_path(module), params)
