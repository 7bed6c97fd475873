"""The wire formats shared by the control plane, the guest agent and the analytics app.

Guest reports (``guest-reports`` queue, ``reports``: their event names too) and guest commands
(per-party command queue, ``commands``); the guest agent's configuration (``agent_config``)
and the analytics app's (``app``), both written by the control plane into a CVM's bootstrap.
Pydantic models, JSON schema and encode/decode. Pure: no I/O, no Azure SDK, so the guest
agent's wheel, the app's wheel, the function app's edge and the orchestrators can all import it.
"""
