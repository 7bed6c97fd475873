"""End to end: the function app under the devhost, the lab cloud, Azurite, and the real guest
agents running in the lab's simulated CVMs.

Five tenants deploy concurrently (one module-scoped run, to keep the suite short):
``demo`` (the reference scenario, with a transient failure injected into one deployment),
``dbgvm`` (debug mode, and Woodgrove's VM is debuggable), ``perm`` (the gateway deployment
is refused permanently), ``mute`` (Contoso's VM dies before its agent reports) and ``leak``
(Fabrikam's identity is wrongly granted release on Contoso's vault before its VM boots). Then
``demo`` is re-posted, rotated and torn down, and a sixth tenant survives a devhost restart
mid-deploy.
"""

from __future__ import annotations

import copy
import json
import threading
import time

import pytest

from tests.control_plane.test_api import openapi, validate

pytestmark = [pytest.mark.azurite, pytest.mark.slow]

TENANTS = ("demo", "dbgvm", "perm", "mute", "leak")
RELEASE_ROLE = "Key Vault Crypto Service Release User"


def _kill_vm_when_created(lab, vm: str, stop: threading.Event) -> None:
    while not stop.is_set():
        if any(v["name"] == vm and v["status"] == "running" for v in lab.client.vms()):
            lab.client.delete_vm(vm)  # the VM dies as it boots, before its agent reports
            return
        time.sleep(0.01)


def _grant_wrongly_before_vm_boots(lab, identity: str, vault_url: str,
                                   stop: threading.Event) -> None:
    """Release rights on a whole vault for an identity the spec does not allow, as soon as
    both exist (the party phase), long before that party's VM boots and its agent probes."""
    from cotenant.lab.client import LabError

    while not stop.is_set():
        principal = next((i["principal_id"] for i in lab.client.identities()
                          if i["name"] == identity), None)
        if principal is not None:
            try:
                lab.client.grant_principal(principal, vault_url, RELEASE_ROLE)
                return
            except LabError:  # the vault is not there yet
                pass
        time.sleep(0.01)


@pytest.fixture(scope="module")
def outcomes(stack, lab_stack):
    """Post the five tenants at once; their terminal statuses by name."""
    import yaml

    from tests.control_plane.conftest import THREE_PARTY

    base = yaml.safe_load(THREE_PARTY.read_text())
    lab = lab_stack.client
    lab.set_vm_kind("vm-dbgvm-woodgrove", "debuggable")
    lab.set_faults([
        {"service": "manage", "method": "PUT", "kind": "error", "status": 503, "count": 1,
         "path": "/deployments/cotenant-demo-cvm-contoso$"},
        {"service": "manage", "method": "PUT", "kind": "error", "status": 400,
         "path": "/deployments/cotenant-perm-gateway$"},
    ])
    stop = threading.Event()
    killer = threading.Thread(target=_kill_vm_when_created,
                              args=(lab_stack, "vm-mute-contoso", stop), daemon=True)
    killer.start()
    leak = _plan({**base, "name": "leak", "debug": False})
    granter = threading.Thread(target=_grant_wrongly_before_vm_boots, args=(
        lab_stack, leak.party("fabrikam").identity_name,
        lab.vault_url(leak.party("contoso").vault_name), stop), daemon=True)
    granter.start()
    try:
        for name in TENANTS:
            spec = copy.deepcopy(base)
            spec["name"] = name
            spec["debug"] = name == "dbgvm"
            r = stack.http("POST", "/api/tenants", json=spec)
            assert r.status_code == 202, r.text
        results = {name: stack.wait(name, timeout=180) for name in TENANTS}
    finally:
        stop.set()
        lab.set_faults([])
    return results


def _plan(spec: dict):
    from cotenant.plan import build_plan
    from cotenant.spec import parse_spec

    return build_plan(parse_spec(spec))


def tenant(stack, name: str) -> dict:
    r = stack.http("GET", f"/api/tenants/{name}")
    assert r.status_code == 200, r.text
    validate(openapi(stack), "TenantStatus", r.json())
    return r.json()


