"""Erasure (Art. 17): delete a subject's voice data everywhere, then prove it is gone.

What goes: the subject's recordings and transcripts, their audio, every package that holds
any of their recordings (its file, its links and their redemption records), and staged
files of their requests. The account itself stays (the holder can still sign in); the
audit log keeps the fact of the erasure and the counts, never the data.

``PRAGMA secure_delete`` is on for every connection, so freed pages are zeroed; after the
delete the WAL is checkpointed with TRUNCATE so no old page image of the data survives
in ``overheard.db-wal`` either. :func:`remaining` then counts what is left, and the
request's result carries that count. A checkpoint cannot run while a reader holds an older
snapshot: it is retried for a moment, and if it still cannot run the result says
``verified: false``, an alert (``erasure.checkpoint``) tells the operator, and a thread keeps
trying until it runs and the result turns ``verified: true``.

The fault ``erasure.partial`` lives in :func:`delete_subject_data` (packages, links and
their files stay); the guard ``erasure.verify`` in :func:`erase` (whatever remains is
deleted and reported as an alert).
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlite_utils

from backend import auditlog
from backend.alerts import raise_alert
from backend.config import Config
from backend.privacy import delivery, outbox
from backend.privacy.state import job_key, update_request
from backend.storage import recordings
from backend.storage.db import StoreClosed, connect

if TYPE_CHECKING:
    from backend.privacy.jobs import JobContext

log = logging.getLogger("overheard.privacy.erasure")

_HOLDS = "(account_id = :acc OR EXISTS (SELECT 1 FROM json_each(packages.owners) WHERE key = :acc))"
"""Packages built for the subject, and any other package that holds their recordings."""


def delete_subject_data(db: sqlite_utils.Database, account_id: str, *,
                        partial: bool = False) -> dict[str, Any]:
    """Delete the subject's rows (inside a write); returns counts and the package files."""
    count, audio_bytes = recordings.usage(db, account_id)
    files: list[str] = []
    links = 0
    packages = 0
    if not partial:
        pkgs = [(r[0], r[1]) for r in db.execute(
            f"SELECT package_id, file_name FROM packages WHERE {_HOLDS}", {"acc": account_id})]
        for package_id, file_name in pkgs:
            link_ids = [r[0] for r in db.execute(
                "SELECT link_id FROM links WHERE package_id = ?", [package_id])]
            for link_id in link_ids:
                db.execute("DELETE FROM redemptions WHERE link_id = ?", [link_id])
            db.execute("DELETE FROM links WHERE package_id = ?", [package_id])
            db.execute("DELETE FROM packages WHERE package_id = ?", [package_id])
            links += len(link_ids)
            files.append(file_name)
        packages = len(pkgs)
    recordings.delete_account(db, account_id)
    return {"recordings": count, "audio_bytes": audio_bytes, "packages": packages,
            "links": links, "files": files}


def remaining(db: sqlite_utils.Database, config: Config, account_id: str) -> dict[str, int]:
    """What of the subject is still stored: rows, blobs, packages, links, files."""
    def count(sql: str, params: Any) -> int:
        return int(db.execute(sql, params).fetchone()[0])

    pkg_files = [r[0] for r in db.execute(
        f"SELECT file_name FROM packages WHERE {_HOLDS}", {"acc": account_id})]
    rows, blobs = recordings.left_of(db, account_id)
    return {
        "recordings": rows,
        "audio": blobs,
        "packages": len(pkg_files),
        "links": count(f"SELECT COUNT(*) FROM links WHERE package_id IN"
                       f" (SELECT package_id FROM packages WHERE {_HOLDS})", {"acc": account_id}),
        "package_files": sum(1 for f in pkg_files if (Path(config.packages_dir) / f).exists()),
    }


CHECKPOINT_ATTEMPTS = 5
"""TRUNCATE checkpoints tried within an erasure job before it reports ``verified: false``."""
CHECKPOINT_BUSY_MS = 250
"""How long one attempt waits for readers to let go of their snapshot."""
LATER_CHECKPOINT_SECONDS = 1.0
"""Pause between the attempts that finish an erasure whose checkpoint could not run."""


def checkpoint(config: Config) -> bool:
    """Fold the WAL into the database and truncate it, so no old page image survives there.

    A checkpoint cannot run inside the writer's transactions, so it uses a connection of
    its own; it cannot complete while a reader holds a snapshot older than the deletion.
    Returns whether it completed.
    """
    db = connect(config.db_path, synchronous=config.synchronous)
    try:
        db.execute(f"PRAGMA busy_timeout = {CHECKPOINT_BUSY_MS}")
        busy, _log_frames, _done = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return bool(busy == 0)
    finally:
        db.conn.close()


def checkpoint_retrying(config: Config, stop: threading.Event,
                        attempts: int = CHECKPOINT_ATTEMPTS) -> bool:
    """:func:`checkpoint` until it completes, up to ``attempts`` times with a growing pause."""
    for attempt in range(attempts):
        if checkpoint(config):
            return True
        if stop.wait(min(0.05 * 2 ** attempt, 1.0)):
            break
    return False


