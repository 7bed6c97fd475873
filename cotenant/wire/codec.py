"""Decoding a queue message (base64 JSON or raw JSON) and one-line validation problems."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from pydantic import ValidationError


def decode_json(content: str | bytes, *, limit: int = 64 * 1024) -> dict[str, Any]:
    """A queue message (base64 JSON or raw JSON) as a JSON object; ``ValueError`` otherwise."""
    if isinstance(content, bytes):
        content = content.decode("utf-8", errors="replace")
    if len(content) > limit:
        raise ValueError("message is larger than a queue message can be")
    text = content.strip()
    if not text.startswith("{"):
        try:
            text = base64.b64decode(text, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError("message is neither JSON nor base64 JSON") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError("message is not valid JSON") from None
    if not isinstance(data, dict):
        raise ValueError("message is not a JSON object")
    return data


def first_problem(exc: ValidationError) -> str:
    """``<field path>: <message>`` of a validation error's first problem (one line)."""
    first = exc.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
