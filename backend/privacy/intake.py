"""Intake: filing a request, verifying the requester's identity, reading the status.

Two ways in:

- **signed in**: a user token files ``{"kind"}``; the requester is that account, identity
  is already verified, the request starts at ``pending`` (manual review for its kind) or
  ``approved`` (the subject is the requester's own account).
- **email** (the web form): anyone files ``{"kind", "email", "name"?}``; the request starts
  at ``identity_unverified`` and a 6-digit code is emailed (the outbox). The response is
  the same whether or not an account holds that address (no account enumeration): same
  status, same fields, a code always sent (to the address on file when it matches, else
  to the typed address). The response carries a ``requester_token``: the caller's only
  key to this request (verify, status, and a bound link). A correct code on an address
  no account holds ends ``denied``/``no_match``.

The email path is rate limited (:mod:`backend.privacy.limits`): codes per address and per
client, wrong codes per address; beyond a limit 429 with ``Retry-After``. Codes live
``Config.code_ttl_seconds`` (10 min) by the injected clock, allow
``Config.code_tries`` (3) wrong answers, are stored as an HMAC under the server secret and
compared in constant time. Duplicates: a second open request of the same kind for the
same account gets 409 ``duplicate_request`` naming the open one (signed-in path: at
filing; email path: at verification, which then cancels the new request), because telling
an unverified caller would reveal that the address has an account.

The fault ``identity.weak_verification`` lives in :func:`create_request`: an emailed
request is taken as verified without a code.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlite_utils
from aiohttp import web
from pydantic import Field

from backend import auditlog
from backend.accounts import TEXT_PATTERN
from backend.alerts import raise_alert
from backend.auth import Principal, authenticate, bearer
from backend.config import Config
from backend.emails import Email
from backend.errors import (
    Conflict,
    Forbidden,
    Gone,
    NotFound,
    TooManyRequests,
    Unauthorized,
)
from backend.http import PRIVATE_HEADERS, Routes, Strict, parse_body, query_number
from backend.ids import token_hash
from backend.keys import CLOCK, CONFIG, FAULTS, IDS, LIVE, METRICS, STORE
from backend.openapi import document
from backend.privacy import delivery, outbox
from backend.privacy.limits import IntakeLimits
from backend.privacy.state import (
    WORKING_STATUSES,
    default_subject,
    due_at,
    find_duplicate,
    get_request,
    is_past,
    privacy_state,
    result_of,
    update_request,
)
from contract.rfc3339 import rfc3339

routes = Routes()

class RequestIn(Strict):
    kind: Literal["access", "erasure"]
    email: Email | None = None
    """Email path: the address to verify. Signed in: a contact address (never used to send
    anything unless a fault says so)."""
    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=TEXT_PATTERN)
    """The name typed into the form (shown to operators)."""


class VerifyIn(Strict):
    code: str = Field(pattern=r"^[0-9]{6}$")


REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["request_id", "status"],
    "properties": {
        "request_id": {"type": "string"}, "status": {"type": "string"},
        "reason": {"type": ["string", "null"]}, "requester_token": {"type": "string"},
        "download_url": {"type": "string"}, "download_token": {"type": "string"},
        "progress": {"type": ["object", "null"]},
        "link": {"type": "object"},
    },
}


def _code_hmac(config: Config, request_id: str, code: str) -> str:
    return hmac.new(config.link_secret, f"code:{request_id}:{code}".encode(),
                    hashlib.sha256).hexdigest()


def _needs_review(config: Config, kind: str) -> bool:
    return kind in config.manual_review


def after_verified(db: sqlite_utils.Database, row: dict[str, Any], *, now: str,
                   config: Config, actor: str) -> tuple[str, str | None, str | None]:
    """Move a request whose requester is verified on: ``denied``/``no_match``, ``canceled``
    as a duplicate, ``pending`` (manual review) or ``approved``. Inside a write; returns
    ``(status, reason, duplicate_of)``."""
    rid = row["request_id"]
    subject = default_subject(row)
    if subject is None:
        update_request(db, rid, now, status="denied", reason="no_match", verified_at=now)
        auditlog.append(db, at=now, actor=actor, action="request.denied", object_id=rid,
                        detail={"reason": "no_match"})
        return "denied", "no_match", None
    dup = find_duplicate(db, row["kind"], subject, exclude=rid)
    if dup is not None:
        update_request(db, rid, now, status="canceled", reason="duplicate_request",
                       verified_at=now)
        auditlog.append(db, at=now, actor=actor, action="request.canceled", object_id=rid,
                        detail={"reason": "duplicate_request", "duplicate_of": dup})
        return "canceled", "duplicate_request", dup
    status = "pending" if _needs_review(config, row["kind"]) else "approved"
    # The default subject is set even while an operator reviews, so a second request for
    # the same account is a duplicate meanwhile; the operator may assign another.
    update_request(db, rid, now, status=status, verified_at=now, subject_account_id=subject)
    auditlog.append(db, at=now, actor=actor, action=f"request.{status}", object_id=rid,
                    detail={"subject": subject, "manual_review": status == "pending"})
    return status, None, None


document("POST", "/v1/privacy/requests", "File a data-subject request (access or erasure)",
         roles=("user", "anyone"), body=RequestIn, response_schema=REQUEST_SCHEMA,
         responses={201: "filed; email path: identity_unverified and a requester_token",
                    400: "invalid body",
                    401: "unknown token, or neither a user token nor an email to verify",
                    403: "not a user token",
                    409: "duplicate_request: an open request of this kind exists",
                    429: "too many codes requested for this address, or from this client"})


@routes.post("/v1/privacy/requests")
async def create_request(request: web.Request) -> web.Response:
    app = request.app
    who = await authenticate(request)
    if who is None and bearer(request) is not None:
        raise Unauthorized("unknown token", code="unauthorized")
    if who is not None and who.kind != "user":
        raise Forbidden("privacy requests are filed by account holders", code="forbidden")
    body = await parse_body(request, RequestIn)
    resp = await file_request(app, who, body, client=request.remote or "-")
    return web.json_response(resp, status=201, headers=PRIVATE_HEADERS)


async def file_request(app: web.Application, who: Principal | None,
                       body: RequestIn, *, client: str) -> dict[str, Any]:
    """File a request for a signed-in account holder (``who``) or by email (``who`` None);
    the answer the requester gets (``requester_token`` on the email path). ``client`` is the
    caller's address, which the email path's rate limit counts."""
    config = app[LIVE].current
    faults = app[FAULTS]
    if who is None and body.email is None:
        # Neither a credential nor an address whose mailbox could prove who is asking.
        raise Unauthorized("sign in, or give the email address of the account to verify",
                           code="identity_required")
    clock = app[CLOCK]
    now_dt = clock.now()
    now = rfc3339(now_dt)
    if who is None:
        # Keyed by the address as one account would match it (case does not make another).
        await _admit_code_request(app, (body.email or "").casefold(), client, now_dt)
    request_id = app[IDS].new("prq")
    code = app[IDS].code(request_id)
    requester_token = app[IDS].token("prt", request_id) if who is None else None
    weak = faults.on("identity.weak_verification") and not faults.on("identity.verified_channel")
    # The guard catches the skipped check: the request waits for the code like any other.
    held = faults.on("identity.weak_verification") and not weak
    alert_id = app[IDS].new("alr") if held and who is None else ""

    def write(db: sqlite_utils.Database) -> dict[str, Any]:
        base = {
            "request_id": request_id, "kind": body.kind, "reason": None,
            "contact_email": body.email, "contact_name": body.name,
            "created_at": now, "updated_at": now, "due_at": due_at(now_dt),
            "code_tries": 0, "attempts": 0,
        }
        if who is not None:
            return _file_signed_in(db, base, who, now=now, config=config)
        return _file_by_email(db, base, body.email or "", code=code, now=now, now_dt=now_dt,
                              config=config, requester_token=requester_token or "", weak=weak,
                              held_alert=alert_id)

    out = await app[STORE].write(write)
    app[METRICS].inc("overheard_privacy_requests_total", kind=body.kind,
                     channel="account" if who else "email")
    if out.get("duplicate_of"):
        raise Conflict("an open request of this kind exists for this account",
                       code="duplicate_request", request_id=out["duplicate_of"])
    if out["status"] == "approved":
        privacy_state(app).enqueue(request_id, erasure=body.kind == "erasure")
    resp: dict[str, Any] = {"request_id": request_id, "status": out["status"],
                            "due_at": due_at(now_dt)}
    if requester_token is not None:
        resp["requester_token"] = requester_token
    return resp


def _file_signed_in(db: sqlite_utils.Database, base: dict[str, Any], who: Principal, *,
                    now: str, config: Config) -> dict[str, Any]:
    account = who.account_id
    dup = find_duplicate(db, base["kind"], account or "")
    if dup is not None:
        return {"duplicate_of": dup}
    status = "pending" if _needs_review(config, base["kind"]) else "approved"
    db.table("privacy_requests").insert({
        **base, "status": status, "channel": "account", "requester_account_id": account,
        "requester_token_sha256": None, "matched_account_id": None,
        # The natural subject is set at once, so a second request by the same account is a
        # duplicate even while this one waits for an operator.
        "subject_account_id": account, "verified_at": now,
    })
    auditlog.append(db, at=now, actor=f"user:{account}", action="request.created",
                    object_id=base["request_id"],
                    detail={"kind": base["kind"], "channel": "account", "status": status})
    return {"status": status}


def _file_by_email(db: sqlite_utils.Database, base: dict[str, Any], email: str, *, code: str,
                   now: str, now_dt: datetime, config: Config, requester_token: str,
                   weak: bool, held_alert: str = "") -> dict[str, Any]:
    found = db.execute(
        "SELECT account_id, email FROM accounts WHERE email = ? COLLATE NOCASE"
        " AND erased_at IS NULL ORDER BY created_at LIMIT 1", [email]).fetchone()
    matched, on_file = (found[0], found[1]) if found else (None, email)
    row = {
        **base, "status": "identity_unverified", "channel": "email",
        "requester_account_id": None, "requester_token_sha256": token_hash(requester_token),
        "matched_account_id": matched, "subject_account_id": None,
        "code_hmac": _code_hmac(config, base["request_id"], code),
        "code_expires_at": rfc3339(now_dt + timedelta(seconds=config.code_ttl_seconds)),
    }
    db.table("privacy_requests").insert(row)
    auditlog.append(db, at=now, actor="anonymous", action="request.created",
                    object_id=base["request_id"],
                    detail={"kind": base["kind"], "channel": "email"})
    if weak:
        # Fault identity.weak_verification: whoever names the address is taken for its holder.
        status, _reason, dup = after_verified(db, {**row, "verified_at": None}, now=now,
                                              config=config, actor="anonymous")
        return {"status": status, "duplicate_of": dup}
    if held_alert:
        # Guard identity.verified_channel: the intake would have trusted the named address
        # without a code. Whoever holds the address on file is asked; the operator is told.
        raise_alert(db, alert_id=held_alert, at=now, guard="identity.verified_channel",
                    request_id=base["request_id"], account_id=matched,
                    summary="an emailed request would have been taken as verified without a "
                            "code; held until the code sent to the address on file is answered",
                    detail={"kind": base["kind"], "channel": "email",
                            "matched_account": matched, "code_sent_to": "address on file"})
    outbox.send_mail(db, outbox.VERIFICATION_CODE, to=on_file, sent_at=now,
                     request_id=base["request_id"], code=code,
                     minutes=config.code_ttl_seconds // 60)
    return {"status": "identity_unverified"}


LIMITS = web.AppKey("privacy.intake_limits", IntakeLimits)


def intake_limits(app: web.Application) -> IntakeLimits:
    return app[LIMITS]


async def _admit_code_request(app: web.Application, address: str, client: str,
                              now_dt: datetime) -> None:
    """Count a code request against its address and client; at a limit, 429 (and, the
    first time in a window, an alert naming the account that holds the address)."""
    limits = intake_limits(app)
    try:
        limits.admit_code_request(address, client, now_dt)
    except TooManyRequests:
        if limits.per_address.retry_after(address, now_dt) is not None and \
                limits.should_alert(address, now_dt):
            await app[STORE].write(lambda db: _alert_hammered(
                db, app[IDS].new("alr"), address, rfc3339(now_dt), app[CONFIG]))
        app[METRICS].inc("overheard_intake_limited_total")
        raise


def _alert_hammered(db: sqlite_utils.Database, alert_id: str, address: str, at: str,
                    config: Config) -> None:
    found = db.execute("SELECT account_id FROM accounts WHERE email = ? COLLATE NOCASE"
                       " AND erased_at IS NULL LIMIT 1", [address]).fetchone()
    raise_alert(db, alert_id=alert_id, at=at, guard="intake.rate_limit",
                account_id=found[0] if found else None,
                summary=f"more than {config.code_requests_per_address} verification codes "
                        f"requested for one address within {config.limit_window_seconds} s; "
                        "further requests for it are refused (429)",
                detail={"address_sha256": token_hash(address),
                        "limit": config.code_requests_per_address,
                        "window_seconds": config.limit_window_seconds})


async def load_for_requester(request: web.Request, request_id: str) -> dict[str, Any]:
    """The request if the caller filed it (or is admin); 404 alike for missing and not yours."""
    token = bearer(request)
    if token is None:
        raise Unauthorized("a user or requester token is required", code="unauthorized")
    row = await request.app[STORE].read(lambda db: get_request(db, request_id))
    who = await authenticate(request)
    if row is not None:
        if who is not None and who.kind == "admin":
            return row
        if who is not None and who.kind == "user" and row["requester_account_id"] == who.account_id:
            return row
        stored = row["requester_token_sha256"]
        if stored and hmac.compare_digest(stored.encode(), token_hash(token).encode()):
            return row
    if who is None and not await request.app[STORE].read(
            lambda db: db.execute("SELECT 1 FROM privacy_requests WHERE requester_token_sha256 = ?",
                                  [token_hash(token)]).fetchone()):
        # A token that is no credential at all is a 401, as everywhere; any real caller
        # (user, device, operator, another requester) gets the same 404 for missing and not yours.
        raise Unauthorized("unknown token", code="unauthorized")
    raise NotFound("no such request", code="not_found")


document("POST", "/v1/privacy/requests/{request_id}/verify",
         "Answer the emailed code (requester token of the email path)",
         roles=("requester",), body=VerifyIn, response_schema=REQUEST_SCHEMA,
         responses={200: "verified: the request moved on (or denied: no_match)",
                    400: "invalid body", 401: "no token",
                    403: "wrong_code (tries_left); verification_failed: too many wrong codes, "
                         "denied",
                    404: "no such request", 409: "not awaiting verification, or duplicate",
                    410: "code_expired; denied",
                    429: "too many wrong codes for this address; Retry-After says when"})


@routes.post("/v1/privacy/requests/{request_id}/verify")
async def verify_request(request: web.Request) -> web.Response:
    app = request.app
    request_id = request.match_info["request_id"]
    await load_for_requester(request, request_id)
    body = await parse_body(request, VerifyIn)
    out = await verify_code(app, request_id, body.code)
    return web.json_response(out, headers=PRIVATE_HEADERS)


async def _guessing_address(app: web.Application, request_id: str) -> str:
    """The address whose wrong codes a guess on ``request_id`` counts against ("" for a
    signed-in request, which has no code)."""
    row = await app[STORE].read(lambda db: get_request(db, request_id))
    if row is None or row["channel"] != "email":
        return ""
    return str(row["contact_email"] or "").casefold()


def _deny_code(db: sqlite_utils.Database, request_id: str, now: str,
               detail: dict[str, Any], **changes: Any) -> None:
    update_request(db, request_id, now, status="denied", reason="insuf_verification",
                   code_hmac=None, **changes)
    auditlog.append(db, at=now, actor="requester", action="request.denied",
                    object_id=request_id, detail={"reason": "insuf_verification", **detail})


def _check_code(db: sqlite_utils.Database, request_id: str, offered: str, *, now_dt: datetime,
                config: Config) -> dict[str, Any]:
    """Inside the write: compare ``offered`` with the request's code and record the outcome
    (``not_awaiting``, ``expired``, ``ok``, ``locked`` or ``wrong``)."""
    now = rfc3339(now_dt)
    row = get_request(db, request_id)
    if row is None or row["status"] != "identity_unverified":
        return {"outcome": "not_awaiting", "status": row["status"] if row else None}
    if is_past(row["code_expires_at"], now_dt):
        _deny_code(db, request_id, now, {"why": "code expired"})
        return {"outcome": "expired"}
    if hmac.compare_digest((row["code_hmac"] or "").encode(), offered.encode()):
        update_request(db, request_id, now, code_hmac=None)
        status, reason, dup = after_verified(db, row, now=now, config=config, actor="requester")
        return {"outcome": "ok", "status": status, "reason": reason, "duplicate_of": dup,
                "kind": row["kind"]}
    tries = row["code_tries"] + 1
    if tries >= config.code_tries:
        _deny_code(db, request_id, now, {"tries": tries}, code_tries=tries)
        return {"outcome": "locked"}
    update_request(db, request_id, now, code_tries=tries)
    auditlog.append(db, at=now, actor="requester", action="request.verify_failed",
                    object_id=request_id, detail={"tries": tries})
    return {"outcome": "wrong", "tries_left": config.code_tries - tries}


def _refuse_code(out: dict[str, Any], count_guess: Callable[[], None]) -> None:
    """Raise the answer for every outcome but ``ok``; ``count_guess`` counts a wrong code
    against its address."""
    match out["outcome"]:
        case "not_awaiting":
            raise Conflict("this request is not waiting for a code", code="not_awaiting_code",
                           request_status=out["status"])
        case "expired":
            raise Gone("the code has expired; file a new request", code="code_expired",
                       request_status="denied", reason="insuf_verification")
        case "locked":
            count_guess()
            raise Forbidden("too many wrong codes; the request is denied",
                            code="verification_failed", request_status="denied",
                            reason="insuf_verification")
        case "wrong":
            count_guess()
            # A well-formed code that is not the one sent: the proof of identity failed.
            raise Forbidden("wrong code", code="wrong_code", tries_left=out["tries_left"])


async def verify_code(app: web.Application, request_id: str, code: str) -> dict[str, Any]:
    """Answer the emailed code of ``request_id`` (its requester checked by the caller); the
    request's new status, or an :class:`ApiError` saying why not."""
    config = app[LIVE].current
    now_dt = app[CLOCK].now()
    offered = _code_hmac(config, request_id, code)
    address = await _guessing_address(app, request_id)
    limits = intake_limits(app)
    if address:
        limits.admit_guess(address, now_dt)

    def count_guess() -> None:
        if address:
            limits.wrong_guess(address, now_dt)

    out = await app[STORE].write(
        lambda db: _check_code(db, request_id, offered, now_dt=now_dt, config=config))
    state = privacy_state(app)
    state.changed(request_id)
    _refuse_code(out, count_guess)
    if out["duplicate_of"]:
        raise Conflict("an open request of this kind exists for this account",
                       code="duplicate_request", request_id=out["duplicate_of"],
                       request_status="canceled")
    if out["status"] == "approved":
        state.enqueue(request_id, erasure=out["kind"] == "erasure")
    return {"request_id": request_id, "status": out["status"], "reason": out["reason"]}


