"""Request statuses, the shared in-process state of the privacy subsystem, and row helpers.

Statuses follow fides' names::

    identity_unverified -> pending -> approved -> in_processing -> complete
                        \\-> denied (reason)      \\-> error
    canceled (a duplicate of an open request)

``approved`` and ``in_processing`` are the only statuses the backend leaves on its own;
every other status waits for someone outside (requester, operator) or is final.
"""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlite_utils
from aiohttp import web

from contract.rfc3339 import parse_rfc3339, rfc3339

Status = Literal["identity_unverified", "pending", "approved", "in_processing", "complete",
                 "denied", "canceled", "error"]
Kind = Literal["access", "erasure"]

OPEN_STATUSES: tuple[str, ...] = ("pending", "approved", "in_processing")
"""A verified request that has not finished: a second one of the same kind is a duplicate."""
WORKING_STATUSES: tuple[str, ...] = ("approved", "in_processing")
"""The backend is working on it; anything else waits for someone outside or is final."""

ART12_DEADLINE = timedelta(days=30)
"""GDPR Art. 12(3): answer within one month of receipt."""


class JobsStopped(Exception):
    """The app is shutting down while a job waited for its turn."""


class JobOrder:
    """Tickets in the order requests were handed to the worker pool, so that the pool's
    timing never changes what is built or released.

    Jobs build concurrently, but a job *releases* (records its package, mints its link,
    raises its alerts) only after every job queued before it has ended; an erasure starts
    only after every earlier job has ended, and a later job starts only after every earlier
    erasure has ended. So link numbers, cache hits and what an erasure finds follow the
    queue's order, which follows the order requests were approved, not which thread was
    faster. Thread-safe; waits end early when ``stop`` is set.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next = 0
        self._tickets: dict[str, int] = {}
        self._open: dict[int, bool] = {}
        """ticket -> whether it is an erasure, for every job not yet ended."""
        self._running: set[str] = set()
        """Jobs a worker has picked up."""
        self._blocked: set[str] = set()
        """Jobs waiting here for earlier ones."""

    def issue(self, request_id: str, *, erasure: bool = False) -> None:
        with self._cond:
            self._next += 1
            self._tickets[request_id] = self._next
            self._open[self._next] = erasure

    def _wait(self, request_id: str, stop: threading.Event, erasures_only: bool) -> None:
        with self._cond:
            mine = self._tickets.get(request_id)
            if mine is None:
                return
            self._blocked.add(request_id)
            try:
                while any(t < mine and (is_erasure or not erasures_only)
                          for t, is_erasure in self._open.items()):
                    if stop.is_set():
                        raise JobsStopped(request_id)
                    self._cond.wait(0.1)
            finally:
                self._blocked.discard(request_id)

    def begin(self, request_id: str) -> None:
        """A worker has picked the job up."""
        with self._cond:
            self._running.add(request_id)

    def later_job_waits(self, request_id: str) -> bool:
        """Whether a job queued after this one is waiting here (for this one, or for one
        before it): a job waiting for company need not wait for it, nor for any job after
        it, since the same rule holds those back too."""
        with self._cond:
            mine = self._tickets.get(request_id)
            return mine is not None and any(
                self._tickets.get(r, 0) > mine for r in self._blocked & self._running)

    def wait_start(self, request_id: str, stop: threading.Event) -> None:
        """Before a job reads anything: earlier erasures (or, for an erasure, every earlier
        job) have ended."""
        with self._cond:
            mine = self._tickets.get(request_id)
            erasure = self._open.get(mine, False) if mine is not None else False
        self._wait(request_id, stop, erasures_only=not erasure)

    def wait_release(self, request_id: str, stop: threading.Event) -> None:
        """Before a job releases what it built: every earlier job has ended."""
        self._wait(request_id, stop, erasures_only=False)

    def done(self, request_id: str) -> None:
        with self._cond:
            ticket = self._tickets.pop(request_id, None)
            if ticket is not None:
                self._open.pop(ticket, None)
            self._running.discard(request_id)
            self._cond.notify_all()


@dataclass
class PrivacyState:
    """What the privacy subsystem keeps in memory while the app runs (under ``app[PRIVACY]``)."""

    progress: dict[str, tuple[int, int]] = field(default_factory=dict)
    """request_id -> (items done, items total) of a running job."""
    queue: asyncio.Queue[str] | None = None
    queued: set[str] = field(default_factory=set)
    waiters: dict[str, asyncio.Event] = field(default_factory=dict)
    loop: asyncio.AbstractEventLoop | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    """Set at shutdown: running jobs stop between items and stay ``in_processing``."""
    executor: ThreadPoolExecutor | None = None
    order: JobOrder = field(default_factory=JobOrder)
    """Queue order of the jobs, which decides the order they release in."""

    def changed(self, request_id: str) -> None:
        """Wake whoever long-polls ``request_id``; callable from any thread."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._wake, request_id)
        except RuntimeError:  # loop closed between the check and the call
            pass

    def _wake(self, request_id: str) -> None:
        event = self.waiters.pop(request_id, None)
        if event is not None:
            event.set()

    def waiter(self, request_id: str) -> asyncio.Event:
        """An event set at the next change of ``request_id``; take it before reading status."""
        return self.waiters.setdefault(request_id, asyncio.Event())

    def enqueue(self, request_id: str, *, erasure: bool = False) -> None:
        """Hand an approved request to the worker pool (on the event loop)."""
        if self.queue is None or request_id in self.queued:
            return
        self.queued.add(request_id)
        self.order.issue(request_id, erasure=erasure)
        self.queue.put_nowait(request_id)


