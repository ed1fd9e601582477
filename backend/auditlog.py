"""Append-only, hash-chained audit log.

Every state change, operator action, package build and download appends one entry in the
same transaction as the change it records. Entry ``n`` stores ``prev_hash`` (entry
``n-1``'s hash) and ``hash = sha256(prev_hash || canonical JSON of the entry)``, so editing
or removing any entry breaks every hash after it; :func:`verify_chain` finds the first
break. Secrets (tokens, codes) are never written here: callers pass digests.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import sqlite_utils

GENESIS = "0" * 64


def _entry_hash(prev_hash: str, seq: int, at: str, actor: str, action: str,
                object_id: str | None, detail: str) -> str:
    body = json.dumps(
        [seq, at, actor, action, object_id, detail], ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def append(
    db: sqlite_utils.Database,
    *,
    at: str,
    actor: str,
    action: str,
    object_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> int:
    """Append one entry; call inside a write transaction. Returns its sequence number."""
    last = db.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    detail_text = json.dumps(detail or {}, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    digest = _entry_hash(prev, seq, at, actor, action, object_id, detail_text)
    db.execute(
        "INSERT INTO audit_log (seq, at, actor, action, object_id, detail, prev_hash, hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [seq, at, actor, action, object_id, detail_text, prev, digest],
    )
    return seq


@dataclass(frozen=True)
class ChainReport:
    """Result of :func:`verify_chain`."""

    entries: int
    ok: bool
    first_bad_seq: int | None = None
    problem: str = ""


def verify_chain(db: sqlite_utils.Database) -> ChainReport:
    """Recompute every hash; report the first entry whose link or content does not match."""
    prev = GENESIS
    expected_seq = 1
    count = 0
    for seq, at, actor, action, object_id, detail, prev_hash, digest in db.execute(
        "SELECT seq, at, actor, action, object_id, detail, prev_hash, hash FROM audit_log ORDER BY seq"
    ):
        count += 1
        if seq != expected_seq:
            return ChainReport(count, False, seq, f"sequence gap: expected {expected_seq}, found {seq}")
        if prev_hash != prev:
            return ChainReport(count, False, seq, "prev_hash does not match the previous entry")
        if _entry_hash(prev, seq, at, actor, action, object_id, detail) != digest:
            return ChainReport(count, False, seq, "entry content does not match its hash")
        prev = digest
        expected_seq += 1
    return ChainReport(count, True)


def rows(db: sqlite_utils.Database, *, after: int = 0, limit: int = 500) -> list[dict[str, Any]]:
    out = []
    for seq, at, actor, action, object_id, detail, prev_hash, digest in db.execute(
        "SELECT seq, at, actor, action, object_id, detail, prev_hash, hash FROM audit_log"
        " WHERE seq > ? ORDER BY seq LIMIT ?",
        [after, limit],
    ):
        out.append({
            "seq": seq, "at": at, "actor": actor, "action": action, "object_id": object_id,
            "detail": json.loads(detail), "prev_hash": prev_hash, "hash": digest,
        })
    return out
