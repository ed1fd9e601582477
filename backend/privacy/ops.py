"""The operator console API: the queue, account search, and the manual steps.

This is where "human error" enters, so every step is explicit and audit-logged with the
operator's id: ``assign`` (which account's data answers the request), ``approve`` (start
the job), ``deny`` (with a fides reason), ``revoke`` (disable the request's links).

A request waits here (``pending``) when its kind is in ``Config.manual_review``. Its
subject starts as the requester's own account (signed-in path) or the account holding the
verified email (email path); an operator may assign another one.

Where the operator faults and guard live (one place each):

- ``export.operator_wrong_account``: :func:`operator_pick`, the account an operator
  settles on;
- ``export.operator_swap``: :func:`swap_in_flight`, at approval;
- ``ops.four_eyes`` (guard): :func:`four_eyes_hold`, at approval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import sqlite_utils
from aiohttp import web
from pydantic import Field

from backend import auditlog
from backend.alerts import raise_alert
from backend.auth import require
from backend.errors import BadRequest, Conflict, NotFound
from backend.faults import FaultBoard
from backend.http import Routes, Strict, parse_body, query_int
from backend.ids import IdGen
from backend.keys import CLOCK, FAULTS, IDS, STORE
from backend.openapi import document
from backend.privacy import delivery
from backend.privacy.state import (
    Status,
    default_subject,
    get_request,
    privacy_state,
    update_request,
)

routes = Routes()

QUEUE_CHANGED = "ops-queue"
"""The key :meth:`PrivacyState.changed` is called with after any operator step, so that
whoever waits for a person working the queue wakes up."""


class AssignIn(Strict):
    account_id: str = Field(min_length=1, max_length=100)


class DenyIn(Strict):
    reason: Literal["no_match", "insuf_verification", "suspected_fraud", "too_many_requests"]


def _queue_view(row: dict[str, Any]) -> dict[str, Any]:
    verified = row["verified_at"] is not None
    return {
        "request_id": row["request_id"], "kind": row["kind"], "status": row["status"],
        "reason": row["reason"], "channel": row["channel"], "created_at": row["created_at"],
        "due_at": row["due_at"], "identity_verified": verified,
        "requester": {
            "account_id": row["requester_account_id"],
            "name": row.get("requester_name") or row["contact_name"],
            "email": row.get("requester_email") or row["contact_email"],
        },
        # Until the code is answered, the operator must not act on (or learn) the match.
        "matched_account_id": row["matched_account_id"] if verified else None,
        "subject_account_id": row["subject_account_id"],
        "assigned_by": row["assigned_by"], "approved_by": row["approved_by"],
        "package_id": row["package_id"],
    }


document("GET", "/v1/ops/requests", "The request queue (operator)", roles=("operator",),
         query=(("status", "string", False, {"enum": list(get_args(Status))}),
                ("kind", "string", False, {"enum": ["access", "erasure"]}),
                ("limit", "integer", False, {"minimum": 1, "maximum": 2000})),
         responses={200: "requests, oldest first", 400: "invalid filter", 401: "no token",
                    403: "not an operator"})


def read_queue(db: sqlite_utils.Database, *, status: str | None = None,
               kind: str | None = None, limit: int = 200,
               request_id: str | None = None) -> list[dict[str, Any]]:
    """The review queue as operators see it, oldest first (one request with ``request_id``)."""
    sql = ("SELECT p.*, a.name AS requester_name, a.email AS requester_email"
           " FROM privacy_requests p LEFT JOIN accounts a"
           " ON a.account_id = p.requester_account_id WHERE 1 = 1")
    params: list[Any] = []
    for column, value in (("status", status), ("kind", kind), ("request_id", request_id)):
        if value is not None:
            sql += f" AND p.{column} = ?"
            params.append(value)
    sql += " ORDER BY p.created_at, p.request_id LIMIT ?"
    return [_queue_view(r) for r in db.query(sql, [*params, limit])]


@routes.get("/v1/ops/requests")
async def list_requests(request: web.Request) -> web.Response:
    await require(request, "operator")
    status = request.query.get("status")
    kind = request.query.get("kind")
    limit = query_int(request, "limit", 200, 1, 2000)
    if status is not None and status not in get_args(Status):
        raise BadRequest("status: unknown status", code="invalid_query", field="status")
    if kind is not None and kind not in ("access", "erasure"):
        raise BadRequest("kind: access or erasure", code="invalid_query", field="kind")
    rows = await request.app[STORE].read(
        lambda db: read_queue(db, status=status, kind=kind, limit=limit))
    return web.json_response({"requests": rows})


def _like(q: str) -> str:
    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


Q_BLANKS = " \t\r\n"
"""Stripped from a search; an explicit set, so the spec's pattern and the handler agree."""
Q_PATTERN = r"[^ \t\r\n][\s\S]*[^ \t\r\n]"
r"""At least two characters besides the stripped blanks (``[\s\S]`` is any character)."""