def test_three_parties_attested_with_verified_tokens(stack, outcomes, lab_stack):
    assert outcomes["demo"].runtime_status == "Completed", outcomes["demo"].custom_status
    body = tenant(stack, "demo")
    assert body["phase"] == "succeeded" and body["errors"] == []
    assert [p["name"] for p in body["parties"]] == ["contoso", "fabrikam", "woodgrove"]
    for party in body["parties"]:
        assert party["attested"] is True
        summary = party["attestation"]
        assert summary["nonce_matches_challenge"] is True
        assert summary["vm_security_type"] == "ConfidentialVM"
        assert summary["attestation_type"] == "sevsnpvm"
        assert summary["debuggable"] is False
        assert summary["issuer"].startswith("https://sharedneu.neu.attest.azure.net")
    for phase in ("network", "gateway", "party:contoso", "grants:fabrikam", "cvm:woodgrove",
                  "bootstrap:contoso", "verify:woodgrove", "data:contoso", "data:woodgrove",
                  "finalize"):
        assert body["timeline"][phase]["state"] == "succeeded", phase
    for party in body["parties"]:
        assert party["data"] == "succeeded"
        assert party["data_container"] == f"{party['name']}-data"
        assert party["storage_account"].startswith(f"stdemo{party['name']}"[:16])


def test_data_containers_are_readable_only_by_the_parties_that_may_release_the_key(
        stack, outcomes, lab_stack, azurite):
    from azure.storage.blob import BlobServiceClient

    from cotenant.lab.data import BLOB_READER, data_assignments

    lab = lab_stack.client
    names = {i["principal_id"]: i["name"].removeprefix("id-demo-") for i in lab.identities()
             if i["name"].startswith("id-demo-")}
    demo = [a for a in lab.role_assignments() if "/resourceGroups/rg-demo/" in a["scope"]]
    held = {(names.get(principal, principal), container, role)
            for principal, container, role in data_assignments(demo)}
    # Woodgrove's CVM identity reads Contoso's and Fabrikam's sealed data; not the other way
    # round, and no owner reads another owner's container (nor is granted its own: it uploads)
    assert held == {("woodgrove", "contoso-data", BLOB_READER),
                    ("woodgrove", "fabrikam-data", BLOB_READER)}
    for a in demo:
        if a["role"] == BLOB_READER:
            assert "/providers/Microsoft.Storage/storageAccounts/stdemo" in a["scope"]
            assert a["scope"].endswith(("/blobServices/default/containers/contoso-data",
                                        "/blobServices/default/containers/fabrikam-data"))
    containers = {c.name for c in BlobServiceClient.from_connection_string(
        azurite.connection_string).list_containers()}
    assert {"contoso-data", "fabrikam-data", "woodgrove-data"} <= containers


def test_trust_matrix_matches_spec_and_refusals_were_attempted(stack, outcomes, lab_stack):
    body = tenant(stack, "demo")
    cells = {(c["party"], c["key_owner"]): c for c in body["trust_matrix"]}
    assert len(cells) == 9 and all(c["verified"] for c in cells.values())
    allowed = {("contoso", "contoso"), ("woodgrove", "contoso"), ("fabrikam", "fabrikam"),
               ("woodgrove", "fabrikam"), ("woodgrove", "woodgrove")}
    for pair, cell in cells.items():
        assert cell["outcome"] == ("released" if pair in allowed else "refused"), pair
    # the refusals really happened at the other party's vault, for this VM's identity
    identities = {i["name"]: i["principal_id"] for i in lab_stack.client.identities()}
    audit = lab_stack.client.audit()
    for party, owner in cells:
        vault = next(p["vault"] for p in body["parties"] if p["name"] == owner)
        caller = identities[f"id-demo-{party}"]
        seen = [a for a in audit if a["vault"] == vault and a["caller"] == caller
                and a["key"] == f"{owner}-secret-key"]
        expected = "released" if (party, owner) in allowed else "denied"
        assert seen and {a["decision"] for a in seen} == {expected}, (party, owner)


