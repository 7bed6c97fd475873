"""A real HTTPS JSON server on 127.0.0.1 (TLS from the test PKI) for edge stand-ins."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.crypto.pki import Pki

# handler(method, path, headers, body) -> (status, json body, extra headers)
Handler = Callable[[str, str, dict[str, str], Any], tuple[int, Any, dict[str, str]]]


class HttpsJsonServer:
    def __init__(
        self, pki: Pki, tls_key: rsa.RSAPrivateKey, workdir: Path, handler: Handler
    ) -> None:
        class RequestHandler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                status, document, headers = handler(method, self.path, dict(self.headers), body)
                data = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                self._serve("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST")

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
        chain_pem, key_pem = workdir / "server-chain.pem", workdir / "server-key.pem"
        chain_pem.write_bytes(
            b"".join(
                c.public_bytes(serialization.Encoding.PEM) for c in pki.chain("127.0.0.1", tls_key)
            )
        )
        key_pem.write_bytes(
            tls_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(chain_pem, key_pem)
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self.ca_bundle = str(workdir / "ca.pem")
        Path(self.ca_bundle).write_bytes(pki.root.public_bytes(serialization.Encoding.PEM))
        self.url = f"https://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
