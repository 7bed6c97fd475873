"""The OpenAPI 3.1 document of the control plane's HTTP API, built from the pydantic models
(served as YAML at ``/api/openapi.yaml``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import yaml
from pydantic.json_schema import models_json_schema

from cotenant.api.models import (
    Accepted,
    AuditLogResponse,
    ErrorResponse,
    TenantList,
    TenantStatus,
)
from cotenant.spec import TenantSpec

_REF = "#/components/schemas/{model}"
_SECURITY = [{"functionKey": []}, {"functionKeyQuery": []}]


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": _REF.format(model=schema)}}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "invalid request (every problem listed)", 401: "missing or wrong function key",
            404: "no such tenant", 409: "conflicts with the tenant's current state"}
    return {str(c): _json("ErrorResponse", text[c]) for c in codes}


_NAME = {"name": "name", "in": "path", "required": True,
         "schema": {"type": "string", "pattern": "^[a-z][a-z0-9]{2,7}$"}}


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    _, schemas = models_json_schema(
        [(m, "serialization") for m in (Accepted, AuditLogResponse, ErrorResponse, TenantList,
                                        TenantStatus)]
        + [(TenantSpec, "validation")],
        ref_template=_REF)
    paths = {
        "/api/tenants": {
            "post": {
                "operationId": "createTenant", "summary": "Deploy a tenant from its spec",
                "description": "The orchestration instance id is the tenant name: re-posting "
                               "the same spec returns the existing deployment.",
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": {"$ref": _REF.format(model="TenantSpec")}},
                    "application/yaml": {"schema": {"$ref": _REF.format(model="TenantSpec")}}}},
                "responses": {"202": _json("Accepted", "deployment started or running"),
                              "200": _json("Accepted", "already deployed with this spec"),
                              **_errors(400, 401, 409)},
            },
            "get": {"operationId": "listTenants", "summary": "List tenants",
                    "responses": {"200": _json("TenantList", "tenants"), **_errors(401)}},
        },
        "/api/tenants/{name}": {
            "parameters": [_NAME],
            "get": {"operationId": "getTenant", "summary": "A tenant's status, timeline and "
                    "verified trust matrix",
                    "responses": {"200": _json("TenantStatus", "status"), **_errors(401, 404)}},
            "delete": {"operationId": "deleteTenant", "summary": "Tear the tenant down",
                       "parameters": [{"name": "purge", "in": "query", "required": False,
                                       "schema": {"type": "boolean"}}],
                       "responses": {"202": _json("Accepted", "teardown started"),
                                     **_errors(401, 404)}},
        },
        "/api/tenants/{name}/rotate": {
            "parameters": [_NAME],
            "post": {"operationId": "rotateKeys", "summary": "Rotate every party's key now",
                     "responses": {"202": _json("Accepted", "rotation started"),
                                   **_errors(401, 404, 409)}},
        },
        "/api/tenants/{name}/audit": {
            "parameters": [_NAME],
            "get": {"operationId": "getAudit", "summary": "Key release and attestation events",
                    "responses": {"200": _json("AuditLogResponse", "events"),
                                  **_errors(401, 404)}},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "cotenant control plane", "version": "1.0.0",
                 "description": "Deploy, verify, rotate and tear down multi-party "
                                "confidential computing tenants on Azure Confidential VMs."},
        "servers": [{"url": "/"}],
        "security": _SECURITY,
        "paths": paths,
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {
                "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
                "functionKeyQuery": {"type": "apiKey", "in": "query", "name": "code"},
            },
        },
    }


def openapi_yaml() -> str:
    return yaml.safe_dump(openapi_document(), sort_keys=False, allow_unicode=True)
