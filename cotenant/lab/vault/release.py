"""Secure Key Release: verify the target attestation token, evaluate the policy, wrap, sign.

The target token is verified through its issuer's discovery document and JWKS (fetched over
HTTPS through the lab, like Key Vault does) and its issuer must be an authority the key's
release policy names; the policy is evaluated with :func:`cotenant.policy.evaluate`; the key
material is wrapped to the token's runtime encryption key per ``enc``
(:func:`cotenant.crypto.skr.wrap_key_hsm`); the response is a JWS signed by the vault's
certificate with ``x5c`` chaining to the lab CA.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from cotenant.crypto.errors import CryptoError
from cotenant.crypto.skr import SUPPORTED_ENCS, key_material_of, wrap_key_hsm
from cotenant.crypto.tokens import TokenError, TokenVerifier, runtime_encryption_key
from cotenant.lab.ca import load_private
from cotenant.lab.http import HttpError
from cotenant.lab.jose import thumbprints, x5c
from cotenant.lab.state import Key, KeyVersion, Vault
from cotenant.lab.vault import keys as kv
from cotenant.policy import PolicyError, evaluate, parse_policy

DEFAULT_ENC = "CKM_RSA_AES_KEY_WRAP"


def forbidden(message: str) -> HttpError:
    return HttpError(403, "Forbidden", message, inner="AccessDenied")


class Releaser:
    """Performs releases; caches one token verifier per set of authorities."""

    def __init__(self, ca_bundle: str) -> None:
        self.ca_bundle = ca_bundle
        self._verifiers: dict[tuple[str, ...], TokenVerifier] = {}
        self._lock = threading.Lock()

    def _verifier(self, authorities: list[str]) -> TokenVerifier:
        return self._verifier_made(authorities)[0]

    def _verifier_made(self, authorities: list[str]) -> tuple[TokenVerifier, bool]:
        """The verifier of these authorities, and whether this call made it."""
        key = tuple(sorted(set(authorities)))
        with self._lock:
            made = key not in self._verifiers
            if made:
                self._verifiers[key] = TokenVerifier(key, verify=self.ca_bundle)
            return self._verifiers[key], made

    def prepare(self, release_policy: str) -> None:
        """Fetch, in the background, the signing keys of the authorities ``release_policy``
        (a key's, base64url) names: when the key is made, long before its first release —
        which would otherwise fetch them, through this busy lab, while every release of those
        authorities waits (seconds when ten agents release at once)."""
        try:
            authorities = parse_policy(release_policy).authorities
        except PolicyError:
            return
        verifier, made = self._verifier_made(authorities)
        if made:
            threading.Thread(target=self._prefetch, args=(verifier,), name="lab-jwks-prefetch",
                             daemon=True).start()

    @staticmethod
    def _prefetch(verifier: TokenVerifier) -> None:
        with contextlib.suppress(TokenError):  # the first release fetches them (and says why)
            verifier.prefetch()

    def release(self, vault: Vault, vault_url: str, key: Key, version: KeyVersion,
                body: dict[str, Any], *, requested_version: str | None,
                api_version: str) -> tuple[str, str]:
        """Returns ``(jws, decision reason)``; raises ``HttpError`` with the refusal reason."""
        target = body.get("target")
        if not isinstance(target, str) or not target:
            raise kv.bad("'target' (the attestation token) is required")
        enc = body.get("enc") or DEFAULT_ENC
        if enc not in SUPPORTED_ENCS:
            raise kv.bad(f"enc must be one of {', '.join(SUPPORTED_ENCS)}")
        if not version.exportable or version.release_policy is None:
            raise kv.bad("AKV.SKR.1002: The key is not exportable")
        kv.check_usable(version, "release")
        try:
            policy = parse_policy(version.release_policy.data)
        except PolicyError as exc:
            raise forbidden(f"the key's release policy is invalid: {exc}") from None
        try:
            claims = self._verifier(policy.authorities).verify(target).claims
        except TokenError as exc:
            raise forbidden(f"Target environment attestation statement cannot be verified: "
                            f"{exc}") from None
        decision = evaluate(policy, claims)
        if not decision.allowed:
            raise forbidden("Target environment attestation statement does not satisfy the "
                            f"release policy: {decision.explanation}")
        try:
            wrapping_key = runtime_encryption_key(claims)
            key_hsm = wrap_key_hsm(key_material_of(kv.private_key(version)), wrapping_key, enc)
        except (TokenError, CryptoError) as exc:
            raise forbidden(f"cannot wrap the key to the target environment: {exc}") from None
        released = kv.bundle(vault, vault_url, key, version)
        released["key"]["key_hsm"] = key_hsm
        request_kid = f"{vault_url}/keys/{key.name}" + (
            f"/{requested_version}" if requested_version else "")
        payload = {
            "request": {"api-version": api_version, "enc": enc, "kid": request_kid,
                        **({"nonce": body["nonce"]} if body.get("nonce") else {})},
            "response": {"key": released},
        }
        return self._sign(vault, payload), decision.explanation

    @staticmethod
    def _sign(vault: Vault, payload: dict[str, Any]) -> str:
        chain = x509.load_pem_x509_certificates(vault.signing_cert.encode())
        leaf = chain[0]
        header = {"alg": "RS256", "kid": leaf.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303
                  **thumbprints(leaf), "typ": "JWT", "x5c": x5c(chain)}
        return jwt.encode(payload, load_private(vault.signing_key.encode()), algorithm="RS256",
                          headers=header)
