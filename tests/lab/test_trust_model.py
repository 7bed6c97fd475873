"""The trust model in the lab: a key leaves the vault only for a satisfied policy AND a grant on
that very key, only wrapped to the attested VM's own runtime key, and Key Vault never decrypts
with an app key for anyone; the attestation service refuses stale or malformed evidence."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.identity import ManagedIdentityCredential
from azure.keyvault.keys import KeyClient, KeyReleasePolicy
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cotenant.crypto.encoding import b64url_decode, b64url_encode
from cotenant.crypto.errors import CryptoError
from cotenant.crypto.skr import verify_release_response
from cotenant.lab.ca import private_pem
from cotenant.lab.evidence import EvidenceError, open_token
from cotenant.lab.state import Authority, Key, KeyVersion, LabState, Vault
from cotenant.lab.testing import RunningLab
from cotenant.plan import APP_KEY_OPS
from cotenant.policy import build_release_policy
from tests.lab.helpers import SkrKey, unique

RELEASE_USER = "Key Vault Crypto Service Release User"


def _anchors(lab: RunningLab) -> list[x509.Certificate]:
    with open(lab.client.endpoints.ca_bundle, "rb") as handle:
        return x509.load_pem_x509_certificates(handle.read())


def _app_key(lab: RunningLab, vault_url: str) -> str:
    """An app key as the plan describes it (exportable, release policy, public ops only)."""
    policy = build_release_policy(lab.client.endpoints.attestation_url)
    return KeyClient(vault_url, ManagedIdentityCredential()).create_rsa_key(
        unique("key"), hardware_protected=True, exportable=True, key_operations=APP_KEY_OPS,
        release_policy=KeyReleasePolicy(json.dumps(policy).encode())).name


def _release(lab: RunningLab, vault_url: str, key: str, vm: str, client_id: str,
             token: str) -> str:
    return KeyClient(vault_url, lab.client.vm_credential(vm, client_id)).release_key(
        key, token).value


def test_the_vault_officer_cannot_unwrap_with_an_app_key(lab_env: RunningLab) -> None:
    lab = lab_env
    url = lab.client.create_vault(unique("kv"))
    name = _app_key(lab, url)
    officer = KeyClient(url, ManagedIdentityCredential())  # Crypto Officer on the vault
    crypto = CryptographyClient(officer.get_key(name), ManagedIdentityCredential())
    wrapped = crypto.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"d" * 32)  # data owners may wrap
    with pytest.raises(HttpResponseError) as info:
        crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key)
    assert info.value.status_code == 403
    # ... while an attested, granted VM still gets the key released
    releaser = lab.client.create_identity(unique("releaser"))
    lab.client.grant(releaser["client_id"], f"{url}/keys/{name}", RELEASE_USER)
    vm = unique("vm")
    lab.client.create_vm(vm, "confidential", identities=[releaser["client_id"]])
    value = _release(lab, url, name, vm, releaser["client_id"], lab.client.vm_token(vm))
    released = verify_release_response(value, vault_host=url.removeprefix("https://"),
                                       trust_anchors=_anchors(lab),
                                       rsa_decrypt=lab.client.vtpm(vm).decrypt)
    assert released.key.public_key().public_numbers().e == 65537


def test_a_key_scoped_grant_releases_that_key_only(lab_env: RunningLab) -> None:
    lab = lab_env
    url = lab.client.create_vault(unique("kv"))
    mine, theirs = _app_key(lab, url), _app_key(lab, url)
    releaser = lab.client.create_identity(unique("releaser"))
    lab.client.grant(releaser["client_id"], f"{url}/keys/{mine}", RELEASE_USER)
    vm = unique("vm")
    lab.client.create_vm(vm, "confidential", identities=[releaser["client_id"]])
    token = lab.client.vm_token(vm)
    assert _release(lab, url, mine, vm, releaser["client_id"], token)
    with pytest.raises(HttpResponseError) as info:  # same vault, same policy, other key
        _release(lab, url, theirs, vm, releaser["client_id"], token)
    assert info.value.status_code == 403
    assert lab.client.audit(key=theirs)[-1]["decision"] == "denied"
    # a vault-scope assignment covers every key of the vault, as in Azure
    lab.client.grant(releaser["client_id"], url, RELEASE_USER)
    assert _release(lab, url, theirs, vm, releaser["client_id"], token)


def test_a_resource_group_scope_grant_is_inherited_by_its_vaults_keys(
        lab_env: RunningLab) -> None:
    from cotenant.lab.client import LabError

    lab = lab_env
    rg = unique("rg")
    lab.client.ensure_resource_group(rg, "lab")
    url = lab.client.create_vault(unique("kv"), resource_group=rg)
    name = _app_key(lab, url)
    releaser = lab.client.create_identity(unique("releaser"))
    vm = unique("vm")
    lab.client.create_vm(vm, "confidential", identities=[releaser["client_id"]])
    token = lab.client.vm_token(vm)
    with pytest.raises(HttpResponseError) as info:
        _release(lab, url, name, vm, releaser["client_id"], token)
    assert info.value.status_code == 403
    sub = lab.client.info()["subscription_id"]
    with pytest.raises(LabError):  # no such resource group
        lab.client.grant(releaser["client_id"], f"/subscriptions/{sub}/resourceGroups/none",
                         "Key Vault Crypto Officer")
    # Crypto Officer (keys/*) on the whole resource group releases the key, as in Azure
    scope = f"/subscriptions/{sub}/resourceGroups/{rg}"
    lab.client.grant(releaser["client_id"], scope, "Key Vault Crypto Officer")
    assert _release(lab, url, name, vm, releaser["client_id"], token)
    assert scope.lower() in {a["scope"] for a in lab.client.role_assignments()}
    lab.client.delete_resource_group(rg)
    deadline = time.monotonic() + 20
    while lab.client.resource_group(rg) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert scope.lower() not in {a["scope"] for a in lab.client.role_assignments()}


def test_a_release_to_one_vm_is_useless_to_another(skr_key: SkrKey) -> None:
    lab = skr_key.lab
    attested, thief = skr_key.vm("confidential"), skr_key.vm("confidential")
    value = skr_key.releaser_client().release_key(skr_key.name,
                                                  lab.client.vm_token(attested)).value
    with pytest.raises(CryptoError):
        verify_release_response(value, vault_host=skr_key.vault_url.removeprefix("https://"),
                                trust_anchors=_anchors(lab),
                                rsa_decrypt=lab.client.vtpm(thief).decrypt)
    # a reboot recreates the ephemeral key: the old release cannot be opened any more either
    lab.client.restart_vm(attested)
    with pytest.raises(CryptoError):
        verify_release_response(value, vault_host=skr_key.vault_url.removeprefix("https://"),
                                trust_anchors=_anchors(lab),
                                rsa_decrypt=lab.client.vtpm(attested).decrypt)


def _resigned_evidence(lab: RunningLab, vm: str, **quote_changes: object) -> str:
    """Genuine evidence of ``vm`` whose quote is changed and signed again with the VM's own
    hardware key (what a guest holding that key could send)."""
    vtpm = lab.client.vtpm(vm)
    info = json.loads(b64url_decode(vtpm.evidence(nonce="n")))
    quote = json.loads(base64.b64decode(info["TpmInfo"]["PcrQuote"])) | quote_changes
    raw = json.dumps(quote).encode()
    info["TpmInfo"]["PcrQuote"] = base64.b64encode(raw).decode()
    info["TpmInfo"]["PcrSignature"] = base64.b64encode(
        vtpm._hardware.sign(raw, ec.ECDSA(hashes.SHA384()))).decode()
    return b64url_encode(json.dumps(info).encode())


@pytest.mark.parametrize(("change", "reason"), [
    ({"time": time.time() - 3600}, "stale"),
    ({"time": "now"}, "no timestamp"),
    ({"time": None}, "no timestamp"),
])
def test_stale_or_malformed_quotes_are_refused(lab_env: RunningLab, change: dict,
                                               reason: str) -> None:
    vm = unique("vm")
    lab_env.client.create_vm(vm, "confidential")
    response = requests.post(f"{lab_env.client.endpoints.attestation_url}/attest/AzureGuest",
                             params={"api-version": "2020-10-01"},
                             json={"AttestationInfo": _resigned_evidence(lab_env, vm, **change)})
    assert response.status_code == 400, response.text
    assert reason in response.json()["error"]["message"]


def test_replayed_evidence_yields_a_token_only_its_vm_can_read(lab_env: RunningLab) -> None:
    vm, other = unique("vm"), unique("vm")
    lab_env.client.create_vm(vm, "confidential")
    lab_env.client.create_vm(other, "confidential")
    evidence = lab_env.client.vtpm(vm).evidence(nonce="challenge-1")
    # someone who captured the evidence sends it again: MAA answers, but sealed to the VM
    response = requests.post(f"{lab_env.client.endpoints.attestation_url}/attest/AzureGuest",
                             params={"api-version": "2020-10-01"},
                             json={"AttestationInfo": evidence})
    assert response.status_code == 200
    sealed = response.json()["token"]
    with pytest.raises(EvidenceError):
        open_token(sealed, lab_env.client.vtpm(other).decrypt)
    token = open_token(sealed, lab_env.client.vtpm(vm).decrypt)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["x-ms-runtime"]["client-payload"]["nonce"] == "challenge-1"


def test_lab_state_repr_holds_no_private_keys() -> None:
    pem = private_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)).decode()
    state = LabState(identity_signing_key=pem)
    vault = Vault(name="kv-repr", signing_key=pem)
    vault.keys["k"] = Key(name="k", versions=[KeyVersion(kty="RSA-HSM", material=pem)])
    state.vaults["kv-repr"] = vault
    state.authorities["a"] = Authority(host="a", signing_key=pem, cert="c", kid="kid")
    assert "PRIVATE KEY" not in repr(state) and "PRIVATE KEY" not in str(state)
    restored = LabState.model_validate_json(state.model_dump_json())  # still persisted
    assert restored.vaults["kv-repr"].keys["k"].versions[0].material == pem