def test_a_probe_released_by_a_wrong_grant_fails_the_party_with_a_clear_message(
        stack, outcomes, lab_stack):
    assert outcomes["leak"].runtime_status == "Failed"
    body = tenant(stack, "leak")
    message = " ".join(e["message"] for e in body["errors"])
    assert "party fabrikam: isolation broken: the vault of contoso released " \
        "contoso-secret-key to fabrikam's VM vm-leak-fabrikam" in message, message
    assert body["timeline"]["attest:fabrikam"]["state"] == "failed"  # waiting for outcomes
    fabrikam = next(p for p in body["parties"] if p["name"] == "fabrikam")
    assert fabrikam["releases"]["contoso"]["outcome"] == "released"
    assert fabrikam["releases"]["contoso"]["code"] == "IsolationBroken"
    # the agent reported it (audited) and never held the key: its allow-list is its own key
    events = stack.http("GET", "/api/tenants/leak/audit").json()["events"]
    broken = [e for e in events if e["kind"] == "guest:isolation-broken"]
    assert [(e["party"], e["key_id"].rsplit("/", 1)[-1]) for e in broken] == [
        ("fabrikam", "contoso-secret-key")]
    assert broken[0].get("key_version") is None
    vault = next(p["vault"] for p in body["parties"] if p["name"] == "contoso")
    caller = next(i["principal_id"] for i in lab_stack.client.identities()
                  if i["name"] == "id-leak-fabrikam")
    assert [a["decision"] for a in lab_stack.client.audit(key="contoso-secret-key")
            if a["vault"] == vault and a["caller"] == caller] == ["released"]  # really


def test_transient_failure_was_retried(stack, outcomes):
    monitors = [s for s in stack.list_instances() if s.name == "monitor_deployment"
                and isinstance(s.output, dict)
                and s.output.get("name") == "cotenant-demo-cvm-contoso"]
    assert len(monitors) == 1
    failed = [e for e in monitors[0].history if e["EventType"] == "TaskFailed"]
    assert len(failed) == 1
    assert "transient" in str(failed[0].get("Reason", "")) + str(failed[0].get("Details", ""))
    assert monitors[0].output["state"] == "Succeeded"


def test_permanent_failure_names_step_resource_and_cloud_message(stack, outcomes):
    assert outcomes["perm"].runtime_status == "Failed"
    body = tenant(stack, "perm")
    assert body["phase"] == "failed"
    message = " ".join(e["message"] for e in body["errors"])
    assert "gateway" in message and "cotenant-perm-gateway" in message
    assert body["timeline"]["gateway"]["state"] == "failed"


def test_agent_that_never_reports_times_out_naming_the_party(stack, outcomes):
    assert outcomes["mute"].runtime_status == "Failed"
    body = tenant(stack, "mute")
    message = " ".join(e["message"] for e in body["errors"])
    assert "timed out" in message and "contoso" in message


def test_debuggable_vm_is_refused_at_verification(stack, outcomes):
    assert outcomes["dbgvm"].runtime_status == "Failed"
    body = tenant(stack, "dbgvm")
    message = " ".join(e["message"] for e in body["errors"])
    assert "woodgrove" in message and "debuggable" in message
    assert body["timeline"]["verify:woodgrove"]["state"] == "failed"
    woodgrove = next(p for p in body["parties"] if p["name"] == "woodgrove")
    assert woodgrove["attested"] is False


def test_debug_mode_is_explicit_with_bastion_and_shown_credentials(stack, outcomes):
    body = tenant(stack, "dbgvm")  # the spec enabled debug mode
    assert body["debug"] is True and "debug mode is ON" in body["notice"]
    assert body["timeline"]["bastion"]["state"] == "succeeded"
    contoso = next(p for p in body["parties"] if p["name"] == "contoso")
    credentials = contoso["debug_credentials"]
    assert len(credentials["password"]) == 40 and "debug mode" in credentials["notice"]
    plain = tenant(stack, "demo")
    assert plain["debug"] is False and "bastion" not in plain["timeline"]
    assert all(p.get("debug_credentials") is None for p in plain["parties"])


def test_reposting_the_same_spec_changes_nothing(stack, outcomes, spec, lab_stack):
    before = len(stack.list_instances())
    deployments = lab_stack.client._call("GET", "/lab/resourcegroups/rg-demo/deployments")
    spec["name"] = "demo"
    r = stack.http("POST", "/api/tenants", json=spec)
    assert r.status_code == 200
    validate(openapi(stack), "Accepted", r.json())
    assert r.json()["outcome"] == "existing"
    assert len(stack.list_instances()) == before
    assert lab_stack.client._call("GET", "/lab/resourcegroups/rg-demo/deployments") == \
        deployments
    spec["parties"][0]["display_name"] = "Contoso Ltd"  # a different spec for a done tenant
    other = stack.http("POST", "/api/tenants", json={**spec, "name": "perm",
                                                     "key_rotation_days": 30})
    assert other.status_code == 202 and other.json()["outcome"] == "restarted"
    stack.terminate("perm", "test over")


