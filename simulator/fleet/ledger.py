"""The ground-truth ledger: what each device really recorded, whose it was, what became of it.

JSON Lines, one object per utterance, keys always in this order::

    utterance_id, recording_id, household, account_id, device_serial, speaker,
    recorded_at, transcript, pcm_sha256, outcome

``outcome`` follows Jepsen's histories: ``ok`` (the backend acknowledged it:
``recording_id`` is set), ``fail`` (definitely not stored: an error frame for it, or never
sent), ``info`` (sent, never acknowledged: it may or may not be stored).

After the utterances come the downloads, one object each with ``"kind": "download"``::

    kind, at, household, account_id, request_id, made_for, sha256, bytes

who fetched a package (``household``, ``account_id``), when (simulated time), the request
whose package the link served and the household that filed it (``made_for``), and the
sha256 and size of the zip as received. The auditor finds a package's recipient by that
hash, never by what the package says about itself.

The file is written once, at the end of a run, utterances sorted by ``recorded_at`` then
``utterance_id`` and downloads by ``at``, household and hash, so the order in which
concurrent devices finished never changes its bytes. The ledger is the only link between a
run and its audit; the backend never sees it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

Outcome = Literal["ok", "fail", "info"]

FIELDS = ("utterance_id", "recording_id", "household", "account_id", "device_serial",
          "speaker", "recorded_at", "transcript", "pcm_sha256", "outcome")


class LedgerError(ValueError):
    """A ledger file cannot be read: names the file, the line and the field."""


class LedgerEntry(BaseModel):
    """One utterance as it really happened."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    utterance_id: str
    recording_id: str | None
    """From the backend's ``utterance.stored`` ack; ``None`` unless ``outcome`` is ``ok``."""
    household: str
    account_id: str | None
    """The true owner: the account the household's devices were registered to."""
    device_serial: str
    speaker: str
    recorded_at: str
    """RFC 3339 UTC with milliseconds, exactly as sent in ``utterance.start``."""
    transcript: str
    pcm_sha256: str
    """sha256 of the raw PCM (not of a WAV file)."""
    outcome: Outcome

    def to_json(self) -> str:
        return json.dumps(self.model_dump(), ensure_ascii=False, separators=(",", ":"))

    def sort_key(self) -> tuple[str, str]:
        return (self.recorded_at, self.utterance_id)


class DownloadRecord(BaseModel):
    """One package fetched by a household, as it really happened."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["download"] = "download"
    at: str
    household: str
    """Who fetched it."""
    account_id: str | None
    request_id: str | None
    """The request whose package the link served (not necessarily the fetcher's own)."""
    made_for: str | None
    """The household that filed that request."""
    sha256: str
    """sha256 of the zip file as received."""
    bytes: int

    def to_json(self) -> str:
        return json.dumps(self.model_dump(), ensure_ascii=False, separators=(",", ":"))

    def sort_key(self) -> tuple[str, str, str]:
        return (self.at, self.household, self.sha256)


def pcm_sha256(pcm: bytes) -> str:
    return hashlib.sha256(pcm).hexdigest()


class Ledger:
    """A run's ledger in memory: one entry per utterance, the last word on each wins."""

    def __init__(self, entries: Iterable[LedgerEntry] = ()) -> None:
        self._by_id: dict[str, LedgerEntry] = {}
        for e in entries:
            self.record(e)

    def record(self, entry: LedgerEntry) -> None:
        self._by_id[entry.utterance_id] = entry

    def get(self, utterance_id: str) -> LedgerEntry | None:
        return self._by_id.get(utterance_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, utterance_id: object) -> bool:
        return utterance_id in self._by_id

    def __iter__(self) -> Iterator[LedgerEntry]:
        return iter(self.entries())

    def entries(self) -> list[LedgerEntry]:
        """All entries in file order (``recorded_at``, then ``utterance_id``)."""
        return sorted(self._by_id.values(), key=LedgerEntry.sort_key)

    def counts(self) -> dict[str, int]:
        """Entries per outcome, always with the keys ``ok``, ``fail`` and ``info``."""
        c = Counter(e.outcome for e in self._by_id.values())
        return {k: c.get(k, 0) for k in ("ok", "fail", "info")}

    def write(self, path: str | Path) -> Path:
        """Write the sorted ledger atomically (a reader never sees half a file)."""
        return write_ledger(path, self.entries())


def write_ledger(path: str | Path, entries: Iterable[LedgerEntry],
                 downloads: Iterable[DownloadRecord] = ()) -> Path:
    """Write ``entries`` sorted, then ``downloads``, via a temporary file renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="\n") as fh:
        for e in sorted(entries, key=LedgerEntry.sort_key):
            fh.write(e.to_json())
            fh.write("\n")
        for d in sorted(downloads, key=DownloadRecord.sort_key):
            fh.write(d.to_json())
            fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def read_ledger(path: str | Path) -> list[LedgerEntry]:
    """Every utterance of a ledger file, in file order; a bad line raises :class:`LedgerError`."""
    return read_records(path)[0]


def read_records(path: str | Path) -> tuple[list[LedgerEntry], list[DownloadRecord]]:
    """The utterances and the downloads of a ledger file, each in file order."""
    path = Path(path)
    out: list[LedgerEntry] = []
    downloads: list[DownloadRecord] = []
    try:
        fh = path.open(encoding="utf-8")
    except OSError as exc:
        raise LedgerError(f"{path}: cannot open the ledger: {exc.strerror}") from None
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise LedgerError(f"{path}:{n}: not a JSON object: {exc}") from None
            try:
                if isinstance(obj, dict) and obj.get("kind") == "download":
                    downloads.append(DownloadRecord.model_validate(obj))
                else:
                    out.append(LedgerEntry.model_validate(obj))
            except ValidationError as exc:
                first = exc.errors(include_url=False)[0]
                where = ".".join(str(p) for p in first["loc"]) or "line"
                raise LedgerError(f"{path}:{n}: {where}: {first['msg']}") from None
    return out, downloads
