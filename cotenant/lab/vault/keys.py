"""Key Vault keys in the lab: creation rules, key material, JSON shapes and crypto operations."""

from __future__ import annotations

import os
import time
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cotenant.crypto.encoding import b64url_decode, b64url_encode
from cotenant.lab.ca import load_private
from cotenant.lab.http import HttpError
from cotenant.lab.jose import rsa_jwk
from cotenant.lab.keypool import POOL
from cotenant.lab.state import Key, KeyVersion, ReleasePolicyDoc, Vault
from cotenant.policy import PolicyError, parse_policy

RSA_KTYS = ("RSA", "RSA-HSM")
KTYS = (*RSA_KTYS, "oct-HSM")
RSA_SIZES = (2048, 3072, 4096)
OCT_SIZES = (128, 192, 256)
RSA_OPS = ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"]
OCT_OPS = ["encrypt", "decrypt", "wrapKey", "unwrapKey"]
_OAEP = {
    "RSA-OAEP": hashes.SHA1,
    "RSA-OAEP-256": hashes.SHA256,
}


def bad(message: str) -> HttpError:
    return HttpError(400, "BadParameter", message)


def parse_release_policy(value: Any, *, exportable: bool) -> ReleasePolicyDoc | None:
    """Validate a ``release_policy`` request field against the key's exportability."""
    if value is None:
        if exportable:
            raise bad("AKV.SKR.1004: Exportable keys must have release policy")
        return None
    if not exportable:
        raise bad("AKV.SKR.1005: Non-exportable keys must not have release policy")
    if not isinstance(value, dict) or not isinstance(value.get("data"), str):
        raise bad("release_policy.data must be base64url text")
    try:
        parse_policy(value["data"])
    except PolicyError as exc:
        raise bad(f"AKV.SKR.1007: The release policy is invalid: {exc}") from None
    immutable = value.get("immutable", False)
    if not isinstance(immutable, bool):
        raise bad("release_policy.immutable must be a boolean")
    return ReleasePolicyDoc(
        content_type=str(value.get("contentType") or "application/json; charset=utf-8"),
        data=value["data"].rstrip("="), immutable=immutable)


def timestamp(attributes: dict[str, Any], name: str) -> int | None:
    """An ``nbf``/``exp`` attribute: absent/null or integer seconds since the epoch."""
    value = attributes.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise bad(f"attributes.{name} must be a number of seconds since the epoch")
    return int(value)


def flag(attributes: dict[str, Any], name: str, default: bool) -> bool:
    value = attributes.get(name, default)
    if not isinstance(value, bool):
        raise bad(f"attributes.{name} must be true or false")
    return value


def new_version(body: dict[str, Any], *, exportable_default: bool = False,
                inherit: KeyVersion | None = None) -> KeyVersion:
    """A new key version from a create request (or a rotation of ``inherit``), with new key
    material; it touches no lab state (make it before taking the state's lock)."""
    kty = body.get("kty", inherit.kty if inherit else None)
    if kty not in KTYS:
        raise bad(f"kty must be one of {', '.join(KTYS)}")
    attributes = body.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise bad("attributes must be an object")
    exportable = flag(attributes, "exportable", inherit.exportable if inherit
                      else exportable_default)
    if kty in RSA_KTYS:
        size = body.get("key_size") or (inherit.key_size if inherit else 2048)
        if size not in RSA_SIZES:
            raise bad(f"key_size must be one of {RSA_SIZES} for RSA keys")
        exponent = body.get("public_exponent") or 65537
        if exponent != 65537:
            raise bad("public_exponent must be 65537")
        material = POOL.private_pem(size).decode()
        default_ops = RSA_OPS
    else:
        size = body.get("key_size") or (inherit.key_size if inherit else 256)
        if size not in OCT_SIZES:
            raise bad(f"key_size must be one of {OCT_SIZES} for oct-HSM keys")
        material = os.urandom(size // 8).hex()
        default_ops = OCT_OPS
    key_ops = body.get("key_ops") or (inherit.key_ops if inherit else default_ops)
    if not isinstance(key_ops, list) or not all(isinstance(o, str) for o in key_ops):
        raise bad("key_ops must be a list of operation names")
    tags = body.get("tags") or (inherit.tags if inherit else {})
    if not isinstance(tags, dict):
        raise bad("tags must be an object")
    policy = (parse_release_policy(body.get("release_policy"), exportable=exportable)
              if "release_policy" in body or inherit is None
              else inherit.release_policy)
    if inherit is not None and policy is None and exportable:
        raise bad("AKV.SKR.1004: Exportable keys must have release policy")
    return KeyVersion(
        kty=kty, key_size=size, key_ops=key_ops, material=material, exportable=exportable,
        enabled=flag(attributes, "enabled", True), not_before=timestamp(attributes, "nbf"),
        expires=timestamp(attributes, "exp"), tags={str(k): str(v) for k, v in tags.items()},
        release_policy=policy,
    )


def private_key(version: KeyVersion) -> rsa.RSAPrivateKey | bytes:
    if version.kty in RSA_KTYS:
        return load_private(version.material.encode())
    return bytes.fromhex(version.material)


def attributes(vault: Vault, version: KeyVersion) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "enabled": version.enabled, "created": version.created, "updated": version.updated,
        "recoveryLevel": "Recoverable" if vault.purge_protection else "Recoverable+Purgeable",
        "recoverableDays": vault.soft_delete_days, "exportable": version.exportable,
    }
    if version.not_before is not None:
        attrs["nbf"] = version.not_before
    if version.expires is not None:
        attrs["exp"] = version.expires
    return attrs


