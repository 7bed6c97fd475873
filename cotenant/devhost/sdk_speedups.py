"""One narrow speed-up of the SDK's replay: parsing history timestamps.

``HistoryEvent.__init__`` parses every event's ``Timestamp`` with ``dateutil.parser.parse``
(~0.4 ms each), which dominates replay time for long histories. The devhost writes
timestamps in one exact format, so it gives the SDK a parser that reads that format with
``datetime.fromisoformat`` (same instant, UTC) and defers to dateutil for anything else.
Replay logic itself is untouched. Set ``DEVHOST_SDK_FAST_TIMESTAMPS=0`` to disable.
"""

from __future__ import annotations

import os
import re
import sys
from datetime import datetime
from typing import Any

import azure.durable_functions.models.history.HistoryEvent  # noqa: F401 - loads the module

history_event_module = sys.modules["azure.durable_functions.models.history.HistoryEvent"]

_EXACT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
_original = history_event_module.dt_parse


def _parse(text: Any, *args: Any, **kwargs: Any) -> datetime:
    if not args and not kwargs and isinstance(text, str) and _EXACT.match(text):
        return datetime.fromisoformat(text)
    return _original(text, *args, **kwargs)  # type: ignore[no-any-return]


def install() -> bool:
    """Install the fast parser unless disabled; returns whether it is active."""
    if os.environ.get("DEVHOST_SDK_FAST_TIMESTAMPS", "1") == "0":
        history_event_module.dt_parse = _original
        return False
    history_event_module.dt_parse = _parse
    return True
