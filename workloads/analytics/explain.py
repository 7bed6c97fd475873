"""Plain-language explanations of the attestation claims the app shows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

# (claim path, title, explanation); shown in this order, only when the token has the claim.
EXPLAINED: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (
        ("iss",),
        "Attestation service",
        "Who vouches for this VM: the attestation authority that checked the hardware "
        "evidence and signed this token. The app checked the signature itself.",
    ),
    (
        ("x-ms-isolation-tee", "x-ms-attestation-type"),
        "Hardware isolation",
        "The kind of trusted execution environment. 'sevsnpvm' means AMD SEV-SNP: the VM's "
        "memory is encrypted with a key the host, hypervisor and cloud operator never see.",
    ),
    (
        ("x-ms-isolation-tee", "x-ms-compliance-status"),
        "Compliance",
        "'azure-compliant-cvm' means the attestation service found a genuine, correctly "
        "configured Azure Confidential VM. Key release policies require exactly this.",
    ),
    (
        ("x-ms-isolation-tee", "x-ms-sevsnpvm-is-debuggable"),
        "Debuggable",
        "Whether the hardware would let a debugger read the VM's memory. It must be false "
        "for data to be protected.",
    ),
    (
        ("secureboot",),
        "Secure Boot",
        "Only signed boot loaders and kernels could start this VM.",
    ),
    (
        ("x-ms-isolation-tee", "x-ms-sevsnpvm-launchmeasurement"),
        "Launch measurement",
        "A fingerprint of the VM's initial firmware and state, measured by the processor "
        "itself. Any change to what was launched changes this value.",
    ),
    (
        ("x-ms-azurevm-vmid",),
        "VM id",
        "The identity of the virtual machine this token describes.",
    ),
    (
        ("x-ms-runtime", "client-payload", "nonce"),
        "Freshness challenge",
        "A random value this app generated for this check (shared for at most 30 seconds); "
        "seeing it inside the signed token proves the token is fresh, not replayed.",
    ),
    (
        ("iat",),
        "Issued at",
        "When the attestation service issued the token.",
    ),
    (
        ("exp",),
        "Expires at",
        "After this time the token is no longer accepted by Key Vault or by this app.",
    ),
)


def _dig(claims: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = claims
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _display(path: tuple[str, ...], value: Any) -> str:
    if path[-1] in ("iat", "exp") and isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def explain_claims(claims: dict[str, Any]) -> list[dict[str, str]]:
    """The explained claims present in ``claims``: ``{claim, title, value, explanation}``."""
    rows = []
    for path, title, explanation in EXPLAINED:
        value = _dig(claims, path)
        if value is None:
            continue
        rows.append(
            {
                "claim": ".".join(path),
                "title": title,
                "value": _display(path, value),
                "explanation": explanation,
            }
        )
    return rows
