"""KeyVaultWrapper/KeyVaultUnwrapper through the real azure-keyvault-keys clients, pointed at a
minimal Key Vault endpoint (HTTPS on 127.0.0.1 with the test CA, bearer challenge included)."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from cotenant.crypto.encoding import b64url_decode, b64url_encode
from cotenant.crypto.envelope import open_sealed, read_header, seal
from cotenant.crypto.errors import WrongKeyError
from cotenant.crypto.wrapping import KeyVaultUnwrapper, KeyVaultWrapper, PrivateKeyUnwrapper
from tests.crypto.conftest import rsa_key
from tests.crypto.https_server import HttpsJsonServer
from tests.crypto.maa_server import public_jwk
from tests.crypto.pki import Pki

VERSION = "5d2b0e1c9a7f4e3d8c6b5a4f3e2d1c0b"
OAEP256 = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
CHALLENGE = (
    'Bearer authorization="https://login.microsoftonline.com/tenant", '
    'resource="https://vault.azure.net"'
)


class Credential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("test-token", int(time.time()) + 3600)


class Vault:
    """Keys ``kek`` (readable) and ``wrap-only`` (GET forbidden: the SDK must call wrapKey)."""

    def __init__(self) -> None:
        self.key = rsa_key(2048)
        self.calls: list[str] = []
        self.url = ""

    def handle(self, method: str, path: str, headers: dict, body: Any):
        if headers.get("Authorization") != "Bearer test-token":
            return (
                401,
                {"error": {"code": "Unauthorized", "message": "no token"}},
                {"WWW-Authenticate": CHALLENGE},
            )
        match = re.fullmatch(r"/keys/([\w-]+)/?(\w*)(/\w+)?(\?.*)?", path)
        if not match:
            return 404, {"error": {"code": "NotFound", "message": path}}, {}
        name, _, operation = match.group(1), match.group(2), (match.group(3) or "")[1:]
        kid = f"{self.url}/keys/{name}/{VERSION}"
        self.calls.append(f"{method} {name} {operation}".strip())
        if method == "GET":
            if name == "wrap-only":
                return 403, {"error": {"code": "Forbidden", "message": "no get"}}, {}
            return (
                200,
                {
                    "key": dict(public_jwk(self.key, kid), key_ops=["wrapKey"]),
                    "attributes": {"enabled": True},
                },
                {},
            )
        value = b64url_decode(body["value"])
        if body.get("alg") != "RSA-OAEP-256":
            return 400, {"error": {"code": "BadParameter", "message": "alg"}}, {}
        if operation == "wrapkey":
            return (
                200,
                {"kid": kid, "value": b64url_encode(self.key.public_key().encrypt(value, OAEP256))},
                {},
            )
        if operation == "unwrapkey":
            try:
                return (
                    200,
                    {"kid": kid, "value": b64url_encode(self.key.decrypt(value, OAEP256))},
                    {},
                )
            except ValueError:
                return 400, {"error": {"code": "BadParameter", "message": "decrypt"}}, {}
        return 404, {"error": {"code": "NotFound", "message": path}}, {}


@pytest.fixture(scope="module")
def vault(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Vault, dict]]:
    state = Vault()
    server = HttpsJsonServer(
        pki, rsa_key(2048, slot=5), tmp_path_factory.mktemp("kv"), state.handle
    )
    state.url = server.url
    yield state, {"connection_verify": server.ca_bundle, "verify_challenge_resource": False}
    server.stop()


def _seal(wrapper, key_id: str) -> bytes:
    dst = io.BytesIO()
    seal(io.BytesIO(b"payload" * 100), dst, key_id=key_id, wrapper=wrapper, chunk_size=128)
    return dst.getvalue()


def test_local_wrap_with_fetched_public_key_records_versioned_id(vault) -> None:
    state, kwargs = vault
    wrapper = KeyVaultWrapper(Credential(), local=True, **kwargs)
    sealed = _seal(wrapper, f"{state.url}/keys/kek")
    _seal(wrapper, f"{state.url}/keys/kek")  # the public key is fetched once
    assert state.calls.count("GET kek") == 1
    assert "POST kek wrapkey" not in state.calls
    header = read_header(io.BytesIO(sealed))
    assert header.key_id == f"{state.url}/keys/kek/{VERSION}"
    reader = open_sealed(io.BytesIO(sealed), PrivateKeyUnwrapper(state.key))
    assert reader.read() == b"payload" * 100


def test_vault_wrap_and_unwrap(vault) -> None:
    state, kwargs = vault
    wrapper = KeyVaultWrapper(Credential(), local=False, **kwargs)
    with pytest.raises(ValueError, match="full versioned key id"):
        _seal(wrapper, f"{state.url}/keys/wrap-only")
    sealed = _seal(wrapper, f"{state.url}/keys/wrap-only/{VERSION}")
    assert "POST wrap-only wrapkey" in state.calls
    assert read_header(io.BytesIO(sealed)).key_id == f"{state.url}/keys/wrap-only/{VERSION}"
    reader = open_sealed(io.BytesIO(sealed), KeyVaultUnwrapper(Credential(), **kwargs))
    assert reader.read() == b"payload" * 100


def test_vault_wrap_resolves_the_current_version(vault) -> None:
    state, kwargs = vault
    sealed = _seal(KeyVaultWrapper(Credential(), local=False, **kwargs), f"{state.url}/keys/kek")
    assert read_header(io.BytesIO(sealed)).key_id == f"{state.url}/keys/kek/{VERSION}"


def test_vault_refusing_unwrap_is_wrong_key(vault) -> None:
    state, kwargs = vault
    unwrapper = KeyVaultUnwrapper(Credential(), **kwargs)
    with pytest.raises(WrongKeyError, match="refused"):
        unwrapper(f"{state.url}/keys/wrap-only/{VERSION}", "RSA-OAEP-256", b"\x00" * 256)
