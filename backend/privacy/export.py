"""Export jobs: a bounded worker pool that builds access packages and runs erasures.

Approved requests go on a queue; ``Config.export_workers`` asyncio workers each hand one
job at a time to a thread pool of the same size, so the event loop never builds a zip.
A job:

1. moves the request ``approved -> in_processing`` (one write, audit ``access.started``);
2. reads the subject's profile, devices and recordings in one read snapshot on its own
   read-only connection, streaming audio in batches (:func:`iter_recordings`);
3. writes the zip into a per-job staging dir (:func:`staging_dir_for`), then moves it
   into ``packages/``;
4. in one write: package row, link (:mod:`backend.privacy.delivery`), the link email,
   ``complete``, audit ``package.built`` with the manifest's sha256.

Restart: at start every ``in_processing`` request (a crash or shutdown mid-build) goes
back to ``approved`` and is queued again, visibly (audit ``export.requeued``); after
``Config.export_attempts`` starts it becomes ``error``. Staging is wiped and package files
no row points to are deleted.

Where the privacy faults live (one place each):

- ``export.device_history_join``: :func:`export_where`, the query selecting recordings;
- ``export.shared_staging``: :func:`staging_dir_for` (one directory per day) and
  :func:`stage_shared` / :func:`iter_staged` in :func:`build_access` (WAVs staged there, the
  zip made of whatever the directory holds; jobs meet at a :class:`StagingBarrier` so the
  mix happens every time, not by luck);
- ``export.cache_key_collision``: :class:`PackageCache` (no cache in the clean path);
- ``export.operator_voice_mixup``: :func:`operator_voice_mixup`, whose voice history goes
  into an operator-approved package;
- ``export.ownership_check`` (guard): :func:`_release`, before a package is released.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils
from aiohttp import web

from backend import auditlog
from backend.alerts import raise_alert
from backend.clock import Clock
from backend.config import Config, LiveConfig
from backend.crashpoints import reach
from backend.faults import FaultBoard
from backend.files import private_dir, write_private
from backend.ids import IdGen
from backend.keys import CLOCK, CONFIG, FAULTS, IDS, LIVE, METRICS, STORE
from backend.metrics import Metrics
from backend.privacy import delivery, outbox
from backend.privacy.erasure import erase
from backend.privacy.package import (
    PackageAborted,
    PackageResult,
    Recording,
    Subject,
    write_access_package,
)
from backend.privacy.state import (
    JobsStopped,
    PrivacyState,
    default_subject,
    get_request,
    job_key,
    privacy_state,
    update_request,
)
from backend.storage import Store
from backend.storage.db import connect
from contract.audio import pcm_to_wav, read_wav
from contract.package import SAFE_ID

log = logging.getLogger("overheard.privacy.export")

FETCH_BATCH = 32
"""Recordings fetched per round trip: ~2 MB of 2-second clips, bounded whatever the account."""


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
    cache: PackageCache = field(default_factory=lambda: PackageCache())
    barrier: StagingBarrier = field(default_factory=lambda: StagingBarrier())
    live: LiveConfig | None = None
    """The run-time settings as they are now (link lifetime...); ``config`` otherwise."""

    def settings(self) -> Config:
        return self.live.current if self.live is not None else self.config


@dataclass(frozen=True)
class CachedPackage:
    file_name: str
    manifest_sha256: str
    bytes: int
    files: int
    recordings: int
    owners: dict[str, int]


class PackageCache:
    """Built packages by key. The clean path never reuses a package (each carries its own
    request id), so :meth:`key` is ``None`` unless the fault ``export.cache_key_collision``
    is on; then the key is kind and date only, without the account."""

    def __init__(self) -> None:
        self._items: dict[str, CachedPackage] = {}

    @staticmethod
    def key(faults: FaultBoard, row: dict[str, Any], today: str) -> str | None:
        if faults.on("export.cache_key_collision"):
            return f"{row['kind']}:{today}"
        return None

    def get(self, key: str | None, packages_dir: Path) -> CachedPackage | None:
        hit = self._items.get(key) if key else None
        if hit is not None and not (packages_dir / hit.file_name).exists():
            return None
        return hit

    def put(self, key: str | None, item: CachedPackage) -> None:
        if key:
            self._items[key] = item

    def evict(self, key: str | None, file_name: str) -> None:
        """Forget ``key`` if it still names ``file_name`` (a quarantined package is not served
        again; the next approval rebuilds)."""
        if key and (hit := self._items.get(key)) is not None and hit.file_name == file_name:
            del self._items[key]


def export_where(faults: FaultBoard) -> str:
    """The recordings an access package holds, as a WHERE clause over ``recordings r`` with
    one parameter, the subject account.

    Clean: the recording's own stored owner. Fault ``export.device_history_join``: every
    recording made by a serial now bound to the account, whoever it belonged to then.
    """
    if faults.on("export.device_history_join"):
        return ("r.serial IN (SELECT serial FROM devices WHERE account_id = ?"
                " AND deregistered_at IS NULL)")
    return "r.account_id = ?"


_ON_THE_DESK = ("pending", "approved", "in_processing", "complete")
"""Statuses of the other request whose voice history an operator can take by mistake."""


def operator_voice_mixup(db: sqlite_utils.Database, faults: FaultBoard, row: dict[str, Any],
                         *, at: str) -> str:
    """The account whose voice history goes into ``row``'s package.

    Clean: the subject's. Fault ``export.operator_voice_mixup``: for a package an operator
    approved, the voice history of another access request's account (the parameters ``into``
    and ``from`` narrow which), once per request; the audit log records the operator's act.
    """
    subject = str(row["subject_account_id"])
    if not faults.on("export.operator_voice_mixup") or row["kind"] != "access" \
            or not row["approved_by"]:
        return subject
    params = faults.params("export.operator_voice_mixup")
    into, source = params.get("into"), params.get("from")
    if into and str(into) != subject:
        return subject
    if db.execute("SELECT 1 FROM audit_log WHERE action = 'ops.package.assembled'"
                  " AND object_id = ?", [row["request_id"]]).fetchone() is not None:
        return subject  # the request came back for review: the mistake is not repeated
    placeholders = ", ".join("?" * len(_ON_THE_DESK))
    for other in db.query(
            "SELECT request_id, subject_account_id FROM privacy_requests"
            " WHERE kind = 'access' AND request_id != ? AND subject_account_id IS NOT NULL"
            f" AND subject_account_id != ? AND status IN ({placeholders})"
            " ORDER BY created_at, request_id", [row["request_id"], subject, *_ON_THE_DESK]):
        if source and str(source) != other["subject_account_id"]:
            continue
        auditlog.append(db, at=at, actor=f"operator:{row['approved_by']}",
                        action="ops.package.assembled", object_id=row["request_id"],
                        detail={"voice_history_of": other["request_id"],
                                "account_id": other["subject_account_id"]})
        return str(other["subject_account_id"])
    return subject


def staging_dir_for(config: Config, faults: FaultBoard, row: dict[str, Any], today: str) -> Path:
    """Where a job stages its partial zip: its own directory (fault ``export.shared_staging``:
    one directory per day, shared by every job of that day)."""
    if faults.on("export.shared_staging"):
        return Path(config.staging_dir) / today
    return Path(config.staging_dir) / str(row["request_id"])


class StagingBarrier:
    """Where export jobs sharing a staging directory meet (fault ``export.shared_staging``).

    A cyclic barrier per key: each generation releases when ``parties`` jobs have arrived,
    or when the first of them has waited ``timeout`` seconds, or at shutdown. The wait bounds
    liveness only; the scenario puts the jobs in flight together, so they always meet, and
    because every job stages all its files before the first meeting and zips before the
    second, each package holds exactly the union of the batch: the same under the same seed.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._gen: dict[str, int] = {}
        self._count: dict[str, int] = {}
        self._met: dict[tuple[str, int], int] = {}

    def meet(self, key: str, parties: int, timeout: float, stop: threading.Event,
             alone: Callable[[], bool] = lambda: False) -> int:
        """Arrive at ``key`` and wait for the others; returns how many met in this generation.
        ``alone()`` true means no one else can come (every other job waits on this one):
        the generation closes at once instead of at the timeout."""
        with self._cond:
            gen = self._gen.get(key, 0)
            count = self._count.get(key, 0) + 1
            self._count[key] = count
            if count >= parties:
                return self._release(key, gen)
            deadline = time.monotonic() + timeout
            while self._gen.get(key, 0) == gen:
                left = deadline - time.monotonic()
                if left <= 0 or stop.is_set() or alone():
                    # Alone (or shutting down): close this generation with whoever came.
                    return self._release(key, gen)
                self._cond.wait(min(left, 0.1))
            return self._met.get((key, gen), parties)

    def _release(self, key: str, gen: int) -> int:
        met = self._count.get(key, 0)
        self._met[(key, gen)] = met
        self._met.pop((key, gen - 1), None)
        self._gen[key] = gen + 1
        self._count[key] = 0
        self._cond.notify_all()
        return met


