"""Release response verification: JWS signature, x5c chain and host, kid/version, unwrap."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from cotenant.crypto.encoding import b64url_encode
from cotenant.crypto.errors import ReleaseError
from cotenant.crypto.skr import (
    key_material_of,
    parse_release_payload,
    sign_release_jws,
    verify_release_jws,
    verify_release_response,
    wrap_key_hsm,
)
from tests.crypto.conftest import rsa_key
from tests.crypto.pki import Pki

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "crypto"
HOST = "contoso-kv.vault.lab.test"
KID = f"https://{HOST}/keys/contoso-secret-key"
VERSION = "0123456789abcdef0123456789abcdef"
POLICY = {"version": "1.0.0", "anyOf": [{"authority": "https://maa.lab", "allOf": []}]}


def _payload(
    released: rsa.RSAPrivateKey | bytes,
    *,
    kid: str = f"{KID}/{VERSION}",
    enc: str = "RSA_AES_KEY_WRAP_256",
    tpm: rsa.RSAPrivateKey | None = None,
) -> dict:
    tpm = tpm or rsa_key(2048)
    key = {
        "kid": kid,
        "kty": "oct-HSM" if isinstance(released, bytes) else "RSA-HSM",
        "key_ops": ["encrypt", "decrypt"],
        "key_hsm": wrap_key_hsm(key_material_of(released), tpm.public_key(), enc),
    }
    if not isinstance(released, bytes):
        numbers = released.public_key().public_numbers()
        key["n"] = b64url_encode(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big"))
        key["e"] = b64url_encode(numbers.e.to_bytes(3, "big"))
    return {
        "request": {"api-version": "7.4", "enc": enc, "kid": KID},
        "response": {
            "key": {
                "key": key,
                "attributes": {"enabled": True, "exportable": True},
                "release_policy": {"data": b64url_encode(json.dumps(POLICY).encode())},
            }
        },
    }


@pytest.fixture(scope="module")
def vault_chain(pki: Pki):
    signer = rsa_key(2048, slot=3)
    return signer, pki.chain(HOST, signer)


def _sign(payload: dict, vault_chain) -> str:
    signer, chain = vault_chain
    return sign_release_jws(payload, signer, chain)


def test_release_round_trip_rsa(pki: Pki, vault_chain) -> None:
    released = rsa_key(3072, slot=1)
    value = _sign(_payload(released), vault_chain)
    body = json.dumps({"value": value})
    result = verify_release_response(
        body,
        vault_host=HOST,
        trust_anchors=[pki.root],
        rsa_decrypt=rsa_key(2048).decrypt,
        expected_kid=KID,
    )
    assert result.kid == f"{KID}/{VERSION}"
    assert result.version == VERSION
    assert result.kty == "RSA-HSM"
    assert key_material_of(result.key) == key_material_of(released)
    assert result.release_policy == POLICY
    assert "PrivateKey" not in repr(result)


def test_release_round_trip_oct_with_versioned_kid(pki: Pki, vault_chain) -> None:
    value = _sign(_payload(b"\x01" * 32, enc="CKM_RSA_AES_KEY_WRAP"), vault_chain)
    result = verify_release_response(
        value,
        vault_host=HOST,
        trust_anchors=[pki.root],
        rsa_decrypt=rsa_key(2048).decrypt,
        expected_kid=f"{KID}/{VERSION}",
    )
    assert result.key == b"\x01" * 32


def _verify(value: str, pki: Pki, **overrides):
    args = {
        "vault_host": HOST,
        "trust_anchors": [pki.root],
        "rsa_decrypt": rsa_key(2048).decrypt,
        "expected_kid": KID,
    } | overrides
    with pytest.raises(ReleaseError) as info:
        verify_release_response(value, **args)
    return info.value


def test_wrong_host_is_rejected(pki: Pki, vault_chain) -> None:
    value = _sign(_payload(b"\x01" * 32), vault_chain)
    assert _verify(value, pki, vault_host="evil.vault.lab.test").code == "untrusted_chain"


def test_untrusted_ca_is_rejected(pki: Pki, vault_chain) -> None:
    value = _sign(_payload(b"\x01" * 32), vault_chain)
    other = Pki.create("Other")
    assert _verify(value, pki, trust_anchors=[other.root]).code == "untrusted_chain"


def test_system_roots_do_not_trust_lab_ca(pki: Pki, vault_chain) -> None:
    value = _sign(_payload(b"\x01" * 32), vault_chain)
    assert _verify(value, pki, trust_anchors=None).code == "untrusted_chain"


def test_tampered_payload_fails_signature(pki: Pki, vault_chain) -> None:
    header, payload, signature = _sign(_payload(b"\x01" * 32), vault_chain).split(".")
    forged = json.loads(jwt.utils.base64url_decode(payload))
    forged["response"]["key"]["key"]["kid"] = f"{KID}/ffff"
    forged_segment = b64url_encode(json.dumps(forged).encode())
    err = _verify(f"{header}.{forged_segment}.{signature}", pki)
    assert err.code == "bad_signature"


def test_signature_by_other_key_fails(pki: Pki, vault_chain) -> None:
    _, chain = vault_chain
    value = sign_release_jws(_payload(b"\x01" * 32), rsa_key(2048, slot=4), chain)
    assert _verify(value, pki).code == "bad_signature"


def test_other_version_than_requested_is_rejected(pki: Pki, vault_chain) -> None:
    value = _sign(_payload(b"\x01" * 32), vault_chain)
    assert _verify(value, pki, expected_kid=f"{KID}/other").code == "kid_mismatch"
    other_key = f"https://{HOST}/keys/fabrikam-secret-key"
    assert _verify(value, pki, expected_kid=other_key).code == "kid_mismatch"


def test_key_from_another_vault_is_rejected(pki: Pki, vault_chain) -> None:
    payload = _payload(b"\x01" * 32, kid=f"https://other.vault.lab.test/keys/k/{VERSION}")
    value = _sign(payload, vault_chain)
    assert _verify(value, pki, expected_kid=None).code == "kid_mismatch"


def test_public_half_mismatch_is_rejected(pki: Pki, vault_chain) -> None:
    payload = _payload(rsa_key(2048, slot=1))
    payload["response"]["key"]["key"]["n"] = b64url_encode(b"\x01" * 256)
    assert _verify(_sign(payload, vault_chain), pki).code == "key_mismatch"


def test_inconsistent_private_half_is_rejected(pki: Pki, vault_chain) -> None:
    # Right n and e, wrong private exponent: what OpenSSL's full check (skipped for a verified
    # release, for speed) would refuse; the decrypt round trip refuses it instead.
    good = rsa_key(2048, slot=1).private_numbers()
    bad = rsa.RSAPrivateNumbers(p=good.p, q=good.q, d=good.d + 2, dmp1=good.dmp1 + 2,
                                dmq1=good.dmq1, iqmp=good.iqmp,
                                public_numbers=good.public_numbers)
    broken = bad.private_key(unsafe_skip_rsa_key_validation=True)
    error = _verify(_sign(_payload(broken), vault_chain), pki)
    assert error.code == "key_mismatch" and "inconsistent" in str(error)


def test_enc_differs_from_request(pki: Pki, vault_chain) -> None:
    payload = _payload(b"\x01" * 32)
    payload["request"]["enc"] = "RSA_AES_KEY_WRAP_384"
    assert _verify(_sign(payload, vault_chain), pki).code == "enc_mismatch"


def test_non_rs256_and_missing_x5c_are_rejected(pki: Pki, vault_chain) -> None:
    payload = json.dumps(_payload(b"\x01" * 32)).encode()
    hs = jwt.api_jws.PyJWS().encode(payload, "k" * 32, algorithm="HS256")
    assert _verify(hs, pki).code == "bad_alg"
    none = jwt.api_jws.PyJWS().encode(payload, None, algorithm="none")
    assert _verify(none, pki).code == "bad_alg"
    no_x5c = jwt.api_jws.PyJWS().encode(payload, rsa_key(2048, slot=3), algorithm="RS256")
    assert _verify(no_x5c, pki).code == "no_x5c"
    assert _verify("not a jws", pki).code == "malformed"


def test_thumbprint_mismatch_is_rejected(pki: Pki, vault_chain) -> None:
    signer, chain = vault_chain
    value = sign_release_jws(_payload(b"\x01" * 32), signer, chain)
    header = json.loads(jwt.utils.base64url_decode(value.split(".")[0]))
    header["x5t#S256"] = b64url_encode(b"\x00" * 32)
    forged = b64url_encode(json.dumps(header).encode()) + "." + value.split(".", 1)[1]
    assert _verify(forged, pki).code == "bad_x5c"


def test_malformed_header_and_key_fields_are_release_errors(pki: Pki, vault_chain) -> None:
    signer, chain = vault_chain
    value = sign_release_jws(_payload(b"\x01" * 32), signer, chain)
    header = json.loads(jwt.utils.base64url_decode(value.split(".")[0]))
    header["x5t"] = 12345  # not a string: refused as a mismatch, not a crash
    forged = b64url_encode(json.dumps(header).encode()) + "." + value.split(".", 1)[1]
    assert _verify(forged, pki).code == "bad_x5c"
    for n in (12345, ["AQAB"]):
        payload = _payload(rsa_key(2048, slot=1))
        payload["response"]["key"]["key"]["n"] = n
        assert _verify(_sign(payload, vault_chain), pki).code == "malformed"


def test_real_sample_payload_parses() -> None:
    """The quickstart's release payload (its JWS and x5c are truncated in the source, so only
    the payload can be checked: shape, kid, enc, policy)."""
    payload = json.loads((FIXTURES / "akv-release-response.payload.json").read_text())
    release = parse_release_payload(payload)
    assert release.kid.endswith("/keys/myskrkey/e473cd4c66224d16870bbe2eb4c58078")
    assert release.kty == "RSA-HSM"
    assert release.request["enc"] == "CKM_RSA_AES_KEY_WRAP"
    policy = json.loads((FIXTURES / "policy-quickstart-release_policy-data.json").read_text())
    assert release.release_policy == policy
    assert "key_hsm" not in release.public_jwk


def test_verify_release_jws_skipping_chain_checks_signature_only(vault_chain) -> None:
    """Signature against x5c[0] alone (how a sample with a partial chain is checked)."""
    header, payload = verify_release_jws(
        _sign(_payload(b"\x01" * 32), vault_chain),
        vault_host=HOST,
        trust_anchors=[],
        verify_chain=False,
    )
    assert header["alg"] == "RS256" and len(header["x5c"]) == 2
    assert payload["request"]["kid"] == KID


def test_real_sample_header_conventions_match_ours(vault_chain) -> None:
    """In the quickstart's JWS header kid is the hex SHA-1 thumbprint that x5t encodes; the
    lab's responses (sign_release_jws) follow the same convention."""
    real = json.loads((FIXTURES / "akv-release-response.header.json").read_text())
    assert real["alg"] == "RS256"
    assert jwt.utils.base64url_decode(real["x5t"]).hex().upper() == real["kid"]
    ours = jwt.get_unverified_header(_sign(_payload(b"\x01" * 32), vault_chain))
    assert jwt.utils.base64url_decode(ours["x5t"]).hex().upper() == ours["kid"]
    assert {"alg", "kid", "x5t", "x5t#S256", "x5c"} <= set(ours)
