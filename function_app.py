"""cotenant's control plane: an Azure Functions app (Python v2 model, Durable Functions).

The front door only registers blueprints:
- ``cotenant.api.http``: the HTTP API (function-key auth; OpenAPI at /api/openapi.yaml);
- ``cotenant.api.events``: the ``guest-reports`` queue trigger and the rotation timer;
- ``orchestrators``: deploy_tenant, provision_party, monitor_deployment, rotate_keys,
  teardown_tenant;
- ``activities``: thin, idempotent calls into ``cotenant.cloud``.
"""

import logging

import azure.durable_functions as df
import azure.functions as func

import activities
import orchestrators
from cotenant.api import events, http

# One line per storage/ARM request at INFO drowns the app's own log; keep warnings only.
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in (http.bp, events.bp, orchestrators.bp, activities.bp):
    app.register_functions(blueprint)
