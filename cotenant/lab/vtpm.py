"""The software vTPM of a simulated CVM: the client side of the AzureGuest attestation flow.

The guest agent's ``lab`` backend uses it exactly like the real vTPM/HCL library::

    from cotenant.lab.vtpm import SoftwareVTPM

    vtpm = SoftwareVTPM.from_environment()          # reads COTENANT_LAB_VTPM_DIR
    token = vtpm.attest(maa_url, nonce)             # AzureGuest flow -> MAA JWT (str)
    key_material = unwrap_key_hsm(key_hsm, vtpm.decrypt)   # cotenant.crypto.skr

* ``attest(maa_url=None, nonce=None, runtime_data=None) -> str`` posts the evidence to
  ``<maa_url>/attest/AzureGuest?api-version=2020-10-01`` (``maa_url`` defaults to
  ``COTENANT_LAB_ATTESTATION_URL``), decrypts the encrypted response envelope with the ephemeral
  key and returns the attestation token. ``runtime_data`` (a dict, or base64 of a JSON object
  as the ACI sidecar API passes it) is merged into the client payload next to ``nonce`` and
  so appears under the token's ``x-ms-runtime.client-payload``.
* ``decrypt(ciphertext, padding) -> bytes`` decrypts with the per-boot ephemeral key
  (``TpmEphemeralEncryptionKey``), the key a released ``key_hsm`` is wrapped to.
* ``encryption_key`` is its public half.

The VM directory (created by the lab) holds ``hardware.key`` — the VM's attestation
(hardware) key, EC P-384 like a VCEK, whose public half the lab's attestation service
registered when it created the VM — ``ephemeral.key`` (recreated at every boot by
:meth:`SoftwareVTPM.new_boot`) and ``vm.json``.
HTTP goes through ``requests`` and so honours ``HTTPS_PROXY``/``REQUESTS_CA_BUNDLE`` set by
the lab for the VM process.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding

from cotenant.lab.ca import load_private, private_pem, write_private
from cotenant.lab.evidence import EvidenceError, build_attestation_info, open_token
from cotenant.lab.jose import ec_jwk
from cotenant.lab.keypool import POOL

ENV_DIR = "COTENANT_LAB_VTPM_DIR"
ENV_ATTESTATION_URL = "COTENANT_LAB_ATTESTATION_URL"
EPHEMERAL_KID = "TpmEphemeralEncryptionKey"
API_VERSION = "2020-10-01"


class AttestationFailed(RuntimeError):
    """The attestation service refused the evidence or could not be reached."""


def _runtime_payload(runtime_data: dict[str, Any] | str | bytes | None) -> dict[str, Any]:
    if runtime_data is None:
        return {}
    if isinstance(runtime_data, dict):
        return runtime_data
    try:
        decoded = json.loads(base64.b64decode(runtime_data))
    except ValueError:
        raise ValueError("runtime_data must be a dict or base64 of a JSON object") from None
    if not isinstance(decoded, dict):
        raise ValueError("runtime_data must be a JSON object")
    return decoded


class SoftwareVTPM:
    """The vTPM of one simulated VM, backed by the files in its directory."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        try:
            self.info: dict[str, Any] = json.loads((self.directory / "vm.json").read_text())
            hardware = serialization.load_pem_private_key(
                (self.directory / "hardware.key").read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"no simulated vTPM in {self.directory}: {exc}") from None
        if not isinstance(hardware, ec.EllipticCurvePrivateKey):
            raise RuntimeError(f"the hardware key in {self.directory} is not an EC key")
        self._hardware = hardware
        ephemeral = self.directory / "ephemeral.key"
        if not ephemeral.exists():
            self.new_boot(self.directory)
        self._ephemeral = load_private(ephemeral.read_bytes())

    @classmethod
    def from_environment(cls) -> SoftwareVTPM:
        """The vTPM of the VM this process runs in (``COTENANT_LAB_VTPM_DIR``)."""
        directory = os.environ.get(ENV_DIR)
        if not directory:
            raise RuntimeError(f"{ENV_DIR} is not set: not running in a lab VM")
        return cls(directory)

    @classmethod
    def provision(cls, directory: Path, *, name: str,
                  vm_unique_id: str) -> ec.EllipticCurvePublicKey:
        """Create a VM's vTPM (the lab does this at VM creation); returns the hardware key."""
        key = ec.generate_private_key(ec.SECP384R1())
        write_private(directory / "hardware.key", private_pem(key))
        (directory / "vm.json").write_text(json.dumps({"name": name,
                                                       "vmUniqueId": vm_unique_id}))
        return key.public_key()

    @staticmethod
    def new_boot(directory: Path) -> None:
        """Recreate the ephemeral encryption key of the VM in ``directory`` (a new boot)."""
        write_private(directory / "ephemeral.key", POOL.private_pem(2048))

    @property
    def vm_unique_id(self) -> str:
        return str(self.info["vmUniqueId"])

    @property
    def encryption_key(self) -> rsa.RSAPublicKey:
        return self._ephemeral.public_key()

    def decrypt(self, ciphertext: bytes, padding: asym_padding.AsymmetricPadding) -> bytes:
        """Decrypt with the ephemeral key (never exported)."""
        return self._ephemeral.decrypt(ciphertext, padding)

    def evidence(self, nonce: str | None = None,
                 runtime_data: dict[str, Any] | str | bytes | None = None) -> str:
        """The ``AttestationInfo`` value for one attestation."""
        payload = {**_runtime_payload(runtime_data)}
        if nonce is not None:
            payload["nonce"] = nonce
        runtime = {
            "keys": [ec_jwk(self._hardware.public_key(), kid="HCLAkPub", key_ops=["sign"])],
            "vm-configuration": {"vmUniqueId": self.vm_unique_id},
        }
        return build_attestation_info(
            vm_unique_id=self.vm_unique_id, hardware_key=self._hardware,
            enc_key=self.encryption_key, client_payload=payload, runtime_data=runtime,
        )

    def attest(self, maa_url: str | None = None, nonce: str | None = None,
               runtime_data: dict[str, Any] | str | bytes | None = None,
               *, timeout: float = 30.0, session: requests.Session | None = None) -> str:
        """Run the AzureGuest flow against ``maa_url``; returns the attestation JWT.

        ``session`` (optional) carries proxy and CA settings; they win over the environment.
        """
        options = {"verify": session.verify} if session is not None else {}
        base = (maa_url or os.environ.get(ENV_ATTESTATION_URL, "")).rstrip("/")
        if not base.startswith("https://"):
            raise AttestationFailed(f"attestation URL must be https, got {base!r}")
        try:
            response = (session or requests.Session()).post(
                f"{base}/attest/AzureGuest", params={"api-version": API_VERSION},
                json={"AttestationInfo": self.evidence(nonce, runtime_data)}, timeout=timeout,
                **options,
            )
        except requests.RequestException as exc:
            raise AttestationFailed(f"attestation service unreachable: "
                                    f"{type(exc).__name__}") from None
        if response.status_code != 200:
            raise AttestationFailed(f"attestation refused ({response.status_code}): "
                                    f"{response.text[:300]}")
        try:
            return open_token(response.json()["token"], self.decrypt)
        except (ValueError, KeyError, EvidenceError) as exc:
            raise AttestationFailed(str(exc)) from None
