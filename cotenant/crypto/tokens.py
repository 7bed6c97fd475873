"""Verify Microsoft Azure Attestation (MAA) tokens.

Keys come from the issuer's OpenID discovery document (``<iss>/.well-known/openid-configuration``
→ ``jwks_uri``), cached per issuer; a token signed with an unknown ``kid`` triggers one refresh.
Only issuers in the allow-list are ever contacted (the token's ``jku`` header is ignored), only
RS256 is accepted, ``exp``/``nbf`` are checked with a small leeway and an optional nonce is
compared with ``x-ms-runtime.client-payload.nonce``.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt
import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from cotenant.crypto.encoding import b64url_decode
from cotenant.crypto.errors import CryptoError

ALGORITHM = "RS256"
_DISCOVERY_PATH = "/.well-known/openid-configuration"


class TokenError(CryptoError):
    """The token is not acceptable; ``code`` says why (``expired``, ``bad_signature``, ...)."""

    code = "invalid_token"


def normalize_issuer(url: str) -> str:
    """Issuers compare without one trailing slash and with a lower-case scheme and host."""
    url = url.strip()
    url = url[:-1] if url.endswith("/") else url
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    host, slash, path = rest.partition("/")
    return f"{scheme.lower()}://{host.lower()}{slash}{path}"


def _dig(claims: dict[str, Any], *path: str) -> Any:
    node: Any = claims
    for part in path:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


@dataclass(frozen=True)
class AttestationClaims:
    """Typed access to a verified attestation token's claims (``claims`` holds them all)."""

    claims: dict[str, Any] = field(repr=False)

    @property
    def issuer(self) -> str:
        return str(self.claims["iss"])

    @property
    def attestation_type(self) -> str | None:
        return self.claims.get("x-ms-attestation-type")

    @property
    def tee_type(self) -> str | None:
        """``x-ms-isolation-tee.x-ms-attestation-type`` (``sevsnpvm`` on an SEV-SNP CVM)."""
        return _dig(self.claims, "x-ms-isolation-tee", "x-ms-attestation-type")

    @property
    def compliance_status(self) -> str | None:
        return _dig(self.claims, "x-ms-isolation-tee", "x-ms-compliance-status")

    @property
    def is_compliant_cvm(self) -> bool:
        return self.tee_type == "sevsnpvm" and self.compliance_status == "azure-compliant-cvm"

    @property
    def is_debuggable(self) -> bool:
        """True unless the TEE explicitly reports it is not debuggable (absent counts as True)."""
        value = _dig(self.claims, "x-ms-isolation-tee", "x-ms-sevsnpvm-is-debuggable")
        return value is not False

    @property
    def nonce(self) -> str | None:
        value = _dig(self.claims, "x-ms-runtime", "client-payload", "nonce")
        return value if isinstance(value, str) else None

    @property
    def vm_id(self) -> str | None:
        return self.claims.get("x-ms-azurevm-vmid")

    @property
    def secure_boot(self) -> bool:
        return self.claims.get("secureboot") is True

    @property
    def launch_measurement(self) -> str | None:
        return _dig(self.claims, "x-ms-isolation-tee", "x-ms-sevsnpvm-launchmeasurement")

    @property
    def policy_hash(self) -> str | None:
        return self.claims.get("x-ms-policy-hash")

    @property
    def runtime_keys(self) -> list[dict[str, Any]]:
        keys = _dig(self.claims, "x-ms-runtime", "keys")
        return [k for k in keys if isinstance(k, dict)] if isinstance(keys, list) else []

    @property
    def issued_at(self) -> dt.datetime | None:
        return _timestamp(self.claims.get("iat"))

    @property
    def expires_at(self) -> dt.datetime | None:
        return _timestamp(self.claims.get("exp"))

    def encryption_key(self) -> rsa.RSAPublicKey:
        return runtime_encryption_key(self.claims)


def _timestamp(value: Any) -> dt.datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    return None


