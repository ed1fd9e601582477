"""The operator console, ``/console/``: the review queue, the request page, account search,
and the manual steps (assign, approve, deny, revoke), for operators and admins.

Every step calls the same service function as the JSON API (:mod:`backend.privacy.ops`),
so a step taken here is logged, faulted and guarded exactly like one taken by a script.
What the console adds is what a person needs: the requester's identity signals beside the
account being assigned, warnings where they disagree (:mod:`backend.privacy.review`),
the guard alerts raised about the request, and a confirmation page before anything that
cannot be undone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from backend.alerts import read_alerts
from backend.auth import resolve_token
from backend.errors import BadRequest, NotFound
from backend.keys import CLOCK, FAULTS, STORE
from backend.privacy import ops
from backend.privacy.review import account_signals, review
from backend.web.interactive import mark_done, watch_of
from backend.web.pages import (
    SESSIONS,
    page,
    read_form,
    render,
    replace_session,
    see_other,
    sign_out,
)
from backend.web.sessions import Session
from contract.rfc3339 import parse_rfc3339

routes = web.RouteTableDef()

STAFF = ("operator", "admin")
DENY_REASONS = {
    "no_match": "no account matches the requester",
    "insuf_verification": "the requester's identity could not be verified",
    "suspected_fraud": "the request looks fraudulent",
    "too_many_requests": "too many requests from this requester",
}
QUEUE_VIEWS = {
    "open": ("identity_unverified", "pending", "approved", "in_processing"),
    "review": ("pending",),
    "all": None,
}


def actor_id(sess: Session) -> str:
    """The id the service layer logs an operator step under (``admin`` for the admin)."""
    return str(sess.subject_id)


def age(created_at: str, now: datetime) -> str:
    """How long ago, in the largest whole unit: ``3 d``, ``5 h``, ``12 min``."""
    seconds = max(0.0, (now - parse_rfc3339(created_at)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def days_left(due_at: str, now: datetime) -> int:
    """Whole days until the Art. 12 deadline (negative once it has passed)."""
    return int((parse_rfc3339(due_at) - now).total_seconds() // 86400)


# -- sign-in ------------------------------------------------------------------------------

@routes.get("/console/signin")
@page("console")
async def signin_form(request: web.Request, sess: Session) -> web.Response:
    return render(request, "console/signin.html", {})


@routes.post("/console/signin")
@page("console")
async def signin(request: web.Request, sess: Session) -> web.Response:
    form = await read_form(request)
    token = str(form.get("token") or "").strip()
    return await _sign_in_with(request, sess, token)


async def _sign_in_with(request: web.Request, sess: Session, token: str) -> web.Response:
    who = await resolve_token(request.app, token) if token else None
    if who is None or who.kind not in STAFF:
        sess.notice("That token is not an operator or admin token.", "error")
        return render(request, "console/signin.html", {}, status=401)
    name = "Admin" if who.kind == "admin" else await request.app[STORE].read(
        lambda db: (db.execute("SELECT name FROM operators WHERE operator_id = ?",
                               [who.subject_id]).fetchone() or [who.subject_id])[0])
    new = request.app[SESSIONS].sign_in(sess, kind=who.kind, subject_id=who.subject_id, name=str(name),
                        token=token)
    replace_session(request, new)
    return see_other("/console/")


@routes.get("/console/signin/once/{nonce}")
@page("console")
async def signin_once(request: web.Request, sess: Session) -> web.Response:
    """A one-time sign-in link (an interactive run prints one); it works once."""
    token = request.app[SESSIONS].redeem_one_time("console", request.match_info["nonce"])
    if token is None:
        sess.notice("That sign-in link has been used or has expired.", "error")
        return see_other("/console/signin")
    return await _sign_in_with(request, sess, token)


@routes.post("/console/signout")
@page("console")
async def signout(request: web.Request, sess: Session) -> web.Response:
    return sign_out(request, sess)


# -- the queue ----------------------------------------------------------------------------

@routes.get("/console/")
@page("console", STAFF)
async def queue(request: web.Request, sess: Session) -> web.Response:
    view = request.query.get("view", "open")
    if view not in QUEUE_VIEWS:
        raise BadRequest("view: open, review or all", code="invalid_query")
    statuses = QUEUE_VIEWS[view]

    def read(db: Any) -> tuple[list[dict[str, Any]], dict[str, int]]:
        rows = ops.read_queue(db, limit=2000)
        alerts: dict[str, int] = {}
        for a in read_alerts(db):
            if a["request_id"]:
                alerts[a["request_id"]] = alerts.get(a["request_id"], 0) + 1
        return rows, alerts

    rows, alerts = await request.app[STORE].read(read)
    now = request.app[CLOCK].now()
    items = [{**r, "age": age(r["created_at"], now), "days_left": days_left(r["due_at"], now),
              "alerts": alerts.get(r["request_id"], 0)}
             for r in rows if statuses is None or r["status"] in statuses]
    return render(request, "console/queue.html", {
        "items": items, "view": view, "views": list(QUEUE_VIEWS),
        "interactive": watch_of(request.app).active,
    })


@routes.post("/console/done")
@page("console", STAFF)
async def done(request: web.Request, sess: Session) -> web.Response:
    """An interactive run waits for the person at the console; this lets it carry on."""
    if not watch_of(request.app).active:
        sess.notice("No run is waiting for the console.", "error")
        return see_other("/console/")
    mark_done(request.app)
    sess.notice("Done: the run carries on without the console.")
    return see_other("/console/")


# -- one request --------------------------------------------------------------------------

async def _review(request: web.Request, rid: str, candidate: str | None = None) -> Any:
    found = await request.app[STORE].read(lambda db: review(db, rid, candidate))
    if found is None:
        raise NotFound("no such request", code="not_found")
    return found


@routes.get("/console/requests/{request_id}")
@page("console", STAFF)
async def request_page(request: web.Request, sess: Session) -> web.Response:
    rid = request.match_info["request_id"]
    rv = await _review(request, rid)
    q = request.query.get("q")
    hits = await _search(request, sess, q)
    return render(request, "console/request.html", _request_context(request, rv, q, hits))


async def _search(request: web.Request, sess: Session,
                  q: str | None) -> list[dict[str, Any]] | None:
    """Accounts matching ``q`` (None when nothing was searched); a bad query is a notice."""
    if q is None:
        return None
    try:
        return await ops.find_accounts_for(request.app, actor_id(sess), q)
    except BadRequest as exc:
        sess.notice(exc.message, "error")
        return None


def _request_context(request: web.Request, rv: Any, q: str | None,
                     hits: list[dict[str, Any]] | None) -> dict[str, Any]:
    now = request.app[CLOCK].now()
    row = rv.request
    return {
        "rv": rv, "row": row, "q": q or "", "hits": hits, "reasons": DENY_REASONS,
        "age": age(row["created_at"], now), "days_left": days_left(row["due_at"], now),
        "four_eyes": request.app[FAULTS].on("ops.four_eyes"),
        "held": row["status"] == "pending" and row["approved_by"] is not None,
    }


def _confirmed(form: Any) -> bool:
    return bool(form.get("confirm") == "yes")


async def _confirm(request: web.Request, rid: str, action: str, title: str,
                   fields: dict[str, str] | None = None,
                   candidate: str | None = None) -> web.Response:
    """The confirmation page: the same comparison and warnings, and one button that posts
    the form again with ``confirm=yes``. Nothing changes until it is pressed."""
    rv = await _review(request, rid, candidate)
    if candidate is not None and rv.assigned is None:
        raise NotFound("no such account", code="account_not_found")
    name = rv.assigned.name if rv.assigned is not None else ""
    return render(request, "console/confirm.html", {
        "rv": rv, "action": action, "fields": fields or {}, "title": title.format(name=name)})


@routes.post("/console/requests/{request_id}/assign")
@page("console", STAFF)
async def assign(request: web.Request, sess: Session) -> web.Response:
    rid = request.match_info["request_id"]
    form = await read_form(request)
    account = str(form.get("account_id") or "")
    if not account:
        raise BadRequest("choose an account to assign", code="invalid_field")
    if not _confirmed(form):
        return await _confirm(request, rid, "assign",
                              f"Assign {{name}}'s account to request {rid}?",
                              {"account_id": account}, candidate=account)
    got = await ops.assign_account(request.app, actor_id(sess), rid, account)
    sess.notice(f"Assigned account {got} to request {rid}.")
    return see_other(f"/console/requests/{rid}")


@routes.post("/console/requests/{request_id}/approve")
@page("console", STAFF)
async def approve(request: web.Request, sess: Session) -> web.Response:
    rid = request.match_info["request_id"]
    form = await read_form(request)
    if not _confirmed(form):
        return await _confirm(request, rid, "approve",
                              f"Approve request {rid}? The package is built and sent at once.")
    if (await ops.approve_request(request.app, actor_id(sess), rid)).queued:
        sess.notice(f"Approved request {rid}: the package is being built.")
    else:
        sess.notice(f"Request {rid} is held: the assigned account is not the requester's own, "
                    "so a second operator must approve it.", "warn")
    return see_other(f"/console/requests/{rid}")


@routes.post("/console/requests/{request_id}/deny")
@page("console", STAFF)
async def deny(request: web.Request, sess: Session) -> web.Response:
    rid = request.match_info["request_id"]
    form = await read_form(request)
    reason = str(form.get("reason") or "")
    if reason not in DENY_REASONS:
        raise BadRequest("choose a reason for the denial", code="invalid_field")
    if not _confirmed(form):
        return await _confirm(request, rid, "deny", f"Deny request {rid}: {DENY_REASONS[reason]}?",
                              {"reason": reason})
    await ops.deny_request(request.app, actor_id(sess), rid, reason)
    sess.notice(f"Denied request {rid} ({reason}).")
    return see_other(f"/console/requests/{rid}")


@routes.post("/console/requests/{request_id}/revoke")
@page("console", STAFF)
async def revoke(request: web.Request, sess: Session) -> web.Response:
    rid = request.match_info["request_id"]
    form = await read_form(request)
    if not _confirmed(form):
        return await _confirm(request, rid, "revoke",
                              f"Revoke the download link of request {rid}?")
    revoked = await ops.revoke_request_links(request.app, actor_id(sess), rid)
    sess.notice(f"Revoked {len(revoked)} link(s) of request {rid}.")
    return see_other(f"/console/requests/{rid}")


# -- account search -----------------------------------------------------------------------

@routes.get("/console/accounts")
@page("console", STAFF)
async def accounts(request: web.Request, sess: Session) -> web.Response:
    q = request.query.get("q")
    hits = await _search(request, sess, q)
    return render(request, "console/accounts.html", {"q": q or "", "hits": hits})


@routes.get("/console/accounts/{account_id}")
@page("console", STAFF)
async def account(request: web.Request, sess: Session) -> web.Response:
    aid = request.match_info["account_id"]
    found = await request.app[STORE].read(lambda db: account_signals(db, aid))
    if found is None:
        raise NotFound("no such account", code="account_not_found")
    return render(request, "console/account.html", {"acc": found})
