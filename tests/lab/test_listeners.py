"""The lab's listening sockets: connections accepted on them send small writes at once."""

from __future__ import annotations

import asyncio
import socket

from cotenant.lab.server import _bind


def test_accepted_connections_have_nagle_disabled() -> None:
    """asyncio disables Nagle only on sockets whose protocol says TCP; with it on, a response
    written in two parts (head, then body) waits for the client's delayed ACK (~40 ms)."""

    async def scenario() -> int:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        listener = _bind(0)
        server = await asyncio.start_server(handle, sock=listener)
        async with server:
            _, writer = await asyncio.open_connection(*listener.getsockname())
            nodelay = await asyncio.wait_for(accepted, 5)
            writer.close()
        return nodelay

    assert asyncio.run(scenario()) != 0
