"""Key Vault emulation through the unmodified azure-keyvault-keys SDK."""

from __future__ import annotations

import json

import jwt
import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import ManagedIdentityCredential
from azure.keyvault.keys import (
    KeyClient,
    KeyReleasePolicy,
    KeyRotationLifetimeAction,
    KeyRotationPolicy,
    KeyRotationPolicyAction,
)
from azure.keyvault.keys.crypto import CryptographyClient, EncryptionAlgorithm, KeyWrapAlgorithm
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from cotenant.crypto.skr import verify_release_response
from cotenant.lab.testing import RunningLab
from tests.lab.helpers import SkrKey, make_skr_key, unique, vm_identity


def _anchors(lab: RunningLab) -> list[x509.Certificate]:
    with open(lab.client.endpoints.ca_bundle, "rb") as handle:
        return x509.load_pem_x509_certificates(handle.read())


def test_create_rotate_wrap_and_release_to_a_confidential_vm(skr_key: SkrKey) -> None:
    lab, officer = skr_key.lab, KeyClient(skr_key.vault_url, ManagedIdentityCredential())
    assert skr_key.key.properties.exportable is True
    assert skr_key.key.key_type == "RSA-HSM"

    rotated = officer.rotate_key(skr_key.name)
    assert rotated.properties.version != skr_key.key.properties.version
    assert json.loads(rotated.properties.release_policy.encoded_policy) == skr_key.policy
    versions = [p.version for p in officer.list_properties_of_key_versions(skr_key.name)]
    assert versions == [skr_key.key.properties.version, rotated.properties.version]

    crypto = CryptographyClient(rotated, ManagedIdentityCredential())
    for algorithm in (KeyWrapAlgorithm.rsa_oaep, KeyWrapAlgorithm.rsa_oaep_256):
        wrapped = crypto.wrap_key(algorithm, b"k" * 32)
        assert crypto.unwrap_key(algorithm, wrapped.encrypted_key).key == b"k" * 32
    sealed = crypto.encrypt(EncryptionAlgorithm.rsa_oaep_256, b"hello")
    assert crypto.decrypt(EncryptionAlgorithm.rsa_oaep_256, sealed.ciphertext).plaintext == \
        b"hello"

    vm = skr_key.vm("confidential")
    token = lab.client.vm_token(vm, nonce="n-1")
    result = skr_key.releaser_client().release_key(skr_key.name, token)
    released = verify_release_response(
        result.value, vault_host=skr_key.vault_url.removeprefix("https://"),
        trust_anchors=_anchors(lab), rsa_decrypt=lab.client.vtpm(vm).decrypt)
    assert released.version == rotated.properties.version  # the latest version
    numbers = released.key.public_key().public_numbers()
    assert numbers.n == int.from_bytes(rotated.key.n, "big")
    assert numbers.e == int.from_bytes(rotated.key.e, "big")
    audit = lab.client.audit(key=skr_key.name)
    assert [r["decision"] for r in audit] == ["released"]
    assert audit[0]["caller"] == skr_key.releaser["principal_id"]
    assert audit[0]["version"] == rotated.properties.version


def test_release_of_a_named_version_with_rsa_aes_key_wrap_256(skr_key: SkrKey) -> None:
    from azure.keyvault.keys import KeyExportEncryptionAlgorithm

    vm = skr_key.vm("confidential")
    token = skr_key.lab.client.vm_token(vm)
    result = skr_key.releaser_client().release_key(
        skr_key.name, token, version=skr_key.key.properties.version,
        algorithm=KeyExportEncryptionAlgorithm.rsa_aes_key_wrap_256)
    released = verify_release_response(
        result.value, vault_host=skr_key.vault_url.removeprefix("https://"),
        trust_anchors=_anchors(skr_key.lab), rsa_decrypt=skr_key.lab.client.vtpm(vm).decrypt)
    assert released.version == skr_key.key.properties.version