PRIVACY = web.AppKey("privacy", PrivacyState)


def privacy_state(app: web.Application) -> PrivacyState:
    return app[PRIVACY]


def setup_state(app: web.Application) -> None:
    app[PRIVACY] = PrivacyState()


def get_request(db: sqlite_utils.Database, request_id: str) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM privacy_requests WHERE request_id = ?", [request_id]))
    return rows[0] if rows else None


def update_request(db: sqlite_utils.Database, request_id: str, now: str, **fields: Any) -> None:
    """Set ``fields`` and ``updated_at`` on one request (inside a write)."""
    fields["updated_at"] = now
    cols = ", ".join(f"{k} = ?" for k in fields)
    db.execute(f"UPDATE privacy_requests SET {cols} WHERE request_id = ?",
               [*fields.values(), request_id])


def due_at(created: datetime) -> str:
    return rfc3339(created + ART12_DEADLINE)


def is_past(deadline: str | None, now: datetime) -> bool:
    return deadline is not None and parse_rfc3339(deadline) <= now


def find_duplicate(db: sqlite_utils.Database, kind: str, account_id: str,
                   exclude: str = "") -> str | None:
    """The id of an open request of ``kind`` whose subject is ``account_id``, if any."""
    marks = ", ".join("?" for _ in OPEN_STATUSES)
    row = db.execute(
        f"SELECT request_id FROM privacy_requests WHERE kind = ? AND subject_account_id = ?"
        f" AND status IN ({marks}) AND request_id != ? ORDER BY created_at LIMIT 1",
        [kind, account_id, *OPEN_STATUSES, exclude],
    ).fetchone()
    return row[0] if row else None


def job_key(row: dict[str, Any]) -> str:
    """What ids made by a job are keyed by: its request and attempt, so a seeded backend
    restarted mid-job never makes an id it made before."""
    return f"{row['request_id']}:{row.get('attempts', 0)}"


def default_subject(row: dict[str, Any]) -> str | None:
    """The account a request is about unless an operator decides otherwise: the requester's own
    (signed-in path) or the one holding the verified email (email path)."""
    account: str | None = row["requester_account_id"] or row["matched_account_id"]
    return account


def result_of(row: dict[str, Any]) -> dict[str, Any] | None:
    return json.loads(row["result"]) if row.get("result") else None
