"""Activities for the parties' app keys, challenges and agent commands."""

from __future__ import annotations

import secrets
from typing import Any

from activities.agent import command_queue
from activities.blueprint import bp
from activities.common import activity, cloud, plan_of
from cotenant.wire.commands import Command
from cotenant.wire.fields import KeyRef


@bp.activity_trigger(input_name="payload")
def new_challenge(payload: Any) -> dict[str, Any]:
    """A fresh, unpredictable challenge nonce (recorded in history, so replays reuse it)."""
    return {"ok": True, "nonce": secrets.token_urlsafe(32)}


@bp.activity_trigger(input_name="payload")
@activity
def ensure_app_key(payload: dict[str, Any]) -> dict[str, Any]:
    """Create the party's exportable RSA-HSM app key with its release policy (once)."""
    plan = plan_of(payload)
    me = plan.party(payload["party"])
    key = cloud().ensure_key(me.vault_name, me.app_key_name, release_policy=me.release_policy,
                             size=me.app_key_size)
    return {"key": key.model_dump(mode="json", exclude={"release_policy"}),
            "has_release_policy": key.release_policy is not None}


@bp.activity_trigger(input_name="payload")
@activity
def read_app_key(payload: dict[str, Any]) -> dict[str, Any]:
    plan = plan_of(payload)
    me = plan.party(payload["party"])
    key = cloud().get_key(me.vault_name, me.app_key_name)
    return {"version": key.version, "has_release_policy": key.release_policy is not None}


@bp.activity_trigger(input_name="payload")
@activity
def rotate_app_key(payload: dict[str, Any]) -> dict[str, Any]:
    """New version after ``after_version`` (idempotent); re-apply a missing release policy."""
    plan = plan_of(payload)
    me = plan.party(payload["party"])
    target = cloud()
    reapplied = False
    current = target.get_key(me.vault_name, me.app_key_name)
    if current.release_policy is None:
        target.set_release_policy(me.vault_name, me.app_key_name, me.release_policy)
        reapplied = True
    new = target.new_key_version(me.vault_name, me.app_key_name,
                                 release_policy=me.release_policy,
                                 after_version=payload["after_version"])
    if new.release_policy is None:
        target.set_release_policy(me.vault_name, me.app_key_name, me.release_policy)
        reapplied = True
    return {"old_version": payload["after_version"], "new_version": new.version,
            "policy_reapplied": reapplied}


@bp.activity_trigger(input_name="payload")
@activity
def send_rotate_commands(payload: dict[str, Any]) -> dict[str, Any]:
    """A ``rotate`` command to every agent allowed to release each rotated key."""
    plan = plan_of(payload)
    target = cloud()
    sent = []
    for owner in plan.parties:
        version = payload["versions"][owner.party]
        for grantee in owner.releasable_by:
            command = Command(
                command="rotate",
                id=f"{payload['instance']}:{owner.party}:{grantee}",
                instance=payload["instance"],
                nonce=payload["nonce"],
                key=KeyRef(vault_url=target.vault_url(owner.vault_name),
                           name=owner.app_key_name),
                version=version,
            )
            target.send_command(command_queue(plan.tenant, grantee),
                                command.model_dump(mode="json", exclude_none=True))
            sent.append({"agent": grantee, "key": owner.app_key_name, "version": version})
    return {"sent": sent}
