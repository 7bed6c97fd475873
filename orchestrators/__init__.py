"""Deterministic Durable orchestrators: deploy, provision a party, monitor a deployment,
rotate keys, tear down. Importing this package registers them on :data:`bp`."""

from orchestrators import deploy, monitor, party, rotate, teardown  # noqa: F401 - registration
from orchestrators.blueprint import bp

__all__ = ["bp"]
