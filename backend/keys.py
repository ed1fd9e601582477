"""Typed application keys for the objects every part of the app shares.

A subsystem's own objects (caches, budgets, task sets) have their keys in its module and
are made in its ``setup``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from backend.clock import Clock
from backend.config import Config, LiveConfig
from backend.ids import IdGen
from backend.storage import Store

if TYPE_CHECKING:
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
