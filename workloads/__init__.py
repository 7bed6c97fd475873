"""What runs inside each party's Confidential VM, next to the guest agent.

``workloads.analytics`` is the partner analytics web app (one per party; Woodgrove's also
aggregates its partners' sealed data); ``workloads.training`` is the confidential model
training job. Both get keys only through the guest agent's local API
(``guest_agent.client.AgentClient``) and never hold a party's plaintext on disk.
"""
