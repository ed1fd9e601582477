"""The access package: a zip streamed to disk entry by entry, never held in memory.

The layout, its entry names and the manifest's fields are :mod:`contract.package`.

WAVs are ZIP_STORED (PCM does not compress and deflate would cost most of the build
time); text is deflated. Entry names are made here from server-assigned ids, never from
anything a device sent. Recordings are fetched and hashed on a helper thread while the
main thread writes the previous ones (SQLite and ``hashlib`` release the GIL), so on two
cores reading and hashing cost little wall time.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import queue
import threading
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import jinja2

from backend.files import open_private
from backend.privacy.errors import PackageAborted
from contract.audio import wav_header
from contract.package import (
    DEVICE_COLUMNS,
    DEVICES,
    INDEX,
    MANIFEST,
    PROFILE,
    README,
    TRANSCRIPT_COLUMNS,
    TRANSCRIPTS,
    Manifest,
    ManifestCounts,
    ManifestFile,
    ManifestSubject,
    recording_entry_name,
)

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"),
                                        default_for_string=True),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class Recording:
    """One recording as the export query returned it (owner as stored)."""

    recording_id: str
    account_id: str
    device_id: str
    recorded_at: str
    duration_ms: int
    transcript: str
    rate: int
    """Samples per second (Hz)."""
    width: int
    """Bytes per sample."""
    channels: int
    pcm: bytes


@dataclass(frozen=True)
class Entry:
    """One file in the package, as the manifest lists it."""

    path: str
    sha256: str
    bytes: int
    account_id: str
    """The owner as stored in the backend's tables."""
    recording_id: str | None = None

    def manifest(self) -> ManifestFile:
        return ManifestFile(path=self.path, sha256=self.sha256, bytes=self.bytes,
                            recording_id=self.recording_id, account_id=self.account_id)


@dataclass
class PackageResult:
    """What was written: the zip's size, its entries and the manifest's digest."""

    path: Path
    bytes: int
    entries: list[Entry]
    manifest_sha256: str
    recordings: int
    owners: Counter[str] = field(default_factory=Counter)
    """Recordings per stored owner account: a package is clean when the subject is the only key."""


class PackageWriter:
    """Adds entries one at a time to a zip on disk and remembers each entry's digest."""

    def __init__(self, fileobj: IO[bytes], generated_at: datetime) -> None:
        self._zip = zipfile.ZipFile(fileobj, "w", allowZip64=True)
        # Timestamps come from the injected clock, so a rebuilt package has the same bytes.
        self._date_time = generated_at.timetuple()[:6]
        self.entries: list[Entry] = []
        self._names: set[str] = set()

    def _info(self, name: str, size: int | None, stored: bool) -> zipfile.ZipInfo:
        if name in self._names:
            raise ValueError(f"duplicate entry {name}")
        self._names.add(name)
        info = zipfile.ZipInfo(name, date_time=self._date_time)
        info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        if size is not None:
            info.file_size = size  # lets zipfile pick zip64 up front for huge entries
        return info

    def add_bytes(self, name: str, data: bytes, *, owner: str,
                  recording_id: str | None = None) -> Entry:
        self._zip.writestr(self._info(name, len(data), stored=False), data)
        entry = Entry(name, hashlib.sha256(data).hexdigest(), len(data), owner, recording_id)
        self.entries.append(entry)
        return entry

    def add_chunks(self, name: str, chunks: Iterable[str], *, owner: str) -> Entry:
        """Stream text (e.g. a template's output) into one entry, 64 KiB at a time."""
        digest = hashlib.sha256()
        total = 0
        buf: list[str] = []
        size = 0
        with self._zip.open(self._info(name, None, stored=False), "w") as out:
            def flush() -> None:
                nonlocal total
                data = "".join(buf).encode()
                buf.clear()
                digest.update(data)
                total += len(data)
                out.write(data)

            for chunk in chunks:
                buf.append(chunk)
                size += len(chunk)
                if size >= 65536:
                    flush()
                    size = 0
            flush()
        entry = Entry(name, digest.hexdigest(), total, owner)
        self.entries.append(entry)
        return entry

    def add_wav_parts(self, name: str, header: bytes, pcm: bytes, digest: str, *,
                      owner: str, recording_id: str) -> Entry:
        """Write a WAV from its header and PCM; ``digest`` is the sha256 of both, computed
        by the caller (on another thread)."""
        pad = b"\0" if len(pcm) & 1 else b""
        size = len(header) + len(pcm) + len(pad)
        with self._zip.open(self._info(name, size, stored=True), "w") as out:
            out.write(header)
            out.write(pcm)
            if pad:
                out.write(pad)
        entry = Entry(name, digest, size, owner, recording_id)
        self.entries.append(entry)
        return entry

    def close(self) -> None:
        self._zip.close()


def _wav_digest(header: bytes, pcm: bytes) -> str:
    h = hashlib.sha256(header)
    h.update(pcm)
    if len(pcm) & 1:
        h.update(b"\0")
    return h.hexdigest()


@dataclass(frozen=True)
class _Prepared:
    rec: Recording
    header: bytes
    digest: str


_DONE = object()


