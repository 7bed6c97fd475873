"""The lab's HTTPS proxy: how real Azure host names reach the lab on loopback.

Key Vault hosts (``<vault>.vault.azure.net``) and attestation hosts
(``<name>.<region>.attest.azure.net``) do not resolve here, and the unmodified Key Vault SDK
insists that the vault host ends with the challenge resource's domain (``vault.azure.net``).
So the lab keeps the real names and clients reach them through this CONNECT proxy
(``HTTPS_PROXY``, printed by ``cotenant lab env``): it tunnels those names to the lab's HTTPS
port, where TLS certificates for the exact host (issued by the lab CA via SNI) are served.
Loopback targets are tunnelled as asked; every other host is refused — the lab is offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

_MAX_HEADER = 16384


# Linux only: acknowledge what was received at once instead of up to 40 ms later.
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


def _ack_now(writer: asyncio.StreamWriter) -> None:
    """Send the pending ACK of what the client sent. Its HTTP client leaves Nagle's algorithm
    on behind a proxy (urllib3 does), so a request written in two parts (head, body: every
    POST) holds its second part until the first is acknowledged — by default a delayed ACK,
    40 ms per request."""
    sock = writer.get_extra_info("socket")
    if _QUICKACK is not None and sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                client: asyncio.StreamWriter | None = None) -> None:
    """Copy ``reader`` to ``writer``; ``client``: the client's side, acknowledged at once."""
    try:
        while data := await reader.read(65536):
            if client is not None:
                _ack_now(client)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


class ConnectProxy:
    """``route(host, port) -> (target_host, target_port) | None`` decides every tunnel."""

    def __init__(self, route: Callable[[str, int], tuple[str, int] | None]) -> None:
        self.route = route

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split()
        if len(parts) != 3 or parts[0] != "CONNECT":
            await self._reply(writer, "405 Method Not Allowed", "the lab proxy only tunnels")
            return
        host, _, port_text = parts[1].rpartition(":")
        target = self.route(host.strip("[]").lower(), int(port_text)) if port_text.isdigit() \
            else None
        if target is None:
            await self._reply(writer, "403 Forbidden", f"{host} is not part of the lab")
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError:
            await self._reply(writer, "502 Bad Gateway", f"{host} is not answering")
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        try:
            await asyncio.gather(_pipe(reader, up_writer, client=writer),
                                 _pipe(up_reader, writer))
        except asyncio.CancelledError:  # the lab is shutting down
            for stream in (writer, up_writer):
                stream.close()

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, status: str, message: str) -> None:
        body = message.encode()
        writer.write(f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n"
                     f"Connection: close\r\n\r\n".encode() + body)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    async def start(self, sock: object) -> asyncio.AbstractServer:
        return await asyncio.start_server(self.handle, sock=sock, limit=_MAX_HEADER)
