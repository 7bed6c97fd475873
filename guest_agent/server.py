"""Run the local API with uvicorn on the configured loopback address."""

from __future__ import annotations

import socket

import uvicorn

from guest_agent.agent import Agent
from guest_agent.api import build_app
from guest_agent.config import Api, is_loopback


class BindRefused(ValueError):
    """The listen address is not loopback and the config does not force it."""


def check_bind(host: str, *, force: bool) -> None:
    if not force and not is_loopback(host):
        raise BindRefused(
            f"refusing to serve the local API on {host}: loopback only "
            "(set api.force_non_loopback = true to override)"
        )


def make_server(agent: Agent) -> uvicorn.Server:
    api = agent.config.api
    check_bind(api.host, force=api.force_non_loopback)
    config = uvicorn.Config(
        build_app(agent), host=api.host, port=api.port, log_level="warning",
        access_log=False, lifespan="off", server_header=False, proxy_headers=False,
    )
    return uvicorn.Server(config)


def bind(api: Api) -> socket.socket:
    """Bind the API's listening socket first (before attesting), so a taken port or a refused
    address fails the start instead of leaving an agent that reported success unreachable."""
    check_bind(api.host, force=api.force_non_loopback)
    family = socket.AF_INET6 if ":" in api.host else socket.AF_INET
    # Naming TCP lets asyncio disable Nagle on accepted connections: otherwise a response
    # written in two parts waits for the client's delayed ACK (~40 ms a request).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((api.host, api.port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock
