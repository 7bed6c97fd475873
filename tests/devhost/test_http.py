"""HTTP triggers and the durable management API, called over real HTTP on 127.0.0.1."""

from __future__ import annotations

import time

import httpx
import pytest

from cotenant.devhost.engine import EngineError
from cotenant.devhost.testing import DevHostHarness

from .conftest import Journal


@pytest.fixture
def host(module_host: DevHostHarness) -> DevHostHarness:
    return module_host


@pytest.fixture
def journal(module_journal: Journal) -> Journal:
    return module_journal

def _poll(url: str, until: str, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = httpx.get(url).json()
        if body["runtimeStatus"] == until or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_http_starter_uses_the_real_durable_client(host: DevHostHarness) -> None:
    response = host.http("POST", "/api/orchestrators/hello_sequence", json=["Lima"])
    assert response.status_code == 202
    links = response.json()
    assert response.headers["Location"] == links["statusQueryGetUri"]
    assert links["statusQueryGetUri"].startswith(host.base_url + "/runtime/webhooks/durabletask/")
    body = _poll(links["statusQueryGetUri"], "Completed")
    assert body["output"] == ["Hello Lima!"]
    assert body["input"] == ["Lima"]
    assert body["name"] == "hello_sequence"
    # The same instance through the app's own route and the SDK's get_status.
    mine = host.http("GET", f"/api/status/{links['id']}").json()
    assert mine["runtimeStatus"] == "Completed" and mine["output"] == ["Hello Lima!"]


def test_custom_status_visible_through_http_status_api(host: DevHostHarness) -> None:
    links = host.http("POST", "/api/orchestrators/progress").json()
    host.wait_for_custom_status(links["id"], lambda s: s == {"step": 2})
    body = httpx.get(links["statusQueryGetUri"]).json()
    assert body["runtimeStatus"] == "Running"
    assert body["customStatus"] == {"step": 2}
    # Raise the event through the app (SDK raise_event) and through the management URL.
    assert host.http("POST", f"/api/events/{links['id']}/Continue", json={"go": 1}
                     ).status_code == 202
    assert _poll(links["statusQueryGetUri"], "Completed")["output"] == "done"
    gone = httpx.post(links["sendEventPostUri"].replace("{eventName}", "Continue"), json=1)
    assert gone.status_code == 410


def test_event_raised_by_the_sdk_client_arrives_as_a_string(host: DevHostHarness) -> None:
    links = host.http("POST", "/api/orchestrators/approval").json()
    host.wait_for_custom_status(links["id"], lambda s: s == {"phase": "waiting"})
    host.http("POST", f"/api/events/{links['id']}/Approval", json={"by": "bob"})
    # Upstream behaviour: the client JSON-encodes the data, the host parses it once.
    assert host.wait(links["id"]).output == {"approved": '{"by": "bob"}'}
    # A plain JSON body (curl, a browser) arrives as JSON.
    links = host.http("POST", "/api/orchestrators/approval").json()
    host.wait_for_custom_status(links["id"], lambda s: s == {"phase": "waiting"})
    url = links["sendEventPostUri"].replace("{eventName}", "Approval")
    assert httpx.post(url, json={"by": "carol"}).status_code == 202
    assert host.wait(links["id"]).output == {"approved": {"by": "carol"}}


def test_status_history_and_listing(host: DevHostHarness) -> None:
    links = host.http("POST", "/api/orchestrators/hello_sequence", json=["x"]).json()
    _poll(links["statusQueryGetUri"], "Completed")
    body = httpx.get(links["statusQueryGetUri"] + "&showHistory=true&showHistoryOutput=true"
                     ).json()
    kinds = [e["EventType"] for e in body["historyEvents"]]
    assert kinds[0] == "ExecutionStarted" and kinds[-1] == "ExecutionCompleted"
    assert any(e.get("Result") == '"Hello x!"' for e in body["historyEvents"])
    base = links["statusQueryGetUri"].split("/instances/")[0]
    code = links["statusQueryGetUri"].split("code=")[1]
    listed = httpx.get(f"{base}/instances/?runtimeStatus=Completed&code={code}").json()
    assert links["id"] in [item["instanceId"] for item in listed]
    running = httpx.get(f"{base}/instances/?runtimeStatus=Running&code={code}").json()
    assert links["id"] not in [item["instanceId"] for item in running]


def test_terminate_and_purge_through_management_urls(host: DevHostHarness) -> None:
    links = host.http("POST", "/api/orchestrators/waits_forever").json()
    host.wait_for_status(links["id"], "Running")
    url = links["terminatePostUri"].replace("{text}", "stop")
    assert httpx.post(url).status_code == 202
    assert _poll(links["statusQueryGetUri"], "Terminated")["output"] == "stop"
    purged = httpx.delete(links["purgeHistoryDeleteUri"])
    assert purged.status_code == 200 and purged.json() == {"instancesDeleted": 1}
    assert httpx.get(links["statusQueryGetUri"]).status_code == 404


def test_start_unknown_orchestrator_is_a_clear_error(host: DevHostHarness) -> None:
    response = host.http("POST", "/api/orchestrators/no_such_thing")
    assert response.status_code == 500  # the app's starter raised the SDK's exception
    assert response.json()["error"]["code"] == "InternalError"


def test_management_api_requires_the_system_key(host: DevHostHarness) -> None:
    links = host.http("POST", "/api/orchestrators/hello_sequence", json=["k"]).json()
    bare = links["statusQueryGetUri"].split("?")[0]
    assert httpx.get(bare).status_code == 401
    assert httpx.get(bare + "?code=wrong").status_code == 401
    forged = bare.replace("/durabletask/", "/durabletask/rpc/forged-token/")
    assert httpx.get(forged).status_code == 401
    assert httpx.get(bare + f"?code={host.master_key}").status_code in (200, 202)


def test_function_keys_are_enforced(host: DevHostHarness) -> None:
    url = "/api/orchestrators/hello_sequence"
    assert host.http("POST", url, key=False).status_code == 401
    bad = host.http("POST", url, key=False, headers={"x-functions-key": "nope"})
    assert bad.status_code == 401
    assert bad.json()["error"]["code"] == "Unauthorized"
    assert host.http("POST", url, key=False, params={"code": host.function_key}
                     ).status_code == 202
    # ADMIN level needs the master key, not a function key.
    assert host.http("GET", "/api/admin-only").status_code == 401
    admin = host.http("GET", "/api/admin-only", headers={"x-functions-key": host.master_key})
    assert admin.status_code == 200 and admin.text == "admin"


NON_ASCII_KEYS = ("clé-ünïcødé", "🔑")


def _unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "Unauthorized"


def test_non_ascii_function_keys_are_refused_not_a_crash(host: DevHostHarness) -> None:
    url = "/api/orchestrators/hello_sequence"
    for presented in NON_ASCII_KEYS:
        _unauthorized(host.http("POST", url, key=False, params={"code": presented}))
        _unauthorized(host.http("GET", "/api/admin-only", key=False,
                                params={"code": presented}))
    _unauthorized(host.http("POST", url + "?code=%FF%FE-not-utf8", key=False))
    for raw in ("clé".encode(), b"\xff\xfe-not-utf8", "🔑".encode()):
        _unauthorized(host.http("POST", url, key=False, headers={"x-functions-key": raw}))


def test_non_ascii_system_keys_are_refused_not_a_crash(host: DevHostHarness) -> None:
    links = host.http("POST", "/api/orchestrators/hello_sequence", json=["k"]).json()
    bare = links["statusQueryGetUri"].split("?")[0]
    for presented in NON_ASCII_KEYS:
        response = httpx.get(bare, params={"code": presented})
        assert response.status_code == 401, response.text
    assert httpx.get(bare + "?code=%FF%FE-not-utf8").status_code == 401
    for raw in ("clé".encode(), b"\xff\xfe-not-utf8"):
        assert httpx.get(bare, headers={"x-functions-key": raw}).status_code == 401
    forged = bare.replace("/durabletask/", "/durabletask/rpc/cl%C3%A9-%FF/")
    assert httpx.get(forged).status_code == 401


def test_routes_parameters_methods_and_prefix(host: DevHostHarness) -> None:
    ok = host.http("GET", "/api/items/7/blue", key=False, params={"q": "z"})
    assert ok.status_code == 200
    assert ok.json() == {"id": 7, "label": "blue", "q": "z"}
    assert host.http("GET", "/api/items/7", key=False).json()["label"] is None
    assert host.http("GET", "/API/Items/8", key=False).json()["id"] == 8  # case-insensitive
    assert host.http("GET", "/api/items/seven", key=False).status_code == 404  # {id:int}
    assert host.http("GET", "/items/7", key=False).status_code == 404  # no /api prefix
    assert host.http("DELETE", "/api/items/7", key=False).status_code == 405


def test_function_exception_is_500_without_details(host: DevHostHarness) -> None:
    response = host.http("GET", "/api/boom", key=False)
    assert response.status_code == 500
    assert "secret-value-should-not-leak" not in response.text
    assert "Traceback" not in response.text
    assert response.json()["error"]["message"] == "Exception while executing function: " \
                                                  "Functions.boom"


def test_invalid_instance_id_is_rejected(host: DevHostHarness) -> None:
    with pytest.raises(EngineError, match="instance ids"):
        host.start_orchestration("hello_sequence", instance_id="a/b")
    assert host.start_orchestration("hello_sequence", ["z"], instance_id="tenant-1") == "tenant-1"


def test_admin_endpoints_need_the_master_key(host: DevHostHarness, journal: Journal) -> None:
    assert host.http("GET", "/admin/host/status").status_code == 401
    ok = host.http("GET", "/admin/host/status", headers={"x-functions-key": host.master_key})
    assert ok.json()["state"] == "Running"
    run = host.http("POST", "/admin/functions/on_message", json={"input": "manual"},
                    headers={"x-functions-key": host.master_key})
    assert run.status_code == 202
    assert journal.count("queue:manual:1") == 1
    wrong = host.http("POST", "/admin/functions/say_hello", json={"input": "x"},
                      headers={"x-functions-key": host.master_key})
    assert wrong.status_code == 400


def test_sdk_client_lists_and_purges_by_status(host: DevHostHarness) -> None:
    done = host.start_orchestration("hello_sequence", ["a"])
    host.wait(done)
    running = host.start_orchestration("waits_forever")
    host.wait_for_status(running, "Running")
    listed = host.http("GET", "/api/instances").json()
    assert done in listed and running not in listed
    assert host.http("DELETE", "/api/instances").json()["deleted"] >= 1
    assert host.status(done) is None and host.status(running) is not None


def test_functions_declaring_context_receive_one(host: DevHostHarness) -> None:
    first = host.http("GET", "/api/whoami", key=False).json()
    second = host.http("GET", "/api/whoami", key=False).json()
    assert first["function"] == "whoami"
    assert first["invocation"] and first["invocation"] != second["invocation"]


def test_suspend_resume_and_restart_through_the_sdk_client(host: DevHostHarness) -> None:
    iid = host.start_orchestration("approval")
    host.wait_for_custom_status(iid, lambda s: s == {"phase": "waiting"})
    assert host.http("POST", f"/api/ops/{iid}/suspend").status_code == 202
    assert host.status(iid).runtime_status == "Suspended"
    host.raise_event(iid, "Approval", "while suspended")
    time.sleep(0.3)
    assert host.status(iid).runtime_status == "Suspended"  # the event waits
    assert host.http("POST", f"/api/ops/{iid}/resume").status_code == 202
    status = host.wait(iid)
    assert status.output == {"approved": "while suspended"}
    kinds = [e["EventType"] for e in status.history]
    assert kinds.index("ExecutionSuspended") < kinds.index("ExecutionResumed")
    restarted = host.http("POST", f"/api/ops/{iid}/restart").json()["id"]
    assert restarted != iid
    assert host.wait_for_status(restarted, "Running").name == "approval"
    assert host.http("POST", f"/api/ops/{iid}/suspend").status_code == 202  # 410 tolerated
    assert host.status(iid).runtime_status == "Completed"


def test_create_and_wait_returns_the_finished_status(host: DevHostHarness) -> None:
    links = host.http("POST", "/api/orchestrators/hello_sequence", json=["w"]).json()
    base = links["statusQueryGetUri"].split("/instances/")[0]
    code = links["statusQueryGetUri"].split("code=")[1]
    done = httpx.post(f"{base}/orchestrators/hello_sequence?timeout=10&code={code}",
                      json=["v"])
    assert done.status_code == 200 and done.json()["output"] == ["Hello v!"]
    pending = httpx.post(f"{base}/orchestrators/waits_forever?timeout=0.2&code={code}")
    assert pending.status_code == 202 and "statusQueryGetUri" in pending.json()