def finish_later(ctx: JobContext, request_id: str, subject: str) -> threading.Thread:
    """Keep trying the checkpoint of an erasure reported ``verified: false`` for want of it;
    once it runs, the request's result says ``verified: true`` (if nothing else remains)
    and the audit log records it. Stops with the backend."""
    def run() -> None:
        while not ctx.state.stop.wait(LATER_CHECKPOINT_SECONDS):
            if not checkpoint(ctx.config):
                continue
            try:
                ctx.store.write_sync(lambda db: _checkpointed(db, ctx, request_id, subject))
            except StoreClosed:
                return
            log.info("request %s: erasure checkpoint done later", request_id)
            return

    thread = threading.Thread(target=run, name=f"erasure-checkpoint-{request_id}", daemon=True)
    thread.start()
    return thread


def _checkpointed(db: sqlite_utils.Database, ctx: JobContext, request_id: str,
                  subject: str) -> None:
    row = db.execute("SELECT result FROM privacy_requests WHERE request_id = ?",
                     [request_id]).fetchone()
    result = json.loads(row[0]) if row and row[0] else {}
    left = remaining(db, ctx.config, subject)
    result.update(remaining=left, wal_checkpointed=True, verified=not any(left.values()))
    at = ctx.clock.iso()
    update_request(db, request_id, at, result=json.dumps(result, sort_keys=True))
    auditlog.append(db, at=at, actor="system", action="erasure.checkpointed",
                    object_id=request_id,
                    detail={"account_id": subject, "verified": result["verified"]})


def _staging_of(config: Config, request_ids: list[str]) -> int:
    removed = 0
    for rid in request_ids:
        path = Path(config.staging_dir) / rid
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


def erase(ctx: JobContext, row: dict[str, Any]) -> None:
    """Run one approved erasure request (in a worker thread)."""
    request_id = row["request_id"]
    subject = row["subject_account_id"]
    config = ctx.config
    partial = ctx.faults.on("erasure.partial")
    ctx.state.progress[request_id] = (0, 1)
    now = ctx.clock.iso()

    def delete(db: sqlite_utils.Database) -> tuple[dict[str, Any], list[str]]:
        counts = delete_subject_data(db, subject, partial=partial)
        auditlog.append(db, at=now, actor="system", action="erasure.deleted",
                        object_id=request_id,
                        detail={"account_id": subject,
                                **{k: v for k, v in counts.items() if k != "files"}})
        rids = [r[0] for r in db.execute(
            "SELECT request_id FROM privacy_requests WHERE subject_account_id = ?", [subject])]
        return counts, rids

    counts, request_ids = ctx.store.write_sync(delete)
    for name in counts.pop("files"):
        (Path(config.packages_dir) / name).unlink(missing_ok=True)
    counts["staging_dirs"] = 0 if partial else _staging_of(config, request_ids)
    checkpointed = checkpoint_retrying(config, ctx.state.stop)
    left = ctx.store.read_sync(lambda db: remaining(db, config, subject))
    repaired: dict[str, int] = {}
    if any(left.values()) and ctx.faults.on("erasure.verify"):
        repaired = left
        fix = ctx.store.write_sync(lambda db: delete_subject_data(db, subject))
        for name in fix["files"]:
            (Path(config.packages_dir) / name).unlink(missing_ok=True)
        _staging_of(config, request_ids)
        checkpointed = checkpoint_retrying(config, ctx.state.stop)
        left = ctx.store.read_sync(lambda db: remaining(db, config, subject))
    ctx.state.progress[request_id] = (1, 1)
    # Deleted rows still sit in old WAL frames until the checkpoint truncates them: without
    # it the erasure is not verified, however empty the tables look.
    result = {"erased": counts, "remaining": left,
              "verified": checkpointed and not any(left.values()),
              "wal_checkpointed": checkpointed}
    at = ctx.clock.iso()
    alert_id = ctx.ids.new("alr", job_key(row)) if repaired else ""
    late_id = "" if checkpointed else ctx.ids.new("alr", job_key(row))

    def finish(db: sqlite_utils.Database) -> None:
        if late_id:
            raise_alert(db, alert_id=late_id, at=at, guard="erasure.checkpoint",
                        request_id=request_id, account_id=subject,
                        summary=f"erasure of {subject}: the WAL checkpoint could not run (a "
                                "reader held a snapshot); old page images may remain in the "
                                "WAL file until it does; retrying",
                        detail={"attempts": CHECKPOINT_ATTEMPTS})
        if repaired:
            raise_alert(db, alert_id=alert_id, at=at, guard="erasure.verify",
                        request_id=request_id, account_id=subject,
                        summary=f"erasure of {subject} left data behind; deleted on check",
                        detail={"left_behind": repaired})
        update_request(db, request_id, at, status="complete", completed_at=at,
                       result=json.dumps(result, sort_keys=True), total_items=1)
        auditlog.append(db, at=at, actor="system", action="erasure.completed",
                        object_id=request_id,
                        detail={"account_id": subject, "verified": result["verified"],
                                "remaining": left})
        to = delivery.link_recipient(db, row, ctx.faults)
        outbox.send_mail(db, outbox.RECORDINGS_DELETED, to=to, sent_at=at,
                         request_id=request_id, recordings=counts["recordings"],
                         packages=counts["packages"])

    ctx.store.write_sync(finish)
    if not checkpointed:
        finish_later(ctx, request_id, subject)
    ctx.metrics.inc("overheard_privacy_jobs_total", kind="erasure", outcome="complete")
    log.info("request %s: erased %d recordings of %s (verified: %s)", request_id,
             counts["recordings"], subject, result["verified"])
