"""The account holder's voice history: list own recordings, fetch one as WAV, delete one.

Every query is scoped by the caller's account inside SQL, so another account's recording
and a nonexistent one give the same 404 (nothing reveals that the id exists). Listing is
keyset-paginated over ``(recorded_at, recording_id)``, oldest first; the cursor
names the last row of the previous page (:data:`CURSOR_PATTERN`).
"""

from __future__ import annotations

import re
from typing import Any

import sqlite_utils
from aiohttp import web

from backend import auditlog
from backend.auth import require
from backend.errors import BadRequest, NotFound
from backend.http import Routes, query_int
from backend.keys import CLOCK, STORE
from backend.openapi import document
from backend.storage import recordings
from contract.audio import pcm_to_wav

routes = Routes()

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

_RECORDING = {
    "type": "object",
    "required": ["recording_id", "device_id", "recorded_at", "duration_ms", "transcript"],
    "properties": {
        "recording_id": {"type": "string"}, "device_id": {"type": "string"},
        "recorded_at": {"type": "string", "format": "date-time"},
        "duration_ms": {"type": "integer"}, "transcript": {"type": "string"},
    },
}

CURSOR_PATTERN = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z"
                  r"~[A-Za-z0-9_]{1,64}$")
"""A keyset position, ``<recorded_at>~<recording_id>``: the last row of the previous page.
Clients pass back what they were given; any string of this shape is a position (the rows
after it), so the spec's pattern is exactly what the handler accepts. ASCII classes only:
Python's ``\\d`` would also take other scripts' digits."""
_CURSOR = re.compile(CURSOR_PATTERN)

document("GET", "/v1/me/recordings", "Own voice history, oldest first, cursor-paginated",
         roles=("user",), query=(("limit", "integer", False, {"minimum": 1, "maximum": MAX_LIMIT}),
                                 ("cursor", "string", False, {"pattern": CURSOR_PATTERN})),
         responses={200: "A page of recordings", 400: "Bad limit or cursor", 401: "No token",
                    403: "Not a user token"},
         response_schema={"type": "object", "required": ["recordings", "next_cursor"],
                          "properties": {"recordings": {"type": "array", "items": _RECORDING},
                                         "next_cursor": {"type": ["string", "null"]}}},
         tag="voice")
document("GET", "/v1/me/recordings/{recording_id}/audio", "One own recording as a WAV file",
         roles=("user",), content_type="audio/wav",
         responses={200: "16 kHz mono s16le WAV", 401: "No token", 403: "Not a user token",
                    404: "No such recording in this account"},
         response_schema={"type": "string", "format": "binary"}, tag="voice")
document("DELETE", "/v1/me/recordings/{recording_id}", "Delete one own recording and its audio",
         roles=("user",),
         responses={204: "Deleted", 401: "No token", 403: "Not a user token",
                    404: "No such recording in this account"},
         tag="voice")




def encode_cursor(recorded_at: str, recording_id: str) -> str:
    return f"{recorded_at}~{recording_id}"


def decode_cursor(cursor: str) -> tuple[str, str]:
    """``(recorded_at, recording_id)`` of a cursor; 400 ``invalid_cursor`` for any other text."""
    if not _CURSOR.fullmatch(cursor):
        raise BadRequest("cursor is not one this server issues", code="invalid_cursor",
                         field="cursor")
    recorded_at, _, recording_id = cursor.partition("~")
    return recorded_at, recording_id


@routes.get("/v1/me/recordings")
async def list_recordings(request: web.Request) -> web.Response:
    who = await require(request, "user")
    account_id = who.account_id
    limit = query_int(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    cursor = request.query.get("cursor")
    after = decode_cursor(cursor) if cursor is not None else None

    rows, next_cursor = await request.app[STORE].read(
        lambda db: history_page(db, str(account_id), after, limit))
    return web.json_response({"recordings": rows, "next_cursor": next_cursor})


def history_page(db: sqlite_utils.Database, account_id: str, after: tuple[str, str] | None,
                 limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """One page of an account's voice history, oldest first, and the next page's cursor."""
    rows = recordings.history_page(db, account_id, after, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1]["recorded_at"], rows[-1]["recording_id"]) if more else None
    return rows, next_cursor


@routes.get("/v1/me/recordings/{recording_id}/audio")
async def get_audio(request: web.Request) -> web.Response:
    who = await require(request, "user")
    recording_id = request.match_info["recording_id"]

    return await wav_response(request.app, str(who.account_id), recording_id)


async def wav_response(app: web.Application, account_id: str,
                       recording_id: str) -> web.Response:
    """One of ``account_id``'s recordings as a WAV download; 404 when it is not theirs."""

    def read(db: sqlite_utils.Database) -> bytes | None:
        found = recordings.audio_of(db, recording_id, account_id)
        if found is None:
            return None
        # Built here, in the reader thread, so the event loop never copies audio.
        return pcm_to_wav(*found)

    body = await app[STORE].read(read)
    if body is None:
        raise NotFound("no such recording", code="recording_not_found")
    return web.Response(body=body, content_type="audio/wav", headers={
        "Content-Disposition": f'attachment; filename="{recording_id}.wav"',
        "Cache-Control": "no-store",
    })


@routes.delete("/v1/me/recordings/{recording_id}")
async def delete_recording(request: web.Request) -> web.Response:
    who = await require(request, "user")
    recording_id = request.match_info["recording_id"]
    now = request.app[CLOCK].iso()

    def write(db: sqlite_utils.Database) -> None:
        # secure_delete is on, so the freed pages are zeroed, not just unlinked.
        if not recordings.delete_owned(db, recording_id, str(who.account_id)):
            raise NotFound("no such recording", code="recording_not_found")
        auditlog.append(db, at=now, actor=f"user:{who.account_id}", action="recording.deleted",
                        object_id=recording_id, detail={"account_id": who.account_id})

    await request.app[STORE].write(write)
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    app.router.add_routes(routes)
