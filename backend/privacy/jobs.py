"""Privacy jobs: a bounded worker pool that runs approved requests, one kind of job each.

Approved requests go on a queue; ``Config.export_workers`` asyncio workers each hand one
job at a time to a thread pool of the same size, so the event loop never builds a zip or
deletes an account's audio. A job moves its request ``approved -> in_processing`` (one
write, audit ``<kind>.started``), then runs the handler of its kind: ``access`` builds a
package (:mod:`backend.privacy.export`), ``erasure`` deletes (:mod:`backend.privacy.erasure`).
The handlers are given to :func:`job_pool`, so this module imports neither.

Restart: at start every ``in_processing`` request (a crash or shutdown mid-job) goes back
to ``approved`` and is queued again, visibly (audit ``export.requeued``); after
``Config.export_attempts`` starts it becomes ``error``. Staging is wiped and package files
no row points to are deleted.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils
from aiohttp import web

from backend import auditlog
from backend.clock import Clock
from backend.config import Config, LiveConfig
from backend.faults import FaultBoard
from backend.files import private_dir
from backend.ids import IdGen
from backend.keys import CLOCK, CONFIG, FAULTS, IDS, LIVE, METRICS, STORE
from backend.metrics import Metrics
from backend.privacy.errors import JobFailed, PackageAborted
from backend.privacy.state import (
    JobsStopped,
    PrivacyState,
    get_request,
    privacy_state,
    update_request,
)
from backend.storage import Store

log = logging.getLogger("overheard.privacy.jobs")


@dataclass
class JobContext:
    """Everything a job thread needs; no aiohttp objects cross into the thread."""

    config: Config
    store: Store
    clock: Clock
    ids: IdGen
    faults: FaultBoard
    metrics: Metrics
    state: PrivacyState
    live: LiveConfig | None = None
    """The run-time settings as they are now (link lifetime...); ``config`` otherwise."""

    def settings(self) -> Config:
        return self.live.current if self.live is not None else self.config


Job = Callable[[JobContext, dict[str, Any]], None]
"""A handler: runs one request (its row, ``in_processing``) to its end, in a worker thread."""


def job_context(app: web.Application) -> JobContext:
    return JobContext(app[CONFIG], app[STORE], app[CLOCK], app[IDS], app[FAULTS], app[METRICS],
                      privacy_state(app), live=app[LIVE])


def _start(ctx: JobContext, request_id: str) -> dict[str, Any] | None:
    """Move the request to ``in_processing`` and count the attempt; ``None`` when it is not
    (or no longer) to be run."""
    now = ctx.clock.iso()
    limit = ctx.config.export_attempts

    def start(db: sqlite_utils.Database) -> dict[str, Any] | None:
        row = get_request(db, request_id)
        if row is None or row["status"] != "approved":
            return None
        attempts = row["attempts"] + 1
        if attempts > limit:
            update_request(db, request_id, now, status="error",
                           error=f"the job was interrupted {limit} times")
            auditlog.append(db, at=now, actor="system", action="request.error",
                            object_id=request_id, detail={"attempts": limit})
            return None
        update_request(db, request_id, now, status="in_processing", attempts=attempts)
        row["started_seq"] = auditlog.append(
            db, at=now, actor="system", action=f"{row['kind']}.started", object_id=request_id,
            detail={"attempt": attempts, "subject": row["subject_account_id"]})
        row["attempts"] = attempts
        return row

    return ctx.store.write_sync(start)


def _failed(ctx: JobContext, row: dict[str, Any], exc: Exception) -> None:
    """Record a job that cannot finish: ``error`` with a message the requester may read."""
    request_id = row["request_id"]
    message = str(exc) if isinstance(exc, JobFailed) else "the job failed unexpectedly"
    if not isinstance(exc, JobFailed):
        log.exception("job %s failed", request_id)
    at = ctx.clock.iso()

    def failed(db: sqlite_utils.Database) -> None:
        update_request(db, request_id, at, status="error", error=message)
        auditlog.append(db, at=at, actor="system", action="request.error",
                        object_id=request_id, detail={"error": message})

    ctx.store.write_sync(failed)
    ctx.metrics.inc("overheard_privacy_jobs_total", kind=row["kind"], outcome="error")


def run_job(ctx: JobContext, handlers: Mapping[str, Job], request_id: str) -> None:
    """Run one approved request to its end (in a worker thread)."""
    try:
        ctx.state.order.wait_start(request_id, ctx.state.stop)
    except JobsStopped:
        return  # still approved: queued again at the next start
    row = _start(ctx, request_id)
    ctx.state.changed(request_id)
    if row is None:
        return
    try:
        handlers[row["kind"]](ctx, row)
    except (PackageAborted, JobsStopped):
        log.info("job %s stopped at shutdown; it resumes at the next start", request_id)
    except Exception as exc:
        _failed(ctx, row, exc)
    finally:
        ctx.state.progress.pop(request_id, None)
        ctx.state.changed(request_id)


def _recover(ctx: JobContext) -> list[tuple[str, bool]]:
    """Requeue interrupted jobs, wipe staging, delete orphan package files; returns the queue
    (request id, whether it is an erasure)."""
    config = ctx.config
    shutil.rmtree(config.staging_dir, ignore_errors=True)
    private_dir(Path(config.staging_dir))
    private_dir(Path(config.packages_dir))
    now = ctx.clock.iso()

    def requeue(db: sqlite_utils.Database) -> tuple[list[tuple[str, bool]], set[str]]:
        stuck = [r[0] for r in db.execute(
            "SELECT request_id FROM privacy_requests WHERE status = 'in_processing'")]
        for rid in stuck:
            update_request(db, rid, now, status="approved")
            auditlog.append(db, at=now, actor="system", action="export.requeued",
                            object_id=rid, detail={"reason": "interrupted by a restart"})
        queue = [(r[0], r[1] == "erasure") for r in db.execute(
            "SELECT request_id, kind FROM privacy_requests WHERE status = 'approved'"
            " ORDER BY created_at, request_id")]
        files = {r[0] for r in db.execute("SELECT file_name FROM packages")}
        return queue, files

    queue, known = ctx.store.write_sync(requeue)
    for path in Path(config.packages_dir).iterdir():
        if path.name not in known:
            path.unlink(missing_ok=True)
            log.info("removed orphan package file %s", path.name)
    return queue


async def _worker(ctx: JobContext, handlers: Mapping[str, Job],
                  executor: ThreadPoolExecutor) -> None:
    state = ctx.state
    queue = state.queue
    if queue is None:
        raise RuntimeError("the export queue is not open")
    loop = asyncio.get_running_loop()
    while True:
        request_id = await queue.get()
        state.queued.discard(request_id)
        state.order.begin(request_id)
        try:
            await loop.run_in_executor(executor, run_job, ctx, handlers, request_id)
        except Exception:
            log.exception("export worker: job %s", request_id)
        finally:
            state.order.done(request_id)


def job_pool(handlers: Mapping[str, Job]
             ) -> Callable[[web.Application], AsyncIterator[None]]:
    """The pool as a cleanup context: started after the store is open, stopped before it
    closes; ``handlers`` run the jobs, by request kind."""

    async def pool(app: web.Application) -> AsyncIterator[None]:
        ctx = job_context(app)
        state = ctx.state
        loop = asyncio.get_running_loop()
        state.loop = loop
        state.queue = asyncio.Queue()
        state.stop.clear()
        workers = max(1, ctx.config.export_workers)
        executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="overheard-export")
        state.executor = executor
        for request_id, erasure in await loop.run_in_executor(None, _recover, ctx):
            state.enqueue(request_id, erasure=erasure)
        tasks = [asyncio.create_task(_worker(ctx, handlers, executor), name=f"export-worker-{i}")
                 for i in range(workers)]
        try:
            yield
        finally:
            state.stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Running jobs see ``stop`` between items; wait for them before the store closes.
            await loop.run_in_executor(None, lambda: executor.shutdown(wait=True))
            state.loop = None

    return pool