def search_accounts(db: sqlite_utils.Database, q: str, limit: int = 20) -> list[dict[str, Any]]:
    pattern = _like(q)
    return list(db.query(
        "SELECT a.account_id, a.name, a.email, a.created_at,"
        " (SELECT COUNT(*) FROM devices d WHERE d.account_id = a.account_id"
        "   AND d.deregistered_at IS NULL) AS devices,"
        " (SELECT COUNT(*) FROM recordings r WHERE r.account_id = a.account_id) AS recordings"
        " FROM accounts a WHERE a.erased_at IS NULL"
        " AND (a.name LIKE ? ESCAPE '\\' OR a.email LIKE ? ESCAPE '\\')"
        " ORDER BY a.name, a.created_at, a.account_id LIMIT ?", [pattern, pattern, limit]))


document("GET", "/v1/ops/accounts", "Search accounts by name or email (operator)",
         roles=("operator",),
         query=(("q", "string", True, {"minLength": 2, "maxLength": 200, "pattern": Q_PATTERN}),
                ("limit", "integer", False, {"minimum": 1, "maximum": 100})),
         responses={200: "matching accounts", 400: "q missing or too short", 401: "no token",
                    403: "not an operator"})


async def find_accounts_for(app: web.Application, operator_id: str, raw: str,
                            limit: int = 20) -> list[dict[str, Any]]:
    """Search accounts by name or email for an operator; the search is audit-logged."""
    q = raw.strip(Q_BLANKS)
    if len(q) < 2 or len(raw) > 200:
        raise BadRequest("q: 2 to 200 characters of a name or email", code="invalid_query",
                         field="q")
    now = app[CLOCK].iso()
    hits = await app[STORE].read(lambda db: search_accounts(db, q, limit))
    # Looking people up is an access to personal data: it is logged (the hits, not the query).
    await app[STORE].write(lambda db: auditlog.append(
        db, at=now, actor=f"operator:{operator_id}", action="ops.accounts.searched",
        detail={"hits": [h["account_id"] for h in hits]}))
    return hits


@routes.get("/v1/ops/accounts")
async def find_accounts(request: web.Request) -> web.Response:
    who = await require(request, "operator")
    limit = query_int(request, "limit", 20, 1, 100)
    hits = await find_accounts_for(request.app, who.subject_id, request.query.get("q", ""),
                                   limit)
    return web.json_response({"accounts": hits})


# -- fault and guard places ---------------------------------------------------------------

