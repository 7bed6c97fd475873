"""Verification: the control plane checks every attestation itself and the final trust matrix.

``verify_attestation`` checks with the cloud that the party's VM is a Confidential VM, verifies
the token the agent sent (issuer in the allow-list, signature from the issuer's JWKS, expiry,
nonce = the orchestration's challenge), that the token names that very VM (its VM id claims
equal the unique id the cloud reports for the party's VM) and that its claims satisfy the
party's key release policy and that the VM is not debuggable.
``finalize_tenant`` reads every key's release grants back from the cloud and compares them and
the releases the agents observed with the spec's access matrix.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from activities.blueprint import bp
from activities.common import activity, cloud, failed, plan_of
from cotenant.cloud.base import VmInfo
from cotenant.crypto.tokens import TokenError, TokenVerifier
from cotenant.plan import Plan
from cotenant.policy import evaluate

_verifiers: dict[tuple[str, str], TokenVerifier] = {}
_lock = threading.Lock()


def verifier(authority: str, tls_verify: bool | str) -> TokenVerifier:
    key = (authority, str(tls_verify))
    with _lock:
        if key not in _verifiers:
            _verifiers[key] = TokenVerifier([authority], verify=tls_verify)
        return _verifiers[key]


def token_vm_ids(claims: dict[str, Any]) -> list[str]:
    """The VM identities a token names: ``x-ms-azurevm-vmid`` and the TEE's runtime
    ``vm-configuration.vmUniqueId``."""
    tee = claims.get("x-ms-isolation-tee")
    runtime = tee.get("x-ms-runtime") if isinstance(tee, dict) else None
    config = runtime.get("vm-configuration") if isinstance(runtime, dict) else None
    found = [claims.get("x-ms-azurevm-vmid"),
             config.get("vmUniqueId") if isinstance(config, dict) else None]
    return [v for v in found if isinstance(v, str) and v]


def vm_identity_problem(vm: VmInfo, claims: dict[str, Any]) -> str | None:
    """Why the token is not bound to ``vm`` (the party's VM as the cloud reports it), or None.

    Every VM identity the token names must equal the VM's unique id (GUIDs, compared
    case-insensitively): a valid token from another Confidential VM — another party's, with
    the right nonce — must not attest this party."""
    expected = (vm.vm_unique_id or "").strip().lower()
    if not expected:
        return (f"the cloud reports no unique id for VM {vm.name}, so the attestation token "
                "cannot be tied to it")
    named = token_vm_ids(claims)
    if not named:
        return "the attestation token names no VM (x-ms-azurevm-vmid / vmUniqueId)"
    wrong = sorted({v for v in named if v.strip().lower() != expected})
    if wrong:
        return (f"the attestation token was issued to VM {', '.join(wrong)}, not to the "
                f"party's VM {vm.name} ({vm.vm_unique_id})")
    return None


@bp.activity_trigger(input_name="payload")
@activity
def verify_attestation(payload: dict[str, Any]) -> dict[str, Any]:
    plan = plan_of(payload)
    party = payload["party"]
    me = plan.party(party)
    token = payload.get("token")
    if not token:
        return failed(f"party {party}: the attested report carried no token", me.vm_name)
    vm = cloud().get_vm(plan.resource_group, me.vm_name)
    if vm.security_type != "ConfidentialVM":
        return failed(f"party {party}: the VM's security type is {vm.security_type}, not "
                      "ConfidentialVM", me.vm_name)
    try:
        claims = verifier(plan.authority, cloud().tls_verify).verify(
            token, nonce=payload["nonce"])
    except TokenError as exc:
        return failed(f"party {party}: attestation token refused ({exc.code}): {exc}",
                      me.vm_name)
    mismatch = vm_identity_problem(vm, claims.claims)
    if mismatch:
        return failed(f"party {party}: {mismatch}", me.vm_name)
    if claims.is_debuggable:
        return failed(f"party {party}: the VM is debuggable (x-ms-sevsnpvm-is-debuggable); "
                      "a debuggable VM can be inspected by its host and is not trusted",
                      me.vm_name)
    decision = evaluate(me.release_policy, claims.claims)
    if not decision.allowed:
        return failed(f"party {party}: the token does not satisfy the key release policy: "
                      f"{decision.explanation}", me.vm_name)
    return {"summary": {
        "vm_security_type": vm.security_type,
        "issuer": claims.issuer,
        "attestation_type": claims.tee_type,
        "compliance_status": claims.compliance_status,
        "debuggable": claims.is_debuggable,
        "secure_boot": claims.secure_boot,
        "nonce_matches_challenge": True,
        "expires_at": claims.expires_at.isoformat() if claims.expires_at else None,
        "policy": decision.explanation,
    }}


READBACK_CONCURRENCY = 8


def grants_readback(plan: Plan) -> tuple[dict[str, list[str]], list[str]]:
    """Key owner → parties holding a release grant on its key (read from the cloud), and
    the differences from the plan.

    A release grant is any assignment whose role allows key release (Crypto Service Release
    User, Crypto Officer, Administrator, custom roles with ``keys/release``) at the key's
    scope or inherited from its vault or resource group: a vault-wide grant releases the key
    as surely as a per-key one. Any other holder — the control plane's operator included —
    is a difference."""
    target = cloud()
    # Two reads per party, independent of each other: made at once (ten parties, twenty
    # round trips, would otherwise add seconds to the end of every deployment).
    with ThreadPoolExecutor(max_workers=READBACK_CONCURRENCY) as pool:
        identities = pool.map(lambda p: target.get_identity(plan.resource_group,
                                                             p.identity_name), plan.parties)
        grants = pool.map(lambda p: target.list_key_grants(plan.resource_group, p.vault_name,
                                                           p.app_key_name), plan.parties)
        identities, grants = list(identities), list(grants)
    principal_to_party = {target.operator.principal_id: "the control plane operator"}
    principal_to_party.update({identity.principal_id: p.party
                               for p, identity in zip(plan.parties, identities, strict=True)})
    holders: dict[str, list[str]] = {}
    problems = []
    for owner, found in zip(plan.parties, grants, strict=True):
        parties = sorted({principal_to_party.get(g.principal_id, g.principal_id)
                          for g in found if g.is_release_role})
        holders[owner.party] = parties
        expected = sorted(owner.releasable_by)
        if parties != expected:
            problems.append(f"{owner.app_key_name}: release grants held by {parties or 'nobody'}"
                            f", the spec says {expected}")
    return holders, problems


def trust_matrix(plan: Plan, parties: list[dict[str, Any]],
                 holders: dict[str, list[str]]) -> tuple[list[dict[str, Any]], list[str]]:
    observed = {r["party"]: r.get("releases") or {} for r in parties}
    rows, problems = [], []
    for owner in plan.parties:
        for grantee in plan.parties:
            expected = plan.access_matrix.can_release(owner.party, grantee.party)
            seen = observed.get(grantee.party, {}).get(owner.party) or {"outcome": "missing"}
            outcome = seen["outcome"]
            ok = (outcome == "released") if expected else (outcome == "refused")
            rows.append({
                "key_owner": owner.party, "key": owner.app_key_name, "vm": grantee.vm_name,
                "party": grantee.party, "expected": "release" if expected else "refuse",
                "granted": grantee.party in holders.get(owner.party, []),
                "outcome": outcome, "version": seen.get("version"),
                "refusal": seen.get("code") if outcome != "released" else None,
                "verified": ok,
            })
            if not ok:
                problems.append(
                    f"{grantee.party}'s VM {outcome} {owner.app_key_name}, expected to "
                    f"{'release' if expected else 'be refused'}")
    return rows, problems


@bp.activity_trigger(input_name="payload")
@activity
def finalize_tenant(payload: dict[str, Any]) -> dict[str, Any]:
    plan = plan_of(payload)
    holders, grant_problems = grants_readback(plan)
    rows, matrix_problems = trust_matrix(plan, payload["parties"], holders)
    problems = grant_problems + matrix_problems
    if problems:
        return failed("the deployed tenant does not match its spec: " + "; ".join(problems))
    return {"trust_matrix": rows, "grants": holders}
