"""The lab's listening sockets: connections accepted on them send small writes at once."""

from __future__ import annotations

from cotenant.lab.server import _bind
from tests.sockets import accepted_nodelay


def test_accepted_connections_have_nagle_disabled() -> None:
    """asyncio disables Nagle only on sockets whose protocol says TCP; with it on, a response
    written in two parts (head, then body) waits for the client's delayed ACK (~40 ms)."""
    assert accepted_nodelay(_bind(0)) != 0
