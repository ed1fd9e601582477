"""The simulated mail the backend sends (verification codes, download links, notices).

Each message is a :class:`Mail`: a subject and a jinja2 template of its body
(``templates/mail/*.txt.j2``), rendered by :func:`send_mail`. Nothing leaves the process:
:func:`send` stores the message, ``GET /v1/outbox?to=`` (admin)
shows what a mailbox would have received. Codes and links are in the message because that
is what an email carries; everywhere else the backend keeps only their digests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jinja2
import sqlite_utils
from aiohttp import web

from backend import emails
from backend.auth import require
from backend.http import Routes, query_int
from backend.keys import STORE
from backend.openapi import document

routes = Routes()

_MAIL = jinja2.Environment(
    loader=jinja2.PackageLoader("backend.privacy", "templates/mail"),
    autoescape=False,  # plain text: nothing is markup
    undefined=jinja2.StrictUndefined,
)


@dataclass(frozen=True)
class Mail:
    """One kind of message: its subject and the template of its body."""

    subject: str
    template: str

    def body(self, **values: Any) -> str:
        return _MAIL.get_template(self.template).render(**values)


VERIFICATION_CODE = Mail("Your verification code", "code.txt.j2")
"""Values: ``request_id``, ``code``, ``minutes`` (how long the code works)."""
LINK_READY = Mail("Your data is ready to download", "link.txt.j2")
"""Values: ``request_id``, ``url``, ``expires`` (empty for a link that does not expire)."""
RECORDINGS_DELETED = Mail("Your voice recordings were deleted", "erased.txt.j2")
"""Values: ``request_id``, ``recordings``, ``packages`` (how many were deleted)."""


def send(db: sqlite_utils.Database, *, to: str, subject: str, body: str, sent_at: str,
         request_id: str | None = None, code: str | None = None, url: str | None = None) -> int:
    """Store one outgoing message (inside a write); returns its id."""
    cur = db.execute(
        "INSERT INTO outbox (to_addr, subject, body, sent_at, request_id, code, url)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [to, subject, body, sent_at, request_id, code, url],
    )
    return int(cur.lastrowid or 0)


def send_mail(db: sqlite_utils.Database, mail: Mail, *, to: str, sent_at: str,
              request_id: str, code: str | None = None, url: str | None = None,
              **values: Any) -> int:
    """Render ``mail`` (its template gets ``request_id``, ``code``, ``url`` and ``values``)
    and store it, inside a write; returns its id."""
    body = mail.body(request_id=request_id, code=code, url=url, **values)
    return send(db, to=to, subject=mail.subject, body=body, sent_at=sent_at,
                request_id=request_id, code=code, url=url)


def _message(row: dict[str, Any]) -> dict[str, Any]:
    out = {"message_id": row["message_id"], "to": row["to_addr"], "subject": row["subject"],
           "body": row["body"], "sent_at": row["sent_at"], "request_id": row["request_id"]}
    if row["code"] is not None:
        out["code"] = row["code"]
    if row["url"] is not None:
        out["url"] = row["url"]
    return out


document("GET", "/v1/outbox", "Simulated email the backend sent (codes, links, notices)",
         roles=("admin",),
         query=(("to", "string", False), ("after", "integer", False, {"minimum": 0, "maximum": 2**62}),
                ("limit", "integer", False, {"minimum": 1, "maximum": 5000})),
         responses={200: "messages, oldest first", 400: "invalid query", 401: "no token",
                    403: "not admin"})


@routes.get("/v1/outbox")
async def get_outbox(request: web.Request) -> web.Response:
    await require(request, "admin")
    to = request.query.get("to")
    if to is not None:
        try:
            to = emails.accept(to)  # as the backend stored it
        except ValueError:
            pass  # no address the backend would have sent to: matches nothing
    after = query_int(request, "after", 0, 0, 2**62)
    limit = query_int(request, "limit", 500, 1, 5000)

    messages = await request.app[STORE].read(lambda db: read_messages(db, to, after, limit))
    return web.json_response({"messages": messages})


def read_messages(db: sqlite_utils.Database, to: str | None, after: int = 0,
                  limit: int = 500) -> list[dict[str, Any]]:
    """Messages sent (to one address, any case, when ``to`` is given), oldest first."""
    if to is None:
        rows = db.query("SELECT * FROM outbox WHERE message_id > ? ORDER BY message_id LIMIT ?",
                        [after, limit])
    else:
        rows = db.query(
            "SELECT * FROM outbox WHERE to_addr = ? COLLATE NOCASE AND message_id > ?"
            " ORDER BY message_id LIMIT ?", [to, after, limit])
    return [_message(r) for r in rows]
