"""The guest agent's configuration for one party's CVM (``guest_agent.config.AgentConfig``).

The agent attempts the release of **every** key of the tenant: the ones its identity is
granted must be released, the others must be refused by the owning party's vault; both
outcomes are reported and checked against the spec's access matrix.
"""

from __future__ import annotations

from cotenant.cloud.base import Cloud
from cotenant.plan import Plan
from guest_agent.config import AgentConfig

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
    return AgentConfig.model_validate({
        "tenant": plan.tenant,
        "party": party,
        "vm_name": me.vm_name,
        "backend": settings.backend,
        "orchestration": {"instance": instance, "nonce": nonce},
        "attestation": {"endpoint": plan.authority},
        "identity": {"client_id": client_id, "imds_endpoint": settings.imds_endpoint},
        "keys": [{"vault_url": cloud.vault_url(p.vault_name), "name": p.app_key_name}
                 for p in plan.parties],
        "queues": queues,
        "api": {"listen": settings.api_listen},
        "tls": {"ca_bundle": settings.ca_bundle} if settings.ca_bundle else {},
    })