def stage_shared(staging: Path, recordings: Iterator[Recording], request_id: str) -> list[Path]:
    """Fault ``export.shared_staging``, first half: write each recording as a WAV (and its
    row as a JSON sidecar) into the shared directory; returns the files this job wrote."""
    written: list[Path] = []
    for index, rec in enumerate(recordings):
        stem = rec.recording_id if SAFE_ID.fullmatch(rec.recording_id) else f"{request_id}-{index:06d}"
        wav_path = staging / f"{stem}.wav"
        write_private(wav_path, pcm_to_wav(rec.pcm, rate=rec.rate, width=rec.width,
                                           channels=rec.channels))
        side = staging / f"{stem}.json"
        write_private(side, json.dumps({
            "recording_id": rec.recording_id, "account_id": rec.account_id,
            "device_id": rec.device_id, "recorded_at": rec.recorded_at,
            "duration_ms": rec.duration_ms, "transcript": rec.transcript,
        }, ensure_ascii=False))
        written += [wav_path, side]
    return written


def iter_staged(staging: Path) -> Iterator[Recording]:
    """Fault ``export.shared_staging``, second half: every staged recording the directory
    holds, whichever job staged it, oldest first (its owner as the sidecar recorded it)."""
    rows = []
    for side in staging.glob("*.json"):
        if side.with_suffix(".wav").exists():
            rows.append((json.loads(side.read_text(encoding="utf-8")), side.with_suffix(".wav")))
    rows.sort(key=lambda r: (r[0]["recorded_at"], r[0]["recording_id"]))
    for meta, wav_path in rows:
        wav = read_wav(str(wav_path))
        yield Recording(meta["recording_id"], meta["account_id"], meta["device_id"],
                        meta["recorded_at"], meta["duration_ms"], meta["transcript"],
                        wav.rate, wav.width, wav.channels, wav.pcm)


