"""The lab's certificate authority: one root, TLS server certificates, vault signing certificates.

Everything the lab serves over HTTPS chains to this root, and so does the certificate that
signs a vault's release responses (``x5c``). Clients trust it through ``REQUESTS_CA_BUNDLE`` /
``SSL_CERT_FILE`` pointing at :attr:`LabCA.bundle_path`. Certificates follow the web PKI profile
(SAN, AKI/SKI, key usages, serverAuth) so strict verifiers (``cryptography.x509.verification``)
accept them.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=825)


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def private_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@functools.lru_cache(maxsize=1024)
def load_private(pem: bytes) -> rsa.RSAPrivateKey:
    """The RSA key of ``pem``, one of the lab's own (vault, token-signing, vTPM keys: the lab
    generated every one, it imports none). Each PEM is loaded once, without OpenSSL's RSA
    consistency check (60–180 ms a key, as long as generating it)."""
    key = serialization.load_pem_private_key(pem, password=None,
                                             unsafe_skip_rsa_key_validation=True)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("expected an RSA private key")
    return key


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


@dataclass
class IssuedCert:
    """A certificate issued by the lab CA with its private key."""

    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    chain: list[x509.Certificate]  # issuers above the leaf, root last

    def chain_pem(self) -> bytes:
        certs = [self.cert, *self.chain]
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)

    def key_pem(self) -> bytes:
        return private_pem(self.key)


class LabCA:
    """A root CA stored under ``directory`` (``ca.key`` 0600, ``ca.pem``), created on first use."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._shared_lock = threading.Lock()  # a shared key is made once, read when whole
        key_path, cert_path = directory / "ca.key", directory / "ca.pem"
        if key_path.exists() and cert_path.exists():
            self.key = load_private(key_path.read_bytes())
            self.cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        else:
            self.key, self.cert = self._create_root()
            write_private(key_path, private_pem(self.key))
            cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    @property
    def bundle_path(self) -> Path:
        """PEM bundle to trust (the root only)."""
        return self.directory / "ca.pem"

    @staticmethod
    def _create_root() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cotenant lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, "cotenant lab root CA"),
        ])
        now = dt.datetime.now(dt.UTC)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        return key, cert

    def issue(self, common_name: str, names: list[str], *,
              key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None = None) -> IssuedCert:
        """Issue a server certificate for ``names`` (DNS names or IP addresses).

        ``key`` defaults to a fresh EC P-256 key (TLS); pass an RSA key for RS256 signing.
        """
        key = key or ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        ca_ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.SubjectAlternativeName([_san(n) for n in names]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False,
                    key_encipherment=isinstance(key, rsa.RSAPrivateKey),
                    data_encipherment=False, key_agreement=False, key_cert_sign=False,
                    crl_sign=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return IssuedCert(key=key, cert=cert, chain=[self.cert])

    def shared_rsa_key(self, stem: str) -> rsa.RSAPrivateKey:
        """An RSA key kept in the CA directory (``<stem>.key``), created once."""
        path = self.directory / f"{stem}.key"
        with self._shared_lock:
            if not path.exists():
                write_private(path, private_pem(rsa.generate_private_key(
                    public_exponent=65537, key_size=2048)))
            return load_private(path.read_bytes())

    def issue_to_files(self, stem: str, names: list[str]) -> tuple[Path, Path]:
        """Issue (once) a TLS certificate stored as ``<stem>.pem`` / ``<stem>.key``."""
        cert_path, key_path = self.directory / f"{stem}.pem", self.directory / f"{stem}.key"
        if not (cert_path.exists() and key_path.exists()):
            issued = self.issue(names[0], names)
            write_private(key_path, issued.key_pem())
            cert_path.write_bytes(issued.chain_pem())
        return cert_path, key_path
