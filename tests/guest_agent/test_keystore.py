"""The in-memory key store holds only allow-listed keys (defence in depth behind the agent)."""

from __future__ import annotations

import os

import pytest

from cotenant.crypto.skr import ReleasedKey
from guest_agent.config import KeyRef
from guest_agent.keystore import KeyStore

OWN = KeyRef(vault_url="https://contoso-kv.vault.azure.net", name="contoso-secret-key")
PROBE = KeyRef(vault_url="https://fabrikam-kv.vault.azure.net", name="fabrikam-secret-key")


def _released(ref: KeyRef) -> ReleasedKey:
    return ReleasedKey(kid=f"{ref.kid}/v1", version="v1", kty="oct-HSM", key=os.urandom(32),
                       release_policy=None, attributes={})


def test_a_key_outside_the_allow_list_is_never_kept() -> None:
    store = KeyStore([OWN])
    store.put(OWN, _released(OWN))
    with pytest.raises(KeyError, match="not in the allow-list"):
        store.put(PROBE, _released(PROBE))
    assert store.get(PROBE) is None
    assert [s["name"] for s in store.status()] == ["contoso-secret-key"]
