"""X.509 chain verification (web PKI profile) for a certificate presented for a host name."""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import warnings
from pathlib import Path

import requests.certs
from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.verification import PolicyBuilder, Store, Subject, VerificationError

from cotenant.crypto.errors import CryptoError


@functools.cache
def system_trust_anchors() -> tuple[x509.Certificate, ...]:
    """The public roots ``requests`` trusts by default (its certifi bundle)."""
    with warnings.catch_warnings():
        # A few public roots carry non-positive serial numbers; they are still roots.
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return tuple(x509.load_pem_x509_certificates(Path(requests.certs.where()).read_bytes()))


def _subject(host: str) -> Subject:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def verify_server_chain(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    *,
    host: str,
    trust_anchors: list[x509.Certificate] | None,
    at: dt.datetime | None = None,
) -> list[x509.Certificate]:
    """Verify ``leaf`` (plus intermediates) chains to a trust anchor and is valid for ``host``.

    ``trust_anchors`` None means the system roots. Returns the verified chain, leaf first.
    Raises ``CryptoError`` (code ``untrusted_chain``) with the verifier's reason.
    """
    anchors = list(system_trust_anchors() if trust_anchors is None else trust_anchors)
    if not anchors:
        raise CryptoError("no trust anchors configured", code="untrusted_chain")
    builder = PolicyBuilder().store(Store(anchors))
    if at is not None:
        builder = builder.time(at)
    verifier = builder.build_server_verifier(_subject(host))
    try:
        return verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        raise CryptoError(
            f"certificate for {host} is not trusted: {exc}", code="untrusted_chain"
        ) from None
