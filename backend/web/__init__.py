"""The web pages: the operator console (``/console/``) and the privacy center (``/privacy/``).

::

    pages.py            sessions on requests, sign-in checks, CSRF, rendering, security headers
    sessions.py         server-side sessions, their cookies, CSRF tokens, one-time sign-in
    console.py          the review queue, the request page, account search, the manual steps
    admin_pages.py      switches, clock, alerts, audit log, outbox, health and metrics
    privacy_center.py   account holders: requests, status, download, voice history
    interactive.py      a run that waits for a person at the console
    templates/, static/ Jinja2 (autoescaped) and one stylesheet; no script

Server-rendered; every action is a plain HTML form, so all of it works without JavaScript.
The pages call the same service functions as the JSON API and hold no business logic.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from backend.web import admin_pages, console, privacy_center
from backend.web.interactive import setup_watch
from backend.web.pages import SESSIONS, on_prepare
from backend.web.sessions import SessionStore

STATIC = Path(__file__).parent / "static"


def setup_web(app: web.Application) -> None:
    """Templates, the session store, the security headers and the page routes."""
    aiohttp_jinja2.setup(
        app, loader=jinja2.PackageLoader("backend.web", "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    app[SESSIONS] = SessionStore()
    setup_watch(app)
    app.on_response_prepare.append(on_prepare)
    app.router.add_routes(console.routes)
    app.router.add_routes(admin_pages.routes)
    app.router.add_routes(privacy_center.routes)
    app.router.add_get("/console", _slash)
    app.router.add_get("/privacy", _slash)
    app.router.add_static("/static/", STATIC, name="static")


async def _slash(request: web.Request) -> web.Response:
    return web.Response(status=308, headers={"Location": request.path + "/"})
