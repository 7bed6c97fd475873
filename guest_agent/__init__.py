"""The cotenant guest agent: the program on every Confidential VM.

It attests the VM, releases exactly the keys its identity was granted (into memory only),
reports each step to the control plane over a storage queue, obeys the per-party command
queue and serves workloads a loopback-only SKR API (see ``guest_agent.api``).
"""

__version__ = "0.1.0"