def test_status_never_carries_credentials(stack, outcomes):
    text = stack.http("GET", "/api/tenants/demo").text.lower()
    for word in ("password", "adminpasswordorkey", "bootstrapscript", "connection_string",
                 "accountkey", "-----begin"):
        assert word not in text


def test_rotation_moves_every_key_and_each_agent_reports_it(stack, outcomes, lab_stack):
    r = stack.http("POST", "/api/tenants/demo/rotate")
    assert r.status_code == 202, r.text
    instance = r.json()["instance_id"]
    status = stack.wait(instance, timeout=90)
    assert status.runtime_status == "Completed", status.custom_status
    keys = status.output["keys"]
    assert set(keys) == {"contoso-secret-key", "fabrikam-secret-key", "woodgrove-secret-key"}
    for key in keys.values():
        assert key["new_version"] != key["old_version"]
    assert sorted(keys["contoso-secret-key"]["confirmed_by"]) == ["contoso", "woodgrove"]
    assert keys["woodgrove-secret-key"]["confirmed_by"] == ["woodgrove"]
    rotations = tenant(stack, "demo")["rotations"]
    assert rotations[-1]["runtime_status"] == "Completed"


def test_audit_lists_attestations_and_releases(stack, outcomes):
    r = stack.http("GET", "/api/tenants/demo/audit")
    assert r.status_code == 200
    validate(openapi(stack), "AuditLogResponse", r.json())
    kinds = [e["kind"] for e in r.json()["events"]]
    assert kinds.count("guest:attested") == 3
    # least privilege: no agent asks to release a key it is not granted; the 4 refusals of
    # the trust matrix are isolation probes
    assert kinds.count("guest:isolation-refused") == 4
    assert "guest:release-denied" not in kinds and "guest:isolation-broken" not in kinds
    # each agent reported its keys in one report; the audit still has a row per outcome
    assert kinds.count("guest:released") == 5 and "guest:outcomes" not in kinds
    assert "token" not in r.text.replace("token_sha256", "")


def test_scheduled_rotation_starts_once_a_day_when_due(stack, outcomes):
    from datetime import UTC, datetime, timedelta

    import azure.durable_functions as df

    from cotenant.api.events import rotate_due_tenants

    client = df.DurableOrchestrationClient(stack.host.management.client_binding(stack.base_url))
    today = datetime.now(UTC)
    assert stack._run(rotate_due_tenants(client, today)) == []  # rotated minutes ago
    later = today + timedelta(days=91)
    assert stack._run(rotate_due_tenants(client, later)) == ["demo"]
    assert stack._run(rotate_due_tenants(client, later)) == []  # a double fire does nothing
    status = stack.wait(f"demo:rotate:{later:%Y-%m-%d}", timeout=90)
    assert status.runtime_status == "Completed", status.custom_status
    assert status.input["reason"] == "scheduled"


def _drop_release_policy(lab_stack, vault: str, key: str) -> str:
    """Remove the release policy of ``key``'s current version (something the vault's API
    refuses for an exportable key: edit the stopped lab's state, then start it again)."""
    lab_stack.stop()
    path = lab_stack.directory / "state.json"
    state = json.loads(path.read_text())
    current = state["vaults"][vault]["keys"][key]["versions"][-1]
    current["release_policy"] = None
    path.write_text(json.dumps(state))
    lab_stack.start()
    return current["version"]