class _Prefetch:
    """Consume ``recordings`` on a helper thread: fetch (SQLite releases the GIL while it
    steps), build the WAV header and hash, while the caller writes the previous items.

    Items travel in groups of ``group`` (one queue hand-off per group, not per item); the
    queue holds at most ``depth`` groups, which bounds the audio held at once.
    """

    def __init__(self, recordings: Iterator[Recording], group: int = 16, depth: int = 3) -> None:
        self._source = recordings
        self._group = group
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="overheard-package-read",
                                        daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        group: list[_Prepared] = []
        try:
            for rec in self._source:
                header = wav_header(len(rec.pcm), rec.rate, rec.width, rec.channels)
                group.append(_Prepared(rec, header, _wav_digest(header, rec.pcm)))
                if len(group) >= self._group:
                    if not self._put(group):
                        return
                    group = []
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)
            return
        if group and not self._put(group):
            return
        self._put(_DONE)

    def __iter__(self) -> Iterator[_Prepared]:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield from item

    def close(self) -> None:
        """Stop the helper, wait for it, then close the source (its cursor) on this thread."""
        self._stop.set()
        self._thread.join()
        close = getattr(self._source, "close", None)
        if close is not None:
            close()


@dataclass(frozen=True)
class Subject:
    """The account a package is about: its profile and devices, as stored."""

    account_id: str
    profile: dict[str, Any]
    devices: list[dict[str, Any]]


def write_access_package(
    out_path: Path,
    *,
    request_id: str,
    subject: Subject,
    recordings: Iterator[Recording],
    generated_at: str,
    generated_dt: datetime,
    on_item: Callable[[int], None] = lambda done: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> PackageResult:
    """Stream the package for ``subject`` to ``out_path``; returns its manifest facts.

    ``recordings`` is consumed once, in order, on a helper thread (:class:`_Prefetch`);
    a bounded number of recordings' audio is held at a time. Metadata (ids, transcripts)
    is kept for the CSV and the index, which are written after the audio.
    """
    owners: Counter[str] = Counter()
    rows: list[dict[str, Any]] = []
    sub = subject.account_id
    with os.fdopen(open_private(out_path), "wb") as fh:
        # Started only once nothing can fail before the ``finally`` that joins it: the
        # caller closes the read connection the helper thread's cursor lives on.
        writer = PackageWriter(fh, generated_dt)
        prefetch = _Prefetch(recordings)
        try:
            for index, item in enumerate(prefetch):
                if should_stop():
                    raise PackageAborted("stopped")
                rec = item.rec
                name = recording_entry_name(rec.recording_id, index)
                writer.add_wav_parts(name, item.header, rec.pcm, item.digest,
                                     owner=rec.account_id, recording_id=rec.recording_id)
                owners[rec.account_id] += 1
                rows.append({
                    "recording_id": rec.recording_id, "device_id": rec.device_id,
                    "recorded_at": rec.recorded_at, "duration_ms": rec.duration_ms,
                    "transcript": rec.transcript, "file": name,
                })
                on_item(index + 1)

            writer.add_bytes(README, _templates.get_template("README.txt.j2").render(
                request_id=request_id, subject=subject.profile, generated_at=generated_at,
                recordings_count=len(rows)).encode(), owner=sub)
            writer.add_chunks(INDEX, _templates.get_template("index.html.j2").generate(
                lang=str(subject.profile.get("locale", "en"))[:2] or "en",
                subject=subject.profile, request_id=request_id, generated_at=generated_at,
                devices=subject.devices, recordings=rows, recordings_count=len(rows),
            ), owner=sub)
            writer.add_bytes(PROFILE, json.dumps(
                subject.profile, ensure_ascii=False, indent=2, sort_keys=True).encode(), owner=sub)
            writer.add_bytes(DEVICES, _csv(DEVICE_COLUMNS, subject.devices).encode(), owner=sub)
            writer.add_bytes(TRANSCRIPTS, _csv(
                TRANSCRIPT_COLUMNS, ({**r, "device": r["device_id"]} for r in rows)).encode(), owner=sub)

            manifest = Manifest(
                request_id=request_id, account_id=sub,
                subject=ManifestSubject(account_id=sub, name=subject.profile.get("name"),
                                        email=subject.profile.get("email")),
                generated_at=generated_at,
                counts=ManifestCounts(recordings=len(rows), devices=len(subject.devices),
                                      files=len(writer.entries),
                                      bytes=sum(e.bytes for e in writer.entries)),
                files=[e.manifest() for e in writer.entries],
            ).model_dump(mode="json")
            manifest_bytes = json.dumps(manifest, ensure_ascii=False, indent=1).encode()
            writer.add_bytes(MANIFEST, manifest_bytes, owner=sub)
        finally:
            prefetch.close()
            # Also when the build stops half-way: closed while ``fh`` is still open, or the
            # garbage collector closes it later and writes into a closed file.
            writer.close()
        fh.flush()
        size = fh.tell()
    return PackageResult(out_path, size, writer.entries[:-1],
                         hashlib.sha256(manifest_bytes).hexdigest(), len(rows), owners)


def _csv(columns: tuple[str, ...], rows: Iterable[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\r\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return buf.getvalue()
