"""Guard alerts: what a guard caught, with enough detail for a person to act on."""

from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from backend import auditlog


def raise_alert(
    db: sqlite_utils.Database,
    *,
    alert_id: str,
    at: str,
    guard: str,
    summary: str,
    detail: dict[str, Any],
    request_id: str | None = None,
    account_id: str | None = None,
) -> None:
    """Record an alert and its audit entry; call inside a write transaction."""
    db.table("alerts").insert({
        "alert_id": alert_id, "at": at, "guard": guard, "request_id": request_id,
        "account_id": account_id, "summary": summary,
        "detail": json.dumps(detail, ensure_ascii=False, sort_keys=True),
    })
    auditlog.append(db, at=at, actor=f"guard:{guard}", action="alert.raised",
                    object_id=request_id or account_id,
                    detail={"alert_id": alert_id, "summary": summary, **detail})


def read_alerts(db: sqlite_utils.Database, request_id: str | None = None) -> list[dict[str, Any]]:
    """Guard alerts, oldest first, their detail decoded; only ``request_id``'s when given."""
    sql, params = "SELECT * FROM alerts", []
    if request_id is not None:
        sql, params = sql + " WHERE request_id = ?", [request_id]
    out = []
    for row in db.query(sql + " ORDER BY at, alert_id", params):
        row["detail"] = json.loads(row["detail"])
        out.append(row)
    return out