def test_rotation_reapplies_a_missing_release_policy_and_agents_still_release(
        stack, outcomes, lab_stack, spec):
    from azure.identity import ManagedIdentityCredential
    from azure.keyvault.keys import KeyClient

    from cotenant.lab.client import LabClient
    from cotenant.plan import build_plan
    from cotenant.spec import parse_spec

    body = tenant(stack, "demo")
    vault = next(p["vault"] for p in body["parties"] if p["name"] == "contoso")
    client = KeyClient(LabClient.vault_url(vault), ManagedIdentityCredential(),
                       connection_verify=lab_stack.client.endpoints.ca_bundle)
    stripped = _drop_release_policy(lab_stack, vault, "contoso-secret-key")
    assert client.get_key("contoso-secret-key").properties.release_policy is None

    r = stack.http("POST", "/api/tenants/demo/rotate")
    assert r.status_code == 202, r.text
    status = stack.wait(r.json()["instance_id"], timeout=120)
    assert status.runtime_status == "Completed", status.custom_status
    rotated = status.output["keys"]["contoso-secret-key"]
    assert rotated["old_version"] == stripped and rotated["policy_reapplied"] is True
    assert status.output["keys"]["fabrikam-secret-key"]["policy_reapplied"] is False
    new = client.get_key("contoso-secret-key")
    assert new.properties.version == rotated["new_version"] != stripped
    policy = new.properties.release_policy
    assert policy is not None
    expected = next(p for p in build_plan(parse_spec(spec)).parties
                    if p.party == "contoso").release_policy
    assert json.loads(policy.encoded_policy) == expected
    # the agents allowed to release the key released the new version and said so
    assert sorted(rotated["confirmed_by"]) == ["contoso", "woodgrove"]
    releases = [a for a in lab_stack.client.audit(key="contoso-secret-key")
                if a.get("version") == rotated["new_version"] and a["decision"] == "released"]
    assert releases


def _activity_body(name: str):
    """An activity's own code (what the devhost runs), called in this process: the app's
    settings (lab cloud, Azurite) are in os.environ while ``stack`` runs."""
    import activities.verify

    return getattr(activities.verify, name)._function.get_user_function()


def test_valid_token_from_another_partys_vm_is_refused_at_verification(
        stack, outcomes, lab_stack, spec):
    import secrets

    from cotenant.plan import build_plan
    from cotenant.spec import parse_spec

    verify = _activity_body("verify_attestation")
    demo = {**spec, "name": "demo", "debug": False}
    authority = build_plan(parse_spec(demo)).authority
    nonce = secrets.token_urlsafe(16)  # the orchestration's challenge for contoso
    own = lab_stack.client.vm_token("vm-demo-contoso", nonce, authority=authority)
    accepted = verify({"spec": demo, "party": "contoso", "token": own, "nonce": nonce})
    assert accepted["ok"] is True, accepted
    # Fabrikam's genuine, compliant CVM answers contoso's challenge: right nonce, valid
    # signature, satisfies the release policy — but it is not contoso's VM.
    foreign = lab_stack.client.vm_token("vm-demo-fabrikam", nonce, authority=authority)
    refused = verify({"spec": demo, "party": "contoso", "token": foreign, "nonce": nonce})
    assert refused["ok"] is False
    message = refused["error"]["message"]
    fabrikam_id = lab_stack.client.get_vm("vm-demo-fabrikam")["vm_unique_id"]
    assert "contoso" in message and fabrikam_id in message and "vm-demo-contoso" in message


