"""Where a running lab listens, and the environment a client needs to use it.

The server writes ``<lab dir>/endpoints.json`` once it is healthy (no secrets in it); the
secrets a client needs sit next to it in 0600 files (``admin-token``, ``identity-header``).
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

ENDPOINTS_FILE = "endpoints.json"


class LabEndpoints(BaseModel):
    pid: int
    proxy_port: int
    https_port: int
    identity_port: int
    management_port: int
    attestation_url: str  # the default authority
    ca_bundle: str
    azurite_connection_string: str | None = None

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def identity_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.identity_port}/msi/token"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    def imds_url(self, vm_name: str) -> str:
        return f"http://127.0.0.1:{self.identity_port}/vms/{vm_name}"

    def base_environ(self) -> dict[str, str]:
        """What any client of the lab needs: the proxy and the CA bundle."""
        return {
            "HTTPS_PROXY": self.proxy_url, "https_proxy": self.proxy_url,
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
            "REQUESTS_CA_BUNDLE": self.ca_bundle, "SSL_CERT_FILE": self.ca_bundle,
            "COTENANT_LAB_ATTESTATION_URL": self.attestation_url,
            "COTENANT_LAB_MANAGEMENT_URL": self.management_url,
        }

    @classmethod
    def load(cls, directory: Path) -> LabEndpoints:
        return cls.model_validate(json.loads((directory / ENDPOINTS_FILE).read_text()))

    def save(self, directory: Path) -> None:
        tmp = directory / (ENDPOINTS_FILE + ".tmp")
        tmp.write_text(self.model_dump_json(indent=2))
        tmp.replace(directory / ENDPOINTS_FILE)
