"""The HTTP API's contract: auth, validation, idempotency, OpenAPI, JSON errors."""

from __future__ import annotations

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource

pytestmark = pytest.mark.azurite


def openapi(host) -> dict:
    r = host.http("GET", "/api/openapi.yaml", key=False)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/yaml")
    return yaml.safe_load(r.text)


def validate(doc: dict, schema_name: str, body: dict) -> None:
    registry = Registry().with_resource("urn:openapi", Resource.from_contents(
        doc, default_specification=jsonschema.Draft202012Validator.META_SCHEMA and
        __import__("referencing.jsonschema").jsonschema.DRAFT202012))
    schema = {"$ref": f"urn:openapi#/components/schemas/{schema_name}"}
    jsonschema.Draft202012Validator(schema, registry=registry).validate(body)


def test_openapi_document_describes_every_route(api_host):
    doc = openapi(api_host)
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {"/api/tenants", "/api/tenants/{name}",
                                 "/api/tenants/{name}/rotate", "/api/tenants/{name}/audit"}
    assert {"TenantStatus", "Accepted", "ErrorResponse", "TenantSpec"} <= set(
        doc["components"]["schemas"])


def test_routes_need_a_function_key(api_host):
    for method, path in (("GET", "/api/tenants"), ("POST", "/api/tenants"),
                         ("GET", "/api/tenants/demo"), ("DELETE", "/api/tenants/demo")):
        assert api_host.http(method, path, key=False).status_code == 401, path


def test_invalid_spec_lists_every_problem(api_host, spec):
    spec["name"] = "Not A Name"
    spec["parties"][1]["private_ip"] = "10.9.9.9"
    spec["parties"][2]["gateway_port"] = 70000
    r = api_host.http("POST", "/api/tenants", json=spec)
    assert r.status_code == 400
    body = r.json()
    validate(openapi(api_host), "ErrorResponse", body)
    paths = {p["path"] for p in body["error"]["problems"]}
    assert body["error"]["code"] == "InvalidSpec"
    assert {"name", "parties[1].private_ip", "parties[2].gateway_port"} <= paths
    assert api_host.list_instances() == []


def test_malformed_body_is_a_json_error(api_host):
    r = api_host.http("POST", "/api/tenants", content=b"{not json",
                      headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "InvalidBody"
    assert "Traceback" not in r.text


def test_unknown_tenant_is_404_everywhere(api_host):
    doc = openapi(api_host)
    for method, path in (("GET", "/api/tenants/nobody"), ("DELETE", "/api/tenants/nobody"),
                         ("POST", "/api/tenants/nobody/rotate"),
                         ("GET", "/api/tenants/nobody/audit")):
        r = api_host.http(method, path)
        assert r.status_code == 404, path
        validate(doc, "ErrorResponse", r.json())


def test_list_is_empty_and_valid(api_host):
    r = api_host.http("GET", "/api/tenants")
    assert r.status_code == 200
    validate(openapi(api_host), "TenantList", r.json())
    assert r.json() == {"tenants": []}


def _quarantined(azurite, count: int, timeout: float = 20) -> list[dict]:
    import json
    import time

    from azure.storage.queue import QueueClient

    queue = QueueClient.from_connection_string(azurite.connection_string,
                                               "guest-reports-quarantine")
    deadline = time.monotonic() + timeout
    found: list[dict] = []
    while time.monotonic() < deadline and len(found) < count:
        try:
            for message in queue.receive_messages():
                found.append(json.loads(message.content))
                queue.delete_message(message)
        except Exception:  # noqa: BLE001 - the queue appears with the first quarantine
            pass
        time.sleep(0.2)
    return found


def test_malformed_and_unroutable_reports_are_quarantined_with_a_reason(api_host, azurite):
    from azure.storage.queue import QueueClient, TextBase64EncodePolicy

    from cotenant.wire.reports import make_report

    queue = QueueClient.from_connection_string(azurite.connection_string, "guest-reports",
                                               message_encode_policy=TextBase64EncodePolicy())
    queue.send_message('{"schema_version": 1, "tenant": "x"}')
    queue.send_message("not json at all")
    stranger = make_report(tenant="ghost", party="contoso", vm="vm-ghost-contoso",
                           instance="ghost:contoso:1", nonce="n" * 16, event="attested")
    queue.send_message(stranger.to_json())
    hijack = make_report(tenant="ghost", party="contoso", vm="vm", instance="other:contoso:1",
                         nonce="n" * 16, event="attested")
    queue.send_message(hijack.to_json())
    reasons = sorted(m["reason"] for m in _quarantined(azurite, 4))
    assert len(reasons) == 4, reasons
    assert sum(r.startswith("invalid report") for r in reasons) == 2
    assert "unknown tenant 'ghost'" in reasons
    assert "instance 'other:contoso:1' does not belong to tenant 'ghost'" in reasons
