"""Attestation token verification against a real HTTPS discovery/JWKS server on 127.0.0.1."""

from __future__ import annotations

import json
from base64 import b64encode
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from cotenant.crypto.tokens import (
    AttestationClaims,
    TokenError,
    TokenVerifier,
    normalize_issuer,
    runtime_encryption_key,
)
from tests.crypto.conftest import rsa_key
from tests.crypto.maa_server import MaaServer
from tests.crypto.pki import Pki

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "crypto"
_TIME_CLAIMS = ("iss", "iat", "nbf", "exp", "jti")


def _sample_claims(name: str) -> dict[str, Any]:
    claims = json.loads((FIXTURES / name).read_text())
    return {k: v for k, v in claims.items() if k not in _TIME_CLAIMS}


GUEST = _sample_claims("maa-cvm-guest-token.payload.json")
NO_TEE = _sample_claims("maa-tvm-guest-token-no-tee.payload.json")


@pytest.fixture(scope="module")
def maa(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MaaServer]:
    server = MaaServer(pki, rsa_key(2048, slot=5), tmp_path_factory.mktemp("maa"))
    server.keys["k1"] = rsa_key(2048, slot=6)
    yield server
    server.stop()


@pytest.fixture
def verifier(maa: MaaServer) -> TokenVerifier:
    return TokenVerifier([maa.issuer + "/"], verify=maa.ca_bundle, min_refresh_interval=0)


def _reject(verifier: TokenVerifier, token: str, **kwargs: Any) -> TokenError:
    with pytest.raises(TokenError) as info:
        verifier.verify(token, **kwargs)
    return info.value


def test_valid_guest_token(maa: MaaServer, verifier: TokenVerifier) -> None:
    result = verifier.verify(maa.token(GUEST), nonce="MTIzNA==")
    assert isinstance(result, AttestationClaims)
    assert result.issuer == maa.issuer
    assert result.attestation_type == "azurevm"
    assert result.tee_type == "sevsnpvm"
    assert result.is_compliant_cvm
    assert not result.is_debuggable
    assert result.nonce == "MTIzNA=="
    assert result.vm_id == "D3FD4B09-37A3-40D5-8F2A-EA80762213CC"
    assert result.secure_boot
    assert result.expires_at is not None and result.issued_at is not None
    assert [k["kid"] for k in result.runtime_keys] == ["TpmEphemeralEncryptionKey"]


def test_non_cvm_token_is_verified_but_not_compliant(
    maa: MaaServer, verifier: TokenVerifier
) -> None:
    result = verifier.verify(maa.token(NO_TEE))
    assert result.tee_type is None
    assert not result.is_compliant_cvm
    assert result.is_debuggable  # nothing proves otherwise


def test_x5c_only_jwks_entries(maa: MaaServer, verifier: TokenVerifier, pki: Pki) -> None:
    """MAA's /certs publishes only kid + x5c (see maa-certs.json); the key comes from x5c[0]."""
    real = json.loads((FIXTURES / "maa-certs.json").read_text())["keys"]
    signer = rsa_key(2048, slot=9)
    cert = pki.server_cert("maa.lab.test", signer).public_bytes(serialization.Encoding.DER)
    maa.extra_jwks = [*real, {"kid": "x5c-only", "kty": "RSA", "x5c": [b64encode(cert).decode()]}]
    try:
        assert verifier.verify(maa.token(GUEST, kid="x5c-only", key=signer)).is_compliant_cvm
    finally:
        maa.extra_jwks = []


def test_keys_are_cached(maa: MaaServer, pki: Pki) -> None:
    verifier = TokenVerifier([maa.issuer], verify=maa.ca_bundle)
    before = maa.hits["jwks"]
    for _ in range(3):
        verifier.verify(maa.token(GUEST))
    assert maa.hits["jwks"] == before + 1


