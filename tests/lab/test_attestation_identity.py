"""The attestation service, the software vTPM and the identity endpoints."""

from __future__ import annotations

import json

import jwt
import pytest
import requests
from azure.identity import ManagedIdentityCredential
from cryptography.hazmat.primitives.asymmetric import ec

from cotenant.crypto.encoding import b64url_decode, b64url_encode
from cotenant.crypto.tokens import TokenVerifier, runtime_encryption_key
from cotenant.lab.evidence import build_attestation_info
from cotenant.lab.testing import RunningLab
from cotenant.lab.vtpm import AttestationFailed, SoftwareVTPM
from tests.lab.helpers import unique


def test_discovery_and_jwks_have_the_maa_shape(lab_env: RunningLab) -> None:
    session, authority = requests.Session(), lab_env.client.endpoints.attestation_url
    config = session.get(f"{authority}/.well-known/openid-configuration").json()
    assert config["issuer"] == authority
    assert config["jwks_uri"] == f"{authority}/certs"
    keys = session.get(config["jwks_uri"]).json()["keys"]
    assert {"kid", "kty", "x5c", "n", "e"} <= set(keys[0])


def test_confidential_vm_token_has_the_guest_claim_layout(lab_env: RunningLab) -> None:
    client = lab_env.client
    vm = unique("vm")
    client.create_vm(vm, "confidential")
    token = client.vm_token(vm, nonce="nonce-42")
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256" and header["jku"].endswith("/certs")
    verifier = TokenVerifier([client.endpoints.attestation_url],
                             verify=client.endpoints.ca_bundle)
    claims = verifier.verify(token, nonce="nonce-42")
    assert claims.is_compliant_cvm and not claims.is_debuggable
    assert claims.claims["x-ms-attestation-type"] == "azurevm"
    tee = claims.claims["x-ms-isolation-tee"]
    assert tee["x-ms-runtime"]["vm-configuration"]["vmUniqueId"] == client.get_vm(vm)[
        "vm_unique_id"]
    # both VM identity claims name the VM the lab reports (the control plane compares them)
    assert claims.vm_id == client.get_vm(vm)["vm_unique_id"]
    # the runtime key is the VM's current ephemeral key
    vtpm = client.vtpm(vm)
    assert runtime_encryption_key(claims.claims).public_numbers() == \
        vtpm.encryption_key.public_numbers()


def test_reboot_recreates_the_ephemeral_key(lab: RunningLab) -> None:
    client = lab.client
    vm = unique("vm")
    client.create_vm(vm, "confidential")
    before = client.vtpm(vm).encryption_key.public_numbers()
    client.restart_vm(vm)
    assert client.vtpm(vm).encryption_key.public_numbers() != before


def test_forged_or_unknown_evidence_is_refused(lab_env: RunningLab) -> None:
    client = lab_env.client
    vm = unique("vm")
    client.create_vm(vm, "confidential")
    vtpm = client.vtpm(vm)
    session, url = requests.Session(), f"{client.endpoints.attestation_url}/attest/AzureGuest"
    impostor = ec.generate_private_key(ec.SECP384R1())
    forged = build_attestation_info(vm_unique_id=vtpm.vm_unique_id, hardware_key=impostor,
                                    enc_key=vtpm.encryption_key, client_payload={},
                                    runtime_data={})
    response = session.post(url, params={"api-version": "2020-10-01"},
                            json={"AttestationInfo": forged})
    assert response.status_code == 400
    assert "not the one registered" in response.json()["error"]["message"]
    unknown = build_attestation_info(vm_unique_id="00000000-0000-0000-0000-000000000000",
                                     hardware_key=impostor, enc_key=vtpm.encryption_key,
                                     client_payload={}, runtime_data={})
    response = session.post(url, params={"api-version": "2020-10-01"},
                            json={"AttestationInfo": unknown})
    assert response.status_code == 400 and "unknown platform" in response.text
    # tampering with a genuine quote's payload breaks its binding
    info = json.loads(b64url_decode(vtpm.evidence(nonce="a")))
    info["ClientPayload"] = b64url_encode(b'{"nonce":"b"}')
    response = session.post(url, params={"api-version": "2020-10-01"},
                            json={"AttestationInfo": b64url_encode(json.dumps(info).encode())})
    assert response.status_code == 400 and "does not bind" in response.text


def test_software_vtpm_outside_a_vm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COTENANT_LAB_VTPM_DIR", raising=False)
    with pytest.raises(RuntimeError, match="not running in a lab VM"):
        SoftwareVTPM.from_environment()


def test_attest_against_a_host_outside_the_lab_fails(lab: RunningLab) -> None:
    vm = unique("vm")
    lab.client.create_vm(vm, "confidential")
    with pytest.raises(AttestationFailed):
        lab.client.vm_token(vm, authority="https://attest.example.com")


def test_managed_identity_credential_gets_lab_tokens(lab_env: RunningLab) -> None:
    client = lab_env.client
    operator = ManagedIdentityCredential().get_token("https://vault.azure.net/.default")
    claims = jwt.decode(operator.token, options={"verify_signature": False})
    assert claims["oid"] == client.operator()["principal_id"]
    assert claims["aud"] == "https://vault.azure.net"
    same = ManagedIdentityCredential(client_id=client.operator()["client_id"]).get_token(
        "https://vault.azure.net/.default")
    assert jwt.decode(same.token, options={"verify_signature": False})["oid"] == \
        claims["oid"]


