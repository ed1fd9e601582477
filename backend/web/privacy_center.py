"""The privacy center, ``/privacy/``: where account holders ask for their data or its
erasure, follow the request, download the package, see what was released to whom and
when, and browse their own voice history.

Two ways in, as in the JSON API: sign in with the account's user token, or file a request
by email and answer the code sent to that address (the outbox). Either way the session
keeps the credential server-side and every step calls the API's own service functions
(:mod:`backend.privacy.intake`, :mod:`backend.privacy.delivery`, :mod:`backend.voice`).
"""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from backend.auth import Principal, resolve_token
from backend.errors import BadRequest, NotFound
from backend.ids import token_hash
from backend.keys import CONFIG, STORE
from backend.privacy.delivery import latest_link, serve_download, token_for
from backend.privacy.intake import RequestIn, current_status, file_request, verify_code
from backend.privacy.state import get_request
from backend.voice import MAX_LIMIT, decode_cursor, history_page, wav_response
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

routes = web.RouteTableDef()

USER = ("user",)
KINDS = {"access": "a copy of my data (GDPR Art. 15)",
         "erasure": "the erasure of my voice data (GDPR Art. 17)"}
HISTORY_PAGE = 50


def _principal(sess: Session) -> Principal | None:
    if sess.kind != "user" or sess.subject_id is None:
        return None
    return Principal("user", sess.subject_id, account_id=sess.subject_id)


def _body(kind: str, email: str | None = None, name: str | None = None) -> RequestIn:
    """The form as the JSON route's body, validated by the same model."""
    try:
        return RequestIn.model_validate({"kind": kind, "email": email, "name": name})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadRequest(f"{where}: {first['msg']}", code="invalid_field") from None


# -- sign-in ------------------------------------------------------------------------------

@routes.get("/privacy/signin")
@page("privacy")
async def signin_form(request: web.Request, sess: Session) -> web.Response:
    return render(request, "privacy/signin.html", {"kinds": KINDS})


@routes.post("/privacy/signin")
@page("privacy")
async def signin(request: web.Request, sess: Session) -> web.Response:
    token = str((await read_form(request)).get("token") or "").strip()
    who = await resolve_token(request.app, token) if token else None
    if who is None or who.kind != "user":
        sess.notice("That is not an account token.", "error")
        return render(request, "privacy/signin.html", {"kinds": KINDS}, status=401)
    name = await request.app[STORE].read(lambda db: (db.execute(
        "SELECT name FROM accounts WHERE account_id = ?", [who.account_id]).fetchone() or [""])[0])
    new = request.app[SESSIONS].sign_in(sess, kind="user", subject_id=str(who.account_id),
                                        name=str(name), token=token)
    replace_session(request, new)
    return see_other("/privacy/")


@routes.post("/privacy/signout")
@page("privacy")
async def signout(request: web.Request, sess: Session) -> web.Response:
    return sign_out(request, sess)


@routes.post("/privacy/email")
@page("privacy")
async def file_by_email(request: web.Request, sess: Session) -> web.Response:
    """No token: file a request naming an address; a code goes to the address on file."""
    form = await read_form(request)
    name = str(form.get("name") or "").strip() or None
    body = _body(str(form.get("kind") or ""), str(form.get("email") or "").strip(), name)
    out = await file_request(request.app, None, body, client=request.remote or "-")
    sess.requests[out["request_id"]] = out["requester_token"]
    sess.notice("We sent a code to that address. Enter it below to confirm the request.")
    return see_other(f"/privacy/requests/{out['request_id']}")


# -- the account holder's home ------------------------------------------------------------

@routes.get("/privacy/")
@page("privacy")
async def home(request: web.Request, sess: Session) -> web.Response:
    who = _principal(sess)
    if who is None and not sess.requests:
        return see_other("/privacy/signin")

    def read(db: Any) -> list[dict[str, Any]]:
        mine = []
        if who is not None:
            mine = list(db.query(
                "SELECT request_id, kind, status, created_at, due_at FROM privacy_requests"
                " WHERE requester_account_id = ? ORDER BY created_at DESC", [who.account_id]))
        for rid in sess.requests:
            row = get_request(db, rid)
            if row is not None and all(m["request_id"] != rid for m in mine):
                mine.append({k: row[k] for k in ("request_id", "kind", "status", "created_at",
                                                 "due_at")})
        return mine

    rows = await request.app[STORE].read(read)
    return render(request, "privacy/home.html", {"requests": rows, "kinds": KINDS,
                                                 "signed_in": who is not None})


@routes.post("/privacy/requests")
@page("privacy", USER)
async def file_signed_in(request: web.Request, sess: Session) -> web.Response:
    form = await read_form(request)
    out = await file_request(request.app, _principal(sess), _body(str(form.get("kind") or "")),
                             client=request.remote or "-")
    sess.notice(f"Request {out['request_id']} filed.")
    return see_other(f"/privacy/requests/{out['request_id']}")


