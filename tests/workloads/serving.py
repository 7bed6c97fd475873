"""Run a party's analytics app the way a CVM does (``python -m workloads.analytics``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from workloads.analytics.config import parse_app_config
from workloads.analytics.launch import launch_app, stop_app


@contextlib.contextmanager
def serve_app(data: dict[str, Any], directory: Path, *, workers: int = 2) -> Iterator[str]:
    """Launch the app for config ``data`` (files under ``directory``); yield its base URL."""
    app = launch_app(parse_app_config(data), directory, workers=workers)
    try:
        yield app.url
    finally:
        stop_app(app)
