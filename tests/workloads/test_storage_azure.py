"""The Azure path of the partners' data: the aggregator's app reads each partner's sealed blob
from the storage account the plan names, with the VM's managed identity (no connection
string, no SAS). Recorded at the HTTP edge: a real IMDS-shaped token endpoint on 127.0.0.1
(``AZURE_POD_IDENTITY_AUTHORITY_HOST``, as azure-identity honours it) and the real storage
SDK's requests to ``https://<account>.blob.core.windows.net``, answered by a script."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from cotenant.appconfig import azure_app_config
from cotenant.plan import Plan, build_plan
from cotenant.spec import load_spec
from cotenant.wire.app import AppConfig
from tests.control_plane.recording_transport import RecordingAdapter
from workloads.analytics.runonce import PublicError
from workloads.analytics.storage import sealed_blob_opener

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "three-party.yaml"
CLIENT_ID = "3f2c9a57-1d2e-4b6a-9c8d-0123456789ab"
TOKEN = "mi-access-token-7c1e"  # noqa: S105 - the fake IMDS's token
SEALED = "COTENANT-SEALED-v1 not really sealed, only bytes for the transport"


class Imds:
    """IMDS's token endpoint: answers ``GET /metadata/identity/oauth2/token`` with a token
    (or ``status``) and records what it was asked."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, list[str]], dict[str, str]]] = []
        self.status = 200
        imds = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                parts = urlsplit(self.path)
                imds.requests.append((parts.path, parse_qs(parts.query), dict(self.headers)))
                if imds.status == 200:
                    body = {"access_token": TOKEN, "expires_in": "3600",
                            "expires_on": str(int(time.time()) + 3600),
                            "resource": parse_qs(parts.query)["resource"][0],
                            "token_type": "Bearer"}
                else:
                    body = {"error": "invalid_request",
                            "error_description": "Identity not found"}
                raw = json.dumps(body).encode()
                self.send_response(imds.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def imds(monkeypatch: pytest.MonkeyPatch) -> Iterator[Imds]:
    server = Imds()
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", server.url)
    yield server
    server.close()


@pytest.fixture(scope="module")
def plan() -> Plan:
    return build_plan(load_spec(EXAMPLE))


@pytest.fixture(scope="module")
def config(plan: Plan) -> AppConfig:
    aggregator = next(p.party for p in plan.parties if p.role == "aggregator")
    config = azure_app_config(plan, aggregator, identity_client_id=CLIENT_ID)
    assert config is not None and config.partners
    return config


def _blob_answer(_request: object) -> tuple[int, str, dict[str, str]]:
    size = len(SEALED)
    return 206, SEALED, {"Content-Type": "application/octet-stream",
                         "Content-Length": str(size),
                         "Content-Range": f"bytes 0-{size - 1}/{size}",
                         "x-ms-blob-type": "BlockBlob", "ETag": '"0x8DC"',
                         "Last-Modified": "Fri, 27 Nov 2026 14:00:00 GMT"}


def test_the_partners_blob_is_read_with_the_vms_managed_identity(imds, plan, config):
    storage = RecordingAdapter()
    storage.on("GET", r"\.blob\.core\.windows\.net/", _blob_answer)
    open_blob = sealed_blob_opener(config, transport=storage.transport(), retry_total=0)
    for partner in config.partners:
        owner = plan.party(partner.name)
        assert open_blob(partner).read() == SEALED.encode()
        (sent,) = storage.sent("GET", rf"^{owner.storage_account_url}/")
        assert urlsplit(sent.url)._replace(query="").geturl() == (
            f"https://{owner.storage_account_name}.blob.core.windows.net/"
            f"{owner.data_container}/{owner.data_blob}")
        assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
        assert "sig=" not in sent.url  # no SAS: the identity's bearer token only
    assert len(storage.requests) == len(config.partners)  # the token went nowhere else
    # The token came from IMDS for storage, as the party's user-assigned identity (cached).
    ((path, query, headers),) = imds.requests
    assert path == "/metadata/identity/oauth2/token"
    assert query["client_id"] == [CLIENT_ID]
    assert query["resource"] == ["https://storage.azure.com"]
    assert headers.get("Metadata") == "true"


def test_a_refusal_by_the_partners_storage_is_a_public_message_without_the_token(
        imds, config):
    storage = RecordingAdapter()
    storage.on("GET", r"\.blob\.core\.windows\.net/", (403, (
        '<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthorizationPermissionMismatch'
        "</Code><Message>This request is not authorized to perform this operation using this "
        "permission.</Message></Error>"), {"x-ms-error-code": "AuthorizationPermissionMismatch"}))
    open_blob = sealed_blob_opener(config, transport=storage.transport(), retry_total=0)
    partner = config.partners[0]
    with pytest.raises(PublicError) as caught:
        open_blob(partner)
    message = str(caught.value)
    assert partner.display_name in message and "403" in message
    assert TOKEN not in message and "Bearer" not in message


def test_without_a_token_from_imds_the_storage_is_never_asked(imds, config):
    imds.status = 400  # the identity is not assigned to this VM
    storage = RecordingAdapter()
    storage.on("GET", r"\.blob\.core\.windows\.net/", _blob_answer)
    open_blob = sealed_blob_opener(config, transport=storage.transport(), retry_total=0)
    with pytest.raises(PublicError, match="identity could not read"):
        open_blob(config.partners[0])
    assert storage.requests == []
