"""The wire formats shared by the control plane and the guest agent.

Guest reports (``guest-reports`` queue) and guest commands (per-party command queue): their
pydantic models, JSON schema and encode/decode. Pure: no I/O, no Azure SDK, so the guest
agent's wheel, the function app's edge and the orchestrators can all import it.
"""
