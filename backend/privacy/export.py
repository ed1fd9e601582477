"""Access packages: what a job of kind ``access`` does (run by :mod:`backend.privacy.jobs`).

It:

1. reads the subject's profile, devices and recordings in one read snapshot on its own
   read-only connection, streaming audio in batches (:func:`iter_recordings`);
2. writes the zip into a per-job staging dir (:func:`staging_dir_for`), then moves it
   into ``packages/``;
3. in one write: package row, link (:mod:`backend.privacy.delivery`), the link email,
   ``complete``, audit ``package.built`` with the manifest's sha256.

Where the privacy faults live (one place each):

- ``export.device_history_join``: :func:`export_where`, the query selecting recordings;
- ``export.shared_staging``: :func:`staging_dir_for` (one directory per day) and
  :func:`stage_shared` / :func:`iter_staged` in :func:`build_access` (WAVs staged there, the
  zip made of whatever the directory holds; jobs meet at a :class:`StagingBarrier` so the
  mix happens every time, not by luck);
- ``export.cache_key_collision``: :class:`PackageCache` (no cache in the clean path);
- ``export.operator_voice_mixup``: :func:`operator_voice_mixup`, whose voice history goes
  into an operator-approved package;
- ``export.ownership_check`` (guard): :func:`_release`, before a package is released: the
  package must hold the requester's own profile and every recording stored under the
  requester's account when it was built, and nothing of anyone else's (:func:`_verdict`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from backend import auditlog
from backend.alerts import raise_alert
from backend.config import Config
from backend.crashpoints import reach
from backend.faults import FaultBoard
from backend.files import private_dir, write_private
from backend.privacy import delivery, outbox
from backend.privacy.errors import JobFailed
from backend.privacy.jobs import JobContext
from backend.privacy.outbox import LINK_READY
from backend.privacy.package import (
    Recording,
    Subject,
    write_access_package,
)
from backend.privacy.state import default_subject, job_key, update_request
from backend.storage import recordings
from backend.storage.db import connect
from contract.audio import pcm_to_wav, read_wav
from contract.package import SAFE_ID
from contract.rfc3339 import rfc3339

log = logging.getLogger("overheard.privacy.export")

@dataclass(frozen=True)
class CachedPackage:
    file_name: str
    manifest_sha256: str
    bytes: int
    files: int
    recordings: int
    owners: dict[str, int]
    subject: str
    """The account whose profile and device list the package holds."""
    recording_ids: frozenset[str]
    """The recordings the package holds, whoever owns them."""


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
    """Stream recordings with their audio, oldest first, a batch at a time."""
    return recordings.iter_with_audio(db, where, account_id, Recording)


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

@dataclass
class Exporter:
    """The ``access`` job, with what its runs share within one app: the package cache
    (fault ``export.cache_key_collision``) and the staging barrier (``export.shared_staging``)."""

    cache: PackageCache = field(default_factory=lambda: PackageCache())
    barrier: StagingBarrier = field(default_factory=lambda: StagingBarrier())

    def __call__(self, ctx: JobContext, row: dict[str, Any]) -> None:
        build_access(ctx, row, self)


def build_access(ctx: JobContext, row: dict[str, Any], shared_state: Exporter) -> None:
    """Build the package of one ``access`` request and release it (or quarantine it)."""
    request_id = row["request_id"]
    subject_id = row["subject_account_id"]
    faults = ctx.faults
    now_dt = ctx.clock.now()
    generated_at = ctx.clock.iso()
    today = generated_at[:10]
    packages_dir = Path(ctx.config.packages_dir)
    private_dir(packages_dir)

    cache = shared_state.cache
    cache_key = cache.key(faults, row, today)
    # The guard's yardstick: the recordings stored under the requester's own account, read
    # in the same snapshot as the package (whatever query or cache the package came from).
    rightful = default_subject(row) or subject_id
    guarded = faults.on("export.ownership_check")
    if cache_key is not None:
        # What the cache holds must not depend on which job finished first.
        ctx.state.order.wait_release(request_id, ctx.state.stop)
    cached = cache.get(cache_key, packages_dir)
    if cached is not None:
        expected = _own_recordings(ctx, rightful) if guarded else frozenset()
        _release(ctx, row, cached, cache, reused=True, cache_key=cache_key, expected=expected)
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
        expected = recordings.ids_of(db, rightful) if guarded else frozenset()
        total = recordings.count_where(db, where, voice_from)
        ctx.state.progress[request_id] = (0, total)
        items: Iterator[Recording] = iter_recordings(db, where, voice_from)
        met = 1
        if shared:
            # The bug: stage into the day's directory, then package what the directory
            # holds. Every job of the batch stages before any zips (first meeting), and
            # none cleans up before all have zipped (second meeting).
            staged = stage_shared(staging, items, request_id)
            met = shared_state.barrier.meet(
                f"staged:{staging}", parties, wait, ctx.state.stop,
                alone=lambda: ctx.state.order.later_job_waits(request_id))
            total = sum(1 for _ in staging.glob("*.json"))
            items = iter_staged(staging)
            log.info("request %s: shared staging %s, %d job(s) met, %d recordings staged",
                     request_id, staging.name, met, total)

        def on_item(done: int) -> None:
            ctx.state.progress[request_id] = (done, total)
            reach(ctx.config, "export.mid_build")

        try:
            result = write_access_package(
                part, request_id=request_id, subject=subject, recordings=items,
                generated_at=generated_at, generated_dt=now_dt,
                on_item=on_item, should_stop=ctx.state.stop.is_set,
            )
        finally:
            if shared:
                shared_state.barrier.meet(f"zipped:{staging}", met, wait, ctx.state.stop)
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
                          len(result.entries), result.recordings, dict(result.owners),
                          subject_id, frozenset(e.recording_id for e in result.entries
                                                if e.recording_id is not None))
    cache.put(cache_key, built)
    _release(ctx, row, built, cache, reused=False, package_id=package_id, cache_key=cache_key,
             expected=expected)


def _own_recordings(ctx: JobContext, account_id: str) -> frozenset[str]:
    """The recordings stored under ``account_id`` now (a package reused from the cache was
    built for another request, perhaps before some of them were made)."""
    db = connect(ctx.config.db_path, readonly=True, synchronous=ctx.config.synchronous)
    try:
        return recordings.ids_of(db, account_id)
    finally:
        db.conn.close()


@dataclass(frozen=True)
class _Release:
    """What one release decides before it writes: the package, its rightful owner, and the
    foreign items (stored owner → recordings) that a quarantine would name."""

    row: dict[str, Any]
    pkg: CachedPackage
    package_id: str
    rightful: str
    foreign: dict[str, int]
    missing: int
    """Recordings stored under the rightful account that the package lacks."""
    reused: bool
    now_dt: datetime

    @property
    def now(self) -> str:
        return rfc3339(self.now_dt)

    @property
    def request_id(self) -> str:
        return str(self.row["request_id"])

    @property
    def assigned(self) -> str:
        return str(self.row["subject_account_id"])


def _verdict(row: dict[str, Any], pkg: CachedPackage, expected: frozenset[str]
             ) -> tuple[str, dict[str, int], int]:
    """The requester's own account, what the package holds of other accounts, and how many
    of the requester's own stored recordings (``expected``) it lacks.

    The package goes to the requester, so its items must be the requester's own: the
    account they proved to hold, whatever an operator attached (the 2018 swap changed the
    assignment, not the stored owners). And it must be all of them: Art. 15 asks for a
    copy of the data, and a package that silently lacks some tells the requester that is
    all there is. The guard does not patch a short package up (it cannot tell why the
    export left them out, and a second query path would hide the bug that did): it refuses
    it, like a foreign one."""
    rightful: str = default_subject(row) or row["subject_account_id"]
    foreign = {acc: n for acc, n in pkg.owners.items() if acc != rightful}
    if pkg.subject != rightful:
        # The profile and device list are the package subject's personal data too: a
        # swapped (or wrongly cached) package holds them even when that account has no
        # recordings.
        foreign.setdefault(pkg.subject, 0)
    return rightful, foreign, len(expected - pkg.recording_ids)


def _quarantine(db: sqlite_utils.Database, rel: _Release, alert_id: str) -> None:
    """Guard ``export.ownership_check``: alert, and the request back to review."""
    pkg, rightful, foreign = rel.pkg, rel.rightful, rel.foreign
    what = []
    if any(foreign.values()):
        what.append(f"held {sum(foreign.values())} recordings of other accounts")
    elif foreign:
        what.append("held another account's profile and devices")
    if rel.missing:
        what.append(f"lacked {rel.missing} of the account's own recordings")
    raise_alert(db, alert_id=alert_id, at=rel.now, guard="export.ownership_check",
                request_id=rel.request_id, account_id=rightful,
                summary=f"package for {rightful} {' and '.join(what)}; "
                        f"quarantined, back to review",
                detail={"foreign": foreign, "missing": rel.missing, "recordings": pkg.recordings,
                        "assigned": rel.assigned, "reused_from_cache": rel.reused,
                        "manifest_sha256": pkg.manifest_sha256})
    # Back to review with the assignment undone: the next pass starts from the
    # requester's own account, not from the assignment that produced foreign items.
    update_request(db, rel.request_id, rel.now, status="pending", package_id=None,
                   approved_by=None, assigned_by=None, subject_account_id=rightful)
    auditlog.append(db, at=rel.now, actor="guard:export.ownership_check",
                    action="package.quarantined", object_id=rel.request_id,
                    detail={"manifest_sha256": pkg.manifest_sha256, "foreign": foreign,
                            "missing": rel.missing, "assigned": rel.assigned,
                            "reset_to": rightful})


def _record_package(db: sqlite_utils.Database, rel: _Release) -> None:
    """The package row and its audit entry; refused when an erasure overtook the build."""
    pkg = rel.pkg
    if erased_since(db, rel.row.get("started_seq", 0), set(pkg.owners) | {rel.assigned}):
        raise JobFailed("the data was erased while the package was built; "
                        "file a new request")
    db.table("packages").insert({
        "package_id": rel.package_id, "request_id": rel.request_id, "account_id": rel.assigned,
        "file_name": pkg.file_name, "bytes": pkg.bytes, "files": pkg.files,
        "recordings": pkg.recordings, "manifest_sha256": pkg.manifest_sha256,
        "owners": json.dumps(pkg.owners, sort_keys=True), "created_at": rel.now,
        "quarantined_at": None,
    })
    auditlog.append(db, at=rel.now, actor="system", action="package.built",
                    object_id=rel.request_id,
                    detail={"package_id": rel.package_id, "manifest_sha256": pkg.manifest_sha256,
                            "bytes": pkg.bytes, "files": pkg.files,
                            "recordings": pkg.recordings, "owners": pkg.owners,
                            "reused": rel.reused})


def _send_link(db: sqlite_utils.Database, ctx: JobContext, rel: _Release) -> None:
    """Mint the download link and email it (to the address on file when the guard
    ``identity.verified_channel`` diverts a misaddressed one)."""
    row = rel.row
    to, diverted = delivery.route_link(db, row, ctx.faults)
    if diverted:
        raise_alert(db, alert_id=ctx.ids.new("alr", job_key(row)), at=rel.now,
                    guard="identity.verified_channel", request_id=rel.request_id,
                    account_id=rel.rightful,
                    summary="the download link was about to go to an address not on file "
                            "for the requester; sent to the address on file instead",
                    # No address in the detail: alerts are copied to the append-only audit log.
                    detail={"message": "download link", "sent_to": "address on file",
                            "channel": row["channel"], "package_id": rel.package_id})
    link_id, token = delivery.mint_link(
        db, config=ctx.settings(), ids=ctx.ids, faults=ctx.faults, row=row,
        package_id=rel.package_id, now=rel.now_dt, sent_to=to)
    url = delivery.link_url(ctx.config, token)
    expires = db.execute("SELECT expires_at FROM links WHERE link_id = ?",
                         [link_id]).fetchone()[0]
    outbox.send_mail(db, LINK_READY, to=to, sent_at=rel.now, request_id=rel.request_id,
                     url=url, expires=expires)


def _complete(db: sqlite_utils.Database, rel: _Release) -> None:
    update_request(db, rel.request_id, rel.now, status="complete", completed_at=rel.now,
                   package_id=rel.package_id, total_items=rel.pkg.recordings, error=None)
    auditlog.append(db, at=rel.now, actor="system", action="request.completed",
                    object_id=rel.request_id, detail={"package_id": rel.package_id})


def _release(ctx: JobContext, row: dict[str, Any], pkg: CachedPackage, cache: PackageCache, *,
             reused: bool, expected: frozenset[str], package_id: str | None = None,
             cache_key: str | None = None) -> None:
    """Record the package, mint its link, email it and complete the request; or, with the
    guard ``export.ownership_check`` and any item whose stored owner is not the requester's
    own account, or any of ``expected`` (the requester's stored recordings) missing,
    quarantine it: alert, request back to ``pending``, zip deleted."""
    # Released in queue order: link numbers and what each requester is sent never depend
    # on which build finished first.
    ctx.state.order.wait_release(str(row["request_id"]), ctx.state.stop)
    package_id = package_id or ctx.ids.new("pkg", job_key(row))
    rightful, foreign, missing = _verdict(row, pkg, expected)
    rel = _Release(row, pkg, package_id, rightful, foreign, missing, reused, ctx.clock.now())
    quarantine = bool(foreign or missing) and ctx.faults.on("export.ownership_check")
    alert_id = ctx.ids.new("alr", job_key(row)) if quarantine else ""

    def finish(db: sqlite_utils.Database) -> None:
        if quarantine:
            _quarantine(db, rel, alert_id)
            return
        _record_package(db, rel)
        _send_link(db, ctx, rel)
        _complete(db, rel)

    package_file = Path(ctx.config.packages_dir) / pkg.file_name
    try:
        ctx.store.write_sync(finish)
    except BaseException:
        if not reused:
            package_file.unlink(missing_ok=True)
        raise
    if quarantine and not reused:
        # Foreign data is not kept around waiting for review: the next approval rebuilds.
        package_file.unlink(missing_ok=True)
    if quarantine:
        # Nor served again from the cache: the next approval of the request rebuilds it.
        cache.evict(cache_key, pkg.file_name)
    outcome = "quarantined" if quarantine else "complete"
    ctx.metrics.inc("overheard_privacy_jobs_total", kind="access", outcome=outcome)
    log.info("request %s: package %s %s (%d recordings, %d bytes)", rel.request_id, package_id,
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
