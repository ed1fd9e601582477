"""The admin pages of the console, ``/console/admin/...`` (admin token only): fault and
guard switches, the simulated clock, guard alerts, the audit log and its chain check, the
outbox (the simulated mailbox), and the backend's health and metrics.

Each page calls the function the matching JSON route calls (:mod:`backend.admin`,
:mod:`backend.auditlog`, :mod:`backend.privacy.outbox`, :mod:`backend.meta`).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from backend import auditlog
from backend import faults as catalogue
from backend.admin import SWITCHES_IN, advance_clock_by, apply_switches
from backend.alerts import read_alerts
from backend.errors import BadRequest
from backend.keys import FAULTS, STORE
from backend.meta import health, metrics_text
from backend.privacy.outbox import read_messages
from backend.web.pages import page, read_form, render, see_other
from backend.web.sessions import Session

routes = web.RouteTableDef()

ADMIN = ("admin",)
UNITS = {"minutes": 60, "hours": 3600, "days": 86400}
PAGE_SIZE = 200


@routes.get("/console/admin/")
@page("console", ADMIN)
async def switches(request: web.Request, sess: Session) -> web.Response:
    board = request.app[FAULTS]
    return render(request, "admin/switches.html", {
        "tables": {kind: board.snapshot(kind) for kind in ("fault", "guard")},
        "units": list(UNITS),
    })


def _switches_body(kind: str, form: Any) -> Any:
    """The form's switches as the JSON route's body, validated by the same model."""
    on = set(form.getall("on", []))
    items = []
    for entry in request_catalogue(kind):
        raw = str(form.get(f"params:{entry}") or "").strip() or "{}"
        try:
            params = json.loads(raw)
        except ValueError:
            raise BadRequest(f"{entry}: parameters must be a JSON object",
                             code="invalid_field") from None
        items.append({"name": entry, "enabled": entry in on, "params": params})
    try:
        return SWITCHES_IN[kind].model_validate({"switches": items})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadRequest(f"{where}: {first['msg']}", code="invalid_field") from None


def request_catalogue(kind: str) -> list[str]:
    """Every name of the catalogue of ``kind`` (fault or guard), in catalogue order."""
    return list(catalogue.FAULTS if kind == "fault" else catalogue.GUARDS)


@routes.post("/console/admin/switches/{kind}")
@page("console", ADMIN)
async def set_switches(request: web.Request, sess: Session) -> web.Response:
    kind = request.match_info["kind"]
    if kind not in SWITCHES_IN:
        raise BadRequest("fault or guard", code="invalid_field")
    body = _switches_body(kind, await read_form(request))
    state = await apply_switches(request.app, kind, body)
    on = [s["name"] for s in state if s["enabled"]]
    sess.notice(f"{kind.capitalize()}s on: {', '.join(on) or 'none'}.")
    return see_other("/console/admin/")


@routes.post("/console/admin/clock")
@page("console", ADMIN)
async def clock(request: web.Request, sess: Session) -> web.Response:
    form = await read_form(request)
    unit = str(form.get("unit") or "")
    try:
        amount = float(str(form.get("amount") or ""))
    except ValueError:
        raise BadRequest("amount: a number", code="invalid_field") from None
    if unit not in UNITS or not 0 <= amount * UNITS[unit] <= 10 * 365 * 86400:
        raise BadRequest("amount: 0 to 10 years, in minutes, hours or days",
                         code="invalid_field")
    now = await advance_clock_by(request.app, amount * UNITS[unit])
    sess.notice(f"The simulated clock now reads {now}.")
    return see_other("/console/admin/")


@routes.get("/console/admin/alerts")
@page("console", ADMIN)
async def alerts(request: web.Request, sess: Session) -> web.Response:
    found = await request.app[STORE].read(read_alerts)
    return render(request, "admin/alerts.html", {"alerts": found})


@routes.get("/console/admin/audit")
@page("console", ADMIN)
async def audit(request: web.Request, sess: Session) -> web.Response:
    verify = request.query.get("verify") == "1"

    def read(db: Any) -> tuple[list[dict[str, Any]], int, Any]:
        total = int(db.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0])
        entries = auditlog.rows(db, after=max(0, total - PAGE_SIZE), limit=PAGE_SIZE)
        return entries[::-1], total, auditlog.verify_chain(db) if verify else None

    entries, total, chain = await request.app[STORE].read(read)
    return render(request, "admin/audit.html", {"entries": entries, "total": total,
                                                "chain": chain})


@routes.get("/console/admin/outbox")
@page("console", ADMIN)
async def outbox(request: web.Request, sess: Session) -> web.Response:
    to = request.query.get("to") or None
    messages = await request.app[STORE].read(lambda db: read_messages(db, to, 0, 5000))
    return render(request, "admin/outbox.html", {"messages": messages[::-1], "to": to or ""})


@routes.get("/console/admin/health")
@page("console", ADMIN)
async def health_page(request: web.Request, sess: Session) -> web.Response:
    return render(request, "admin/health.html", {
        "health": await health(request.app), "metrics": metrics_text(request.app)})
