"""The one blueprint every activity registers on (mounted by ``function_app.py``)."""

import azure.durable_functions as df

bp = df.Blueprint()
