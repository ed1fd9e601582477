"""``GET /v1/device/stream``: one WebSocket per device, utterances in, acknowledgements out.

The upgrade is refused (401) unless it carries a live device token; the account is the
token's binding (:mod:`backend.ingest.bindings`). On the stream a device sends
``utterance.start``, binary PCM chunks, ``utterance.end``; the server stores metadata and
audio in ONE ``store.write`` and answers ``utterance.stored`` only when that write has
committed. Responses go out in the order the utterances ended, from one sender task per
connection, so a device may send its next utterance before the previous ack arrives
(at most ``MAX_IN_FLIGHT`` writes are pending per connection; beyond that the reader waits).

Memory is bounded across connections too: the PCM of finished utterances that wait for
their commit counts against one :class:`AudioBudget` (``max_audio_in_flight_bytes``). A
stream whose next utterance does not fit stops reading from its socket until commits free
room, so TCP flow control slows the devices down; nothing is dropped and no ack changes
meaning. (Audio of an utterance still being streamed is bounded per connection by
``max_utterance_seconds``.)

Recoverable mistakes get an ``error`` frame and the broken utterance is discarded; the
connection stays open. After an error inside an utterance the rest of it (chunks, its end)
is dropped silently, so every utterance gets exactly one answer. Rules:

- a bad ``utterance.start`` (``invalid_uuid``, ``unsupported_format``, ``invalid_field``):
  the utterance is refused; an utterance still open is discarded with ``start_before_end``;
- ``utterance.start`` while one is open: ``start_before_end`` for the open one, which is
  discarded; the new one begins;
- binary with nothing open: ``binary_before_start`` (once; chunks up to the next start or
  end are dropped);
- a chunk over ``max_frame_bytes`` (``frame_too_large``), of odd length (``odd_byte_count``)
  or past ``max_utterance_seconds`` (``utterance_too_long``): the open utterance is discarded;
- ``utterance.end`` with nothing open, or naming another utterance: ``end_without_start``
  (the open one, if any, is discarded); a bad end (``transcript_too_long``, ``invalid_text``,
  ``invalid_field``): the open utterance is discarded;
- ``malformed_json``, ``unknown_type``: the open utterance, if any, is discarded.

Frames larger than the WebSocket message limit (4 × ``max_frame_bytes``) cannot be read at
all and close the connection (1009). A device whose token is revoked while it streams gets
``device_revoked`` and the connection is closed (1008); nothing more is stored from it. An
``utterance_id`` already stored under another account is ``utterance_conflict``; a stream
silent for ``ws_idle_timeout`` seconds gets ``idle_timeout`` and is closed (1001). If the
store's sync of the WAL fails (a disk error), the utterances it covered and every later one
get ``storage_failed`` (they may or may not be stored: a resend with the same
``utterance_id`` is safe) and the stream is closed (1013, try again later).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils
from aiohttp import WSCloseCode, WSMsgType, web

from backend.auth import bearer
from backend.clock import Clock
from backend.crashpoints import reach
from backend.errors import BadRequest, Unauthorized
from backend.ingest.bindings import Binding, lookup_device, lookup_devices, resolve
from backend.ingest.protocol import ProtocolError, parse_frame
from backend.keys import CLOCK, CONFIG, IDS, METRICS, STORE
from backend.storage import StoreClosed, StoreFailed, recordings
from backend.storage.db import Outcome
from contract.audio import BYTES_PER_SECOND, duration_ms
from contract.stream import ErrorCode, UtteranceEnd, UtteranceStart, error_json, stored_json

log = logging.getLogger("overheard.ingest")

MAX_IN_FLIGHT = 32
"""Most unacknowledged writes per connection before the server stops reading from it."""

SESSIONS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("ingest.sessions")
"""The open device streams, closed at shutdown."""

class PcmDigest:
    """The hex sha256 of one utterance's PCM, computed by :class:`_Hasher`; ``result()``
    waits for it (the writer calls it, inside its transaction)."""

    __slots__ = ("pcm", "hex")

    def __init__(self, pcm: bytes) -> None:
        self.pcm: bytes | None = pcm
        self.hex: str | None = None

    def result(self) -> str:
        if self.hex is None:
            _HASHER.wait_for(self)
        assert self.hex is not None
        return self.hex


class _Hasher:
    """One thread that hashes utterance PCM beside the event loop and the writer.

    hashlib lets go of the GIL for buffers this size, so hashing overlaps with the loop
    and the writer instead of taking ~15% of the loop's time per utterance. Handing a
    buffer over is one ``SimpleQueue.put`` (a ``ThreadPoolExecutor`` future per utterance
    cost the loop ~10% of its time at 3,000 utterances/s, measured with py-spy under
    ``overheard bench ingest``); waiters share one condition.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[PcmDigest] = queue.SimpleQueue()
        self._done = threading.Condition()
        self._waiting = 0
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, pcm: bytes) -> PcmDigest:
        job = PcmDigest(pcm)
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="overheard-hash",
                                                    daemon=True)
                    self._thread.start()
        self._queue.put(job)
        return job

    def wait_for(self, job: PcmDigest) -> None:
        with self._done:
            self._waiting += 1
            try:
                while job.hex is None:
                    self._done.wait()
            finally:
                self._waiting -= 1

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            assert job.pcm is not None
            job.hex = hashlib.sha256(job.pcm).hexdigest()
            job.pcm = None
            if self._waiting:
                with self._done:
                    self._done.notify_all()


