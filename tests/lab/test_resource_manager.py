"""The resource manager: Bicep parameter checks, async deployments, materialised resources."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from azure.identity import ManagedIdentityCredential
from azure.keyvault.keys import KeyClient, KeyReleasePolicy

from cotenant.bicep_params import parse_bicep
from cotenant.deployments import deployment_name, module_parameters, module_path
from cotenant.lab.client import LabClient, LabError
from cotenant.lab.manager import LAB_EGRESS_IP, agent_config_from_bootstrap
from cotenant.lab.testing import RunningLab
from cotenant.plan import KEY_OPERATOR_LAB_ROLE_ID, Plan, build_plan
from cotenant.spec import parse_spec

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "three-party.yaml"
ORCHESTRATOR = "bf7b6499-ff71-4aa2-97a4-f372087be7f0"
AGENT_TOML = 'tenant = "labtest"\n[attestation]\nbackend = "lab"\n'
BOOTSTRAP = f"#!/bin/sh\nset -e\ncat > /etc/cotenant/agent.toml <<'EOF'\n{AGENT_TOML}EOF\n"


def _plan(tenant: str) -> Plan:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["name"] = tenant
    return build_plan(parse_spec(data))


def _wait(client: LabClient, rg: str, name: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deployment = client.get_deployment(rg, name)
        if deployment["state"] != "Running":
            return deployment
        time.sleep(0.05)
    raise AssertionError(f"deployment {name} still running")


def _deploy(client: LabClient, plan: Plan, module: str, party: str | None = None,
            **inputs: Any) -> dict[str, Any]:
    name = deployment_name(plan, module, party)
    params = module_parameters(plan, module, party, **inputs)
    started = client.start_deployment(plan.resource_group, name, module, params)
    assert started["state"] in ("Running", "Succeeded")
    done = _wait(client, plan.resource_group, name)
    assert done["state"] == "Succeeded", done
    assert done["ended"] >= done["ready_at"] >= done["started"]  # ends no earlier than modelled
    declared = set(parse_bicep(module_path(module))["outputs"])
    assert set(done["outputs"]) == declared
    return done


def test_three_party_tenant_deploys(lab_env: RunningLab) -> None:
    client = lab_env.client
    plan = _plan("labtest")
    client.ensure_resource_group(plan.resource_group, plan.location, {"tenant": plan.tenant})
    _deploy(client, plan, "network")
    operator = client.operator()["principal_id"]
    parties = {p.party: _deploy(client, plan, "party", p.party,
                                operator_principal_id=operator,
                                operator_role_definition_id=KEY_OPERATOR_LAB_ROLE_ID,
                                cvm_orchestrator_object_id=ORCHESTRATOR,
                                allowed_ip_ranges=[LAB_EGRESS_IP])["outputs"]
               for p in plan.parties}
    officer = ManagedIdentityCredential()  # the lab's operator identity: key operator role
    for p in plan.parties:
        KeyClient(parties[p.party]["vaultUri"], officer).create_rsa_key(
            p.app_key_name, hardware_protected=True, exportable=True,
            release_policy=KeyReleasePolicy(json.dumps(p.release_policy).encode()))
    principal_ids = {name: out["identityPrincipalId"] for name, out in parties.items()}
    for p in plan.parties:
        if plan.grants_for_key(p.party):
            _deploy(client, plan, "grants", p.party, principal_ids=principal_ids)
    client.set_vm_kind(plan.parties[2].vm_name, "trusted-launch")
    for p in plan.parties:
        out = _deploy(client, plan, "cvm", p.party, admin_username="cotenant",
                      ssh_public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH lab",
                      bootstrap_script=BOOTSTRAP)["outputs"]
        assert out["identityPrincipalId"] == parties[p.party]["identityPrincipalId"]
    _deploy(client, plan, "gateway")

    # what the deployments materialised
    vms = {vm["name"]: vm for vm in client.vms()}
    first, last = plan.parties[0], plan.parties[2]
    assert vms[first.vm_name]["security_type"] == "ConfidentialVM"
    assert vms[last.vm_name]["security_type"] == "TrustedLaunch"
    assert vms[first.vm_name]["principal_ids"] == [parties[first.party]["identityPrincipalId"]]
    assert (Path(vms[first.vm_name]["directory"]) / "agent.toml").read_text() == AGENT_TOML
    assignments = client.role_assignments()
    for grant in plan.grants:
        scope = f"https://{grant.vault_name}.vault.azure.net/keys/{grant.key_name}"
        grantee = principal_ids[grant.grantee]
        assert any(a["scope"] == scope and a["principal_id"] == grantee and
                   a["role"] == grant.role for a in assignments), grant
    # each party's disk key is what party.bicep makes: RSA-HSM of the plan's size
    disk = KeyClient(parties[first.party]["vaultUri"], officer).get_key(first.disk_key_name)
    assert disk.key_type == "RSA-HSM" and len(disk.key.n) * 8 == first.disk_key_size
    # the CVM's identity can release its own key with its own attestation token
    token = client.vm_token(first.vm_name)
    vault = parties[first.party]["vaultUri"]
    releaser = KeyClient(vault, client.vm_credential(
        first.vm_name, parties[first.party]["identityClientId"]))
    assert releaser.release_key(first.app_key_name, token).value

    # idempotent: the same deployment again is the same deployment
    name = deployment_name(plan, "network")
    again = client.start_deployment(plan.resource_group, name, "network",
                                    module_parameters(plan, "network"))
    assert again["state"] == "Succeeded"

    assert client.delete_resource_group(plan.resource_group) == "Deleting"
    deadline = time.monotonic() + 10
    while client.resource_group(plan.resource_group) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert first.vm_name not in {vm["name"] for vm in client.vms()}


@pytest.mark.parametrize(("change", "named"), [
    (lambda p: p.update(vnetCidr=10), "'vnetCidr' must be of type string"),
    (lambda p: p.update(bogus="x"), "unknown parameter 'bogus'"),
    (lambda p: p.pop("location"), "missing required parameter 'location'"),
])
def test_deployment_with_a_wrong_parameter_is_refused(lab: RunningLab, change: Any,
                                                      named: str) -> None:
    client = lab.client
    plan = _plan("badparm")
    client.ensure_resource_group(plan.resource_group, plan.location)
    params = module_parameters(plan, "network")
    change(params)
    with pytest.raises(LabError) as info:
        client.start_deployment(plan.resource_group, "bad", "network", params)
    assert info.value.status == 400
    assert named in info.value.message


def test_unknown_module_and_missing_group(lab: RunningLab) -> None:
    with pytest.raises(LabError, match="unknown module"):
        lab.client.start_deployment("rg-x", "d", "nope", {})
    plan = _plan("nogroup")
    with pytest.raises(LabError) as info:
        lab.client.start_deployment("rg-does-not-exist", "d", "network",
                                    module_parameters(plan, "network"))
    assert info.value.status == 404


def test_agent_config_is_taken_from_the_bootstrap_script() -> None:
    assert agent_config_from_bootstrap(BOOTSTRAP) == AGENT_TOML
    assert agent_config_from_bootstrap(AGENT_TOML) == AGENT_TOML
    assert agent_config_from_bootstrap("#!/bin/sh\necho hi\n") is None


def test_latency_scale_is_configurable(lab: RunningLab) -> None:
    previous = lab.client.set_latency_scale(0.5)
    assert previous["seconds"]["cvm"] == pytest.approx(75.0)
    lab.client.set_latency_scale(0.001)


def test_failed_deployments_report_their_error(lab: RunningLab) -> None:
    client = lab.client
    plan = _plan("failing")
    client.ensure_resource_group(plan.resource_group, plan.location)
    party = plan.parties[0].party
    cvm = module_parameters(plan, "cvm", party, admin_username="cotenant",
                            admin_password="Lab-Passw0rd-1234!", bootstrap_script=BOOTSTRAP)
    client.start_deployment(plan.resource_group, "cvm-first", "cvm", cvm)
    failed = _wait(client, plan.resource_group, "cvm-first")
    assert failed["state"] == "Failed" and failed["error_code"] == "ResourceNotFound"
    assert plan.parties[0].identity_name in failed["error"]
    try:
        client.set_faults([{"service": "deployments", "path": "/network$", "kind": "error",
                            "status": 503, "count": 1}])
        network = module_parameters(plan, "network")
        client.start_deployment(plan.resource_group, "net", "network", network)
        transient = _wait(client, plan.resource_group, "net")
        assert (transient["state"], transient["error_code"]) == ("Failed", "ServiceUnavailable")
        assert transient["ended"] >= transient["ready_at"]
        client.start_deployment(plan.resource_group, "net", "network", network)  # retried
        assert _wait(client, plan.resource_group, "net")["state"] == "Succeeded"
    finally:
        client.set_faults([])


def test_a_deployment_read_can_wait_for_the_end(lab_env: RunningLab) -> None:
    client = lab_env.client
    plan = _plan("labwait")
    client.ensure_resource_group(plan.resource_group, plan.location, {"tenant": plan.tenant})
    name = deployment_name(plan, "network")
    client.set_latency_scale(0.005)  # network: 110 s x 0.005 = 0.55 s
    try:
        client.start_deployment(plan.resource_group, name, "network",
                                module_parameters(plan, "network"))
        started = time.monotonic()
        done = client.get_deployment(plan.resource_group, name, wait=10)
        took = time.monotonic() - started
    finally:
        client.set_latency_scale(0.001)
    assert done["state"] == "Succeeded"
    assert 0.2 < took < 5, took  # answered when it ended, not after the whole wait
    again = time.monotonic()
    assert client.get_deployment(plan.resource_group, name, wait=10)["state"] == "Succeeded"
    assert time.monotonic() - again < 1  # an ended deployment answers at once
    for bad in ("31", "-1", "soon"):
        with pytest.raises(LabError) as info:
            client._call("GET", f"/lab/resourcegroups/{plan.resource_group}/deployments/"
                                f"{name}?wait={bad}")
        assert info.value.status == 400 and "wait must be" in str(info.value)
