"""The TLS context of the lab's HTTPS port: a certificate per requested host, via SNI.

Lab hosts (``<vault>.vault.azure.net``, ``<name>.<region>.attest.azure.net``) get a leaf
certificate for exactly that name from the lab CA on first use (cached on disk); anything
else (``127.0.0.1``, ``localhost``) gets the default certificate.
"""

from __future__ import annotations

import re
import ssl
import threading
from collections.abc import Callable

from cotenant.lab.ca import LabCA

_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")


def _context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def server_context(ca: LabCA, is_lab_host: Callable[[str], bool]) -> ssl.SSLContext:
    """The server context; ``is_lab_host(name)`` decides which SNI names get their own cert."""
    default = _context(*map(str, ca.issue_to_files("tls-default", ["localhost", "127.0.0.1"])))
    cache: dict[str, ssl.SSLContext] = {}
    lock = threading.Lock()

    def pick(sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _ctx: ssl.SSLContext) -> None:
        host = (name or "").lower()
        if not host or not _HOST.match(host) or not is_lab_host(host):
            return
        with lock:
            if host not in cache:
                files = ca.issue_to_files(f"tls-{host}", [host])
                cache[host] = _context(str(files[0]), str(files[1]))
            sock.context = cache[host]

    default.sni_callback = pick
    return default
