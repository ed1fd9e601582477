"""The ground-truth ledger: what each device really recorded, whose it was, what became of it.

JSON Lines, one object per utterance, keys always in this order::

    utterance_id, recording_id, household, account_id, device_serial, speaker,
    recorded_at, transcript, pcm_sha256, outcome

``outcome`` follows Jepsen's histories: ``ok`` (the backend acknowledged it:
``recording_id`` is set), ``fail`` (definitely not stored: an error frame for it, or never
sent), ``info`` (sent, never acknowledged: it may or may not be stored).

The file is written once, at the end of a run, sorted by ``recorded_at`` then
``utterance_id``, so the order in which concurrent devices finished never changes its
bytes. The ledger is the only link between a run and its audit; the backend never sees it.
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

    def set_outcome(self, utterance_id: str, outcome: Outcome,
                    recording_id: str | None = None) -> LedgerEntry:
        """Change one entry's outcome (and recording id); returns the new entry."""
        entry = self._by_id[utterance_id].model_copy(
            update={"outcome": outcome, "recording_id": recording_id})
        self._by_id[utterance_id] = entry
        return entry

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


def write_ledger(path: str | Path, entries: Iterable[LedgerEntry]) -> Path:
    """Write ``entries`` sorted, via a temporary file renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="\n") as fh:
        for e in sorted(entries, key=LedgerEntry.sort_key):
            fh.write(e.to_json())
            fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def read_ledger(path: str | Path) -> list[LedgerEntry]:
    """Every entry of a ledger file, in file order; a bad line raises :class:`LedgerError`."""
    path = Path(path)
    out: list[LedgerEntry] = []
    try:
        fh = path.open(encoding="utf-8")
    except OSError as exc:
        raise LedgerError(f"{path}: cannot open the ledger: {exc.strerror}") from None
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                out.append(LedgerEntry.model_validate_json(line))
            except ValidationError as exc:
                first = exc.errors(include_url=False)[0]
                where = ".".join(str(p) for p in first["loc"]) or "line"
                raise LedgerError(f"{path}:{n}: {where}: {first['msg']}") from None
    return out