def test_vault_wide_release_capable_grant_is_flagged_by_the_trust_matrix(
        stack, outcomes, lab_stack, spec):
    from cotenant.lab.client import LabClient
    from cotenant.plan import build_plan
    from cotenant.spec import parse_spec

    finalize = _activity_body("finalize_tenant")
    demo = {**spec, "name": "demo", "debug": False}
    plan = build_plan(parse_spec(demo))
    observed = [{"party": grantee.party, "releases": {
        owner.party: {"outcome": "released" if plan.access_matrix.can_release(
            owner.party, grantee.party) else "refused"} for owner in plan.parties}}
        for grantee in plan.parties]
    clean = finalize({"spec": demo, "parties": observed})
    assert clean["ok"] is True, clean
    assert clean["grants"]["contoso"] == ["contoso", "woodgrove"]
    # A wrong grant: Key Vault Crypto Officer (keys/* — release included) for Fabrikam on
    # Contoso's whole vault, not on the key. Fabrikam may not release Contoso's key.
    contoso = next(p for p in plan.parties if p.party == "contoso")
    fabrikam = next(p for p in plan.parties if p.party == "fabrikam")
    principal = next(i["principal_id"] for i in lab_stack.client.identities()
                     if i["name"] == fabrikam.identity_name)
    lab_stack.client.grant_principal(principal, LabClient.vault_url(contoso.vault_name),
                                     "Key Vault Crypto Officer")
    flagged = finalize({"spec": demo, "parties": observed})
    assert flagged["ok"] is False
    assert ("contoso-secret-key: release grants held by ['contoso', 'fabrikam', 'woodgrove']"
            in flagged["error"]["message"])
    assert "fabrikam-secret-key" not in flagged["error"]["message"]
    # ... and one inherited from the resource group: Contoso may now release every key in it
    sub = lab_stack.client.info()["subscription_id"]
    contoso_principal = next(i["principal_id"] for i in lab_stack.client.identities()
                             if i["name"] == contoso.identity_name)
    lab_stack.client.grant_principal(
        contoso_principal, f"/subscriptions/{sub}/resourceGroups/{plan.resource_group}",
        "Key Vault Crypto Officer")
    message = finalize({"spec": demo, "parties": observed})["error"]["message"]
    assert ("fabrikam-secret-key: release grants held by ['contoso', 'fabrikam', 'woodgrove']"
            in message)
    assert "woodgrove-secret-key: release grants held by ['contoso', 'woodgrove']" in message


def test_teardown_removes_everything(stack, outcomes, lab_stack):
    r = stack.http("DELETE", "/api/tenants/demo")
    assert r.status_code == 202
    status = stack.wait("demo:teardown", timeout=60)
    assert status.runtime_status == "Completed", status.custom_status
    assert lab_stack.client.resource_group("rg-demo") is None
    assert not [v for v in lab_stack.client.vms() if v["name"].startswith("vm-demo-")]
    assert not [i for i in lab_stack.client.identities() if i["name"].startswith("id-demo-")]
    assert not [a for a in lab_stack.client.role_assignments()
                if "/resourceGroups/rg-demo/" in a["scope"]]
    assert tenant(stack, "demo")["teardown"]["runtime_status"] == "Completed"


def test_devhost_restart_mid_deploy_completes_without_duplicates(stack, spec, lab_stack):
    from azure.identity import ManagedIdentityCredential
    from azure.keyvault.keys import KeyClient

    spec["name"] = "rstrt"
    assert stack.http("POST", "/api/tenants", json=spec).status_code == 202
    changed = {**spec, "parties": [{**spec["parties"][0], "display_name": "Contoso Ltd"},
                                   *spec["parties"][1:]]}
    busy = stack.http("POST", "/api/tenants", json=changed)  # a different spec while running
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "TenantBusy"
    validate(openapi(stack), "ErrorResponse", busy.json())
    stack.wait_for_custom_status(
        "rstrt", lambda s: bool(s) and any(k.startswith("provision:") and v["state"] == "running"
                                           for k, v in s.get("timeline", {}).items()),
        timeout=120)
    stack.restart()
    status = stack.wait("rstrt", timeout=180)
    assert status.runtime_status == "Completed", status.custom_status
    lab = lab_stack.client
    assert sorted(i["name"] for i in lab.identities() if i["name"].startswith("id-rstrt-")) == \
        ["id-rstrt-contoso", "id-rstrt-fabrikam", "id-rstrt-woodgrove"]
    assert len([v for v in lab.vms() if v["name"].startswith("vm-rstrt-")]) == 3
    credential = ManagedIdentityCredential()
    for party in tenant(stack, "rstrt")["parties"]:
        keys = KeyClient(lab.vault_url(party["vault"]), credential)
        versions = list(keys.list_properties_of_key_versions(party["app_key"]))
        assert len(versions) == 1, party["name"]
    grants = [(a["principal_id"], a["scope"]) for a in lab.role_assignments()
              if "kv-rstrt-" in a["scope"]]
    assert len(grants) == len(set(grants))
    listed = stack.http("GET", "/api/tenants").json()
    validate(openapi(stack), "TenantList", listed)
    states = {t["name"]: t["runtime_status"] for t in listed["tenants"]}
    assert states["rstrt"] == "Completed" and states["mute"] == "Failed"
