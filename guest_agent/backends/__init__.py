"""Attestation backends: where the evidence comes from and where the ephemeral key lives.

A backend proves the VM to the attestation service and holds the private half of the
ephemeral encryption key that the resulting token binds (``x-ms-runtime.keys``,
``TpmEphemeralEncryptionKey``). Key Vault wraps released keys to that key, so only the
backend can unwrap them. Everything else in the agent is backend-agnostic.

- ``lab``: the lab's software vTPM (``cotenant.lab.vtpm``), speaking the AzureGuest protocol
  to the lab's attestation service.
- ``tpm``: the VM's vTPM over ``/dev/tpmrm0`` (a later issue); registered by adding a
  factory to ``BACKENDS``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from cryptography.hazmat.primitives.asymmetric.padding import AsymmetricPadding

if TYPE_CHECKING:
    from guest_agent.config import AgentConfig


class AttestationError(RuntimeError):
    """Attestation failed; the message is safe to report (no secrets)."""


@runtime_checkable
class AttestationBackend(Protocol):
    """What the agent needs from a TEE."""

    name: str

    def attest(self, nonce: str) -> str:
        """Attest with ``nonce`` in the client payload; return the attestation token (JWT).

        The token's ``x-ms-runtime.keys`` binds the ephemeral encryption key that ``decrypt``
        uses. Raises ``AttestationError``.
        """
        ...

    def decrypt(self, ciphertext: bytes, padding: AsymmetricPadding) -> bytes:
        """RSA-decrypt with the private half of the ephemeral key bound into the token."""
        ...

    def close(self) -> None:
        """Release the device/handles; the ephemeral key is unusable afterwards."""
        ...


# name -> "module:factory"; a factory takes the AgentConfig and returns a backend.
BACKENDS: dict[str, str] = {
    "lab": "guest_agent.backends.lab:create",
}


def create_backend(config: AgentConfig) -> AttestationBackend:
    target = BACKENDS.get(config.backend)
    if target is None:
        raise AttestationError(
            f"attestation backend {config.backend!r} is not available in this build"
        )
    module, _, attr = target.partition(":")
    factory: Callable[[AgentConfig], AttestationBackend] = getattr(
        importlib.import_module(module), attr
    )
    return factory(config)
