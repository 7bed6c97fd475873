"""Secure Key Release refusals: each is a 403 with its reason in the audit log."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from azure.core.exceptions import HttpResponseError
from cryptography.hazmat.primitives.asymmetric import rsa

from cotenant.lab.ca import load_private
from cotenant.lab.testing import RunningLab
from tests.lab.helpers import SkrKey, make_skr_key

OTHER_AUTHORITY = "https://sharedweu.weu.attest.azure.net"


def _refused(key: SkrKey, token: str, reason: str) -> None:
    with pytest.raises(HttpResponseError) as info:
        key.releaser_client().release_key(key.name, token)
    assert info.value.status_code == 403
    records = key.lab.client.audit(key=key.name)
    assert records[-1]["decision"] == "denied"
    assert reason in records[-1]["reason"], records[-1]["reason"]
    assert records[-1]["caller"] == key.releaser["principal_id"]


@pytest.mark.parametrize("kind", ["trusted-launch", "standard"])
def test_vm_that_is_not_confidential_is_refused(skr_key: SkrKey, kind: str) -> None:
    token = skr_key.lab.client.vm_token(skr_key.vm(kind))
    _refused(skr_key, token, "does not satisfy the release policy")


def test_default_policy_refuses_a_debuggable_vm(skr_key: SkrKey) -> None:
    token = skr_key.lab.client.vm_token(skr_key.vm("debuggable"))
    _refused(skr_key, token, "x-ms-sevsnpvm-is-debuggable")


def test_debuggable_vm_is_refused_when_the_policy_forbids_it(lab_env: RunningLab) -> None:
    key = make_skr_key(lab_env, extra_claims=[
        {"claim": "x-ms-isolation-tee.x-ms-sevsnpvm-is-debuggable", "equals": False}])
    debuggable = lab_env.client.vm_token(key.vm("debuggable"))
    _refused(key, debuggable, "x-ms-sevsnpvm-is-debuggable")
    # the same policy releases to a non-debuggable CVM
    assert key.releaser_client().release_key(key.name, lab_env.client.vm_token(
        key.vm("confidential"))).value


def test_token_from_another_authority_is_refused(skr_key: SkrKey) -> None:
    token = skr_key.lab.client.vm_token(skr_key.vm("confidential"), authority=OTHER_AUTHORITY)
    assert jwt.decode(token, options={"verify_signature": False})["iss"] == OTHER_AUTHORITY
    _refused(skr_key, token, "is not allowed")


def test_identity_without_a_grant_is_refused(lab_env: RunningLab) -> None:
    key = make_skr_key(lab_env, grant=False)
    _refused(key, lab_env.client.vm_token(key.vm("confidential")), "no role assignment")


def _authority_key(lab: RunningLab) -> tuple[rsa.RSAPrivateKey, str]:
    state = json.loads((lab.directory / "state.json").read_text())
    authority = state["authorities"]["sharedneu.neu.attest.azure.net"]
    return load_private(authority["signing_key"].encode()), authority["kid"]


def _resigned(token: str, key: rsa.RSAPrivateKey, kid: str, **changes: object) -> str:
    claims = jwt.decode(token, options={"verify_signature": False}) | changes
    header = jwt.get_unverified_header(token) | {"kid": kid}
    return jwt.encode(claims, key, algorithm="RS256", headers=header)


def test_expired_token_is_refused(skr_key: SkrKey) -> None:
    token = skr_key.lab.client.vm_token(skr_key.vm("confidential"))
    key, kid = _authority_key(skr_key.lab)
    past = int(time.time()) - 7200
    expired = _resigned(token, key, kid, exp=past, iat=past - 60, nbf=past - 60)
    _refused(skr_key, expired, "expired")


def test_forged_token_is_refused(skr_key: SkrKey) -> None:
    token = skr_key.lab.client.vm_token(skr_key.vm("trusted-launch"))
    _, kid = _authority_key(skr_key.lab)
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tee = {"x-ms-attestation-type": "sevsnpvm", "x-ms-compliance-status": "azure-compliant-cvm"}
    forged = _resigned(token, forger, kid, **{"x-ms-isolation-tee": tee})
    _refused(skr_key, forged, "signature is invalid")
