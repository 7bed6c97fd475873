"""The Durable Functions HTTP management API (``/runtime/webhooks/durabletask/``).

Served for the SDK's ``DurableOrchestrationClient`` (through ``rpcBaseUrl``, which carries a
per-host token in its path) and for people (with the ``code`` system key, as the host does).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from aiohttp import web

from . import history as h
from .engine import Engine, EngineError
from .responses import error, json_response
from .settings import same_secret
from .store import InstanceRecord

log = logging.getLogger("cotenant.devhost")
WEBHOOK = "/runtime/webhooks/durabletask"


def derived_key(master: str, purpose: str) -> str:
    digest = hmac.new(master.encode(), purpose.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def parse_json_text(raw: bytes) -> str | None:
    """Body of start/raise requests → the JSON text stored as input, as the host does.

    The SDK sends JSON text inside JSON; the host parses once. A body that is plain JSON
    (e.g. from curl) is stored as that JSON.
    """
    if not raw.strip():
        return None
    value = json.loads(raw)
    if isinstance(value, str):
        try:
            json.loads(value)
            return value
        except json.JSONDecodeError:
            return json.dumps(value)
    return json.dumps(value)


def event_json_text(raw: bytes) -> str | None:
    """Body of a raise-event request → the event's JSON text: parsed once, as the host does.

    The SDK's client JSON-encodes the data before sending it as JSON, so an orchestrator
    receives what that client raised as a *string* (upstream behaviour, kept here).
    """
    if not raw.strip():
        return None
    return json.dumps(json.loads(raw))


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _time(text: str) -> str:
    return text[:19] + "Z"


class ManagementApi:
    def __init__(self, engine: Engine, hub: str, master_key: str) -> None:
        self.engine = engine
        self.hub = hub
        self.system_key = derived_key(master_key, "durabletask_extension")
        self.rpc_token = derived_key(master_key, "rpc")
        self._master = master_key

    # ---------------------------------------------------------------- bindings
    def client_binding(self, origin: str) -> str:
        """The JSON the host passes for a ``durableClient`` binding."""
        webhook = origin + WEBHOOK
        query = f"taskHub={self.hub}&connection=Storage&code={self.system_key}"
        instance = f"{webhook}/instances/INSTANCEID"
        return json.dumps({
            "taskHubName": self.hub,
            "creationUrls": {
                "createNewInstancePostUri":
                    f"{webhook}/orchestrators/{{functionName}}[/{{instanceId}}]?code="
                    f"{self.system_key}",
                "createAndWaitOnNewInstancePostUri":
                    f"{webhook}/orchestrators/{{functionName}}[/{{instanceId}}]?timeout="
                    f"{{timeoutInSeconds}}&pollingInterval={{intervalInSeconds}}&code="
                    f"{self.system_key}",
            },
            "managementUrls": {
                "id": "INSTANCEID",
                "statusQueryGetUri": f"{instance}?{query}",
                "sendEventPostUri": f"{instance}/raiseEvent/{{eventName}}?{query}",
                "terminatePostUri": f"{instance}/terminate?reason={{text}}&{query}",
                "rewindPostUri": f"{instance}/rewind?reason={{text}}&{query}",
                "purgeHistoryDeleteUri": f"{instance}?{query}",
                "restartPostUri": f"{instance}/restart?{query}",
                "suspendPostUri": f"{instance}/suspend?reason={{text}}&{query}",
                "resumePostUri": f"{instance}/resume?reason={{text}}&{query}",
            },
            "baseUrl": webhook,
            "requiredQueryStringParameters": query,
            "rpcBaseUrl": f"{webhook}/rpc/{self.rpc_token}/",
        })

    def management_payload(self, origin: str, iid: str) -> dict[str, str]:
        urls = json.loads(self.client_binding(origin))["managementUrls"]
        return {k: v.replace("INSTANCEID", quote(iid, safe="")) for k, v in urls.items()}

    # ---------------------------------------------------------------- routing
    def routes(self) -> list[web.RouteDef]:
        out: list[web.RouteDef] = []
        for prefix in (WEBHOOK, WEBHOOK + "/rpc/{token}"):
            out += [
                web.post(prefix + "/orchestrators/{name}", self.start),
                web.post(prefix + "/orchestrators/{name}/{id}", self.start),
                web.get(prefix + "/instances", self.list),
                web.get(prefix + "/instances/", self.list),
                web.delete(prefix + "/instances/", self.purge_many),
                web.get(prefix + "/instances/{id}", self.status),
                web.delete(prefix + "/instances/{id}", self.purge),
                web.post(prefix + "/instances/{id}/raiseEvent/{event}", self.raise_event),
                web.post(prefix + "/instances/{id}/terminate", self.terminate),
                web.post(prefix + "/instances/{id}/suspend", self.suspend),
                web.post(prefix + "/instances/{id}/resume", self.resume),
                web.post(prefix + "/instances/{id}/restart", self.restart),
                web.post(prefix + "/instances/{id}/{op}", self.not_emulated),
            ]
        return out

    def _authorized(self, request: web.Request) -> bool:
        token = request.match_info.get("token")
        if token is not None:
            return same_secret(token, self.rpc_token)
        code = request.query.get("code") or request.headers.get("x-functions-key") or ""
        return any(same_secret(code, key) for key in (self.system_key, self._master))

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith(WEBHOOK + "/") and not self._authorized(request):
            return error(401, "a valid system key (code) is required")
        try:
            return await handler(request)
        except EngineError as exc:
            return error(exc.status, str(exc))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error(400, "Only application/json request content is supported")
        except web.HTTPException:
            raise
        except Exception:
            log.exception("management request %s %s failed", request.method, request.path)
            return error(503, "the devhost could not complete the request (storage?)")

    # ---------------------------------------------------------------- handlers
    async def start(self, request: web.Request) -> web.Response:
        input_text = parse_json_text(await request.read())
        iid = await self.engine.start(request.match_info["name"], input_text,
                                      request.match_info.get("id"))
        payload = self.management_payload(_origin(request), iid)
        if "timeout" in request.query:  # createAndWaitOnNewInstancePostUri
            try:
                timeout = min(float(request.query["timeout"]), 600.0)
            except ValueError:
                return error(400, "timeout must be a number of seconds")
            try:
                done = await self.engine.wait(iid, timeout)
            except TimeoutError:
                pass
            else:
                return json_response(status_json(done.record, show_input=True), 200)
        return json_response(payload, 202, {"Location": payload["statusQueryGetUri"]})

    async def status(self, request: web.Request) -> web.Response:
        live = await self.engine.status(request.match_info["id"])
        if live is None:
            return error(404, f"No instance with ID '{request.match_info['id']}' found.")
        q = request.query
        body = status_json(live.record, show_input=_flag(q.get("showInput"), True))
        if _flag(q.get("showHistory"), False):
            body["historyEvents"] = [h.describe(e, with_output=_flag(q.get("showHistoryOutput"),
                                                                    False))
                                     for e in live.history
                                     if e["EventType"] not in (h.EventType.ORCHESTRATOR_STARTED,
                                                               h.EventType.ORCHESTRATOR_COMPLETED)]
        code = 202 if live.record.runtime_status in ("Pending", "Running", "Suspended") else 200
        if live.record.runtime_status == "Failed" and \
                _flag(q.get("returnInternalServerErrorOnFailure"), False):
            code = 500
        return json_response(body, code)

    async def list(self, request: web.Request) -> web.Response:
        records = _filter(await self.engine.records(), request.query)
        show_input = _flag(request.query.get("showInput"), False)
        return json_response([status_json(r, show_input=show_input) for r in records])

    async def raise_event(self, request: web.Request) -> web.Response:
        await self.engine.raise_event(request.match_info["id"], request.match_info["event"],
                                      event_json_text(await request.read()))
        return web.Response(status=202)

    async def terminate(self, request: web.Request) -> web.Response:
        await self.engine.terminate(request.match_info["id"], request.query.get("reason", ""))
        return web.Response(status=202)

    async def suspend(self, request: web.Request) -> web.Response:
        await self.engine.suspend(request.match_info["id"], request.query.get("reason", ""))
        return web.Response(status=202)

    async def resume(self, request: web.Request) -> web.Response:
        await self.engine.resume(request.match_info["id"], request.query.get("reason", ""))
        return web.Response(status=202)

    async def restart(self, request: web.Request) -> web.Response:
        new_id = _flag(request.query.get("restartWithNewInstanceId"), True)
        iid = await self.engine.restart(request.match_info["id"], new_instance_id=new_id)
        return json_response(iid, 202)

    async def purge(self, request: web.Request) -> web.Response:
        deleted = await self.engine.purge(request.match_info["id"])
        if not deleted:
            return error(404, f"No instance with ID '{request.match_info['id']}' found.")
        return json_response({"instancesDeleted": deleted})

    async def purge_many(self, request: web.Request) -> web.Response:
        deleted = 0
        for record in _filter(await self.engine.records(), request.query):
            if record.runtime_status not in ("Pending", "Running", "Suspended"):
                deleted += await self.engine.purge(record.instance_id)
        if not deleted:
            return error(404, "No instances matched the purge criteria")
        return json_response({"instancesDeleted": deleted})

    async def not_emulated(self, request: web.Request) -> web.Response:
        return error(501, f"'{request.match_info['op']}' is not emulated by the devhost")


def status_json(record: InstanceRecord, *, show_input: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": record.name, "instanceId": record.instance_id,
        "runtimeStatus": record.runtime_status,
        "input": _loads(record.input) if show_input else None,
        "customStatus": _loads(record.custom_status), "output": _loads(record.output),
        "createdTime": _time(record.created), "lastUpdatedTime": _time(record.last_updated),
    }
    return body


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _flag(value: str | None, default: bool) -> bool:
    return default if value is None else value.lower() == "true"


def _filter(records: list[InstanceRecord], query: Any) -> list[InstanceRecord]:
    statuses = {s.strip().lower() for s in query.get("runtimeStatus", "").split(",") if s.strip()}
    prefix = query.get("instanceIdPrefix")
    after = _parse_time(query.get("createdTimeFrom"))
    before = _parse_time(query.get("createdTimeTo"))
    out = []
    for record in records:
        created = h.parse_iso(record.created)
        if statuses and record.runtime_status.lower() not in statuses:
            continue
        if prefix and not record.instance_id.startswith(prefix):
            continue
        if after and created < after or before and created > before:
            continue
        out.append(record)
    return sorted(out, key=lambda r: r.created)


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = h.parse_iso(text.replace(" ", "+"))
    except ValueError as exc:
        raise EngineError(400, f"invalid time {text!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
