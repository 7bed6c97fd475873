"""Fixtures for the workloads tests: the lab (a real `cotenant lab serve` process)."""

from cotenant.lab.testing import lab  # noqa: F401  (session fixture)
