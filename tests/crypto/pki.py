"""A throwaway PKI for tests: root CA -> intermediate -> server certificate for a host."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = dt.datetime.now(dt.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject, subject_key, issuer, issuer_key, *, ca: bool, host: str | None = None):
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
    else:
        try:
            san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            san = x509.DNSName(host)
        builder = (
            builder.add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .add_extension(
                x509.KeyUsage(True, False, True, False, False, False, False, False, False),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        )
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class Pki:
    root: x509.Certificate
    root_key: ec.EllipticCurvePrivateKey
    intermediate: x509.Certificate
    intermediate_key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, name: str = "Test") -> Pki:
        root_key = ec.generate_private_key(ec.SECP256R1())
        root = _cert(f"{name} Root CA", root_key, f"{name} Root CA", root_key, ca=True)
        inter_key = ec.generate_private_key(ec.SECP256R1())
        inter = _cert(f"{name} Issuing CA", inter_key, f"{name} Root CA", root_key, ca=True)
        return cls(root, root_key, inter, inter_key)

    def server_cert(self, host: str, key: rsa.RSAPrivateKey) -> x509.Certificate:
        return _cert(
            host,
            key,
            self.intermediate.subject.rfc4514_string().removeprefix("CN="),
            self.intermediate_key,
            ca=False,
            host=host,
        )

    def chain(self, host: str, key: rsa.RSAPrivateKey) -> list[x509.Certificate]:
        return [self.server_cert(host, key), self.intermediate]
