"""Server-side sessions for the web pages, their cookies, and the CSRF tokens.

A browser holds only a random session id in an HttpOnly, SameSite=Strict cookie scoped to
its area (``/console/`` or ``/privacy/``); everything else (who signed in, the CSRF token,
the requester tokens of requests filed by email, one-line notices) stays in this process.
A session exists from the first page, before sign-in, so that the sign-in form itself
carries a CSRF token; signing in replaces the session id (no fixation). Sessions end on
sign-out, after ``IDLE_SECONDS`` without a request, or ``MAX_SECONDS`` after sign-in.

The bearer token a person signed in with is kept here and checked again on every request:
a token revoked meanwhile ends the session at once.

Time is the process's monotonic clock, not the backend's simulated one: a scenario that
moves the simulated clock by days must not sign the person at the console out.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

Area = Literal["console", "privacy"]

IDLE_SECONDS = 30 * 60
"""A session unused this long is gone."""
MAX_SECONDS = 12 * 3600
"""A session older than this is gone, used or not."""
MAX_SESSIONS = 10_000
"""Most sessions kept; the least recently used one goes first (anonymous visitors can make
sessions, so their number is bounded)."""
ONE_TIME_SECONDS = 15 * 60
"""How long a one-time sign-in link works."""

COOKIES: dict[Area, tuple[str, str]] = {
    "console": ("overheard_console", "/console/"),
    "privacy": ("overheard_privacy", "/privacy/"),
}
"""Cookie name and path per area: a console session is never sent to the privacy center."""



@dataclass
class Session:
    """One browser's session in one area."""

    sid: str
    area: Area
    csrf: str
    created: float
    seen: float
    kind: str | None = None
    """``admin``, ``operator`` or ``user`` once signed in; None before."""
    subject_id: str | None = None
    """The operator id or account id signed in."""
    name: str = ""
    """How the page greets the person."""
    token: str | None = None
    """The bearer token signed in with (kept server-side only)."""
    requests: dict[str, str] = field(default_factory=dict)
    """Privacy center, email path: request_id -> requester token."""
    notices: list[tuple[str, str]] = field(default_factory=list)
    """(level, text) shown once on the next page."""
    send_cookie: bool = False
    """Set the cookie on this response (new or replaced id)."""
    clear_cookie: bool = False

    @property
    def signed_in(self) -> bool:
        return self.kind is not None

    def notice(self, text: str, level: str = "ok") -> None:
        self.notices.append((level, text))

    def take_notices(self) -> list[tuple[str, str]]:
        out, self.notices = self.notices, []
        return out


# Typed request keys are aiohttp 3.11+; older versions take a string.
REQUEST_KEY: Any = (web.RequestKey("overheard_web_session", Session)
                    if hasattr(web, "RequestKey") else "overheard_web_session")
"""Where the current request's session is kept on the request."""


@dataclass(frozen=True)
class OneTime:
    """A one-time sign-in: the token it signs in with, until when."""

    area: Area
    token: str
    expires: float


class SessionStore:
    """Every live session, by id; a bounded LRU."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self.now = now
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._one_time: dict[str, OneTime] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def new(self, area: Area) -> Session:
        now = self.now()
        sess = Session(secrets.token_urlsafe(32), area, secrets.token_urlsafe(32), now, now,
                       send_cookie=True)
        self._sessions[sess.sid] = sess
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return sess

    def get(self, sid: str | None, area: Area) -> Session | None:
        """The live session ``sid`` of ``area``; an expired one is dropped."""
        if not sid:
            return None
        sess = self._sessions.get(sid)
        if sess is None or sess.area != area:
            return None
        now = self.now()
        if now - sess.seen > IDLE_SECONDS or now - sess.created > MAX_SECONDS:
            del self._sessions[sid]
            return None
        sess.seen = now
        self._sessions.move_to_end(sid)
        return sess

    def sign_in(self, old: Session, *, kind: str, subject_id: str, name: str,
                token: str | None) -> Session:
        """A fresh session (new id, new CSRF token) for someone who just proved who they
        are; the anonymous one they came with is dropped."""
        self.drop(old)
        sess = self.new(old.area)
        sess.kind, sess.subject_id, sess.name, sess.token = kind, subject_id, name, token
        sess.requests = dict(old.requests)
        return sess

    def drop(self, sess: Session) -> None:
        self._sessions.pop(sess.sid, None)

    def one_time(self, area: Area, token: str) -> str:
        """A nonce that signs in once with ``token`` (an interactive run prints it)."""
        nonce = secrets.token_urlsafe(24)
        self._one_time[nonce] = OneTime(area, token, self.now() + ONE_TIME_SECONDS)
        return nonce

    def redeem_one_time(self, area: Area, nonce: str) -> str | None:
        """The token behind ``nonce``, once; None when unknown, used or expired."""
        entry = self._one_time.pop(nonce, None)
        if entry is None or entry.area != area or entry.expires < self.now():
            return None
        return entry.token


def csrf_ok(sess: Session, offered: object) -> bool:
    """Whether a form's ``csrf`` field is this session's token (constant time)."""
    if not isinstance(offered, str) or not offered:
        return False
    return hmac.compare_digest(offered.encode(), sess.csrf.encode())


def set_cookie(response: web.StreamResponse, sess: Session, *, secure: bool) -> None:
    """Put the session's cookie on ``response`` (or clear it after sign-out)."""
    name, path = COOKIES[sess.area]
    if sess.clear_cookie:
        response.del_cookie(name, path=path)
        return
    response.set_cookie(name, sess.sid, path=path, httponly=True, samesite="Strict",
                        secure=secure, max_age=MAX_SECONDS)
