"""The claims of a CVM guest attestation token, derived from the simulated VM's configuration.

The layout follows real MAA ``azurevm`` guest tokens (see ``samples/maa-cvm-guest-token*``):
VM facts at the top level, SEV-SNP facts under ``x-ms-isolation-tee`` (absent for VMs that are
not confidential), the guest's ephemeral key and client payload under ``x-ms-runtime``.

VM kinds: ``confidential`` (azure-compliant-cvm, not debuggable), ``debuggable`` (SEV-SNP with
the debug policy bit set), ``trusted-launch`` (vTPM + secure boot, no TEE) and ``standard``
(no secure boot, no TEE).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

from cotenant.lab.evidence import VerifiedEvidence
from cotenant.lab.jose import rsa_jwk
from cotenant.lab.state import Vm

VM_KINDS = ("confidential", "debuggable", "trusted-launch", "standard")
TOKEN_LIFETIME = 8 * 3600
POLICY_HASH = "wm9mHlvTU82e8UqoOy1Yj1FBRSNkfe99-69IYDq9eWs"


def _measurement(vm: Vm, label: str, size: int) -> str:
    return hashlib.sha512(f"{label}:{vm.kind}".encode()).hexdigest()[: size * 2]


def _isolation_tee(vm: Vm, evidence: VerifiedEvidence) -> dict[str, Any]:
    debuggable = vm.kind == "debuggable"
    report_data = hashlib.sha256(repr(sorted(evidence.runtime_data)).encode()).hexdigest()
    return {
        "x-ms-attestation-type": "sevsnpvm",
        "x-ms-compliance-status": "azure-compliant-cvm",
        "x-ms-runtime": {
            "keys": evidence.runtime_data.get("keys", []),
            "vm-configuration": {
                "console-enabled": True, "current-time": int(time.time()),
                "secure-boot": True, "tpm-enabled": True, "vmUniqueId": vm.vm_unique_id,
            },
        },
        "x-ms-sevsnpvm-authorkeydigest": "0" * 96,
        "x-ms-sevsnpvm-bootloader-svn": 3,
        "x-ms-sevsnpvm-familyId": "01000000000000000000000000000000",
        "x-ms-sevsnpvm-guestsvn": 2,
        "x-ms-sevsnpvm-hostdata": "0" * 64,
        "x-ms-sevsnpvm-idkeydigest": _measurement(vm, "idkey", 48),
        "x-ms-sevsnpvm-imageId": "02000000000000000000000000000000",
        "x-ms-sevsnpvm-is-debuggable": debuggable,
        "x-ms-sevsnpvm-launchmeasurement": _measurement(vm, "launch", 48),
        "x-ms-sevsnpvm-microcode-svn": 115,
        "x-ms-sevsnpvm-migration-allowed": False,
        "x-ms-sevsnpvm-reportdata": report_data + "0" * 64,
        "x-ms-sevsnpvm-reportid": secrets.token_hex(32),
        "x-ms-sevsnpvm-smt-allowed": True,
        "x-ms-sevsnpvm-snpfw-svn": 8,
        "x-ms-sevsnpvm-tee-svn": 0,
        "x-ms-sevsnpvm-vmpl": 0,
    }


def guest_claims(vm: Vm, issuer: str, evidence: VerifiedEvidence) -> dict[str, Any]:
    """The token payload for ``vm`` attested by ``issuer`` with verified ``evidence``."""
    now = int(time.time())
    secure_boot = vm.kind != "standard"
    claims: dict[str, Any] = {
        "exp": now + TOKEN_LIFETIME, "iat": now, "iss": issuer, "jti": secrets.token_hex(32),
        "nbf": now, "secureboot": secure_boot,
        "x-ms-attestation-type": "azurevm",
        "x-ms-azurevm-attestation-protocol-ver": "2.0",
        "x-ms-azurevm-attested-pcrs": [0, 1, 2, 3, 4, 5, 6, 7],
        "x-ms-azurevm-bootdebug-enabled": False,
        "x-ms-azurevm-dbvalidated": secure_boot,
        "x-ms-azurevm-dbxvalidated": secure_boot,
        "x-ms-azurevm-debuggersdisabled": vm.kind != "debuggable",
        "x-ms-azurevm-default-securebootkeysvalidated": secure_boot,
        "x-ms-azurevm-elam-enabled": False,
        "x-ms-azurevm-flightsigning-enabled": False,
        "x-ms-azurevm-hvci-policy": 0,
        "x-ms-azurevm-hypervisordebug-enabled": False,
        "x-ms-azurevm-is-windows": False,
        "x-ms-azurevm-kerneldebug-enabled": vm.kind == "debuggable",
        "x-ms-azurevm-osbuild": "NotApplication",
        "x-ms-azurevm-osdistro": "Ubuntu",
        "x-ms-azurevm-ostype": "Linux",
        "x-ms-azurevm-osversion-major": 22,
        "x-ms-azurevm-osversion-minor": 4,
        "x-ms-azurevm-signingdisabled": True,
        "x-ms-azurevm-testsigning-enabled": False,
        "x-ms-azurevm-vmid": vm.vm_unique_id,
        "x-ms-policy-hash": POLICY_HASH,
        "x-ms-runtime": {
            "client-payload": evidence.client_payload,
            "keys": [rsa_jwk(evidence.enc_key, kid="TpmEphemeralEncryptionKey",
                             key_ops=["encrypt"])],
        },
        "x-ms-ver": "1.0",
    }
    if vm.kind in ("confidential", "debuggable"):
        claims["x-ms-isolation-tee"] = _isolation_tee(vm, evidence)
    return claims
