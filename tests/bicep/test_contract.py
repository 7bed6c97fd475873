"""The parameter contract: what the orchestrator passes == what each template requires."""

from __future__ import annotations

import pytest

from cotenant.bicep_params import check_parameters, declared_parameters
from cotenant.deployments import (
    MODULES,
    DeploymentInputError,
    deployment_name,
    module_parameters,
    module_path,
)
from tests.bicep.conftest import PASSWORD, SSH_KEY, inputs_for, party_for, reference_plan

PLANS = {"non-debug": reference_plan(), "debug": reference_plan(debug=True)}
CASES = [
    (label, module)
    for label, plan in PLANS.items()
    for module in MODULES
    if module != "bastion" or plan.debug
]


@pytest.mark.parametrize(("label", "module"), CASES)
def test_parameters_are_exactly_the_required_ones(label, module):
    plan = PLANS[label]
    declared = declared_parameters(module_path(module))
    params = module_parameters(plan, module, party_for(module), **inputs_for(module))
    required = {name for name, info in declared.items() if info.required}
    assert set(params) == required
    assert set(params) <= set(declared)
    assert check_parameters(declared, params) == []


@pytest.mark.parametrize("party", ["contoso", "fabrikam", "woodgrove"])
@pytest.mark.parametrize("module", ["party", "grants", "cvm"])
def test_every_party_gets_valid_parameters(plan, module, party):
    params = module_parameters(plan, module, party, **inputs_for(module))
    assert check_parameters(declared_parameters(module_path(module)), params) == []


def test_every_deployment_phase_of_the_plan_has_a_module():
    for plan in PLANS.values():
        modules = {phase.module for phase in plan.phases if phase.kind == "deployment"}
        assert modules <= set(MODULES)
        assert ("bastion" in modules) is plan.debug
        for phase in plan.phases:
            if phase.kind == "deployment":
                module_parameters(plan, phase.module, phase.party, **inputs_for(phase.module))


def test_password_login_is_also_within_the_contract(plan):
    params = module_parameters(plan, "cvm", "contoso", **inputs_for("cvm", password=True))
    assert params["authenticationType"] == "password"
    assert check_parameters(declared_parameters(module_path("cvm")), params) == []


def test_bastion_is_refused_for_a_non_debug_plan(plan):
    with pytest.raises(DeploymentInputError, match="debug"):
        module_parameters(plan, "bastion")


def test_network_passes_debug_through(plan, debug_plan):
    assert module_parameters(plan, "network")["debug"] is False
    assert module_parameters(debug_plan, "network")["debug"] is True
    assert module_parameters(debug_plan, "network")["bastionSubnetPrefix"] == "10.0.99.0/26"


@pytest.mark.parametrize(
    ("module", "party", "message"),
    [
        ("vpn", None, "unknown module"),
        ("cvm", None, "per party"),
        ("cvm", "mallory", "unknown party"),
        ("network", "contoso", "not deployed per party"),
    ],
)
def test_wrong_module_or_party_is_rejected(plan, module, party, message):
    with pytest.raises(DeploymentInputError, match=message):
        module_parameters(plan, module, party, **inputs_for("cvm"))


def test_unknown_inputs_are_rejected(plan):
    with pytest.raises(DeploymentInputError, match="takes no input 'debug'"):
        module_parameters(plan, "gateway", debug=True)


def test_party_inputs_are_validated(plan):
    with pytest.raises(DeploymentInputError) as err:
        module_parameters(plan, "party", "contoso", operator_principal_id="me",
                          allowed_ip_ranges=["10.0.0.1", "1.2.3.4/24", "x"],
                          operator_principal_type="Robot")
    problems = err.value.problems
    assert any("operator_principal_id must be a GUID" in p for p in problems)
    assert any("cvm_orchestrator_object_id is required" in p for p in problems)
    assert any("operator_role_definition_id is required" in p for p in problems)
    assert any("'10.0.0.1' is not a public" in p for p in problems)
    assert any("'1.2.3.4/24' is not an IPv4" in p for p in problems)
    assert any("operator_principal_type" in p for p in problems)


def test_party_single_hosts_become_bare_addresses(plan):
    params = module_parameters(plan, "party", "contoso", **{
        **inputs_for("party"), "allowed_ip_ranges": ["20.50.1.7/32"]})
    assert params["allowedIpRanges"] == ["20.50.1.7"]


def test_cvm_credentials_are_validated_without_echoing_them(plan):
    secret = "hunter2hunter2"
    with pytest.raises(DeploymentInputError) as err:
        module_parameters(plan, "cvm", "contoso", admin_username="root", admin_password=secret,
                          bootstrap_script="")
    message = str(err.value)
    assert "reserved" in message and "3 of" in message and "bootstrap_script" in message
    assert secret not in message
    with pytest.raises(DeploymentInputError, match="exactly one"):
        module_parameters(plan, "cvm", "contoso", admin_username="ops", admin_password=PASSWORD,
                          ssh_public_key=SSH_KEY, bootstrap_script="x")
    bad_key = "ssh-rsa not-base64!! me"
    with pytest.raises(DeploymentInputError) as err:
        module_parameters(plan, "cvm", "contoso", admin_username="ops", ssh_public_key=bad_key,
                          bootstrap_script="x")
    assert bad_key not in str(err.value)


def test_deployment_names_are_stable_and_distinct(plan):
    names = {deployment_name(plan, m, party_for(m)) for m in MODULES}
    assert len(names) == len(MODULES)
    assert deployment_name(plan, "cvm", "contoso") == "cotenant-demo-cvm-contoso"
    assert all(len(n) <= 64 for n in names)
