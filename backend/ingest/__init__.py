"""Device ingest: the WebSocket stream devices send utterances over, and device bindings.

``protocol`` parses wire messages, ``bindings`` decides which account a device's speech
belongs to (and hosts the ingest faults), ``stream`` runs one connection.
"""

from __future__ import annotations

from aiohttp import web

from backend.ingest.bindings import setup_bindings
from backend.ingest.stream import close_streams, device_stream, setup_streams
from backend.keys import METRICS
from backend.openapi import document

document(
    "GET", "/v1/device/stream",
    "Device stream (WebSocket): utterance.start, binary s16le PCM chunks, utterance.end; "
    "the server answers utterance.stored after commit, or error",
    roles=("device",),
    responses={101: "Switching Protocols: the WebSocket is open",
               400: "Not a WebSocket upgrade", 401: "Unknown or revoked device token"},
    tag="ingest",
)


def setup(app: web.Application) -> None:
    setup_bindings(app)
    setup_streams(app)
    m = app[METRICS]
    m.describe("overheard_utterances_stored_total", "utterances committed to storage")
    m.describe("overheard_audio_bytes_stored_total", "PCM bytes committed to storage")
    m.describe("overheard_ingest_rejects_total", "refused frames, utterances and upgrades by code")
    m.describe("overheard_utterance_duplicates_total", "utterances answered as duplicates")
    m.describe("overheard_device_streams_total", "device streams opened")
    app.router.add_get("/v1/device/stream", device_stream)
    app.on_shutdown.append(close_streams)
