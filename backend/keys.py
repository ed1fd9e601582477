"""Typed application keys: every long-lived object the app holds, in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from backend.clock import Clock
from backend.config import Config, LiveConfig
from backend.ids import IdGen
from backend.storage import Store

if TYPE_CHECKING:
    from backend.auditlog import AuditLog
    from backend.faults import FaultBoard
    from backend.metrics import Metrics

CONFIG = web.AppKey("config", Config)
LIVE = web.AppKey("live_config", LiveConfig)
"""The configuration as it is now: ``CONFIG`` with the run-time settings applied."""
STORE = web.AppKey("store", Store)
CLOCK = web.AppKey("clock", Clock)
IDS = web.AppKey("ids", IdGen)
FAULTS: web.AppKey[FaultBoard] = web.AppKey("faults")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
AUDIT: web.AppKey[AuditLog] = web.AppKey("audit")
STATE = web.AppKey("state", dict[str, Any])
"""Per-subsystem mutable state (caches, task sets), keyed by subsystem name."""