def operator_pick(db: sqlite_utils.Database, faults: FaultBoard, row: dict[str, Any],
                  chosen: str) -> str:
    """The account an operator settles on for a request.

    Clean: the one they chose. Fault ``export.operator_wrong_account`` (email path): the
    first operator to handle the request searches accounts by the requester's name and takes
    the first hit that is not the holder of the verified address: a look-alike. A reviewer
    who re-assigns afterwards (``ops.four_eyes``) is not misled: the error is one person's.
    """
    if not faults.on("export.operator_wrong_account") or row["channel"] != "email":
        return chosen
    if row["assigned_by"] is not None:
        return chosen
    name = row["contact_name"]
    if not name and row["matched_account_id"]:
        found = db.execute("SELECT name FROM accounts WHERE account_id = ?",
                           [row["matched_account_id"]]).fetchone()
        name = found[0] if found else None
    if not name:
        return chosen
    surname = name.split()[-1]
    for hit in search_accounts(db, surname, 50):
        if hit["account_id"] != row["matched_account_id"]:
            return str(hit["account_id"])
    return chosen


def swap_in_flight(db: sqlite_utils.Database, faults: FaultBoard, row: dict[str, Any],
                   *, at: str, operator_id: str) -> dict[str, Any]:
    """Fault ``export.operator_swap``: approving one of two access requests in review
    attaches the other one's account to each (the 2018 case), whichever is approved first.
    Clean: unchanged. The slip happens once per pair: a request that has been through an
    export before (sent back to review by a guard) is reviewed with the error in view."""
    if not faults.on("export.operator_swap") or row["kind"] != "access":
        return row
    if row["subject_account_id"] != default_subject(row) or row["attempts"]:
        return row  # already re-assigned (or swapped), or back from a quarantine
    between = {str(x) for x in faults.params("export.operator_swap").get("between") or []}
    for other in db.query(
            "SELECT * FROM privacy_requests WHERE status = 'pending' AND kind = 'access'"
            " AND request_id != ? ORDER BY created_at, request_id", [row["request_id"]]):
        if (other["subject_account_id"] != default_subject(other) or not other["subject_account_id"]
                or other["attempts"]):
            continue
        if between and not {row["subject_account_id"], other["subject_account_id"]} <= between:
            continue
        mine, theirs = row["subject_account_id"], other["subject_account_id"]
        actor = f"operator:{operator_id}"
        update_request(db, other["request_id"], at, subject_account_id=mine,
                       assigned_by=operator_id)
        update_request(db, row["request_id"], at, subject_account_id=theirs,
                       assigned_by=operator_id)
        # The log shows what happened: the operator attached these accounts.
        auditlog.append(db, at=at, actor=actor, action="ops.request.assigned",
                        object_id=other["request_id"], detail={"account_id": mine})
        auditlog.append(db, at=at, actor=actor, action="ops.request.assigned",
                        object_id=row["request_id"], detail={"account_id": theirs})
        return {**row, "subject_account_id": theirs, "assigned_by": operator_id}
    return row


def four_eyes_hold(db: sqlite_utils.Database, faults: FaultBoard, ids: IdGen,
                   row: dict[str, Any], *, at: str, operator: str) -> bool:
    """Guard ``ops.four_eyes``: a subject other than the requester's own account needs a
    second operator: it goes through once two different operators have assigned or approved
    it; until then the approval is held (alert raised) and recorded as the first."""
    if not faults.on("ops.four_eyes"):
        return False
    if row["subject_account_id"] == default_subject(row):
        return False
    if len({row["assigned_by"], row["approved_by"], operator} - {None}) >= 2:
        return False
    update_request(db, row["request_id"], at, approved_by=operator)
    raise_alert(db, alert_id=ids.new("alr"), at=at, guard="ops.four_eyes",
                request_id=row["request_id"], account_id=row["subject_account_id"],
                summary="assignment differs from the requester's own account; a second "
                        "operator must approve",
                detail={"assigned": row["subject_account_id"],
                        "requester_account": default_subject(row), "first": operator})
    return True


# -- the manual steps ---------------------------------------------------------------------

def _pending(db: sqlite_utils.Database, request_id: str, *allowed: str) -> dict[str, Any]:
    row = get_request(db, request_id)
    if row is None:
        raise NotFound("no such request", code="not_found")
    if row["status"] not in allowed:
        raise Conflict(f"the request is {row['status']}", code="wrong_status",
                       request_status=row["status"])
    return row