def runtime_encryption_key(claims: dict[str, Any]) -> rsa.RSAPublicKey:
    """The key Key Vault wraps a released key to: the first RSA key in the top-level
    ``x-ms-runtime.keys`` whose ``key_ops`` contains ``encrypt`` or whose ``use`` is ``enc``."""
    keys = _dig(claims, "x-ms-runtime", "keys")
    for jwk in keys if isinstance(keys, list) else []:
        if not isinstance(jwk, dict) or jwk.get("kty") != "RSA":
            continue
        ops = jwk.get("key_ops")
        if (isinstance(ops, list) and "encrypt" in ops) or jwk.get("use") == "enc":
            return _rsa_from_jwk(jwk)
    raise TokenError("token has no RSA encryption key in x-ms-runtime.keys", code="no_runtime_key")


def _rsa_from_jwk(jwk: dict[str, Any]) -> rsa.RSAPublicKey:
    try:
        n = int.from_bytes(b64url_decode(jwk["n"]), "big")
        e = int.from_bytes(b64url_decode(jwk["e"]), "big")
        return rsa.RSAPublicNumbers(e, n).public_key()
    except (KeyError, TypeError, ValueError):
        raise TokenError("runtime key is not a valid RSA JWK", code="bad_runtime_key") from None


def _jwk_public_key(jwk: dict[str, Any]) -> rsa.RSAPublicKey | None:
    """An RSA key from a JWKS entry: ``n``/``e`` if present, else the certificate ``x5c[0]``."""
    if jwk.get("kty", "RSA") != "RSA":
        return None
    if "n" in jwk and "e" in jwk:
        try:
            return _rsa_from_jwk(jwk)
        except TokenError:
            return None
    x5c = jwk.get("x5c")
    if isinstance(x5c, list) and x5c:
        try:
            key = x509.load_der_x509_certificate(base64.b64decode(x5c[0])).public_key()
        except ValueError:
            return None
        return key if isinstance(key, rsa.RSAPublicKey) else None
    return None


