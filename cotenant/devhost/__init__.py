"""Run a Python v2 Azure Functions app locally, with a real Durable engine, without Core Tools.

``cotenant devhost --app function_app.py`` (see docs/devhost.md); in tests use
:mod:`cotenant.devhost.testing`.
"""

from .server import DevHost

__all__ = ["DevHost"]