def status_view(row: dict[str, Any], *, config: Config,
                progress: tuple[int, int] | None, link: dict[str, Any] | None,
                now: Any) -> dict[str, Any]:
    """What the requester sees. Never the subject account: if an operator attached the
    wrong account, the requester must not learn whose it is from here."""
    total = row["total_items"]
    if progress is None:
        done = total if row["status"] == "complete" else 0
        progress = (done or 0, total or 0) if total is not None else None
    view: dict[str, Any] = {
        "request_id": row["request_id"], "kind": row["kind"], "status": row["status"],
        "reason": row["reason"], "created_at": row["created_at"],
        "updated_at": row["updated_at"], "due_at": row["due_at"],
        "progress": {"done": progress[0], "total": progress[1]} if progress else None,
    }
    if row["status"] == "error":
        view["error"] = row["error"]
    result = result_of(row)
    if result is not None:
        view["result"] = result
    if link is not None:
        view["link"] = delivery.link_view(config, link, now)
        token = delivery.token_for(config.link_secret, link)
        view["download_url"] = delivery.link_url(config, token)
        view["download_token"] = token
    return view


document("GET", "/v1/privacy/requests/{request_id}",
         "Status of a request (its requester only); wait=SECONDS long-polls while the backend works",
         roles=("requester", "admin"), response_schema=REQUEST_SCHEMA,
         query=(("wait", "number", False, {"minimum": 0, "maximum": 60}),),
         responses={200: "status, progress, download_url and link state when complete",
                    400: "invalid wait", 401: "no token", 404: "no such request (or not yours)"})


