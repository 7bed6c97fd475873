"""The guest agent's configuration for one party's CVM (``cotenant.wire.agent_config``).

Least privilege: the agent's allow-list (``keys``: what it releases at start-up and what its
local API may serve to the workload) holds only the keys this party's CVM is granted by the
plan's access matrix (``PartyPlan.can_release``). Every other key of the tenant is an
``isolation_probes`` entry: the agent asks the owning party's vault for it once at start-up
and reports the refusal (``isolation-refused``), or ``isolation-broken`` if the vault released
it. Each key of the tenant thus gets one real attempt, the evidence of the trust matrix.
"""

from __future__ import annotations

from cotenant.cloud.base import Cloud
from cotenant.plan import Plan
from cotenant.wire.agent_config import AgentConfig

REPORTS_QUEUE = "guest-reports"


def command_queue(tenant: str, party: str) -> str:
    return f"cmd-{tenant}-{party}"


def agent_config(cloud: Cloud, plan: Plan, party: str, *, nonce: str, instance: str,
                 client_id: str) -> AgentConfig:
    settings = cloud.agent_settings()
    base = settings.queue_account_url.rstrip("/")
    queues = {
        "reports_url": f"{base}/{REPORTS_QUEUE}",
        "commands_url": f"{base}/{command_queue(plan.tenant, party)}",
    }
    if settings.queue_connection_string:
        queues["connection_string"] = settings.queue_connection_string
    me = plan.party(party)
    refs = {p.party: {"vault_url": cloud.vault_url(p.vault_name), "name": p.app_key_name}
            for p in plan.parties}
    return AgentConfig.model_validate({
        "tenant": plan.tenant,
        "party": party,
        "vm_name": me.vm_name,
        "backend": settings.backend,
        "orchestration": {"instance": instance, "nonce": nonce},
        "attestation": {"endpoint": plan.authority},
        "identity": {"client_id": client_id, "imds_endpoint": settings.imds_endpoint},
        "keys": [ref for owner, ref in refs.items() if owner in me.can_release],
        "isolation_probes": [ref for owner, ref in refs.items() if owner not in me.can_release],
        "queues": queues,
        "api": {"listen": settings.api_listen},
        "tls": {"ca_bundle": settings.ca_bundle} if settings.ca_bundle else {},
    })
