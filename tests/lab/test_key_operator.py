"""The control plane's operator manages every party's keys but can use none of them.

Tenant deployments give the operator identity the "cotenant Key Operator" custom role on each
vault (not Key Vault Crypto Officer, whose ``keys/*`` includes release): it creates keys,
rotates them, sets their release and rotation policies; Key Vault refuses it release, even
with a genuine confidential VM's attestation token, and decrypt and unwrap (the lab vault has
no sign operation; the role's lack of it is checked in tests/bicep/test_control_plane.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.identity import ManagedIdentityCredential
from azure.keyvault.keys import (
    KeyClient,
    KeyReleasePolicy,
    KeyRotationLifetimeAction,
    KeyRotationPolicy,
)
from azure.keyvault.keys.crypto import (
    CryptographyClient,
    EncryptionAlgorithm,
    KeyWrapAlgorithm,
)

from cotenant.lab.manager import LAB_EGRESS_IP
from cotenant.lab.testing import RunningLab
from cotenant.plan import KEY_OPERATOR_LAB_ROLE_ID, KEY_OPERATOR_ROLE, OFFICER_ROLE, RELEASE_ROLE
from tests.lab.helpers import unique
from tests.lab.test_resource_manager import ORCHESTRATOR, _deploy, _plan


@pytest.fixture
def party_vault(lab_env: RunningLab) -> Iterator[dict[str, Any]]:
    """One party's vault as the tenant deployment makes it, with its plan entry."""
    client = lab_env.client
    plan = _plan("ko" + uuid.uuid4().hex[:6])  # tenant names: 3-8 of a-z0-9
    client.ensure_resource_group(plan.resource_group, plan.location, {"tenant": plan.tenant})
    _deploy(client, plan, "network")
    party = plan.parties[0]
    outputs = _deploy(client, plan, "party", party.party,
                      operator_principal_id=client.operator()["principal_id"],
                      operator_role_definition_id=KEY_OPERATOR_LAB_ROLE_ID,
                      cvm_orchestrator_object_id=ORCHESTRATOR,
                      allowed_ip_ranges=[LAB_EGRESS_IP])["outputs"]
    yield {"url": outputs["vaultUri"].rstrip("/"), "party": party}
    client.delete_resource_group(plan.resource_group)


def _forbidden(call: Any, *args: Any) -> None:
    with pytest.raises(HttpResponseError) as info:
        call(*args)
    assert info.value.status_code == 403, info.value


def test_the_operator_holds_the_key_operator_role_not_crypto_officer(
        lab_env: RunningLab, party_vault: dict[str, Any]) -> None:
    operator = lab_env.client.operator()["principal_id"]
    roles = [a["role"] for a in lab_env.client.role_assignments()
             if a["principal_id"] == operator and a["scope"] == party_vault["url"]]
    assert roles == [KEY_OPERATOR_ROLE]
    assert OFFICER_ROLE not in roles


def test_the_operator_manages_keys_but_cannot_release_decrypt_or_unwrap(
        lab_env: RunningLab, party_vault: dict[str, Any]) -> None:
    client = lab_env.client
    url, party = party_vault["url"], party_vault["party"]
    operator = KeyClient(url, ManagedIdentityCredential())
    policy = KeyReleasePolicy(json.dumps(party.release_policy).encode())
    # no key_operations restriction: only RBAC stands between the operator and the private half
    key = operator.create_rsa_key(party.app_key_name, hardware_protected=True,
                                  exportable=True, release_policy=policy)
    rotated = operator.rotate_key(key.name)
    assert rotated.properties.version != key.properties.version
    operator.update_key_rotation_policy(key.name, KeyRotationPolicy(
        lifetime_actions=[KeyRotationLifetimeAction("Rotate", time_before_expiry="P30D")],
        expires_in="P90D"))
    assert operator.get_key_rotation_policy(key.name).expires_in == "P90D"
    updated = operator.update_key_properties(key.name, release_policy=policy, tags={"t": "1"})
    assert updated.properties.tags == {"t": "1"}

    # a genuine confidential VM that holds a release grant gets the key released ...
    releaser = client.create_identity(unique("releaser"))
    client.grant(releaser["client_id"], f"{url}/keys/{key.name}", RELEASE_ROLE)
    vm = unique("vm")
    client.create_vm(vm, "confidential", identities=[releaser["client_id"]])
    token = client.vm_token(vm)
    granted = KeyClient(url, client.vm_credential(vm, releaser["client_id"]))
    assert granted.release_key(key.name, token).value
    # ... the same valid token presented with the operator's bearer token is refused
    _forbidden(operator.release_key, key.name, token)
    assert client.audit(key=key.name)[-1]["decision"] == "denied"

    crypto = CryptographyClient(operator.get_key(key.name), ManagedIdentityCredential())
    # the public-key operations are harmless and allowed
    wrapped = crypto.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"k" * 32).encrypted_key
    sealed = crypto.encrypt(EncryptionAlgorithm.rsa_oaep_256, b"secret").ciphertext
    _forbidden(crypto.unwrap_key, KeyWrapAlgorithm.rsa_oaep_256, wrapped)
    _forbidden(crypto.decrypt, EncryptionAlgorithm.rsa_oaep_256, sealed)


def test_hand_made_lab_vaults_keep_crypto_officer(lab_env: RunningLab) -> None:
    # `cotenant lab vault create` (no control plane involved) still makes the operator identity
    # Crypto Officer, for hand use of the lab
    url = lab_env.client.create_vault(unique("kv"))
    operator = lab_env.client.operator()["principal_id"]
    assert [a["role"] for a in lab_env.client.role_assignments()
            if a["principal_id"] == operator and a["scope"] == url] == [OFFICER_ROLE]