_HASHER = _Hasher()


def digest(pcm: bytes) -> PcmDigest:
    """The hex sha256 of ``pcm``, computed in the hashing thread."""
    return _HASHER.submit(pcm)




class AudioBudget:
    """PCM bytes received but not yet committed, across every device stream; waiters FIFO.

    ``acquire`` waits until the bytes fit under ``cap``; ``release`` (on commit or failure)
    wakes the waiters in arrival order, so a long utterance is not starved by short ones.
    One utterance larger than the whole cap is let through alone, when nothing else is in
    flight, rather than never.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.used = 0
        """Bytes in flight now (the ``/metrics`` gauge)."""
        self.high_water = 0
        """Most bytes ever in flight at once."""
        self.waits = 0
        """Times a stream had to wait for room."""
        self.on_wait: Callable[[], None] | None = None
        """Called whenever a stream starts waiting (tests use it to see the cap bite)."""
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    def _fits(self, size: int) -> bool:
        return self.used == 0 or self.used + size <= self.cap

    def _take(self, size: int) -> None:
        self.used += size
        if self.used > self.high_water:
            self.high_water = self.used

    async def acquire(self, size: int) -> None:
        if not self._waiters and self._fits(size):
            self._take(size)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((size, fut))
        self.waits += 1
        if self.on_wait is not None:
            self.on_wait()
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(size)  # granted just as the stream went away: give it back
            else:
                self._wake()  # it may have been the head that held the others back
            raise

    def release(self, size: int) -> None:
        self.used -= size
        self._wake()

    def _wake(self) -> None:
        waiters = self._waiters
        while waiters:
            size, fut = waiters[0]
            if fut.done():
                waiters.popleft()  # cancelled
                continue
            if not self._fits(size):
                return
            waiters.popleft()
            # Taken on the waiter's behalf now, so that nobody overtakes it before it runs.
            self._take(size)
            fut.set_result(None)


BUDGET = web.AppKey("ingest.audio_budget", AudioBudget)
"""The audio held by all streams together, bounded."""


def budget_of(app: web.Application) -> AudioBudget:
    """The app's one audio budget (made by :func:`setup_streams`)."""
    return app[BUDGET]


