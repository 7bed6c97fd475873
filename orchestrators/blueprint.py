"""The one blueprint every orchestrator registers on (mounted by ``function_app.py``)."""

import azure.durable_functions as df

bp = df.Blueprint()
