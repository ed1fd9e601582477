"""Run the backend as a server: ``overheard serve`` and ``python -m backend``."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from aiohttp import web

from backend import logsafe
from backend.app import create_app
from backend.config import Config
from backend.errors import ConfigError
from backend.keys import CONFIG
from backend.settings import BackendSettings, serve_settings

MANUAL_REVIEW_HELP = ("request kinds that wait for an operator: access, erasure, both "
                      "(access,erasure) or none (the default)")
LINK_TTL_HELP = "how long a download link works: 5d (the default), 36h, 90m or seconds"
CONFIG_HELP = ("TOML file with the keys of a scenario's [backend] table (manual_review, "
               "link_ttl, export_workers); flags override it")


async def serve(config: Config, host: str, port: int, *, ready_line: bool = True) -> None:
    """Serve until SIGINT/SIGTERM; print ``listening on URL`` first once the socket is bound."""
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None, handle_signals=False,
                           keepalive_timeout=app[CONFIG].keepalive_timeout)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    bound = runner.addresses[0]
    url = f"http://{_host_for_url(host)}:{bound[1]}"
    if ready_line:
        print(f"listening on {url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


FLAG_WARNING = ("warning: --admin-token puts the token in the process list, where every local "
                "user can read it; set OVERHEARD_ADMIN_TOKEN or let the backend keep it in "
                "DATA/admin-token (mode 0600)")


def run(data: Path, host: str, port: int, admin_token: str | None, log_level: str = "INFO",
        settings: BackendSettings | None = None) -> None:
    """Serve with ``settings`` (manual review, link lifetime, export workers) over the
    defaults; ``admin_token`` is the ``--admin-token`` flag (the environment is read here).
    A setting the backend refuses ends the process with exit 2 and one line on stderr."""
    logging.basicConfig(level=log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logsafe.install()
    if admin_token:
        print(FLAG_WARNING, file=sys.stderr, flush=True)
    token = admin_token or os.environ.get("OVERHEARD_ADMIN_TOKEN", "")
    # Test-only crash point (backend.crashpoints), read once here; off unless set.
    crash_at = os.environ.get("OVERHEARD_CRASH_AT", "")
    if crash_at:
        from backend.crashpoints import parse

        parse(crash_at)  # a typo must fail the start, not silently never crash
    config = Config(data_dir=data, admin_token=token, crash_at=crash_at)
    if settings is not None:
        config = settings.apply(config)
    try:
        asyncio.run(serve(config, host, port))
    except ConfigError as exc:
        print(f"overheard: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m backend", description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data"), help="data directory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--admin-token", default=None,
                        help="default: $OVERHEARD_ADMIN_TOKEN, else generated into DATA/admin-token")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--manual-review", default=None, metavar="KINDS",
                        help=MANUAL_REVIEW_HELP)
    parser.add_argument("--link-ttl", default=None, metavar="DURATION", help=LINK_TTL_HELP)
    parser.add_argument("--config", type=Path, default=None, metavar="FILE", help=CONFIG_HELP)
    args = parser.parse_args(argv)
    try:
        settings = serve_settings(args.config, args.manual_review, args.link_ttl)
    except ConfigError as exc:
        parser.exit(2, f"error: {exc}\n")
    run(args.data, args.host, args.port, args.admin_token, args.log_level, settings)