def test_the_control_plane_endpoint_issues_no_other_identity(lab: RunningLab) -> None:
    """App Service's identity endpoint speaks only for the identities assigned to the app:
    the operator cannot mint a party VM's identity token and use it as that VM."""
    env = lab.environ()
    other = lab.client.create_identity(unique("id"))
    vm = unique("vm")
    lab.client.create_vm(vm, "confidential", identities=[other["client_id"]])
    refused = requests.get(env["IDENTITY_ENDPOINT"], params={
        "api-version": "2019-08-01", "resource": "https://vault.azure.net",
        "client_id": other["client_id"]}, headers={"X-IDENTITY-HEADER": env["IDENTITY_HEADER"]})
    assert refused.status_code == 400 and "access_token" not in refused.text
    # the VM holding it gets it through its own IMDS
    token = lab.client.vm_credential(vm, other["client_id"]).get_token(
        "https://vault.azure.net/.default")
    assert jwt.decode(token.token, options={"verify_signature": False})["appid"] == \
        other["client_id"]


def test_identity_endpoints_check_their_headers(lab: RunningLab) -> None:
    env = lab.environ()
    no_header = requests.get(env["IDENTITY_ENDPOINT"], params={
        "api-version": "2019-08-01", "resource": "https://vault.azure.net"})
    assert no_header.status_code == 401
    for wrong in ("wrong", "Ünïcode-header"):  # non-ASCII is a 401 too, not a crash
        response = requests.get(env["IDENTITY_ENDPOINT"], params={
            "api-version": "2019-08-01", "resource": "https://vault.azure.net"},
            headers={"X-IDENTITY-HEADER": wrong.encode()})
        assert response.status_code == 401 and "access_token" not in response.text
        admin = requests.get(env["COTENANT_LAB_MANAGEMENT_URL"] + "/lab/info",
                             headers={"Authorization": f"Bearer {wrong}".encode()})
        assert admin.status_code == 401 and admin.json()["error"]["code"] == "Unauthorized"
    identity = lab.client.create_identity(unique("id"))
    params = {"api-version": "2018-02-01", "resource": "https://vault.azure.net",
              "client_id": identity["client_id"]}
    vm = unique("vm")
    per_vm = f"{env['COTENANT_LAB_IMDS_URL']}/vms/{vm}/metadata/identity/oauth2/token"
    # a VM that does not exist (yet) gets nothing
    assert requests.get(per_vm, params=params, headers={"Metadata": "true"}).status_code == 400
    lab.client.create_vm(vm, "confidential", identities=[identity["client_id"]])
    assert requests.get(per_vm, params=params).status_code == 400  # no Metadata header
    ok = requests.get(per_vm, params=params, headers={"Metadata": "true"})
    assert ok.status_code == 200 and ok.json()["client_id"] == identity["client_id"]
    assert requests.get(per_vm, params={"resource": "https://vault.azure.net"},
                        headers={"Metadata": "true"}).status_code == 200


def test_a_vm_cannot_get_tokens_for_another_vms_identity(lab: RunningLab) -> None:
    base = lab.environ()["COTENANT_LAB_IMDS_URL"]
    mine, theirs = (lab.client.create_identity(unique("id")) for _ in range(2))
    my_vm, their_vm = unique("vm"), unique("vm")
    lab.client.create_vm(my_vm, "confidential", identities=[mine["client_id"]])
    lab.client.create_vm(their_vm, "confidential", identities=[theirs["client_id"]])
    params = {"resource": "https://vault.azure.net", "client_id": theirs["client_id"]}
    mine_imds = f"{base}/vms/{my_vm}/metadata/identity/oauth2/token"
    refused = requests.get(mine_imds, params=params, headers={"Metadata": "true"})
    assert refused.status_code == 400 and "access_token" not in refused.text
    # no VM-independent IMDS address hands out identities of whichever VM holds them
    shared = requests.get(f"{base}/metadata/identity/oauth2/token", params=params,
                          headers={"Metadata": "true"})
    assert shared.status_code == 404 and "access_token" not in shared.text
    # a deleted VM's IMDS answers for nobody
    lab.client.delete_vm(their_vm)
    gone = requests.get(f"{base}/vms/{their_vm}/metadata/identity/oauth2/token",
                        params=params, headers={"Metadata": "true"})
    assert gone.status_code == 400


def test_imds_flavour_of_managed_identity_credential_inside_a_vm(
        lab: RunningLab, monkeypatch: pytest.MonkeyPatch) -> None:
    identity = lab.client.create_identity(unique("id"))
    vm = unique("vm")
    lab.client.create_vm(vm, "confidential", identities=[identity["client_id"]])
    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "IMDS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    imds = f"{lab.environ()['COTENANT_LAB_IMDS_URL']}/vms/{vm}"
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", imds)
    token = ManagedIdentityCredential(client_id=identity["client_id"]).get_token(
        "https://vault.azure.net/.default")
    assert jwt.decode(token.token, options={"verify_signature": False})["oid"] == \
        identity["principal_id"]
