"""The application factory: ``create_app(config)`` and one ``setup`` per concern.

Every long-lived resource (the store, background workers) is opened in a cleanup context
and closed when the app stops, in reverse order.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from backend import accounts, admin, meta, voice
from backend.auditlog import append as audit_append
from backend.clock import Clock
from backend.config import Config, LiveConfig
from backend.errors import ConfigError, error_middleware
from backend.faults import FaultBoard
from backend.files import private_dir, tighten, write_private
from backend.http import MAX_BODY
from backend.ids import IdGen
from backend.ingest import setup as setup_ingest
from backend.keys import CLOCK, CONFIG, FAULTS, IDS, LIVE, METRICS, STORE
from backend.metrics import Metrics
from backend.privacy import setup as setup_privacy
from backend.storage import Store
from backend.web import setup_web

log = logging.getLogger("overheard")


MIN_ADMIN_TOKEN = 16
"""Shortest admin token accepted: the admin can read every mailbox and switch every fault."""


def resolve_config(config: Config) -> Config:
    """Prepare the data dir (0700, its files 0600) and fill in the admin token and link
    secret from it when not given; :class:`ConfigError` for an admin token too short."""
    data = private_dir(Path(config.data_dir))
    tightened = tighten(data)
    if tightened:
        log.warning("data dir %s: %d file modes tightened to owner-only", data, tightened)
    token = config.admin_token or _secret_file(
        data / "admin-token", lambda: "adm_" + secrets.token_urlsafe(32))
    if len(token) < MIN_ADMIN_TOKEN:
        raise ConfigError(f"the admin token has {len(token)} characters; at least "
                          f"{MIN_ADMIN_TOKEN} are required")
    link_secret = config.link_secret or _secret_file(
        data / "link-secret", lambda: secrets.token_hex(32)).encode()
    if (token, link_secret) == (config.admin_token, config.link_secret):
        return config
    return replace(config, admin_token=token, link_secret=link_secret)


def _secret_file(path: Path, make: Callable[[], str]) -> str:
    if path.exists():
        return path.read_text().strip()
    value = make()
    write_private(path, value + "\n")
    return value


def create_app(config: Config) -> web.Application:
    """Build the backend for ``config``; nothing is opened until the app starts."""
    config = resolve_config(config)
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY)
    app[CONFIG] = config
    app[LIVE] = LiveConfig(config)
    app[CLOCK] = Clock(start=config.clock_start, frozen=config.clock_frozen)
    app[IDS] = IdGen(config.id_seed, config.id_epoch)
    app[FAULTS] = FaultBoard(config.faults, config.guards)
    app[METRICS] = Metrics()
    app.cleanup_ctx.append(_store_ctx)
    meta.setup(app)
    admin.setup(app)
    accounts.setup(app)
    setup_ingest(app)
    voice.setup(app)
    setup_privacy(app)
    setup_web(app)
    return app


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    store = Store(config.db_path, synchronous=config.synchronous, max_batch=config.max_batch)
    app[STORE] = store
    clock = app[CLOCK]
    await store.write(lambda db: audit_append(
        db, at=clock.iso(), actor="system", action="backend.started",
        detail={"faults": sorted(config.faults), "guards": sorted(config.guards)},
    ))
    log.info("store open at %s", config.db_path)
    try:
        yield
    finally:
        store.close()
