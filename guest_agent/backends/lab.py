"""The ``lab`` backend: the simulated CVM's software vTPM (``cotenant.lab.vtpm``).

The lab starts the agent with ``COTENANT_LAB_VTPM_DIR`` pointing at the VM's vTPM files (its
hardware key and per-boot ephemeral key); the vTPM speaks the AzureGuest protocol to the
configured attestation endpoint and decrypts with the ephemeral key the token binds.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.padding import AsymmetricPadding

from guest_agent.backends import AttestationError
from guest_agent.config import AgentConfig


class LabBackend:
    name = "lab"

    def __init__(self, endpoint: str) -> None:
        try:
            from cotenant.lab.vtpm import SoftwareVTPM
        except ImportError:
            raise AttestationError(
                "the lab backend needs cotenant.lab (development installs only)") from None
        try:
            self._vtpm = SoftwareVTPM.from_environment()
        except RuntimeError as exc:
            raise AttestationError(str(exc)) from None
        self._endpoint = endpoint

    def attest(self, nonce: str) -> str:
        from cotenant.lab.vtpm import AttestationFailed

        try:
            return self._vtpm.attest(self._endpoint, nonce)
        except (AttestationFailed, ValueError) as exc:
            raise AttestationError(str(exc)) from None

    def decrypt(self, ciphertext: bytes, padding: AsymmetricPadding) -> bytes:
        return self._vtpm.decrypt(ciphertext, padding)

    def close(self) -> None:
        self._vtpm = None  # type: ignore[assignment]


def create(config: AgentConfig) -> LabBackend:
    return LabBackend(config.attestation.endpoint)
