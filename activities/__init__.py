"""Durable activities: thin, idempotent calls into ``cotenant.cloud``. Importing this package
registers them on :data:`bp`."""

from activities import audit, infra, keys, verify  # noqa: F401 - registration
from activities.blueprint import bp

__all__ = ["bp"]