def test_prefetch_fetches_the_keys_once_ahead_of_the_first_token(maa: MaaServer) -> None:
    verifier = TokenVerifier([maa.issuer], verify=maa.ca_bundle)
    before = maa.hits["jwks"]
    verifier.prefetch()
    verifier.prefetch()
    assert maa.hits["jwks"] == before + 1
    assert verifier.verify(maa.token(GUEST)).is_compliant_cvm  # still fully verified
    forged = maa.token(GUEST, key=rsa_key(2048, slot=7))  # kid k1, another key
    assert _reject(verifier, forged).code == "bad_signature"
    assert maa.hits["jwks"] == before + 1


def test_unknown_kid_refreshes_once_then_fails(maa: MaaServer, verifier: TokenVerifier) -> None:
    verifier.verify(maa.token(GUEST))
    before = maa.hits["jwks"]
    err = _reject(verifier, maa.token(GUEST, kid="rogue", key=rsa_key(2048, slot=7)))
    assert err.code == "unknown_kid"
    assert maa.hits["jwks"] == before + 1


def test_rotated_key_is_picked_up_by_refresh(maa: MaaServer, verifier: TokenVerifier) -> None:
    verifier.verify(maa.token(GUEST))
    maa.keys["k2"] = rsa_key(2048, slot=8)
    try:
        assert verifier.verify(maa.token(GUEST, kid="k2")).is_compliant_cvm
    finally:
        del maa.keys["k2"]


def test_refresh_is_rate_limited(maa: MaaServer) -> None:
    verifier = TokenVerifier([maa.issuer], verify=maa.ca_bundle, min_refresh_interval=60)
    verifier.verify(maa.token(GUEST))
    before = maa.hits["jwks"]
    for _ in range(3):
        _reject(verifier, maa.token(GUEST, kid="rogue", key=rsa_key(2048, slot=7)))
    assert maa.hits["jwks"] == before


def test_wrong_issuer(maa: MaaServer, verifier: TokenVerifier) -> None:
    token = maa.token(GUEST, issuer="https://evil.attest.azure.net")
    assert _reject(verifier, token).code == "wrong_issuer"


def test_discovery_naming_another_issuer(maa: MaaServer) -> None:
    verifier = TokenVerifier([maa.issuer], verify=maa.ca_bundle)
    maa.issuer_suffix = "/other"
    try:
        assert _reject(verifier, maa.token(GUEST)).code == "discovery"
    finally:
        maa.issuer_suffix = ""


def test_plain_http_jwks_uri_is_never_fetched(maa: MaaServer) -> None:
    verifier = TokenVerifier([maa.issuer], verify=maa.ca_bundle)
    maa.jwks_uri = maa.issuer.replace("https://", "http://") + "/certs"
    before = maa.hits["jwks"]
    try:
        error = _reject(verifier, maa.token(GUEST))
    finally:
        maa.jwks_uri = None
    assert error.code == "discovery" and maa.hits["jwks"] == before


def test_plain_http_issuers_are_refused() -> None:
    with pytest.raises(ValueError, match="https"):
        TokenVerifier(["http://sharedneu.neu.attest.azure.net"])


def test_expired(maa: MaaServer, verifier: TokenVerifier) -> None:
    assert _reject(verifier, maa.token(GUEST, lifetime=-120)).code == "expired"


def test_expiry_within_leeway_is_accepted(maa: MaaServer, verifier: TokenVerifier) -> None:
    assert verifier.verify(maa.token(GUEST, lifetime=-10)).is_compliant_cvm


def test_not_yet_valid(maa: MaaServer, verifier: TokenVerifier) -> None:
    assert _reject(verifier, maa.token(GUEST, not_before=600)).code == "not_yet_valid"


def test_bad_signature(maa: MaaServer, verifier: TokenVerifier) -> None:
    forged = maa.token(GUEST, kid="k1", key=rsa_key(2048, slot=7))
    assert _reject(verifier, forged).code == "bad_signature"


def test_tampered_claims(maa: MaaServer, verifier: TokenVerifier) -> None:
    header, _, signature = maa.token(GUEST).split(".")
    claims = dict(GUEST, iss=maa.issuer, exp=2**31)
    body = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    assert _reject(verifier, f"{header}.{body}.{signature}").code == "bad_signature"