def iter_recordings(db: sqlite_utils.Database, where: str, account_id: str) -> Iterator[Recording]:
    """Stream recordings with their audio, oldest first, ``FETCH_BATCH`` rows at a time."""
    cur = db.conn.execute(
        "SELECT r.recording_id, r.account_id, r.device_id, r.recorded_at, r.duration_ms,"
        " r.transcript, r.rate, r.width, r.channels, a.pcm"
        " FROM recordings r JOIN audio a ON a.recording_id = r.recording_id"
        f" WHERE {where} ORDER BY r.recorded_at, r.recording_id", [account_id])
    try:
        while batch := cur.fetchmany(FETCH_BATCH):
            for row in batch:
                yield Recording(*row)
    finally:
        cur.close()


def load_subject(db: sqlite_utils.Database, account_id: str) -> Subject | None:
    rows = list(db.query(
        "SELECT account_id, name, email, locale, address, created_at FROM accounts"
        " WHERE account_id = ?", [account_id]))
    if not rows:
        return None
    devices = list(db.query(
        "SELECT device_id, serial, model, room, registered_at, deregistered_at FROM devices"
        " WHERE account_id = ? ORDER BY registered_at, device_id", [account_id]))
    return Subject(account_id, rows[0], devices)


# -- the job ------------------------------------------------------------------------------

class JobFailed(Exception):
    """A job cannot finish; the message is shown to the requester as the error."""


