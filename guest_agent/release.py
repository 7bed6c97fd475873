"""Secure Key Release: ask the configured vault for a key, verify the JWS, unwrap in the TEE.

The managed-identity token is sent to one URL only: ``<configured vault>/keys/<configured
name>[/<version>]/release`` (redirects are not followed). The released key is checked to be
the key that was asked for, then returned to the caller, who keeps it in memory only.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

from cotenant.crypto.errors import CryptoError
from cotenant.crypto.skr import ReleasedKey, verify_release_response
from guest_agent.config import KeyRef
from guest_agent.imds import VAULT_RESOURCE, ImdsClient
from guest_agent.retry import Backoff, send_with_retry
from guest_agent.tee import Tee

API_VERSION = "7.4"
PREFERRED_ENC = "RSA_AES_KEY_WRAP_256"
FALLBACK_ENC = "CKM_RSA_AES_KEY_WRAP"
# A 400 that names the wrapping parameter: the vault does not support the preferred enc.
_ENC_MENTION = re.compile(r"\benc\b|RSA_AES_KEY_WRAP|algorithm", re.IGNORECASE)


class ReleaseDenied(RuntimeError):
    """The vault refused the release (403): policy not satisfied or no grant. Not retried."""

    status = 403

    def __init__(self, key: KeyRef, code: str, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{key.label()}: release denied ({code}): {reason}")


class ReleaseFailed(RuntimeError):
    """The release could not be completed (vault error, bad response, verification failure)."""

    def __init__(self, key: KeyRef, code: str, reason: str, status: int | None = None) -> None:
        self.code = code
        self.reason = reason
        self.status = status
        super().__init__(f"{key.label()}: release failed ({code}): {reason}")


def _vault_error(response: httpx.Response) -> tuple[str, str]:
    try:
        error = response.json().get("error") or {}
        code = str(error.get("code") or f"HTTP{response.status_code}")
        message = str(error.get("message") or "")
        inner = error.get("innererror") or {}
        if isinstance(inner, dict) and inner.get("code"):
            code = f"{code}/{inner['code']}"
    except (ValueError, AttributeError):
        code, message = f"HTTP{response.status_code}", ""
    return code[:128], (message or response.reason_phrase)[:1000]


def _enc_refused(response: httpx.Response) -> bool:
    if response.status_code != 400:
        return False
    _, message = _vault_error(response)
    return _ENC_MENTION.search(message) is not None


def load_trust_anchors(ca_bundle: str | None) -> list[x509.Certificate] | None:
    if ca_bundle is None:
        return None
    with open(ca_bundle, "rb") as fh, warnings.catch_warnings():
        # System bundles hold a few roots with non-positive serials; they are still roots.
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return x509.load_pem_x509_certificates(fh.read())


@dataclass
class KeyReleaser:
    http: httpx.Client
    imds: ImdsClient
    trust_anchors: list[x509.Certificate] | None
    backoff: Backoff = field(default_factory=Backoff)

    def release(self, key: KeyRef, tee: Tee, *, version: str | None = None) -> ReleasedKey:
        """Release ``key`` (latest version unless ``version``) to the attested ``tee``."""
        response = self._request(key, tee, version)
        try:
            value = response.json()["value"]
        except (ValueError, KeyError, TypeError):
            raise ReleaseFailed(key, "malformed", "release response lacks 'value'", 200) from None
        expected = f"{key.kid}/{version}" if version else key.kid
        try:
            return verify_release_response(
                value,
                vault_host=urlsplit(key.vault_url).hostname or "",
                trust_anchors=self.trust_anchors,
                rsa_decrypt=tee.backend.decrypt,
                expected_kid=expected,
            )
        except CryptoError as exc:
            raise ReleaseFailed(key, exc.code, str(exc), 200) from None

    def probe(self, key: KeyRef, tee: Tee) -> dict[str, Any]:
        """Ask for a key this VM must not get; return the vault's answer. A (wrong) release
        is reported as ``released: true`` and its response is discarded unopened."""
        result: dict[str, Any] = {"vault": key.vault_url, "name": key.name}
        try:
            self._request(key, tee, None)
        except (ReleaseDenied, ReleaseFailed) as exc:
            return {**result, "released": False, "status": exc.status, "code": exc.code,
                    "message": exc.reason}
        return {**result, "released": True, "status": 200, "code": "Released",
                "message": "the vault released this key to this VM"}

    def _request(self, key: KeyRef, tee: Tee, version: str | None) -> httpx.Response:
        """The release exchange; returns the 200 response, raises for anything else."""
        # Latest version: an empty version segment, exactly as the Azure SDK sends it.
        url = f"{key.kid}/{quote(version or '', safe='')}/release"
        response = self._exchange(key, url, tee.current_token())
        if response.status_code == 401:  # expired or revoked bearer: one fresh token, once
            self.imds.token(VAULT_RESOURCE, refresh=True)
            response = self._exchange(key, url, tee.current_token())
        if response.status_code == 403:
            raise ReleaseDenied(key, *_vault_error(response))
        if response.status_code != 200:
            code, reason = _vault_error(response)
            raise ReleaseFailed(key, code, f"HTTP {response.status_code}: {reason}",
                                response.status_code)
        return response

    def _exchange(self, key: KeyRef, url: str, target: str) -> httpx.Response:
        response = self._post(key, url, target, PREFERRED_ENC)
        if _enc_refused(response):
            response = self._post(key, url, target, FALLBACK_ENC)
        return response

    def _post(self, key: KeyRef, url: str, target: str, enc: str) -> httpx.Response:
        bearer = self.imds.token(VAULT_RESOURCE).token
        return send_with_retry(
            self.http, "POST", url, backoff=self.backoff, what=f"release {key.label()}",
            params={"api-version": API_VERSION},
            json={"target": target, "enc": enc},
            headers={"Authorization": f"Bearer {bearer}"},
            follow_redirects=False,
        )
