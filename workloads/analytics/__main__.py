"""Serve a party's analytics app: ``python -m workloads.analytics --config app.toml``
(``--check-config``: only validate the file, as the CVM's bootstrap does before starting it).

uvicorn runs the workers; each worker builds the app from the same config, and the
aggregation run is elected once per deployment (see ``runonce``).
"""

from __future__ import annotations

import argparse
import os
import sys

import uvicorn

from workloads.analytics.asgi import CONFIG_ENV
from workloads.analytics.config import AppConfigError, load_app_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workloads.analytics")
    parser.add_argument("--config", required=True, help="the app's TOML configuration")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--check-config", action="store_true",
                        help="validate the configuration and exit (exit 2 + one line a problem)")
    args = parser.parse_args(argv)
    try:
        load_app_config(args.config)  # fail fast, once, before any worker starts
    except AppConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.check_config:
        return 0
    os.environ[CONFIG_ENV] = os.path.abspath(args.config)
    uvicorn.run(
        "workloads.analytics.asgi:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        proxy_headers=False,
        server_header=False,
        log_level="warning",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