class StoreRefused(Exception):
    """Raised inside the write when the recording must not be stored; nothing was written."""

    def __init__(self, code: ErrorCode, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fatal = fatal


@dataclass
class OpenUtterance:
    """An utterance between start and end: its audio so far."""

    start: UtteranceStart
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0


@dataclass(frozen=True)
class PendingWrite:
    """A queued store write and what its answer needs."""

    future: asyncio.Future[tuple[str, bool]]
    utterance_id: str
    size: int


Response = str | PendingWrite
"""A ready error frame, or a write whose outcome decides the frame."""


@dataclass(frozen=True)
class RecordingRow:
    """Everything one store write needs; built on the loop, written in the writer thread."""

    recording_id: str
    utterance_id: str
    binding: Binding
    recorded_at: str
    clock: Clock
    """Read in the writer for ``stored_at``: once per run of utterances, inside the commit."""
    transcript: str
    locale: str
    pcm: bytes
    pcm_sha256: PcmDigest
    """The PCM's digest, computed by :func:`digest` beside the event loop and the writer."""


def _decide(rec: RecordingRow, hit: tuple[str, str] | None,
            live: Callable[[str], Binding | None]) -> tuple[str, str, str, bool]:
    """Where ``rec`` goes: ``(recording_id, account_id, device_id, duplicate)``.

    ``hit`` is ``(recording_id, account_id)`` of a recording already stored under this
    ``utterance_id``; ``live`` reads the device's binding from the tables, inside the write.
    Raises :class:`StoreRefused` when nothing may be stored.
    """
    binding = rec.binding
    account_id, device_id = binding.account_id, binding.device_id
    if not binding.stale:
        # The tables decide, inside this transaction: a token revoked by a re-registration
        # that committed a moment ago cannot store one more recording.
        current = live(binding.token_sha256)
        if current is None:
            if hit is not None and hit[1] == account_id:
                # a retry of something stored before the revocation
                return hit[0], account_id, device_id, True
            raise StoreRefused(ErrorCode.DEVICE_REVOKED, "this device's token was revoked", fatal=True)
        account_id, device_id = current.account_id, current.device_id
    if hit is not None:
        if hit[1] != account_id:
            raise StoreRefused(ErrorCode.UTTERANCE_CONFLICT,
                               "utterance_id is already used by another account's recording")
        return hit[0], account_id, device_id, True
    return rec.recording_id, account_id, device_id, False


def _row(rec: RecordingRow, account_id: str, device_id: str, stored_at: str) -> tuple[Any, ...]:
    size = len(rec.pcm)
    return (rec.recording_id, rec.utterance_id, account_id, device_id, rec.binding.serial,
            rec.recorded_at, stored_at, duration_ms(size), rec.transcript,
            rec.locale, size, rec.pcm_sha256.result())


def store_recording(db: sqlite_utils.Database, rec: RecordingRow) -> tuple[str, bool]:
    """Insert metadata and audio of one recording; ``(recording_id, duplicate)``."""
    hit = recordings.by_utterance(db, rec.utterance_id)
    recording_id, account_id, device_id, duplicate = _decide(
        rec, hit, lambda token: lookup_device(db, token))
    if not duplicate:
        recordings.insert(db, [_row(rec, account_id, device_id, rec.clock.iso())],
                          [(rec.recording_id, rec.pcm)])
    return recording_id, duplicate


def store_recordings(db: sqlite_utils.Database, recs: list[RecordingRow]) -> list[Outcome]:
    """:func:`store_recording` for a run of queued utterances, with one lookup of existing
    utterance ids, one of the live devices behind their tokens and the rows written with
    multi-row INSERTs (:func:`~backend.storage.db.insert_rows`).

    The outcome of each is what storing them one after another would give: a second
    utterance with the same id in the run is its first one's duplicate (or conflict).
    """
    existing = recordings.by_utterances(db, (rec.utterance_id for rec in recs))
    # Nothing else writes between these items, so one look per device token is exact.
    live = lookup_devices(db, (rec.binding.token_sha256 for rec in recs
                               if not rec.binding.stale)).get
    stored_at = recs[0].clock.iso()
    outcomes: list[Outcome] = []
    rows: list[tuple[Any, ...]] = []
    blobs: list[tuple[str, bytes]] = []
    for rec in recs:
        try:
            recording_id, account_id, device_id, duplicate = _decide(
                rec, existing.get(rec.utterance_id), live)
        except StoreRefused as exc:
            outcomes.append((False, exc))
            continue
        if not duplicate:
            rows.append(_row(rec, account_id, device_id, stored_at))
            blobs.append((rec.recording_id, rec.pcm))
            existing[rec.utterance_id] = (rec.recording_id, account_id)
        outcomes.append((True, (recording_id, duplicate)))
    recordings.insert(db, rows, blobs)
    return outcomes


class Session:
    """One device connection: the utterance state machine and the ordered response sender."""

    def __init__(self, app: web.Application, ws: web.WebSocketResponse, binding: Binding) -> None:
        config = app[CONFIG]
        self.config = config
        self.ws = ws
        self.binding = binding
        self.store = app[STORE]
        self.metrics = app[METRICS]
        self.clock = app[CLOCK]
        self.ids = app[IDS]
        self.max_frame = config.max_frame_bytes
        self.max_bytes = int(config.max_utterance_seconds * BYTES_PER_SECOND)
        self.max_transcript = config.max_transcript_bytes
        self.idle_timeout = config.ws_idle_timeout
        self.open: OpenUtterance | None = None
        self.skipping = False
        """Inside a refused utterance: drop its chunks and its end without answering."""
        self.skip_id: str | None = None
        self.storage_failed = False
        """A sync of the store failed: answer what is queued, then close (1013)."""
        self.responses: asyncio.Queue[Response | None] = asyncio.Queue()
        self.in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        self.budget = budget_of(app)
        self.loop = asyncio.get_running_loop()
        self.last_activity = self.loop.time()

    # -- the loop ---------------------------------------------------------------------
    async def run(self) -> None:
        sender = asyncio.create_task(self._send_responses())
        watchdog = asyncio.create_task(self._watch_idle())
        try:
            async for msg in self.ws:
                self.last_activity = self.loop.time()
                if msg.type is WSMsgType.BINARY:
                    self._on_binary(msg.data)
                elif msg.type is WSMsgType.TEXT:
                    await self._on_text(msg.data)
                elif msg.type is WSMsgType.ERROR:
                    log.info("device %s: stream error %s", self.binding.device_id, msg.data)
                    break
                if self.binding.revoked and self.open is None and not self.skipping:
                    break
                if self.storage_failed:
                    break
        except StoreClosed:
            pass  # shutting down: the close frame follows
        finally:
            watchdog.cancel()
            self.responses.put_nowait(None)
            # Writes already queued still commit; their acks go out while the socket is open.
            await sender
        if self.binding.revoked and not self.ws.closed:
            await self.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"device_revoked")

    async def _watch_idle(self) -> None:
        while not self.ws.closed:
            remaining = self.last_activity + self.idle_timeout - self.loop.time()
            if remaining > 0:
                await asyncio.sleep(remaining)
                continue
            self.metrics.inc("overheard_ingest_rejects_total", code=ErrorCode.IDLE_TIMEOUT)
            log.info("device %s: idle for %g s; closing", self.binding.device_id,
                     self.idle_timeout)
            await self._send(error_json(
                ErrorCode.IDLE_TIMEOUT, f"no frame for {self.idle_timeout:g} s; closing"))
            await self.ws.close(code=WSCloseCode.GOING_AWAY, message=b"idle timeout")
            return

    async def _send(self, text: str) -> None:
        if self.ws.closed:
            return
        try:
            await self.ws.send_str(text)
        except (ConnectionError, RuntimeError):
            pass  # the device went away; what was stored stays stored

    async def _send_responses(self) -> None:
        while (item := await self.responses.get()) is not None:
            fatal = False
            if isinstance(item, str):
                await self._send(item)
            else:
                text, fatal = await self._settle(item)
                if text is not None:
                    await self._send(text)
            if self.storage_failed and not self.ws.closed:
                # Whether the failure came back with a write or refused a new one, the
                # device has its storage_failed; it should come back later.
                await self.ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"storage failed")
            if fatal and not self.ws.closed:
                await self.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"device_revoked")

    async def _settle(self, pending: PendingWrite) -> tuple[str | None, bool]:
        try:
            recording_id, duplicate = await pending.future
        except StoreRefused as exc:
            self.metrics.inc("overheard_ingest_rejects_total", code=exc.code)
            log.info("device %s: %s (%s)", self.binding.device_id, exc.code, exc.message)
            if exc.fatal:
                self.binding.revoked = True
            return error_json(exc.code, exc.message, pending.utterance_id), exc.fatal
        except StoreFailed as exc:
            # Committed, perhaps, but not known to be on the disk: not acknowledged. A resend
            # with the same utterance_id is safe once the server is back.
            self.metrics.inc("overheard_ingest_rejects_total", code=ErrorCode.STORAGE_FAILED)
            self.storage_failed = True
            return error_json(ErrorCode.STORAGE_FAILED, f"{exc}; try again later",
                              pending.utterance_id), False
        except StoreClosed:
            return None, False
        except Exception:
            log.exception("storing utterance %s failed", pending.utterance_id)
            self.metrics.inc("overheard_ingest_rejects_total", code=ErrorCode.INTERNAL)
            return error_json(ErrorCode.INTERNAL, "storing failed; nothing was stored",
                              pending.utterance_id), False
        finally:
            self.in_flight.release()
        reach(self.config, "ingest.after_commit")
        if duplicate:
            self.metrics.inc("overheard_utterance_duplicates_total")
        else:
            self.metrics.inc("overheard_utterances_stored_total")
            self.metrics.inc("overheard_audio_bytes_stored_total", pending.size)
        return stored_json(pending.utterance_id, recording_id, duplicate), False

    # -- frames -------------------------------------------------------------------------
    def _error(self, code: ErrorCode, message: str, utterance_id: str | None) -> None:
        self.metrics.inc("overheard_ingest_rejects_total", code=code)
        log.info("device %s: %s (%s)", self.binding.device_id, code, message)
        self.responses.put_nowait(
            error_json(code, message, utterance_id))

    def _discard(self, code: ErrorCode, message: str, *, skip_rest: bool = True) -> None:
        """Refuse the open utterance; with ``skip_rest`` its remaining frames are dropped."""
        assert self.open is not None
        uid = self.open.start.utterance_id
        self.open = None
        self.skipping, self.skip_id = skip_rest, uid
        self._error(code, message, uid)

    def _on_binary(self, data: bytes) -> None:
        current = self.open
        if current is None:
            if not self.skipping:
                self.skipping, self.skip_id = True, None
                self._error(ErrorCode.BINARY_BEFORE_START,
                            "binary audio arrived before utterance.start", None)
            return
        n = len(data)
        if n > self.max_frame:
            self._discard(ErrorCode.FRAME_TOO_LARGE,
                          f"binary frame of {n} bytes; at most {self.max_frame} allowed")
        elif n % 2:
            self._discard(ErrorCode.ODD_BYTE_COUNT,
                          f"binary frame of {n} bytes; s16le audio needs an even count")
        elif current.size + n > self.max_bytes:
            self._discard(ErrorCode.UTTERANCE_TOO_LONG,
                          f"utterance exceeds {self.max_bytes / BYTES_PER_SECOND:g} s of audio")
        else:
            current.chunks.append(data)
            current.size += n
            reach(self.config, "ingest.mid_utterance")

    async def _on_text(self, text: str) -> None:
        try:
            msg = parse_frame(text, max_transcript_bytes=self.max_transcript)
        except ProtocolError as exc:
            self._on_bad_frame(exc)
            return
        if isinstance(msg, UtteranceStart):
            if self.binding.revoked:
                # Re-registered or deregistered while connected: refuse, then hang up once
                # this utterance's remaining frames have been read.
                if self.open is not None:
                    self._discard(ErrorCode.DEVICE_REVOKED, "this device's token was revoked")
                self._error(ErrorCode.DEVICE_REVOKED, "this device's token was revoked",
                            msg.utterance_id)
                self.skipping, self.skip_id = True, msg.utterance_id
                return
            if self.open is not None:
                self._discard(ErrorCode.START_BEFORE_END,
                              f"utterance.start for {msg.utterance_id} before utterance.end of "
                              f"{self.open.start.utterance_id}; the open utterance is discarded")
            self.skipping, self.skip_id = False, None
            self.open = OpenUtterance(msg)
        else:
            await self._on_end(msg)

    def _on_bad_frame(self, exc: ProtocolError) -> None:
        if exc.kind == "utterance.start":
            if self.open is not None:
                self._discard(ErrorCode.START_BEFORE_END, "utterance.start before utterance.end; the "
                              "open utterance is discarded")
            self._error(exc.code, exc.message, exc.utterance_id)
            # Its chunks and end follow; drop them without another answer.
            self.skipping, self.skip_id = True, exc.utterance_id
        elif exc.kind == "utterance.end":
            if self.open is not None:
                # The end of the open utterance arrived broken: that utterance is refused.
                uid = exc.utterance_id or self.open.start.utterance_id
                self.open = None
                self._error(exc.code, exc.message, uid)
            elif not (self.skipping and self.skip_id in (None, exc.utterance_id)):
                self._error(exc.code, exc.message, exc.utterance_id)
            # else: the end of an utterance already refused; it gets no second answer.
            self.skipping, self.skip_id = False, None
        elif self.open is not None:
            self._discard(exc.code, exc.message)
        else:
            self._error(exc.code, exc.message, exc.utterance_id)

    async def _on_end(self, msg: UtteranceEnd) -> None:
        current = self.open
        uid = msg.utterance_id
        if current is None:
            if self.skipping and self.skip_id in (None, uid):
                self.skipping, self.skip_id = False, None  # the end of a refused utterance
                return
            self.skipping, self.skip_id = False, None
            self._error(ErrorCode.END_WITHOUT_START, f"utterance.end for {uid} without utterance.start",
                        uid)
            return
        self.open = None
        if current.start.utterance_id != uid:
            self._error(ErrorCode.END_WITHOUT_START,
                        f"utterance.end for {uid} while {current.start.utterance_id} is open; "
                        "the open utterance is discarded", uid)
            return
        pcm = b"".join(current.chunks)
        rec = RecordingRow(
            recording_id=self.ids.derived("rec", uid), utterance_id=uid, binding=self.binding,
            recorded_at=current.start.recorded_at, clock=self.clock,
            transcript=msg.transcript, locale=msg.locale, pcm=pcm, pcm_sha256=digest(pcm),
        )
        size = len(pcm)
        await self.in_flight.acquire()
        # Not reading from the socket while this waits is the backpressure.
        try:
            await self.budget.acquire(size)
        except BaseException:
            self.in_flight.release()
            raise
        self.last_activity = self.loop.time()  # held back by us, not idle
        try:
            fut = self.store.write_grouped(store_recordings, rec, store_recording)
        except StoreClosed as exc:
            self.in_flight.release()
            self.budget.release(size)
            if not isinstance(exc, StoreFailed):
                raise
            # The disk failed a sync earlier: nothing is taken any more; the stream closes.
            self._error(ErrorCode.STORAGE_FAILED, f"{exc}; try again later", uid)
            self.storage_failed = True
            return
        # Room is freed at the commit itself, not when this stream's sender gets to the ack.
        fut.add_done_callback(lambda _f: self.budget.release(size))
        self.responses.put_nowait(PendingWrite(fut, uid, size))


