"""Small maintenance commands that read a backend's data dir directly.

``overheard audit-log --data DIR [--verify] [--tail N] [--json]`` opens ``DIR/overheard.db``
read-only (a running backend is not disturbed) and prints the audit log's last entries, or
with ``--verify`` recomputes the hash chain. Exit 0: the chain holds; 1: it is broken (the
first bad entry is named); 2: the log could not be read.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import click

from backend.auditlog import rows, verify_chain
from backend.storage.db import connect


def _fail(message: str) -> None:
    click.echo(f"audit-log: {message}", err=True)
    raise SystemExit(2)


@click.command("audit-log")
@click.option("--data", "data", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="the backend's data directory (holds overheard.db)")
@click.option("--verify", is_flag=True, help="recompute the hash chain; exit 1 if it is broken")
@click.option("--tail", type=click.IntRange(0), default=20, show_default=True,
              help="entries to print (the newest), without --verify")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def audit_log(data: Path, verify: bool, tail: int, as_json: bool) -> None:
    """Print or verify the backend's append-only, hash-chained audit log."""
    path = data / "overheard.db"
    if not path.is_file():
        _fail(f"no database at {path}")
    try:
        db = connect(path, readonly=True)
    except sqlite3.Error as exc:
        _fail(f"cannot open {path}: {exc}")
    try:
        if verify:
            report = verify_chain(db)
            out: dict[str, Any] = {"ok": report.ok, "entries": report.entries,
                                   "first_bad_seq": report.first_bad_seq,
                                   "problem": report.problem}
            if as_json:
                click.echo(json.dumps(out, indent=2))
            elif report.ok:
                click.echo(f"audit log OK: {report.entries} entries, hash chain intact")
            else:
                click.echo(f"audit log BROKEN at entry {report.first_bad_seq}: {report.problem}")
            raise SystemExit(0 if report.ok else 1)
        total = int(db.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0])
        entries = rows(db, after=max(0, _last_seq(db) - tail), limit=max(tail, 1)) if tail else []
        if as_json:
            click.echo(json.dumps({"entries": entries, "total": total}, indent=2,
                                  ensure_ascii=False))
            return
        for e in entries:
            detail = json.dumps(e["detail"], ensure_ascii=False, sort_keys=True)
            click.echo(f"{e['seq']:>6}  {e['at']}  {e['actor']:<28} {e['action']:<28}"
                       f" {e['object_id'] or '-'}  {detail}")
        click.echo(f"({len(entries)} of {total} entries)")
    except sqlite3.Error as exc:
        _fail(f"cannot read the audit log: {exc}")
    finally:
        db.conn.close()


def _last_seq(db: Any) -> int:
    return int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM audit_log").fetchone()[0])
