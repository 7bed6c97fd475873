"""Field types shared by the wire formats and the guest agent's configuration."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator

KeyName = Annotated[str, StringConstraints(min_length=1, max_length=127,
                                           pattern=r"^[A-Za-z0-9-]+$")]
Nonce = Annotated[str, StringConstraints(min_length=8, max_length=256,
                                         pattern=r"^[\x21-\x7e]+$")]


def origin_only(url: str, *, schemes: tuple[str, ...], what: str,
                allow_path: bool = False) -> str:
    """``url`` normalised to ``scheme://host[:port]`` (plus its path when allowed)."""
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        raise ValueError(f"{what} must use {' or '.join(schemes)}: {url!r}")
    if not parts.hostname or parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(f"{what} must be a plain origin (no credentials, query or fragment)")
    if parts.path not in ("", "/") and not allow_path:
        raise ValueError(f"{what} must not have a path: {url!r}")
    path = parts.path.rstrip("/") if allow_path else ""
    return f"{parts.scheme}://{parts.netloc}".lower() + path


class KeyRef(BaseModel):
    """A key a VM may release: the vault it lives in and its name (no version)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vault_url: str
    name: KeyName

    @model_validator(mode="after")
    def _check(self) -> KeyRef:
        normal = origin_only(self.vault_url, schemes=("https",), what="vault_url")
        object.__setattr__(self, "vault_url", normal)
        return self

    @property
    def vault_host(self) -> str:
        return urlsplit(self.vault_url).netloc

    @property
    def kid(self) -> str:
        """The versionless key identifier, ``https://<vault>/keys/<name>``."""
        return f"{self.vault_url}/keys/{self.name}"

    def label(self) -> str:
        return f"{self.vault_host}/{self.name}"