def run_job(ctx: JobContext, request_id: str) -> None:
    """Run one approved request to its end (in a worker thread)."""
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

    try:
        ctx.state.order.wait_start(request_id, ctx.state.stop)
    except JobsStopped:
        return  # still approved: queued again at the next start
    row = ctx.store.write_sync(start)
    ctx.state.changed(request_id)
    if row is None:
        return
    try:
        if row["kind"] == "access":
            build_access(ctx, row)
        else:
            erase(ctx, row)
    except (PackageAborted, JobsStopped):
        log.info("job %s stopped at shutdown; it resumes at the next start", request_id)
    except Exception as exc:
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
    finally:
        ctx.state.progress.pop(request_id, None)
        ctx.state.changed(request_id)


def build_access(ctx: JobContext, row: dict[str, Any]) -> None:
    request_id = row["request_id"]
    subject_id = row["subject_account_id"]
    faults = ctx.faults
    now_dt = ctx.clock.now()
    generated_at = ctx.clock.iso()
    today = generated_at[:10]
    packages_dir = Path(ctx.config.packages_dir)
    private_dir(packages_dir)

    cache_key = ctx.cache.key(faults, row, today)
    if cache_key is not None:
        # What the cache holds must not depend on which job finished first.
        ctx.state.order.wait_release(request_id, ctx.state.stop)
    cached = ctx.cache.get(cache_key, packages_dir)
    if cached is not None:
        _release(ctx, row, cached, reused=True, cache_key=cache_key)
        return

    staging = staging_dir_for(ctx.config, faults, row, today)
    private_dir(staging)
    part = staging / f"{request_id}.zip.part"
    where = export_where(faults)
    voice_from = subject_id
    if faults.on("export.operator_voice_mixup"):
        voice_from = ctx.store.write_sync(
            lambda db: operator_voice_mixup(db, faults, row, at=generated_at))
    shared = faults.on("export.shared_staging")
    shared_params = faults.params("export.shared_staging")
    # A batch larger than the worker pool could never be in flight at once.
    parties = max(1, min(int(shared_params.get("jobs", 2)), ctx.config.export_workers))
    wait = float(shared_params.get("wait_seconds", 10))
    staged: list[Path] = []
    db = connect(ctx.config.db_path, readonly=True, synchronous=ctx.config.synchronous)
    try:
        db.execute("BEGIN")  # one snapshot: profile, devices and recordings agree
        subject = load_subject(db, subject_id)
        if subject is None:
            raise JobFailed("the subject account does not exist")
        total = db.execute(
            f"SELECT COUNT(*) FROM recordings r WHERE {where}", [voice_from]).fetchone()[0]
        ctx.state.progress[request_id] = (0, total)
        recordings: Iterator[Recording] = iter_recordings(db, where, voice_from)
        met = 1
        if shared:
            # The bug: stage into the day's directory, then package what the directory
            # holds. Every job of the batch stages before any zips (first meeting), and
            # none cleans up before all have zipped (second meeting).
            staged = stage_shared(staging, recordings, request_id)
            met = ctx.barrier.meet(f"staged:{staging}", parties, wait, ctx.state.stop,
                                   alone=lambda: ctx.state.order.later_job_waits(request_id))
            total = sum(1 for _ in staging.glob("*.json"))
            recordings = iter_staged(staging)
            log.info("request %s: shared staging %s, %d job(s) met, %d recordings staged",
                     request_id, staging.name, met, total)

        def on_item(done: int) -> None:
            ctx.state.progress[request_id] = (done, total)
            reach(ctx.config, "export.mid_build")

        try:
            result = write_access_package(
                part, request_id=request_id, subject=subject, recordings=recordings,
                generated_at=generated_at, generated_dt=now_dt,
                on_item=on_item, should_stop=ctx.state.stop.is_set,
            )
        finally:
            if shared:
                ctx.barrier.meet(f"zipped:{staging}", met, wait, ctx.state.stop)
        db.execute("COMMIT")
    except BaseException:
        _remove_staging(staging, part, request_id, staged)
        raise
    finally:
        db.conn.close()
    package_id = ctx.ids.new("pkg", job_key(row))
    file_name = f"{package_id}.zip"
    _fsync(part)
    os.replace(part, packages_dir / file_name)
    reach(ctx.config, "export.before_release")
    _remove_staging(staging, part, request_id, staged)
    built = CachedPackage(file_name, result.manifest_sha256, result.bytes,
                          len(result.entries), result.recordings, dict(result.owners))
    ctx.cache.put(cache_key, built)
    _release(ctx, row, built, reused=False, package_id=package_id, result=result,
             cache_key=cache_key)