document("POST", "/v1/ops/requests/{request_id}/assign",
         "Assign the account whose data answers a request (operator)",
         roles=("operator",), body=AssignIn,
         responses={200: "assigned", 400: "invalid body", 404: "no such request or account",
                    409: "the request is not pending"})


async def assign_account(app: web.Application, operator_id: str, rid: str,
                         account_id: str) -> str:
    """An operator assigns the account whose data answers ``rid``; returns the account
    actually assigned (a fault may make the operator settle on another)."""
    now = app[CLOCK].iso()
    faults = app[FAULTS]

    def write(db: sqlite_utils.Database) -> str:
        row = _pending(db, rid, "pending")
        if db.execute("SELECT 1 FROM accounts WHERE account_id = ?",
                      [account_id]).fetchone() is None:
            raise NotFound("no such account", code="account_not_found")
        account = operator_pick(db, faults, row, account_id)
        update_request(db, rid, now, subject_account_id=account, assigned_by=operator_id,
                       approved_by=None)
        auditlog.append(db, at=now, actor=f"operator:{operator_id}",
                        action="ops.request.assigned", object_id=rid,
                        detail={"account_id": account, "previous": row["subject_account_id"]})
        return account

    account = await app[STORE].write(write)
    privacy_state(app).changed(QUEUE_CHANGED)
    return account


@routes.post("/v1/ops/requests/{request_id}/assign")
async def assign(request: web.Request) -> web.Response:
    who = await require(request, "operator")
    body = await parse_body(request, AssignIn)
    rid = request.match_info["request_id"]
    account = await assign_account(request.app, who.subject_id, rid, body.account_id)
    return web.json_response({"request_id": rid, "status": "pending",
                              "subject_account_id": account})

document("POST", "/v1/ops/requests/{request_id}/approve", "Approve a request (operator)",
         roles=("operator",),
         responses={200: "approved: the job is queued",
                    202: "held: a second operator must approve (guard ops.four_eyes)",
                    404: "no such request", 409: "not pending, or no account assigned"})



@dataclass(frozen=True)
class Approval:
    """What an approval did."""

    queued: bool
    """True: the job is queued; False: held for a second operator (guard ``ops.four_eyes``)."""
    subject_account_id: str
    """The account whose data answers the request (after any swap at approval)."""


async def approve_request(app: web.Application, operator_id: str, rid: str) -> Approval:
    """An operator approves ``rid``."""
    now = app[CLOCK].iso()
    actor = f"operator:{operator_id}"
    faults = app[FAULTS]
    ids = app[IDS]

    def write(db: sqlite_utils.Database) -> dict[str, Any]:
        row = _pending(db, rid, "pending")
        if row["subject_account_id"] is None:
            subject = default_subject(row)
            if subject is None:
                raise Conflict("assign an account first", code="no_subject")
            row["subject_account_id"] = subject
            update_request(db, rid, now, subject_account_id=subject)
        if row["assigned_by"] is None:
            # Approving without an explicit assignment is resolving the request too.
            picked = operator_pick(db, faults, row, row["subject_account_id"])
            if picked != row["subject_account_id"]:
                row.update(subject_account_id=picked, assigned_by=operator_id)
                update_request(db, rid, now, subject_account_id=picked,
                               assigned_by=operator_id)
                auditlog.append(db, at=now, actor=actor, action="ops.request.assigned",
                                object_id=rid, detail={"account_id": picked})
        row = swap_in_flight(db, faults, row, at=now, operator_id=operator_id)
        if four_eyes_hold(db, faults, ids, row, at=now, operator=operator_id):
            auditlog.append(db, at=now, actor=actor, action="ops.request.approval_held",
                            object_id=rid, detail={"account_id": row["subject_account_id"]})
            return {"status": "pending", "held": True, "kind": row["kind"],
                    "subject_account_id": row["subject_account_id"]}
        update_request(db, rid, now, status="approved", approved_by=operator_id)
        auditlog.append(db, at=now, actor=actor, action="ops.request.approved", object_id=rid,
                        detail={"account_id": row["subject_account_id"], "kind": row["kind"]})
        return {"status": "approved", "held": False, "kind": row["kind"],
                "subject_account_id": row["subject_account_id"]}

    out = await app[STORE].write(write)
    state = privacy_state(app)
    state.changed(rid)
    state.changed(QUEUE_CHANGED)
    if not out["held"]:
        state.enqueue(rid, erasure=out["kind"] == "erasure")
    return Approval(queued=not out["held"], subject_account_id=out["subject_account_id"])


