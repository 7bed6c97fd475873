"""cotenant: multi-party confidential computing on Azure Confidential VMs."""

__version__ = "0.1.0"