def test_alg_none(maa: MaaServer, verifier: TokenVerifier) -> None:
    token = jwt.encode(
        dict(GUEST, iss=maa.issuer, exp=2**31), None, algorithm="none", headers={"kid": "k1"}
    )
    assert _reject(verifier, token).code == "bad_alg"


def test_hs256_with_public_key_as_secret(maa: MaaServer, verifier: TokenVerifier) -> None:
    """The classic confusion attack: HMAC keyed with the issuer's public JWK text."""
    token = jwt.encode(
        dict(GUEST, iss=maa.issuer, exp=2**31),
        "public-key-bytes" * 4,
        algorithm="HS256",
        headers={"kid": "k1"},
    )
    assert _reject(verifier, token).code == "bad_alg"


def test_nonce_mismatch(maa: MaaServer, verifier: TokenVerifier) -> None:
    assert _reject(verifier, maa.token(GUEST), nonce="other").code == "nonce_mismatch"
    no_nonce = {k: v for k, v in GUEST.items() if k != "x-ms-runtime"}
    assert _reject(verifier, maa.token(no_nonce), nonce="MTIzNA==").code == "nonce_mismatch"


def test_missing_exp(maa: MaaServer, verifier: TokenVerifier) -> None:
    token = jwt.encode(
        dict(GUEST, iss=maa.issuer), maa.keys["k1"], algorithm="RS256", headers={"kid": "k1"}
    )
    assert _reject(verifier, token).code == "malformed"


def test_malformed(verifier: TokenVerifier) -> None:
    assert _reject(verifier, "abc").code == "malformed"


def test_untrusted_tls_is_a_discovery_error(maa: MaaServer) -> None:
    verifier = TokenVerifier([maa.issuer])  # system roots do not trust the test CA
    assert _reject(verifier, maa.token(GUEST)).code == "discovery"


def test_jku_header_is_never_followed(maa: MaaServer, verifier: TokenVerifier) -> None:
    """A token pointing jku at an attacker's keys still needs the issuer's own key."""
    token = jwt.encode(
        dict(GUEST, iss=maa.issuer, exp=2**31),
        rsa_key(2048, slot=7),
        algorithm="RS256",
        headers={"kid": "k1", "jku": "https://evil/certs"},
    )
    assert _reject(verifier, token).code == "bad_signature"


def test_runtime_encryption_key_from_real_sample() -> None:
    claims = json.loads((FIXTURES / "maa-cvm-guest-token.payload.json").read_text())
    key = runtime_encryption_key(claims)
    assert key.key_size == 2048
    # It is the top-level TPM key, not the HCL key nested under x-ms-isolation-tee.
    hcl_n = claims["x-ms-isolation-tee"]["x-ms-runtime"]["keys"][0]["n"]
    tpm_n = claims["x-ms-runtime"]["keys"][0]["n"]
    assert hcl_n != tpm_n
    assert key.public_numbers().n == int.from_bytes(jwt.utils.base64url_decode(tpm_n), "big")


def test_runtime_encryption_key_selection() -> None:
    jwk = json.loads((FIXTURES / "maa-cvm-guest-token.payload.json").read_text())["x-ms-runtime"][
        "keys"
    ][0]
    signing = dict(jwk, kid="sign", key_ops=["verify"])
    by_use = {k: v for k, v in jwk.items() if k != "key_ops"} | {"use": "enc", "kid": "u"}
    claims = {"x-ms-runtime": {"keys": [{"kty": "EC"}, signing, by_use]}}
    assert runtime_encryption_key(claims).public_numbers().e == 65537
    with pytest.raises(TokenError):
        runtime_encryption_key({"x-ms-runtime": {"keys": [signing]}})
    with pytest.raises(TokenError):
        runtime_encryption_key({})


def test_normalize_issuer() -> None:
    assert normalize_issuer("https://SharedEus.eus.attest.azure.net/") == (
        "https://sharedeus.eus.attest.azure.net"
    )
    assert normalize_issuer("https://h/x/") == "https://h/x"
