"""Key Vault data-plane operations with azure-keyvault-keys (shared by both backends)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from azure.core.credentials import TokenCredential
from azure.keyvault.keys import KeyClient, KeyReleasePolicy, KeyVaultKey

from cotenant.cloud.base import KeyInfo, NotFoundError
from cotenant.cloud.errors import cloud_errors
from cotenant.plan import APP_KEY_OPS

_API_VERSION = "7.5"


def encode_policy(policy: dict[str, Any]) -> KeyReleasePolicy:
    data = json.dumps(policy, separators=(",", ":"), sort_keys=True).encode()
    return KeyReleasePolicy(data, content_type="application/json; charset=utf-8")


def decode_policy(policy: KeyReleasePolicy | None) -> dict[str, Any] | None:
    if policy is None or not policy.encoded_policy:
        return None
    raw = policy.encoded_policy
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def key_info(vault_name: str, key: KeyVaultKey) -> KeyInfo:
    return KeyInfo(
        vault_name=vault_name,
        name=key.name,
        kid=key.id,
        version=key.properties.version or "",
        key_type=str(key.key_type),
        exportable=bool(key.properties.exportable),
        release_policy=decode_policy(key.properties.release_policy),
    )


class KeyVaultKeys:
    """Idempotent key operations on any vault reachable at ``vault_url(name)``."""

    def __init__(self, credential: TokenCredential, vault_url: Callable[[str], str],
                 **client_options: Any) -> None:
        self._credential = credential
        self._vault_url = vault_url
        self._options = client_options
        self._clients: dict[str, KeyClient] = {}

    def client(self, vault_name: str) -> KeyClient:
        if vault_name not in self._clients:
            self._clients[vault_name] = KeyClient(
                self._vault_url(vault_name), self._credential,
                api_version=_API_VERSION, **self._options,
            )
        return self._clients[vault_name]

    def _create(self, vault_name: str, key_name: str, release_policy: dict[str, Any],
                size: int) -> KeyInfo:
        # Only public-key operations: Key Vault must never decrypt or unwrap with an app key
        # for anyone (defence in depth: the operator's "cotenant Key Operator" role has no
        # decrypt, unwrap or release either); the private half is used only inside an attested
        # CVM after release.
        with cloud_errors("create key", f"{vault_name}/{key_name}"):
            key = self.client(vault_name).create_rsa_key(
                key_name, size=size, hardware_protected=True, exportable=True,
                key_operations=list(APP_KEY_OPS),
                release_policy=encode_policy(release_policy),
            )
        return key_info(vault_name, key)

    def get_key(self, vault_name: str, key_name: str) -> KeyInfo:
        with cloud_errors("read key", f"{vault_name}/{key_name}"):
            return key_info(vault_name, self.client(vault_name).get_key(key_name))

    def ensure_key(self, vault_name: str, key_name: str, *, release_policy: dict[str, Any],
                   size: int = 2048) -> KeyInfo:
        try:
            current = self.get_key(vault_name, key_name)
        except NotFoundError:
            return self._create(vault_name, key_name, release_policy, size)
        if current.release_policy is None:
            return self.set_release_policy(vault_name, key_name, release_policy)
        return current

    def new_key_version(self, vault_name: str, key_name: str, *,
                        release_policy: dict[str, Any], after_version: str,
                        size: int = 2048) -> KeyInfo:
        current = self.get_key(vault_name, key_name)
        if current.version != after_version:
            return current  # already rotated by an earlier attempt of this step
        return self._create(vault_name, key_name, release_policy, size)

    def set_release_policy(self, vault_name: str, key_name: str,
                           release_policy: dict[str, Any]) -> KeyInfo:
        with cloud_errors("set release policy", f"{vault_name}/{key_name}"):
            key = self.client(vault_name).update_key_properties(
                key_name, release_policy=encode_policy(release_policy))
        return key_info(vault_name, key)


class DataPlaneKeys:
    """The key operations of a cloud backend: both backends use the same Key Vault data plane
    (the lab emulates its REST API), so they delegate to one ``KeyVaultKeys``."""

    _keys: KeyVaultKeys

    def ensure_key(self, vault_name: str, key_name: str, *, release_policy: dict[str, Any],
                   size: int = 2048) -> KeyInfo:
        return self._keys.ensure_key(vault_name, key_name, release_policy=release_policy,
                                     size=size)

    def get_key(self, vault_name: str, key_name: str) -> KeyInfo:
        return self._keys.get_key(vault_name, key_name)

    def new_key_version(self, vault_name: str, key_name: str, *,
                        release_policy: dict[str, Any], after_version: str) -> KeyInfo:
        return self._keys.new_key_version(vault_name, key_name, release_policy=release_policy,
                                          after_version=after_version)

    def set_release_policy(self, vault_name: str, key_name: str,
                           release_policy: dict[str, Any]) -> KeyInfo:
        return self._keys.set_release_policy(vault_name, key_name, release_policy)
