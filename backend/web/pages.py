"""What every web page shares: sessions on requests, sign-in checks, CSRF, rendering, and
the security headers.

Handlers are written as ``async def handler(request, sess) -> Response`` and wrapped by
:func:`page`, which finds (or starts) the session of the page's area, sends people who are
not signed in (or not allowed) to the sign-in page, refuses a state-changing form without
its CSRF token (403), and turns the service layer's :class:`ApiError` into an HTML page
with the same status, so a browser never sees the JSON API's error shape.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from multidict import MultiDictProxy

from backend.auth import Principal, resolve_token
from backend.errors import ApiError
from backend.keys import CLOCK, CONFIG
from backend.web.sessions import (
    COOKIES,
    REQUEST_KEY,
    Area,
    Session,
    SessionStore,
    csrf_ok,
    set_cookie,
)

log = logging.getLogger("overheard.web")

SESSIONS = web.AppKey("web_sessions", SessionStore)

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self';"
       " form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
"""No inline script and no inline style anywhere: a name or transcript that smuggles markup
in can run nothing, even if escaping were ever missed."""
WEB_PREFIXES = ("/console", "/privacy", "/static")
"""Paths of the web pages and their static files (not API operations: not in the spec)."""
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

Handler = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]


async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """Security headers on every page and static file."""
    if not request.path.startswith(WEB_PREFIXES):
        return
    for name, value in PAGE_HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.path.startswith("/static/"):
        # Pages carry personal data and CSRF tokens: never cached.
        response.headers["Cache-Control"] = "no-store"


def _with_cookie(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """The session cookie on ``response`` when the session is new, replaced or ended (before
    the response is prepared: cookies become headers at that point)."""
    sess = request.get(REQUEST_KEY)
    if isinstance(sess, Session) and (sess.send_cookie or sess.clear_cookie):
        secure = request.secure or request.app[CONFIG].public_url.startswith("https:")
        set_cookie(response, sess, secure=secure)
    return response


def current_session(request: web.Request, area: Area) -> Session:
    """The caller's session in ``area``; a new anonymous one when they have none."""
    store = request.app[SESSIONS]
    sess = store.get(request.cookies.get(COOKIES[area][0]), area) or store.new(area)
    request[REQUEST_KEY] = sess
    return sess


def replace_session(request: web.Request, sess: Session) -> None:
    """``sess`` is the session from now on (after sign-in or sign-out)."""
    request[REQUEST_KEY] = sess


async def still_valid(app: web.Application, sess: Session) -> Principal | None:
    """Who the signed-in session acts as, re-checked: a revoked token ends it."""
    if sess.token is None:
        return None
    who = await resolve_token(app, sess.token)
    if who is None or who.kind != sess.kind:
        return None
    return who


def sign_out(request: web.Request, sess: Session) -> web.Response:
    """End ``sess``; the browser gets a fresh anonymous session and the sign-in page."""
    store = request.app[SESSIONS]
    store.drop(sess)
    fresh = store.new(sess.area)
    fresh.notice("Signed out.")
    replace_session(request, fresh)
    return see_other(f"/{sess.area}/signin")


def see_other(location: str) -> web.Response:
    """303: after a form post, the browser GETs the next page (no re-post on reload)."""
    return web.Response(status=303, headers={"Location": location})


def render(request: web.Request, template: str, context: dict[str, Any],
           status: int = 200) -> web.Response:
    """Render ``template`` with the session's CSRF token, notices and the clock."""
    sess = request.get(REQUEST_KEY)
    base: dict[str, Any] = {"now": request.app[CLOCK].iso()}
    if isinstance(sess, Session):
        base.update(session=sess, csrf=sess.csrf, notices=sess.take_notices())
    return aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)


def error_page(request: web.Request, status: int, title: str, message: str) -> web.Response:
    area = "console" if request.path.startswith("/console") else "privacy"
    return render(request, "error.html", {"title": title, "message": message, "area": area},
                  status=status)


async def read_form(request: web.Request) -> MultiDictProxy[Any]:
    return await request.post()


def page(area: Area, kinds: Iterable[str] | None = None) -> Callable[[Handler], Any]:
    """Wrap a page handler: session, sign-in (``kinds`` allowed; None: anyone), CSRF on every
    POST, and service errors shown as HTML."""
    allowed = tuple(kinds) if kinds is not None else None
    signin = f"/{area}/signin"

    def wrap(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        @functools.wraps(handler)
        async def run(request: web.Request) -> web.StreamResponse:
            return _with_cookie(request, await checked(request))

        async def checked(request: web.Request) -> web.StreamResponse:
            sess = current_session(request, area)
            if request.method == "POST":
                form = await read_form(request)
                if not csrf_ok(sess, form.get("csrf")):
                    log.info("%s %s -> 403 csrf", request.method, request.path)
                    return error_page(request, 403, "Form expired",
                                      "This form was not sent from this session's page (its "
                                      "CSRF token is missing or wrong). Go back, reload the "
                                      "page and try again.")
            if allowed is not None:
                who = await still_valid(request.app, sess) if sess.signed_in else None
                if who is None:
                    if sess.signed_in:  # revoked or expired token: the session ends
                        request.app[SESSIONS].drop(sess)
                        sess = request.app[SESSIONS].new(area)
                        replace_session(request, sess)
                        sess.notice("Your sign-in is no longer valid; sign in again.", "error")
                    return see_other(signin)
                if who.kind not in allowed:
                    return error_page(request, 403, "Not allowed",
                                      f"This page needs {' or '.join(allowed)} rights.")
            try:
                return await handler(request, sess)
            except ApiError as exc:
                log.info("%s %s -> %d %s: %s", request.method, request.path, exc.status,
                         exc.code, exc.message)
                return error_page(request, exc.status, "Not done", exc.message)

        return run

    return wrap