def _release(ctx: JobContext, row: dict[str, Any], pkg: CachedPackage, *, reused: bool,
             package_id: str | None = None, result: PackageResult | None = None,
             cache_key: str | None = None) -> None:
    """Record the package, mint its link, email it and complete the request; or, with the
    guard ``export.ownership_check`` and any item whose stored owner is not the requester's
    own account, quarantine it: alert, request back to ``pending``, zip deleted."""
    request_id = row["request_id"]
    subject_id = row["subject_account_id"]
    # Released in queue order: link numbers and what each requester is sent never depend
    # on which build finished first.
    ctx.state.order.wait_release(request_id, ctx.state.stop)
    package_id = package_id or ctx.ids.new("pkg", job_key(row))
    # The package goes to the requester, so its items must be the requester's own: the
    # account they proved to hold, whatever an operator attached (the 2018 swap changed the
    # assignment, not the stored owners).
    rightful = default_subject(row) or subject_id
    foreign = {acc: n for acc, n in pkg.owners.items() if acc != rightful}
    if subject_id != rightful:
        # The profile and device list are the assigned account's personal data too: a
        # swapped package holds them even when that account has no recordings.
        foreign.setdefault(subject_id, 0)
    now_dt = ctx.clock.now()
    now = ctx.clock.iso()
    faults = ctx.faults
    quarantine = bool(foreign) and faults.on("export.ownership_check")
    alert_id = ctx.ids.new("alr", job_key(row)) if quarantine else ""

    def finish(db: sqlite_utils.Database) -> None:
        if quarantine:
            raise_alert(db, alert_id=alert_id, at=now, guard="export.ownership_check",
                        request_id=request_id, account_id=rightful,
                        summary=f"package for {rightful} held the profile or "
                                f"{sum(foreign.values())} recordings of other accounts; "
                                f"quarantined, back to review",
                        detail={"foreign": foreign, "recordings": pkg.recordings,
                                "assigned": subject_id, "reused_from_cache": reused,
                                "manifest_sha256": pkg.manifest_sha256})
            # Back to review with the assignment undone: the next pass starts from the
            # requester's own account, not from the assignment that produced foreign items.
            update_request(db, request_id, now, status="pending", package_id=None,
                           approved_by=None, assigned_by=None, subject_account_id=rightful)
            auditlog.append(db, at=now, actor="guard:export.ownership_check",
                            action="package.quarantined", object_id=request_id,
                            detail={"manifest_sha256": pkg.manifest_sha256, "foreign": foreign,
                                    "assigned": subject_id, "reset_to": rightful})
            return
        if erased_since(db, row.get("started_seq", 0), set(pkg.owners) | {subject_id}):
            raise JobFailed("the data was erased while the package was built; "
                            "file a new request")
        db.table("packages").insert({
            "package_id": package_id, "request_id": request_id, "account_id": subject_id,
            "file_name": pkg.file_name, "bytes": pkg.bytes, "files": pkg.files,
            "recordings": pkg.recordings, "manifest_sha256": pkg.manifest_sha256,
            "owners": json.dumps(pkg.owners, sort_keys=True), "created_at": now,
            "quarantined_at": None,
        })
        auditlog.append(db, at=now, actor="system", action="package.built",
                        object_id=request_id,
                        detail={"package_id": package_id, "manifest_sha256": pkg.manifest_sha256,
                                "bytes": pkg.bytes, "files": pkg.files,
                                "recordings": pkg.recordings, "owners": pkg.owners,
                                "reused": reused})
        to, diverted = delivery.route_link(db, row, faults)
        if diverted:
            raise_alert(db, alert_id=ctx.ids.new("alr", job_key(row)), at=now,
                        guard="identity.verified_channel", request_id=request_id,
                        account_id=rightful,
                        summary="the download link was about to go to an address not on file "
                                "for the requester; sent to the address on file instead",
                        # No address in the detail: alerts are copied to the append-only audit log.
                        detail={"message": "download link", "sent_to": "address on file",
                                "channel": row["channel"], "package_id": package_id})
        _link_id, token = delivery.mint_link(
            db, config=ctx.settings(), ids=ctx.ids, faults=faults, row=row,
            package_id=package_id, now=now_dt, sent_to=to)
        url = delivery.link_url(ctx.config, token)
        expires = db.execute("SELECT expires_at FROM links WHERE link_id = ?",
                             [_link_id]).fetchone()[0]
        outbox.send(db, to=to, subject="Your data is ready to download", sent_at=now,
                    request_id=request_id, url=url,
                    body=(f"The copy of your data you asked for (request {request_id}) is ready:\n"
                          f"{url}\n"
                          + (f"The link works until {expires}.\n" if expires else "")
                          + "If you did not ask for this, do not open it and tell us."))
        update_request(db, request_id, now, status="complete", completed_at=now,
                       package_id=package_id, total_items=pkg.recordings, error=None)
        auditlog.append(db, at=now, actor="system", action="request.completed",
                        object_id=request_id, detail={"package_id": package_id})

    try:
        ctx.store.write_sync(finish)
    except BaseException:
        if not reused:
            (Path(ctx.config.packages_dir) / pkg.file_name).unlink(missing_ok=True)
        raise
    if quarantine and not reused:
        # Foreign data is not kept around waiting for review: the next approval rebuilds.
        (Path(ctx.config.packages_dir) / pkg.file_name).unlink(missing_ok=True)
    if quarantine:
        # Nor served again from the cache: the next approval of the request rebuilds it.
        ctx.cache.evict(cache_key, pkg.file_name)
    ctx.metrics.inc("overheard_privacy_jobs_total", kind="access",
                    outcome="quarantined" if quarantine else "complete")
    log.info("request %s: package %s %s (%d recordings, %d bytes)", request_id, package_id,
             "quarantined" if quarantine else "released", pkg.recordings, pkg.bytes)