# -- one request --------------------------------------------------------------------------

async def _own_request(request: web.Request, sess: Session, rid: str) -> dict[str, Any]:
    """The request if this session filed it: by its account, or with its requester token.
    Missing and not yours look the same."""
    row = await request.app[STORE].read(lambda db: get_request(db, rid))
    if row is not None:
        who = _principal(sess)
        if who is not None and row["requester_account_id"] == who.account_id:
            return row
        held = sess.requests.get(rid)
        stored = row["requester_token_sha256"]
        if held and stored and hmac.compare_digest(stored.encode(),
                                                   token_hash(held).encode()):
            return row
    raise NotFound("no such request", code="not_found")


def _callers(sess: Session, rid: str) -> frozenset[str]:
    """The identities this session proves, as a bound link checks them."""
    ids = set()
    if sess.kind == "user" and sess.subject_id:
        ids.add(f"account:{sess.subject_id}")
    if rid in sess.requests:
        ids.add(f"token:{token_hash(sess.requests[rid])}")
    return frozenset(ids)


def _released(db: Any, rid: str) -> dict[str, Any]:
    """What was released for the request: the package, where the link went, every use of it."""
    pkg = next(iter(db.query(
        "SELECT p.package_id, p.created_at, p.files, p.recordings, p.bytes FROM packages p"
        " JOIN privacy_requests r ON r.package_id = p.package_id WHERE r.request_id = ?",
        [rid])), None)
    links = list(db.query("SELECT link_id, created_at, expires_at, state, sent_to, revoked_at,"
                          " used_at FROM links WHERE request_id = ? ORDER BY seq", [rid]))
    uses = list(db.query(
        "SELECT x.at, x.outcome, x.link_id FROM redemptions x JOIN links l"
        " ON l.link_id = x.link_id WHERE l.request_id = ? ORDER BY x.at, x.redemption_id",
        [rid]))
    return {"package": pkg, "links": links, "uses": uses}


@routes.get("/privacy/requests/{request_id}")
@page("privacy")
async def request_page(request: web.Request, sess: Session) -> web.Response:
    rid = request.match_info["request_id"]
    row = await _own_request(request, sess, rid)
    status = await current_status(request.app, rid, row)
    released = await request.app[STORE].read(lambda db: _released(db, rid))
    return render(request, "privacy/request.html", {"st": status, "released": released,
                                                    "kinds": KINDS})


@routes.post("/privacy/requests/{request_id}/verify")
@page("privacy")
async def verify(request: web.Request, sess: Session) -> web.Response:
    rid = request.match_info["request_id"]
    await _own_request(request, sess, rid)
    code = str((await read_form(request)).get("code") or "").strip()
    if not (len(code) == 6 and code.isdigit()):
        raise BadRequest("the code has 6 digits", code="invalid_field")
    out = await verify_code(request.app, rid, code)
    sess.notice(f"Confirmed. The request is now {out['status'].replace('_', ' ')}.")
    return see_other(f"/privacy/requests/{rid}")


@routes.post("/privacy/requests/{request_id}/download")
@page("privacy")
async def download(request: web.Request, sess: Session) -> web.StreamResponse:
    rid = request.match_info["request_id"]
    await _own_request(request, sess, rid)
    link = await request.app[STORE].read(lambda db: latest_link(db, rid))
    if link is None:
        raise NotFound("there is nothing to download yet", code="not_found")
    token = token_for(request.app[CONFIG].link_secret, link)
    resp = await serve_download(request, token, _callers(sess, rid))
    if resp.status != 200:
        # The refusal (expired, revoked, used) as a page, not as the API's JSON.
        why = {403: "This link works only for the person who asked.",
               404: "There is no such download.",
               410: "This link has expired, was revoked or has been used."}
        sess.notice(why.get(resp.status, "The download was refused."), "error")
        return see_other(f"/privacy/requests/{rid}")
    return resp


# -- voice history ------------------------------------------------------------------------

@routes.get("/privacy/recordings")
@page("privacy", USER)
async def recordings(request: web.Request, sess: Session) -> web.Response:
    cursor = request.query.get("cursor")
    after = decode_cursor(cursor) if cursor else None
    rows, next_cursor = await request.app[STORE].read(
        lambda db: history_page(db, str(sess.subject_id), after, min(HISTORY_PAGE, MAX_LIMIT)))
    return render(request, "privacy/recordings.html", {"rows": rows, "next_cursor": next_cursor})


@routes.get("/privacy/recordings/{recording_id}/audio")
@page("privacy", USER)
async def audio(request: web.Request, sess: Session) -> web.Response:
    return await wav_response(request.app, str(sess.subject_id), request.match_info["recording_id"])
