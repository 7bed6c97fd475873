"""Lab vault URLs: the real ``<name>.vault.azure.net`` names (reached through the lab proxy).

Kept apart from the vault service so clients can name vaults without importing the server."""

from __future__ import annotations

VAULT_SUFFIX = ".vault.azure.net"


def vault_url(name: str) -> str:
    return f"https://{name}{VAULT_SUFFIX}"