class TokenVerifier:
    """Verify attestation tokens from a fixed set of issuers. Thread-safe; keys are cached.

    ``verify`` is passed to ``requests`` (True, False or a CA bundle path). An unknown ``kid``
    refetches the issuer's keys once, at most every ``min_refresh_interval`` seconds, so a flood
    of tokens with made-up kids cannot turn the verifier into a request amplifier.
    """

    def __init__(
        self,
        allowed_issuers: Iterable[str],
        *,
        leeway: int = 60,
        verify: bool | str = True,
        timeout: float = 10.0,
        min_refresh_interval: float = 5.0,
    ) -> None:
        self._issuers = {normalize_issuer(i): i for i in allowed_issuers}
        if not self._issuers:
            raise ValueError("at least one allowed issuer is required")
        if any(not issuer.startswith("https://") for issuer in self._issuers):
            raise ValueError("allowed issuers must be https:// URLs (their keys are fetched "
                             "from them)")
        self._leeway = leeway
        self._verify = verify
        self._timeout = timeout
        self._min_refresh = min_refresh_interval
        self._fetched_at: dict[str, float] = {}
        self._keys: dict[str, dict[str, rsa.RSAPublicKey]] = {}
        self._lock = threading.Lock()
        self._session = requests.Session()

    @property
    def allowed_issuers(self) -> list[str]:
        return list(self._issuers)

    def verify(self, token: str, *, nonce: str | None = None) -> AttestationClaims:
        """Verify ``token`` and return its claims; raises ``TokenError`` on any problem."""
        header = self._header(token)
        issuer = self._issuer(token)
        key = self._key_for(issuer, header.get("kid"))
        claims = self._decode(token, key)
        if normalize_issuer(str(claims.get("iss", ""))) != issuer:
            raise TokenError("token issuer changed under verification", code="wrong_issuer")
        result = AttestationClaims(claims)
        if nonce is not None and result.nonce != nonce:
            raise TokenError("token nonce does not match the challenge", code="nonce_mismatch")
        return result

    @staticmethod
    def _header(token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("token is not a well-formed JWT", code="malformed") from None
        if header.get("alg") != ALGORITHM:
            raise TokenError(
                f"token alg {header.get('alg')!r} is not allowed (RS256 only)", code="bad_alg"
            )
        return header

    def _issuer(self, token: str) -> str:
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise TokenError("token payload is malformed", code="malformed") from None
        iss = unverified.get("iss")
        if not isinstance(iss, str) or normalize_issuer(iss) not in self._issuers:
            raise TokenError(f"token issuer {iss!r} is not allowed", code="wrong_issuer")
        return normalize_issuer(iss)

    def _decode(self, token: str, key: rsa.RSAPublicKey) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key=key,
                algorithms=[ALGORITHM],
                leeway=self._leeway,
                options={"require": ["exp", "iss"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token has expired", code="expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("token is not yet valid", code="not_yet_valid") from None
        except jwt.InvalidSignatureError:
            raise TokenError("token signature is invalid", code="bad_signature") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError(f"token lacks the {exc.claim!r} claim", code="malformed") from None
        except jwt.PyJWTError as exc:
            raise TokenError(f"token is invalid: {type(exc).__name__}", code="malformed") from None

    def prefetch(self) -> None:
        """Fetch the signing keys of every allowed issuer not fetched yet, now (otherwise the
        first token of each fetches them while every verification waits on the cache's lock).
        Raises ``TokenError`` like a verification that cannot fetch them."""
        for issuer in self._issuers:
            with self._lock:
                if issuer not in self._keys:
                    self._load(issuer)

    def _key_for(self, issuer: str, kid: Any) -> rsa.RSAPublicKey:
        if not isinstance(kid, str) or not kid:
            raise TokenError("token header has no kid", code="unknown_kid")
        with self._lock:
            keys = self._keys.get(issuer)
            last = self._fetched_at.get(issuer)
            stale = last is None or time.monotonic() - last >= self._min_refresh
            if keys is None or (kid not in keys and stale):
                keys = self._load(issuer)  # first use, or one refresh for an unknown kid
        if kid not in keys:
            raise TokenError(
                f"signing key {kid!r} is not published by the issuer", code="unknown_kid"
            )
        return keys[kid]

    def _load(self, issuer: str) -> dict[str, rsa.RSAPublicKey]:
        """Fetch and cache ``issuer``'s signing keys (the caller holds ``_lock``)."""
        keys = self._keys[issuer] = self._fetch_keys(issuer)
        self._fetched_at[issuer] = time.monotonic()
        return keys

    def _fetch_keys(self, issuer: str) -> dict[str, rsa.RSAPublicKey]:
        discovery = self._get_json(self._issuers[issuer].rstrip("/") + _DISCOVERY_PATH)
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith("https://"):
            raise TokenError("issuer discovery document has no https jwks_uri", code="discovery")
        if "issuer" in discovery and normalize_issuer(str(discovery["issuer"])) != issuer:
            raise TokenError("issuer discovery document names another issuer", code="discovery")
        jwks = self._get_json(jwks_uri)
        entries = jwks.get("keys")
        if not isinstance(entries, list):
            raise TokenError("issuer JWKS has no keys", code="discovery")
        keys: dict[str, rsa.RSAPublicKey] = {}
        for jwk in entries:
            if isinstance(jwk, dict) and isinstance(jwk.get("kid"), str):
                key = _jwk_public_key(jwk)
                if key is not None:
                    keys[jwk["kid"]] = key
        return keys

    def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = self._session.get(url, timeout=self._timeout, verify=self._verify)
            response.raise_for_status()
            document = response.json()
        except requests.RequestException as exc:
            raise TokenError(
                f"cannot fetch {url}: {type(exc).__name__}", code="discovery"
            ) from None
        except ValueError:
            raise TokenError(f"{url} did not return JSON", code="discovery") from None
        if not isinstance(document, dict):
            raise TokenError(f"{url} did not return a JSON object", code="discovery")
        return document
