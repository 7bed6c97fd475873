"""The AzureGuest protocol in the lab: what a simulated CVM sends and how the lab checks it.

The request has the real shape — ``{"AttestationInfo": base64url(JSON)}`` with
``AttestationProtocolVersion``, OS fields, ``TcgLogs``, ``ClientPayload``, ``TpmInfo`` and
``IsolationInfo`` — but the hardware statements are the lab's: ``TpmInfo.PcrQuote`` is a JSON
quote naming the VM (``vmUniqueId``), its PCRs, a timestamp and a SHA-256 digest binding the
client payload, the ephemeral encryption key (``EncKeyPub``) and the HCL runtime data; it is
signed (``PcrSignature``, ECDSA P-384/SHA-384, like a VCEK) by the VM's hardware key, whose
public half the lab registered when it created the VM (``AikPub`` must match it).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cotenant.crypto.encoding import b64_decode_any, b64url_decode, b64url_encode

PROTOCOL_VERSION = "2.0"
PCRS = list(range(8))
MAX_QUOTE_AGE = 300.0
_ECDSA = ec.ECDSA(hashes.SHA384())


class EvidenceError(ValueError):
    """The evidence is malformed, unknown or forged (message says which)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def public_der(key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _binding(client_payload: bytes, enc_key_der: bytes, runtime_data: bytes) -> str:
    digest = hashlib.sha256()
    for part in (client_payload, enc_key_der, runtime_data):
        digest.update(len(part).to_bytes(4, "big") + part)
    return digest.hexdigest()


def build_attestation_info(*, vm_unique_id: str, hardware_key: ec.EllipticCurvePrivateKey,
                           enc_key: rsa.RSAPublicKey, client_payload: dict[str, Any],
                           runtime_data: dict[str, Any]) -> str:
    """The ``AttestationInfo`` value (base64url JSON) a simulated guest sends."""
    payload = json.dumps(client_payload, separators=(",", ":")).encode()
    runtime = json.dumps(runtime_data, separators=(",", ":")).encode()
    enc_der = public_der(enc_key)
    quote = json.dumps({
        "vmUniqueId": vm_unique_id, "pcrs": PCRS, "time": time.time(),
        "binding": _binding(payload, enc_der, runtime),
    }, separators=(",", ":")).encode()
    info = {
        "AttestationProtocolVersion": PROTOCOL_VERSION,
        "OSType": "Linux", "OSDistro": "Ubuntu", "OSVersionMajor": 22, "OSVersionMinor": 4,
        "OSBuild": "NotApplication",
        "TcgLogs": _b64(json.dumps({"pcrs": PCRS}).encode()),
        "ClientPayload": b64url_encode(payload),
        "TpmInfo": {
            "AikPub": _b64(public_der(hardware_key.public_key())),
            "PcrSet": PCRS,
            "PcrQuote": _b64(quote),
            "PcrSignature": _b64(hardware_key.sign(quote, _ECDSA)),
            "EncKeyPub": _b64(enc_der),
        },
        "IsolationInfo": {"Type": "SevSnp",
                          "Evidence": {"RunTimeData": b64url_encode(runtime)}},
    }
    return b64url_encode(json.dumps(info, separators=(",", ":")).encode())


@dataclass
class VerifiedEvidence:
    vm_unique_id: str
    client_payload: dict[str, Any]
    runtime_data: dict[str, Any]
    enc_key: rsa.RSAPublicKey


def _field(obj: Any, *path: str) -> Any:
    for name in path:
        if not isinstance(obj, dict) or name not in obj:
            raise EvidenceError(f"evidence lacks {'.'.join(path)}")
        obj = obj[name]
    return obj


def quoted_vm(attestation_info: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Decode the request and return ``(info, quote)`` (unverified) to find the VM."""
    try:
        info = json.loads(b64url_decode(attestation_info))
        quote = json.loads(b64_decode_any(_field(info, "TpmInfo", "PcrQuote")))
    except (ValueError, TypeError) as exc:
        raise EvidenceError(f"AttestationInfo is malformed: {exc}") from None
    if not isinstance(info, dict) or not isinstance(quote, dict):
        raise EvidenceError("AttestationInfo is malformed")
    if not isinstance(quote.get("vmUniqueId"), str):
        raise EvidenceError("the quote names no VM")
    return info, quote


def verify_attestation_info(info: dict[str, Any], quote: dict[str, Any],
                            registered_key_pem: str) -> VerifiedEvidence:
    """Check the quote signature against the registered hardware key and the bindings."""
    try:
        registered = serialization.load_pem_public_key(registered_key_pem.encode())
        aik = b64_decode_any(_field(info, "TpmInfo", "AikPub"))
        quote_raw = b64_decode_any(_field(info, "TpmInfo", "PcrQuote"))
        signature = b64_decode_any(_field(info, "TpmInfo", "PcrSignature"))
        enc_der = b64_decode_any(_field(info, "TpmInfo", "EncKeyPub"))
        payload = b64url_decode(_field(info, "ClientPayload"))
        runtime = b64url_decode(_field(info, "IsolationInfo", "Evidence", "RunTimeData"))
    except (ValueError, TypeError) as exc:
        raise EvidenceError(f"evidence field is malformed: {exc}") from None
    if not isinstance(registered, ec.EllipticCurvePublicKey) or aik != public_der(registered):
        raise EvidenceError("the attestation key is not the one registered for this VM")
    try:
        registered.verify(signature, quote_raw, _ECDSA)
    except InvalidSignature:
        raise EvidenceError("the quote signature is not valid") from None
    if quote.get("binding") != _binding(payload, enc_der, runtime):
        raise EvidenceError("the quote does not bind this payload and encryption key")
    quoted_at = quote.get("time")
    if not isinstance(quoted_at, int | float) or isinstance(quoted_at, bool):
        raise EvidenceError("the quote has no timestamp")
    if not -60 <= time.time() - quoted_at <= MAX_QUOTE_AGE:  # NaN fails too
        raise EvidenceError("the quote is stale")
    try:
        enc_key = serialization.load_der_public_key(enc_der)
    except (ValueError, TypeError):
        raise EvidenceError("the encryption key is not a DER public key") from None
    if not isinstance(enc_key, rsa.RSAPublicKey):
        raise EvidenceError("the encryption key is not RSA")
    try:
        client_payload, runtime_data = json.loads(payload), json.loads(runtime)
    except ValueError:
        raise EvidenceError("client payload or runtime data is not JSON") from None
    if not isinstance(client_payload, dict) or not isinstance(runtime_data, dict):
        raise EvidenceError("client payload and runtime data must be JSON objects")
    return VerifiedEvidence(quote["vmUniqueId"], client_payload, runtime_data, enc_key)


# -- the response envelope ------------------------------------------------------------------
_AAD = b"Transport Key"


def seal_token(token: str, enc_key: rsa.RSAPublicKey) -> str:
    """The ``token`` value of an AzureGuest response: the JWT encrypted to the guest's key.

    ``EncryptedInnerKey`` is a fresh AES-256 key under RSAES-PKCS1-v1_5; ``Jwt`` is AES-GCM
    ciphertext (AAD ``"Transport Key"``) with ``EncryptionParams.Iv`` and the tag in
    ``AuthenticationData``; the whole JSON is base64url-encoded.
    """
    inner = AESGCM.generate_key(bit_length=256)
    iv = os.urandom(12)
    sealed = AESGCM(inner).encrypt(iv, token.encode(), _AAD)
    envelope = {
        "EncryptedInnerKey": _b64(enc_key.encrypt(inner, padding.PKCS1v15())),
        "EncryptionParams": {"Iv": _b64(iv)},
        "AuthenticationData": _b64(sealed[-16:]),
        "Jwt": _b64(sealed[:-16]),
    }
    return b64url_encode(json.dumps(envelope, separators=(",", ":")).encode())


def open_token(value: str, rsa_decrypt: Callable[[bytes, padding.AsymmetricPadding], bytes]) -> str:
    """Decrypt an AzureGuest response ``token`` with the ephemeral key's decrypt function."""
    try:
        envelope = json.loads(b64url_decode(value))
        inner = rsa_decrypt(b64_decode_any(envelope["EncryptedInnerKey"]), padding.PKCS1v15())
        iv = b64_decode_any(envelope["EncryptionParams"]["Iv"])
        data = b64_decode_any(envelope["Jwt"]) + b64_decode_any(envelope["AuthenticationData"])
        return AESGCM(inner).decrypt(iv, data, _AAD).decode()
    except (KeyError, TypeError, ValueError, InvalidTag) as exc:
        raise EvidenceError(f"the attestation response envelope is invalid: "
                            f"{type(exc).__name__}") from None