@routes.post("/v1/ops/requests/{request_id}/approve")
async def approve(request: web.Request) -> web.Response:
    who = await require(request, "operator")
    rid = request.match_info["request_id"]
    approval = await approve_request(request.app, who.subject_id, rid)
    if not approval.queued:
        return web.json_response({"request_id": rid, "status": "pending",
                                  "needs_second_operator": True,
                                  "subject_account_id": approval.subject_account_id}, status=202)
    # Which account's data answers the request, as approved (after any swap at approval).
    return web.json_response({"request_id": rid, "status": "approved",
                              "subject_account_id": approval.subject_account_id})

document("POST", "/v1/ops/requests/{request_id}/deny", "Deny a request with a reason (operator)",
         roles=("operator",), body=DenyIn,
         responses={200: "denied", 400: "invalid reason", 404: "no such request",
                    409: "not pending or unverified"})



async def deny_request(app: web.Application, operator_id: str, rid: str, reason: str) -> None:
    """An operator denies ``rid`` with a fides reason."""
    now = app[CLOCK].iso()

    def write(db: sqlite_utils.Database) -> None:
        _pending(db, rid, "pending", "identity_unverified")
        update_request(db, rid, now, status="denied", reason=reason, code_hmac=None)
        auditlog.append(db, at=now, actor=f"operator:{operator_id}",
                        action="ops.request.denied", object_id=rid, detail={"reason": reason})

    await app[STORE].write(write)
    state = privacy_state(app)
    state.changed(rid)
    state.changed(QUEUE_CHANGED)


@routes.post("/v1/ops/requests/{request_id}/deny")
async def deny(request: web.Request) -> web.Response:
    who = await require(request, "operator")
    body = await parse_body(request, DenyIn)
    rid = request.match_info["request_id"]
    await deny_request(request.app, who.subject_id, rid, body.reason)
    return web.json_response({"request_id": rid, "status": "denied", "reason": body.reason})

document("POST", "/v1/ops/requests/{request_id}/revoke",
         "Revoke the request's download links (operator)", roles=("operator",),
         responses={200: "revoked", 404: "no such request", 409: "no active link"})



async def revoke_request_links(app: web.Application, operator_id: str, rid: str) -> list[str]:
    """An operator disables every active link of ``rid``; returns the revoked link ids."""
    now = app[CLOCK].iso()
    actor = f"operator:{operator_id}"

    def write(db: sqlite_utils.Database) -> list[str]:
        if get_request(db, rid) is None:
            raise NotFound("no such request", code="not_found")
        revoked = delivery.revoke_links(db, rid, at=now, by=actor)
        if not revoked:
            raise Conflict("the request has no active link", code="no_active_link")
        auditlog.append(db, at=now, actor=actor, action="ops.link.revoked", object_id=rid,
                        detail={"link_ids": revoked})
        return revoked

    return await app[STORE].write(write)


@routes.post("/v1/ops/requests/{request_id}/revoke")
async def revoke(request: web.Request) -> web.Response:
    who = await require(request, "operator")
    rid = request.match_info["request_id"]
    revoked = await revoke_request_links(request.app, who.subject_id, rid)
    return web.json_response({"request_id": rid, "revoked": revoked})


def setup(app: web.Application) -> None:
    app.router.add_routes(routes)
