"""The ASGI entry point for uvicorn workers: the config path comes from the environment."""

from __future__ import annotations

import os

from starlette.applications import Starlette

from workloads.analytics.app import build_app
from workloads.analytics.config import load_app_config

CONFIG_ENV = "COTENANT_ANALYTICS_CONFIG"


def create_app() -> Starlette:
    return build_app(load_app_config(os.environ[CONFIG_ENV]))