def test_exportable_key_rules(lab_env: RunningLab) -> None:
    url = lab_env.client.create_vault(unique("kv"))
    officer = KeyClient(url, ManagedIdentityCredential())
    with pytest.raises(HttpResponseError, match="AKV.SKR.1004") as info:
        officer.create_rsa_key(unique("k"), hardware_protected=True, exportable=True)
    assert info.value.status_code == 400
    policy = KeyReleasePolicy(json.dumps(
        {"version": "1.0.0", "anyOf": [{"authority": "https://a.b.attest.azure.net",
                                        "allOf": [{"claim": "x", "equals": True}]}]}).encode())
    with pytest.raises(HttpResponseError, match="AKV.SKR.1005"):
        officer.create_rsa_key(unique("k"), hardware_protected=True, release_policy=policy)
    no_version = KeyReleasePolicy(json.dumps({"anyOf": []}).encode())
    with pytest.raises(HttpResponseError) as info:
        officer.create_rsa_key(unique("k"), hardware_protected=True, exportable=True,
                               release_policy=no_version)
    assert info.value.error.code == "BadParameter"
    oct_key = officer.create_oct_key(unique("oct"), size=256, hardware_protected=True)
    assert oct_key.key_type == "oct-HSM"


def test_immutable_release_policy_cannot_change(lab_env: RunningLab) -> None:
    key = make_skr_key(lab_env, immutable=True)
    officer = KeyClient(key.vault_url, ManagedIdentityCredential())
    other = dict(key.policy, version="1.0.0")
    other["anyOf"] = [dict(other["anyOf"][0], authority="https://x.y.attest.azure.net")]
    with pytest.raises(HttpResponseError, match="immutable"):
        officer.update_key_properties(
            key.name, release_policy=KeyReleasePolicy(json.dumps(other).encode(),
                                                      immutable=True))
    mutable = make_skr_key(lab_env)
    officer = KeyClient(mutable.vault_url, ManagedIdentityCredential())
    updated = officer.update_key_properties(
        mutable.name, release_policy=KeyReleasePolicy(json.dumps(other).encode()))
    assert json.loads(updated.properties.release_policy.encoded_policy) == other


def test_soft_delete_purge_protection_and_recover(skr_key: SkrKey) -> None:
    officer = KeyClient(skr_key.vault_url, ManagedIdentityCredential())
    deleted = officer.begin_delete_key(skr_key.name).result()
    assert deleted.recovery_id.endswith(f"/deletedkeys/{skr_key.name}")
    with pytest.raises(ResourceNotFoundError):
        officer.get_key(skr_key.name)
    with pytest.raises(HttpResponseError) as info:
        officer.purge_deleted_key(skr_key.name)
    assert info.value.status_code == 403
    with pytest.raises(HttpResponseError) as info:
        officer.create_rsa_key(skr_key.name)
    assert info.value.status_code == 409
    recovered = officer.begin_recover_deleted_key(skr_key.name).result()
    assert recovered.id == skr_key.key.id


def test_rotation_policy_round_trip(skr_key: SkrKey) -> None:
    officer = KeyClient(skr_key.vault_url, ManagedIdentityCredential())
    action = KeyRotationLifetimeAction(KeyRotationPolicyAction.rotate, time_after_create="P30D")
    officer.update_key_rotation_policy(
        skr_key.name, KeyRotationPolicy(lifetime_actions=[action], expires_in="P90D"))
    policy = officer.get_key_rotation_policy(skr_key.name)
    assert policy.expires_in == "P90D"
    assert policy.lifetime_actions[0].time_after_create == "P30D"
    assert str(policy.lifetime_actions[0].action).lower().endswith("rotate")


def test_roles_limit_operations(skr_key: SkrKey) -> None:
    client = skr_key.lab.client
    # Release User at key scope: release only — no read, no unwrap.
    releaser = skr_key.releaser_client()
    with pytest.raises(HttpResponseError) as info:
        releaser.get_key(skr_key.name)
    assert info.value.status_code == 403
    # Crypto User at vault scope: read and crypto operations, but no create and no release.
    user = client.create_identity(unique("user"))
    client.grant(user["client_id"], skr_key.vault_url, "Key Vault Crypto User")
    credential = vm_identity(client, user["client_id"])
    user_keys = KeyClient(skr_key.vault_url, credential)
    assert user_keys.get_key(skr_key.name).id == skr_key.key.id
    crypto = CryptographyClient(skr_key.key, credential)
    wrapped = crypto.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"d" * 32)
    assert crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key).key
    with pytest.raises(HttpResponseError) as info:
        user_keys.create_rsa_key(unique("nope"))
    assert info.value.status_code == 403
    # An identity with nothing: 403 everywhere.
    nobody = KeyClient(skr_key.vault_url, vm_identity(
        client, client.create_identity(unique("nobody"))["client_id"]))
    with pytest.raises(HttpResponseError) as info:
        list(nobody.list_properties_of_keys())
    assert info.value.status_code == 403