@routes.get("/v1/privacy/requests/{request_id}")
async def get_status(request: web.Request) -> web.Response:
    app = request.app
    request_id = request.match_info["request_id"]
    wait = query_number(request, "wait", 0.0, 0.0, 60.0, integer=False)
    row = await load_for_requester(request, request_id)
    state = privacy_state(app)
    if wait > 0:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            # Take the event before re-reading, so a change between the two is not missed.
            event = state.waiter(request_id)
            fresh = await app[STORE].read(lambda db: get_request(db, request_id))
            row = fresh or row
            left = deadline - loop.time()
            if row["status"] not in WORKING_STATUSES or left <= 0:
                break
            try:
                await asyncio.wait_for(event.wait(), left)
            except TimeoutError:
                pass
    return web.json_response(await current_status(app, request_id, row),
                             headers=PRIVATE_HEADERS)


async def current_status(app: web.Application, request_id: str,
                         row: dict[str, Any]) -> dict[str, Any]:
    """What the requester of ``row`` sees now (:func:`status_view`, read afresh)."""
    # Row and link from one read: a release committing in between must not show a link
    # beside a status that is not yet complete.
    row, link = await app[STORE].read(
        lambda db: (get_request(db, request_id) or row, delivery.latest_link(db, request_id)))
    return status_view(row, config=app[LIVE].current, progress=privacy_state(app).progress.get(request_id),
                       link=link, now=app[CLOCK].now())


def setup(app: web.Application) -> None:
    app[LIMITS] = IntakeLimits.from_config(app[CONFIG])
    app[METRICS].describe("overheard_privacy_requests_total", "privacy requests filed")
    app[METRICS].describe("overheard_intake_limited_total",
                          "email-path requests refused by a rate limit (429)")
    app.router.add_routes(routes)

