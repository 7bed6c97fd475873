"""The lab's state file: written through by default, written behind (coalesced) by the server."""

from __future__ import annotations

import time
from pathlib import Path

from cotenant.lab.state import StateStore

FIRST = "11111111-1111-1111-1111-111111111111"
SECOND = "22222222-2222-2222-2222-222222222222"


def _on_disk(directory: Path) -> str:
    return StateStore(directory).read().subscription_id


def test_write_through_saves_before_the_edit_returns(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    with store.edit() as state:
        state.subscription_id = FIRST
    assert _on_disk(tmp_path) == FIRST


def test_write_behind_saves_in_the_background_and_on_flush(tmp_path: Path) -> None:
    store = StateStore(tmp_path, save_delay=0.05)
    with store.edit() as state:
        state.subscription_id = FIRST
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _on_disk(tmp_path) != FIRST:
        time.sleep(0.02)
    assert _on_disk(tmp_path) == FIRST
    slow = StateStore(tmp_path, save_delay=60)  # its background save would come much later
    with slow.edit() as state:
        state.subscription_id = SECOND
    assert _on_disk(tmp_path) == FIRST  # not yet
    slow.flush()
    assert _on_disk(tmp_path) == SECOND