def erased_since(db: sqlite_utils.Database, seq: int, accounts: set[str]) -> bool:
    """Whether an erasure of any of ``accounts`` deleted data after audit entry ``seq``:
    the build's read snapshot may then hold data that no longer exists. Audit sequence
    numbers order events exactly, even when a frozen clock gives them one timestamp."""
    for (detail,) in db.execute(
            "SELECT detail FROM audit_log WHERE seq > ? AND action = 'erasure.deleted'", [seq]):
        if json.loads(detail).get("account_id") in accounts:
            return True
    return False


def _fsync(path: Path) -> None:
    """Make the zip durable before a committed row points at it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_staging(staging: Path, part: Path, request_id: str,
                    staged: list[Path] | None = None) -> None:
    """Remove this job's partial file and the files it staged, and its directory when the
    directory is its own (a shared staging dir is left to the other jobs using it)."""
    part.unlink(missing_ok=True)
    for path in staged or ():
        path.unlink(missing_ok=True)
    if staging.name == request_id:
        shutil.rmtree(staging, ignore_errors=True)


# -- the pool -----------------------------------------------------------------------------

def job_context(app: web.Application) -> JobContext:
    return JobContext(app[CONFIG], app[STORE], app[CLOCK], app[IDS], app[FAULTS], app[METRICS],
                      privacy_state(app), live=app[LIVE])


def _recover(ctx: JobContext) -> list[tuple[str, bool]]:
    """Requeue interrupted jobs, wipe staging, delete orphan package files; returns the queue."""
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


async def _worker(ctx: JobContext, executor: ThreadPoolExecutor) -> None:
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
            await loop.run_in_executor(executor, run_job, ctx, request_id)
        except Exception:
            log.exception("export worker: job %s", request_id)
        finally:
            state.order.done(request_id)


async def export_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start the worker pool after the store is open; stop it before the store closes."""
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
    tasks = [asyncio.create_task(_worker(ctx, executor), name=f"export-worker-{i}")
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