def policy_json(policy: ReleasePolicyDoc | None) -> dict[str, Any] | None:
    if policy is None:
        return None
    return {"contentType": policy.content_type, "data": policy.data,
            "immutable": policy.immutable}


def jwk(vault_url: str, key: Key, version: KeyVersion) -> dict[str, Any]:
    kid = f"{vault_url}/keys/{key.name}/{version.version}"
    material = private_key(version)
    if isinstance(material, rsa.RSAPrivateKey):
        return rsa_jwk(material.public_key(), kid=kid, key_ops=version.key_ops) | {
            "kty": version.kty}
    return {"kid": kid, "kty": version.kty, "key_ops": version.key_ops}


def bundle(vault: Vault, vault_url: str, key: Key, version: KeyVersion) -> dict[str, Any]:
    result: dict[str, Any] = {
        "key": jwk(vault_url, key, version), "attributes": attributes(vault, version),
        "tags": version.tags,
    }
    if version.release_policy is not None:
        result["release_policy"] = policy_json(version.release_policy)
    return result


def deleted_bundle(vault: Vault, vault_url: str, key: Key) -> dict[str, Any]:
    return {
        **bundle(vault, vault_url, key, key.latest),
        "recoveryId": f"{vault_url}/deletedkeys/{key.name}",
        "deletedDate": key.deleted_date, "scheduledPurgeDate": key.scheduled_purge_date,
    }


def item(vault: Vault, vault_url: str, key: Key, version: KeyVersion, *,
         versioned: bool) -> dict[str, Any]:
    kid = f"{vault_url}/keys/{key.name}" + (f"/{version.version}" if versioned else "")
    return {"kid": kid, "attributes": attributes(vault, version), "tags": version.tags}


def check_usable(version: KeyVersion, operation: str) -> None:
    now = int(time.time())
    if not version.enabled:
        raise HttpError(403, "Forbidden", "Operation is not allowed on a disabled key",
                        inner="KeyDisabled")
    if version.expires is not None and now > version.expires:
        raise HttpError(403, "Forbidden", "The key has expired", inner="KeyExpired")
    if version.not_before is not None and now < version.not_before:
        raise HttpError(403, "Forbidden", "The key is not yet valid", inner="KeyNotYetValid")
    if operation in ("encrypt", "decrypt", "wrapKey", "unwrapKey") and \
            operation not in version.key_ops:
        raise HttpError(403, "Forbidden", f"Operation {operation} is not permitted on this key",
                        inner="KeyOperationForbidden")


def crypto_operation(version: KeyVersion, operation: str, body: dict[str, Any]) -> bytes:
    """encrypt / decrypt / wrapKey / unwrapKey with RSA-OAEP or RSA-OAEP-256."""
    check_usable(version, operation)
    algorithm = body.get("alg")
    if algorithm not in _OAEP:
        raise bad(f"alg must be one of {', '.join(_OAEP)} (got {algorithm!r})")
    try:
        value = b64url_decode(str(body.get("value", "")))
    except ValueError:
        raise bad("value must be base64url") from None
    key = private_key(version)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise bad(f"{algorithm} needs an RSA key")
    hash_type = _OAEP[algorithm]
    oaep = padding.OAEP(mgf=padding.MGF1(hash_type()), algorithm=hash_type(), label=None)
    if operation in ("encrypt", "wrapKey"):
        return key.public_key().encrypt(value, oaep)
    try:
        return key.decrypt(value, oaep)
    except ValueError:
        raise bad("the ciphertext could not be decrypted with this key") from None


def encode(data: bytes) -> str:
    return b64url_encode(data)
