"""The agent's local API socket: accepted connections send small writes at once."""

from __future__ import annotations

from cotenant.wire.agent_config import Api
from guest_agent.server import bind
from tests.sockets import accepted_nodelay


def test_accepted_connections_have_nagle_disabled() -> None:
    """With Nagle on, every response of the local API written in two parts (head, then
    body) waits ~40 ms for the client's delayed ACK."""
    assert accepted_nodelay(bind(Api(listen="127.0.0.1:0"))) != 0