def test_legacy_access_policies(lab_env: RunningLab) -> None:
    client = lab_env.client
    url = client.create_vault(unique("kv"), rbac=False)
    operator = KeyClient(url, ManagedIdentityCredential())
    with pytest.raises(HttpResponseError) as info:  # RBAC grants do not count on this vault
        operator.create_rsa_key(unique("k"))
    assert info.value.status_code == 403
    client.set_access_policy(url.removeprefix("https://").split(".")[0],
                             client.operator()["principal_id"], ["create", "get", "wrapKey"])
    key = operator.create_rsa_key(unique("k"))
    assert operator.get_key(key.name).id == key.id
    with pytest.raises(HttpResponseError) as info:
        operator.begin_delete_key(key.name)
    assert info.value.status_code == 403


def test_challenge_and_error_shapes(skr_key: SkrKey) -> None:
    session = requests.Session()
    session.verify = skr_key.lab.client.endpoints.ca_bundle
    response = session.get(f"{skr_key.vault_url}/keys?api-version=7.4")
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer authorization="https://login.microsoftonline.com/')
    assert 'resource="https://vault.azure.net"' in challenge
    assert response.json()["error"]["code"] == "Unauthorized"
    forged = session.get(f"{skr_key.vault_url}/keys?api-version=7.4",
                         headers={"Authorization": "Bearer not.a.jwt"})
    assert forged.status_code == 401
    officer = KeyClient(skr_key.vault_url, ManagedIdentityCredential())
    with pytest.raises(ResourceNotFoundError) as info:
        officer.get_key("missing-key")
    assert info.value.error.code == "KeyNotFound"
    anonymous = session.post(f"{skr_key.vault_url}/keys/{skr_key.name}/release",
                             params={"api-version": "7.4"}, json={"target": "x"})
    assert anonymous.status_code == 401
    record = skr_key.lab.client.audit(key=skr_key.name)[-1]
    assert record["decision"] == "denied" and record["caller"] is None


def test_purge_without_purge_protection(lab_env: RunningLab) -> None:
    url = lab_env.client.create_vault(unique("kv"), purge_protection=False)
    officer = KeyClient(url, ManagedIdentityCredential())
    key = officer.create_rsa_key(unique("k"))
    officer.begin_delete_key(key.name).result()
    officer.purge_deleted_key(key.name)
    with pytest.raises(ResourceNotFoundError):
        officer.get_deleted_key(key.name)
    assert officer.create_rsa_key(key.name).name == key.name  # the name is free again


def test_forged_or_misdirected_identity_tokens_are_401(skr_key: SkrKey) -> None:
    session = requests.Session()
    session.verify = skr_key.lab.client.endpoints.ca_bundle
    url = f"{skr_key.vault_url}/keys?api-version=7.4"
    genuine = ManagedIdentityCredential().get_token("https://vault.azure.net/.default").token
    claims = jwt.decode(genuine, options={"verify_signature": False})
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, forger, algorithm="RS256", headers={"kid": "lab-identity"})
    storage = ManagedIdentityCredential().get_token("https://storage.azure.com/.default").token
    unsigned = jwt.encode(claims, None, algorithm="none")
    for token in (forged, storage, unsigned):
        response = session.get(url, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "Unauthorized"
    assert session.get(url, headers={"Authorization": f"Bearer {genuine}"}).status_code == 200


def test_malformed_key_attributes_are_400_not_500(skr_key: SkrKey) -> None:
    session = requests.Session()
    session.verify = skr_key.lab.client.endpoints.ca_bundle
    session.headers["Authorization"] = "Bearer " + ManagedIdentityCredential().get_token(
        "https://vault.azure.net/.default").token
    key_url = f"{skr_key.vault_url}/keys/{skr_key.name}"
    params = {"api-version": "7.4"}
    for attributes in ({"exp": "soon"}, {"nbf": [1]}, {"enabled": "yes"}, "nope"):
        patched = session.patch(key_url, params=params, json={"attributes": attributes})
        assert patched.status_code == 400, patched.text
        assert patched.json()["error"]["code"] == "BadParameter"
        created = session.post(f"{skr_key.vault_url}/keys/{unique('bad')}/create",
                               params=params, json={"kty": "RSA", "attributes": attributes})
        assert created.status_code == 400, created.text
    assert session.get(key_url, params=params).status_code == 200  # the key is unharmed
