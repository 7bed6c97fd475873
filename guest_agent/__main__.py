"""``python -m guest_agent run --config agent.toml`` (also ``check-config``, ``report-schema``)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from guest_agent.config import ConfigError, load_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="guest_agent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="attest, release, report, then serve the local API")
    run.add_argument("--config", required=True)
    run.add_argument("--log-level", default="INFO")
    check = sub.add_parser("check-config", help="validate a configuration file")
    check.add_argument("--config", required=True)
    sub.add_parser("report-schema", help="print the report JSON schema")
    return parser


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _run(config_path: str, log_level: str) -> int:
    config = load_config(config_path)  # fail fast, before the heavy imports
    from guest_agent.backends import AttestationError, create_backend
    from guest_agent.tee import Tee

    # The attestation round trip overlaps the rest of the start-up (imports, TLS contexts).
    tee: Tee | None = None
    try:
        tee = Tee(create_backend(config))
        tee.prefetch(config.orchestration.nonce)
    except AttestationError as exc:
        backend_error: AttestationError | None = exc
    else:
        backend_error = None
    from guest_agent.agent import Agent
    from guest_agent.server import BindRefused, bind, make_server

    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The Azure SDK logs request headers at INFO; keep it quiet.
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        sock = bind(config.api)
    except BindRefused as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot listen on {config.api.listen}: {exc.strerror or exc}")
    if backend_error is not None or tee is None:
        sock.close()
        return _fail(f"cannot start: {backend_error}")
    try:
        agent = Agent.from_config(config, tee=tee)
        server = make_server(agent)
    except (AttestationError, OSError, ValueError) as exc:
        sock.close()
        return _fail(f"cannot start: {exc}")
    try:
        agent.bootstrap()
        agent.start_background()
        server.run(sockets=[sock])
    finally:
        sock.close()
        agent.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "report-schema":
            from cotenant.wire.reports import json_schema

            print(json.dumps(json_schema(), indent=2))
            return 0
        if args.command == "check-config":
            config = load_config(args.config)
            print(f"ok: {config.tenant}/{config.party} on {config.vm_name}, "
                  f"{len(config.keys)} key(s)")
            return 0
        return _run(args.config, args.log_level)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    # Start-up cost (every VM runs this): modules imported only to be probed for are kept
    # out. azure-storage-queue imports aiohttp (and builds its TLS contexts, ~0.2 s of CPU)
    # to look for its async transport, the agent's clients being synchronous; httpx imports
    # its command-line tool (rich, pygments, ~0.1 s) if it can. Both fall back cleanly.
    for _unused in ("aiohttp", "httpx._main"):
        sys.modules.setdefault(_unused, None)  # type: ignore[arg-type]
    sys.exit(main())