def sessions_of(app: web.Application) -> set[web.WebSocketResponse]:
    return app[SESSIONS]


def setup_streams(app: web.Application) -> None:
    """The audio budget (sized by the config) and the set of open streams."""
    app[BUDGET] = AudioBudget(app[CONFIG].max_audio_in_flight_bytes)
    app[SESSIONS] = set()


async def device_stream(request: web.Request) -> web.StreamResponse:
    """The WebSocket endpoint; authenticates before the upgrade."""
    app = request.app
    ws = web.WebSocketResponse(
        max_msg_size=4 * app[CONFIG].max_frame_bytes,
        compress=False,  # PCM does not compress; deflate would only cost CPU
        autoping=True,
    )
    # Credentials first, as on every protected route: a caller without a token learns
    # nothing else about the endpoint.
    token = bearer(request)
    binding = await resolve(app, token) if token else None
    if binding is None:
        app[METRICS].inc("overheard_ingest_rejects_total", code="unauthorized")
        raise Unauthorized("a live device token is required (Authorization: Bearer ...)",
                           code="unauthorized")
    if not ws.can_prepare(request).ok:
        raise BadRequest("this endpoint needs a WebSocket upgrade", code="upgrade_required")
    await ws.prepare(request)
    reach(app[CONFIG], "ingest.upgraded")
    app[METRICS].inc("overheard_device_streams_total")
    live = sessions_of(app)
    live.add(ws)
    try:
        await Session(app, ws, binding).run()
    finally:
        live.discard(ws)
        if not ws.closed:
            await ws.close()
    return ws


async def close_streams(app: web.Application) -> None:
    """On shutdown: tell every device to go away so the server can stop."""
    for ws in list(sessions_of(app)):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
