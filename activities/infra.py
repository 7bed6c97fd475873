"""Activities for the spec, the resource group and module deployments."""

from __future__ import annotations

import secrets
import string
import time
from typing import Any

from activities.agent import agent_config, command_queue
from activities.blueprint import bp
from activities.common import activity, cloud, failed, plan_of
from activities.data import data_inputs
from cotenant.appconfig import azure_app_config
from cotenant.cloud.base import Cloud, DeploymentState, ResourceGroupState
from cotenant.cloud.bootstrap import render_bootstrap
from cotenant.deployments import DeploymentInputError, deployment_name, module_parameters
from cotenant.plan import Plan, build_plan
from cotenant.spec import SpecError, parse_spec

_PASSWORD_ALPHABET = string.ascii_letters + string.digits + "-_.!#%+=@"


def new_password(length: int = 40) -> str:
    """A random password with every character class (cryptographic randomness)."""
    while True:
        value = "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(length))
        if (any(c.islower() for c in value) and any(c.isupper() for c in value)
                and any(c.isdigit() for c in value) and any(not c.isalnum() for c in value)):
            return value


def new_username() -> str:
    return f"op{secrets.token_hex(4)}"


@bp.activity_trigger(input_name="payload")
def new_debug_credentials(payload: Any) -> dict[str, Any]:
    """Admin credentials of a debug tenant's VM: they are shown in its status (and so kept
    in the orchestration history) because the spec asked for debug mode."""
    return {"ok": True, "username": new_username(), "password": new_password()}


def secure_inputs(target: Cloud, plan: Plan, module: str, party: str | None,
                  extra: dict[str, Any]) -> dict[str, Any]:
    """The run-time inputs of ``module`` (secrets are made here and never leave the activity,
    so they are not written to the orchestration history)."""
    if module == "party":
        return target.operator.party_inputs()
    if module == "grants":
        assert party is not None
        grants = plan.grants_for_key(party)
        found = target.get_identities(plan.resource_group, [g.grantee_identity for g in grants])
        return {"principal_ids": {g.grantee: found[g.grantee_identity].principal_id
                                  for g in grants}}
    if module == "data":
        assert party is not None
        return data_inputs(target, plan, party)
    if module == "cvm":
        assert party is not None
        me = plan.party(party)
        identity = target.get_identity(plan.resource_group, me.identity_name)
        config = agent_config(target, plan, party, nonce=extra["nonce"],
                              instance=extra["instance"], client_id=identity.client_id)
        target.ensure_command_queue(command_queue(plan.tenant, party))
        app = azure_app_config(plan, party, identity_client_id=identity.client_id,
                               agent_url=f"http://{config.api.listen}",
                               ca_bundle=config.tls.ca_bundle)
        debug = extra.get("debug_credentials") if plan.debug else None
        install = target.agent_settings().install
        return {"admin_username": debug["username"] if debug else new_username(),
                "admin_password": debug["password"] if debug else new_password(),
                "bootstrap_script": render_bootstrap(
                    config.to_toml(), install, app.to_toml() if app is not None else None),
                "bootstrap_file_uris": install.file_uris()}
    return {}


@bp.activity_trigger(input_name="payload")
def validate_spec(payload: dict[str, Any]) -> dict[str, Any]:
    try:
        plan = build_plan(parse_spec(payload))
    except SpecError as exc:
        return failed("; ".join(f"{p.path}: {p.message}" for p in exc.problems))
    return {"ok": True, "plan": plan.outline()}


@bp.activity_trigger(input_name="payload")
@activity
def ensure_resource_group(payload: dict[str, Any]) -> dict[str, Any]:
    plan = plan_of(payload)
    cloud().ensure_resource_group(plan.resource_group, plan.location,
                                  {"cotenant-tenant": plan.tenant})
    return {"resource_group": plan.resource_group}


# An activity holds a worker slot while it waits: keep the wait short.
MAX_WAIT_SECONDS = 5.0


def _wait_of(payload: dict[str, Any]) -> float:
    """How long this step may wait for the deployment to end (bounded)."""
    return min(float(payload.get("wait_seconds") or 0.0), MAX_WAIT_SECONDS)


@bp.activity_trigger(input_name="payload")
@activity
def start_deployment(payload: dict[str, Any]) -> dict[str, Any]:
    plan = plan_of(payload)
    module, party = payload["module"], payload.get("party")
    target = cloud()
    name = deployment_name(plan, module, party)
    try:
        params = module_parameters(plan, module, party,
                                   **secure_inputs(target, plan, module, party,
                                                   payload.get("extra") or {}))
    except DeploymentInputError as exc:
        return failed(f"parameters of module {module}: {exc}", name)
    found = target.start_deployment(plan.resource_group, name, module, params)
    wait = _wait_of(payload)
    if wait > 0 and not found.state.terminal:  # a short deployment ends within this step
        found = target.get_deployment(plan.resource_group, name, wait_seconds=wait)
    return {"deployment": _dump(found)}


def _dump(deployment: Any) -> dict[str, Any]:
    return {**deployment.model_dump(mode="json"), "retryable": deployment.retryable}


@bp.activity_trigger(input_name="payload")
@activity
def get_deployment(payload: dict[str, Any]) -> dict[str, Any]:
    """The deployment's state. With ``wait_seconds``, re-read it every ``poll_seconds`` until
    it ends or that time has passed (one orchestration step per wait rather than per poll)."""
    target = cloud()
    wait = _wait_of(payload)
    interval = max(float(payload.get("poll_seconds") or 1.0), 0.05)
    deadline = time.monotonic() + wait
    while True:
        found = target.get_deployment(payload["resource_group"], payload["name"],
                                      wait_seconds=max(0.0, deadline - time.monotonic()))
        if found.state is DeploymentState.NOT_FOUND:
            return failed("the deployment disappeared", f"{found.resource_group}/{found.name}")
        if found.state.terminal or time.monotonic() + interval > deadline:
            return {"deployment": _dump(found)}
        time.sleep(interval)


@bp.activity_trigger(input_name="payload")
@activity
def delete_resource_group(payload: dict[str, Any]) -> dict[str, Any]:
    plan = plan_of(payload)
    return {"state": cloud().begin_delete_resource_group(plan.resource_group).value}


@bp.activity_trigger(input_name="payload")
@activity
def resource_group_state(payload: dict[str, Any]) -> dict[str, Any]:
    plan = plan_of(payload)
    state: ResourceGroupState = cloud().resource_group_state(plan.resource_group)
    return {"state": state.value}


@bp.activity_trigger(input_name="payload")
@activity
def purge_vaults(payload: dict[str, Any]) -> dict[str, Any]:
    plan = plan_of(payload)
    for party in plan.parties:
        cloud().purge_vault(party.vault_name, plan.location)
    return {"purged": [p.vault_name for p in plan.parties]}
