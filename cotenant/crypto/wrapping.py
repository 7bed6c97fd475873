"""Wrapping the per-file data key with a party's key-encryption key (RSA-OAEP-256 only).

A ``KeyWrapper`` turns a data key into a ``WrappedKey`` (the full versioned key id, the
algorithm and the wrapped bytes). Two implementations: ``PublicKeyWrapper`` wraps locally with
the public half of the key (from a PEM file or fetched once from Key Vault), and
``KeyVaultWrapper`` asks Key Vault's ``wrapKey`` operation. An unwrapper is any callable
``(key_id, algorithm, wrapped) -> data key``; ``PrivateKeyUnwrapper`` is the software one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cotenant.crypto.errors import UnsupportedAlgorithmError, WrongKeyError

WRAP_ALGORITHM = "RSA-OAEP-256"
_REFUSED = {
    "RSA1_5": "RSA1_5 (PKCS#1 v1.5) key wrapping is refused: it is open to padding-oracle "
    "attacks and the guest tooling cannot unwrap it; use RSA-OAEP-256",
    "RSA-OAEP": "RSA-OAEP (SHA-1) key wrapping is not accepted; use RSA-OAEP-256",
}


def check_wrap_algorithm(algorithm: str) -> None:
    """Raise ``UnsupportedAlgorithmError`` unless ``algorithm`` is RSA-OAEP-256."""
    if algorithm == WRAP_ALGORITHM:
        return
    message = _REFUSED.get(
        algorithm,
        f"unsupported key wrap algorithm {algorithm!r}; only {WRAP_ALGORITHM} is accepted",
    )
    raise UnsupportedAlgorithmError(message)


def _oaep256() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


@dataclass(frozen=True)
class WrappedKey:
    key_id: str
    algorithm: str
    ciphertext: bytes


class KeyWrapper(Protocol):
    def wrap(self, key_id: str, data_key: bytes) -> WrappedKey: ...


def load_public_key(path: str | Path) -> rsa.RSAPublicKey:
    """An RSA public key from a PEM file (SubjectPublicKeyInfo, PKCS#1 or a certificate)."""
    data = Path(path).read_bytes()
    try:
        key: Any = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            key = x509.load_pem_x509_certificate(data).public_key()
        except ValueError:
            raise ValueError(f"{path} is not a PEM public key or certificate") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError(f"{path} does not hold an RSA public key")
    return key


def load_private_key(path: str | Path, password: bytes | None = None) -> rsa.RSAPrivateKey:
    data = Path(path).read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError):
        raise ValueError(f"{path} is not a readable PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path} does not hold an RSA private key")
    return key


class PublicKeyWrapper:
    """Wrap locally with RSA-OAEP-256 under a known public key (PEM file or Key Vault's)."""

    def __init__(
        self,
        public_key: rsa.RSAPublicKey,
        *,
        key_id: str | None = None,
        algorithm: str = WRAP_ALGORITHM,
    ) -> None:
        check_wrap_algorithm(algorithm)
        if public_key.key_size < 2048:
            raise ValueError("key-encryption keys must be RSA 2048 bits or larger")
        self._public_key = public_key
        self._key_id = key_id

    @classmethod
    def from_pem(cls, path: str | Path, *, key_id: str | None = None) -> PublicKeyWrapper:
        return cls(load_public_key(path), key_id=key_id)

    def wrap(self, key_id: str, data_key: bytes) -> WrappedKey:
        ciphertext = self._public_key.encrypt(data_key, _oaep256())
        return WrappedKey(self._key_id or key_id, WRAP_ALGORITHM, ciphertext)


class KeyVaultWrapper:
    """Wrap with a Key Vault key through azure-keyvault-keys.

    ``local=True`` fetches the public half once (``KeyClient.get_key``) and wraps locally;
    ``local=False`` calls the vault's ``wrapKey`` for every file. Either way the recorded key
    id is the full versioned id the vault reports. ``client_kwargs`` go to the SDK clients
    (e.g. ``connection_verify`` for the lab's CA, ``verify_challenge_resource=False``).
    """

    def __init__(self, credential: Any, *, local: bool = True, **client_kwargs: Any) -> None:
        self._credential = credential
        self._local = local
        self._client_kwargs = client_kwargs
        self._public: dict[str, PublicKeyWrapper] = {}

    def wrap(self, key_id: str, data_key: bytes) -> WrappedKey:
        if self._local:
            return self._public_wrapper(key_id).wrap(key_id, data_key)
        from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm

        versioned = self._versioned(key_id)
        client = CryptographyClient(versioned, self._credential, **self._client_kwargs)
        result = client.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, data_key)
        return WrappedKey(versioned, WRAP_ALGORITHM, result.encrypted_key)

    def _versioned(self, key_id: str) -> str:
        """The full versioned id (the SDK's wrap result only echoes the id it was given)."""
        from azure.core.exceptions import HttpResponseError
        from azure.keyvault.keys import KeyClient, KeyVaultKeyIdentifier

        parsed = KeyVaultKeyIdentifier(key_id)
        if parsed.version:
            return key_id
        client = KeyClient(parsed.vault_url, self._credential, **self._client_kwargs)
        try:
            return str(client.get_key(parsed.name).id)
        except HttpResponseError:
            raise ValueError(
                f"cannot read the current version of {key_id}; pass the full versioned key id"
            ) from None

    def _public_wrapper(self, key_id: str) -> PublicKeyWrapper:
        if key_id not in self._public:
            from azure.keyvault.keys import KeyClient, KeyVaultKeyIdentifier

            parsed = KeyVaultKeyIdentifier(key_id)
            client = KeyClient(parsed.vault_url, self._credential, **self._client_kwargs)
            key = client.get_key(parsed.name, parsed.version)
            jwk = key.key
            if jwk.n is None or jwk.e is None:
                raise ValueError(f"{key_id} is not an RSA key")
            public = rsa.RSAPublicNumbers(
                int.from_bytes(jwk.e, "big"), int.from_bytes(jwk.n, "big")
            ).public_key()
            self._public[key_id] = PublicKeyWrapper(public, key_id=key.id)
        return self._public[key_id]


class PrivateKeyUnwrapper:
    """Unwrap RSA-OAEP-256 wrapped data keys with a software RSA private key."""

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        self._private_key = private_key

    def __call__(self, key_id: str, algorithm: str, wrapped: bytes) -> bytes:
        check_wrap_algorithm(algorithm)
        try:
            return self._private_key.decrypt(wrapped, _oaep256())
        except ValueError:
            raise WrongKeyError(
                f"the data key does not unwrap with this private key (sealed for {key_id})"
            ) from None


class KeyVaultUnwrapper:
    """Unwrap with Key Vault's ``unwrapKey`` (needs the unwrapKey permission on the key)."""

    def __init__(self, credential: Any, **client_kwargs: Any) -> None:
        self._credential = credential
        self._client_kwargs = client_kwargs

    def __call__(self, key_id: str, algorithm: str, wrapped: bytes) -> bytes:
        check_wrap_algorithm(algorithm)
        from azure.core.exceptions import HttpResponseError
        from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm

        client = CryptographyClient(key_id, self._credential, **self._client_kwargs)
        try:
            return client.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped).key
        except HttpResponseError as exc:
            raise WrongKeyError(
                f"Key Vault refused to unwrap with {key_id}: {exc.reason}"
            ) from None
