"""The per-party command queue's messages: ``rotate``, ``re-attest``, ``wipe``.

Message (JSON, base64-encoded or raw)::

    {"schema_version": 1, "command": "rotate", "id": "<unique>",
     "instance": "<orchestration waiting for the answer>", "nonce": "<challenge>",
     "key": {"vault_url": "https://….vault.azure.net", "name": "contoso-secret-key"},
     "version": "<new version>"}

``instance``/``nonce`` default to the agent's configuration; ``rotate`` without ``key``
rotates every allowed key, without ``version`` it releases the latest version.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from cotenant.wire.codec import decode_json, first_problem
from cotenant.wire.fields import KeyRef, Nonce

COMMAND_SCHEMA_VERSION = 1


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = COMMAND_SCHEMA_VERSION
    command: Literal["rotate", "re-attest", "wipe"]
    id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    instance: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    nonce: Nonce | None = None
    key: KeyRef | None = None
    version: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{1,64}$")] | None = None


def parse_command(content: str | bytes) -> Command:
    """Raises ``ValueError`` with a one-line reason."""
    data = decode_json(content)
    try:
        return Command.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"invalid command: {first_problem(exc)}") from None
