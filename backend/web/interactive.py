"""A run that waits for a person at the console.

``overheard run FILE --interactive`` plays a scenario until its operator step, then hands
the review queue to a person in a browser and waits in :func:`await_console` until the
queue has no request left for review or the person presses "Done". Waking is driven by the
operator steps themselves (each one signals ``ops.QUEUE_CHANGED``), not by polling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import sqlite_utils
from aiohttp import web

from backend.keys import STORE
from backend.privacy.ops import QUEUE_CHANGED
from backend.privacy.state import privacy_state


@dataclass
class ConsoleWatch:
    """Whether a run is waiting for the console, and whether the person said they are done."""

    active: bool = False
    done: bool = False


WATCH = web.AppKey("console_watch", ConsoleWatch)


def watch_of(app: web.Application) -> ConsoleWatch:
    return app[WATCH]


def setup_watch(app: web.Application) -> None:
    app[WATCH] = ConsoleWatch()


def mark_done(app: web.Application) -> None:
    """The person at the console is done; a waiting run carries on."""
    watch_of(app).done = True
    privacy_state(app).changed(QUEUE_CHANGED)


def _in_review(db: sqlite_utils.Database) -> int:
    return int(db.execute(
        "SELECT COUNT(*) FROM privacy_requests WHERE status = 'pending'").fetchone()[0])


async def await_console(app: web.Application) -> Literal["empty", "done"]:
    """Wait until no request is pending review (``empty``) or the person pressed Done."""
    watch = watch_of(app)
    watch.active, watch.done = True, False
    state = privacy_state(app)
    try:
        while True:
            # Take the event before reading, so a step between the two is not missed.
            event = state.waiter(QUEUE_CHANGED)
            if watch.done:
                return "done"
            if await app[STORE].read(_in_review) == 0:
                return "empty"
            await event.wait()
    finally:
        watch.active = False
