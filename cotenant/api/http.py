"""The HTTP API blueprint: thin bindings around :mod:`cotenant.api.service`.

Every route needs a function key except ``/api/openapi.yaml``. Errors are JSON
``{"error": {"code", "message"}}``; an unexpected failure is logged and answered with a 500
that carries no stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from urllib.parse import urlsplit

import azure.durable_functions as df
import azure.functions as func

from cotenant.api import service
from cotenant.api.openapi import openapi_yaml

bp = df.Blueprint()
Client = df.DurableOrchestrationClient  # filled in by the durable client binding
log = logging.getLogger("cotenant.api")
_KEY = func.AuthLevel.FUNCTION
_MAX_BODY = 256 * 1024

def _base(req: func.HttpRequest) -> str:
    parts = urlsplit(req.url)
    return f"{parts.scheme}://{parts.netloc}"


def _respond(reply: service.Reply) -> func.HttpResponse:
    return func.HttpResponse(reply.json(), status_code=reply.status,
                             mimetype="application/json")


async def _safe(work: Awaitable[service.Reply]) -> func.HttpResponse:
    """The reply as JSON; an unexpected failure is logged and becomes a plain 500."""
    try:
        return _respond(await work)
    except Exception:
        log.exception("request failed")
        return _respond(service.error(500, "InternalError",
                                      "the request failed; see the function app's log"))


def _name(req: func.HttpRequest) -> str:
    return req.route_params.get("name", "")


@bp.route(route="tenants", methods=["POST"], auth_level=_KEY)
@bp.durable_client_input(client_name="client")
async def create_tenant(req: func.HttpRequest, client: Client) -> func.HttpResponse:
    body = req.get_body()
    if len(body) > _MAX_BODY:
        return _respond(service.error(413, "BodyTooLarge",
                                      f"a tenant spec is at most {_MAX_BODY} bytes"))
    data, problem = service.parse_body(body, req.headers.get("content-type", ""))
    if problem is not None or data is None:
        return _respond(problem or service.error(400, "InvalidBody", "empty body"))
    return await _safe(service.create_tenant(client, data, _base(req)))


@bp.route(route="tenants", methods=["GET"], auth_level=_KEY)
@bp.durable_client_input(client_name="client")
async def list_tenants(req: func.HttpRequest, client: Client) -> func.HttpResponse:
    return await _safe(service.list_tenants(client))


@bp.route(route="tenants/{name}", methods=["GET"], auth_level=_KEY)
@bp.durable_client_input(client_name="client")
async def get_tenant(req: func.HttpRequest, client: Client) -> func.HttpResponse:
    return await _safe(service.get_tenant(client, _name(req)))


@bp.route(route="tenants/{name}", methods=["DELETE"], auth_level=_KEY)
@bp.durable_client_input(client_name="client")
async def delete_tenant(req: func.HttpRequest, client: Client) -> func.HttpResponse:
    purge = req.params.get("purge", "false").lower() in ("1", "true", "yes")
    return await _safe(service.delete_tenant(client, _name(req), _base(req), purge))


@bp.route(route="tenants/{name}/rotate", methods=["POST"], auth_level=_KEY)
@bp.durable_client_input(client_name="client")
async def rotate_tenant(req: func.HttpRequest, client: Client) -> func.HttpResponse:
    return await _safe(service.rotate_tenant(client, _name(req), _base(req)))


@bp.route(route="tenants/{name}/audit", methods=["GET"], auth_level=_KEY)
@bp.durable_client_input(client_name="client")
async def tenant_audit(req: func.HttpRequest, client: Client) -> func.HttpResponse:
    return await _safe(service.audit(client, _name(req)))


@bp.route(route="openapi.yaml", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(openapi_yaml(), status_code=200, mimetype="application/yaml")
