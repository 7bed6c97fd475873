"""A small Durable Functions app exercising what the devhost emulates (used by the tests)."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import azure.durable_functions as df
import azure.functions as func
from sample_blueprint import bp

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(bp)


def _journal(kind: str, value: str) -> None:
    """Append to the file named by DEVHOST_SAMPLE_JOURNAL (tests count activity runs)."""
    path = os.environ.get("DEVHOST_SAMPLE_JOURNAL")
    if path:
        with Path(path).open("a") as f:
            f.write(f"{kind}:{value}\n")


# ---------------------------------------------------------------- activities
@app.activity_trigger(input_name="name")
def say_hello(name: str) -> str:
    _journal("say_hello", name)
    return f"Hello {name}!"


@app.activity_trigger(input_name="value")
async def double(value: int) -> int:
    return value * 2


@app.activity_trigger(input_name="payload")
def flaky(payload: dict) -> str:
    """Fails until it has been called ``payload['succeed_on']`` times for ``payload['key']``."""
    path = Path(os.environ["DEVHOST_SAMPLE_JOURNAL"])
    _journal("flaky", payload["key"])
    calls = path.read_text().count(f"flaky:{payload['key']}\n")
    if calls < payload["succeed_on"]:
        raise RuntimeError(f"flaky attempt {calls} failed")
    return f"ok after {calls}"


@app.activity_trigger(input_name="message")
def explode(message: str) -> None:
    raise ValueError(message)


_running = {"now": 0}
_running_lock = threading.Lock()


@app.activity_trigger(input_name="seconds")
def probe_concurrency(seconds: float) -> int:
    """Returns how many of these ran at the same time as this one (at its start)."""
    with _running_lock:
        _running["now"] += 1
        seen = _running["now"]
    time.sleep(seconds)
    with _running_lock:
        _running["now"] -= 1
    return seen


@app.orchestration_trigger(context_name="context")
def concurrency(context: df.DurableOrchestrationContext):
    seen = yield context.task_all([context.call_activity("probe_concurrency", 0.05)
                                   for _ in range(context.get_input())])
    return max(seen)


@app.activity_trigger(input_name="seconds")
def slow(seconds: float) -> float:
    _journal("slow", str(seconds))
    if os.environ.get("DEVHOST_SAMPLE_FAST") != "1":
        time.sleep(seconds)
    return seconds


# ---------------------------------------------------------------- orchestrators
@app.orchestration_trigger(context_name="context")
def hello_sequence(context: df.DurableOrchestrationContext):
    names = context.get_input() or ["Tokyo", "Seattle", "London"]
    results = []
    for name in names:
        results.append((yield context.call_activity("say_hello", name)))
    return results


@app.orchestration_trigger(context_name="context")
def fan_out(context: df.DurableOrchestrationContext):
    count = context.get_input()
    tasks = [context.call_activity("double", i) for i in range(count)]
    results = yield context.task_all(tasks)
    return sum(results)


@app.orchestration_trigger(context_name="context")
def with_retry(context: df.DurableOrchestrationContext):
    options = df.RetryOptions(first_retry_interval_in_milliseconds=50,
                              max_number_of_attempts=context.get_input()["attempts"])
    return (yield context.call_activity_with_retry("flaky", options, context.get_input()))


@app.orchestration_trigger(context_name="context")
def fails(context: df.DurableOrchestrationContext):
    yield context.call_activity("explode", context.get_input())
    return "unreachable"


@app.orchestration_trigger(context_name="context")
def approval(context: df.DurableOrchestrationContext):
    """Waits for an 'Approval' event or a one-hour timeout, whichever comes first."""
    deadline = context.current_utc_datetime + timedelta(hours=1)
    timeout = context.create_timer(deadline)
    event = context.wait_for_external_event("Approval")
    context.set_custom_status({"phase": "waiting"})
    winner = yield context.task_any([event, timeout])
    if winner == event:
        timeout.cancel()
        return {"approved": event.result}
    return {"approved": None, "timed_out": True}


@app.orchestration_trigger(context_name="context")
def early_event(context: df.DurableOrchestrationContext):
    """Does some work first, so an event raised right after start arrives early."""
    yield context.call_activity("say_hello", "early")
    value = yield context.wait_for_external_event("Go")
    return value


@app.orchestration_trigger(context_name="context")
def parent(context: df.DurableOrchestrationContext):
    spec = context.get_input()
    child = "hello_sequence" if spec.get("ok", True) else "fails"
    result = yield context.call_sub_orchestrator(child, spec.get("input"))
    return {"child": result}


@app.orchestration_trigger(context_name="context")
def parent_of_waiter(context: df.DurableOrchestrationContext):
    child = yield context.call_sub_orchestrator("early_event",
                                                instance_id=f"{context.instance_id}-child")
    return {"child": child}


@app.orchestration_trigger(context_name="context")
def flaky_child(context: df.DurableOrchestrationContext):
    return (yield context.call_activity("flaky", context.get_input()))


@app.orchestration_trigger(context_name="context")
def parent_with_retry(context: df.DurableOrchestrationContext):
    options = df.RetryOptions(first_retry_interval_in_milliseconds=20, max_number_of_attempts=3)
    result = yield context.call_sub_orchestrator_with_retry("flaky_child", options,
                                                            context.get_input())
    return result


@app.orchestration_trigger(context_name="context")
def counter(context: df.DurableOrchestrationContext):
    value = context.get_input() or 0
    context.set_custom_status({"value": value})
    if value < 3:
        yield context.call_activity("double", value)
        context.continue_as_new(value + 1)
        return None
    return value


@app.orchestration_trigger(context_name="context")
def progress(context: df.DurableOrchestrationContext):
    context.set_custom_status({"step": 1})
    yield context.call_activity("say_hello", "one")
    context.set_custom_status({"step": 2})
    yield context.wait_for_external_event("Continue")
    return "done"


@app.orchestration_trigger(context_name="context")
def waits_forever(context: df.DurableOrchestrationContext):
    yield context.wait_for_external_event("Never")


@app.orchestration_trigger(context_name="context")
def nondeterministic(context: df.DurableOrchestrationContext):
    """Branches on something outside the history (an environment variable): a bug."""
    name = "say_hello" if os.environ.get("DEVHOST_SAMPLE_BRANCH", "a") == "a" else "double"
    yield context.call_activity(name, 1)
    yield context.wait_for_external_event("Next")
    return "finished"


@app.orchestration_trigger(context_name="context")
def uses_call_http(context: df.DurableOrchestrationContext):
    response = yield context.call_http("GET", "http://127.0.0.1:9/")
    return response


@app.orchestration_trigger(context_name="context")
def slow_pair(context: df.DurableOrchestrationContext):
    first = yield context.call_activity("slow", 0.05)
    second = yield context.call_activity("slow", context.get_input())
    return [first, second]


# ---------------------------------------------------------------- HTTP
@app.route(route="orchestrators/{name}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def http_start(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    body = req.get_body()
    payload = json.loads(body) if body else None
    instance_id = await client.start_new(req.route_params["name"], None, payload)
    return client.create_check_status_response(req, instance_id)


@app.route(route="status/{instance_id}", methods=["GET"])
@app.durable_client_input(client_name="client")
async def http_status(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    status = await client.get_status(req.route_params["instance_id"])
    if status.runtime_status is None:
        return func.HttpResponse(status_code=404)
    return func.HttpResponse(json.dumps({"runtimeStatus": status.runtime_status.value,
                                         "customStatus": status.custom_status,
                                         "output": status.output}),
                             mimetype="application/json")


@app.route(route="events/{instance_id}/{event}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def http_raise(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    await client.raise_event(req.route_params["instance_id"], req.route_params["event"],
                             req.get_json())
    return func.HttpResponse(status_code=202)


@app.route(route="instances", methods=["GET", "DELETE"])
@app.durable_client_input(client_name="client")
async def http_instances(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    """Lists (GET) or purges (DELETE) completed instances through the SDK's client."""
    completed = [df.OrchestrationRuntimeStatus.Completed]
    if req.method == "DELETE":
        result = await client.purge_instance_history_by(
            created_time_from=datetime(2000, 1, 1, tzinfo=UTC), runtime_status=completed)
        return func.HttpResponse(json.dumps({"deleted": result.instances_deleted}))
    found = await client.get_status_by(runtime_status=completed)
    return func.HttpResponse(json.dumps(sorted(s.instance_id for s in found)),
                             mimetype="application/json")


@app.route(route="ops/{instance_id}/{op:alpha}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def http_ops(req: func.HttpRequest, client: df.DurableOrchestrationClient):
    """suspend, resume or restart an instance through the SDK's client."""
    iid, op = req.route_params["instance_id"], req.route_params["op"]
    if op == "restart":
        return func.HttpResponse(json.dumps({"id": await client.restart(iid)}))
    await getattr(client, op)(iid, "from a test")
    return func.HttpResponse(status_code=202)


@app.route(route="items/{id:int}/{label?}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def item(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"id": int(req.route_params["id"]),
                                         "label": req.route_params.get("label"),
                                         "q": req.params.get("q")}),
                             mimetype="application/json")


@app.route(route="whoami", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def whoami(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"function": context.function_name,
                                         "invocation": context.invocation_id}),
                             mimetype="application/json")


@app.route(route="admin-only", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
def admin_only(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("admin")


@app.route(route="boom", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("secret-value-should-not-leak")
