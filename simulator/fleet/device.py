"""One simulated device: streams its utterances over ``GET /v1/device/stream`` and keeps the truth.

The device sends ``utterance.start``, the PCM in chunks of 100-500 ms (sizes drawn from
the device's own seeded random stream), and ``utterance.end``; up to ``window``
utterances may await their ``utterance.stored`` at once. When the connection drops (or
an ack does not come in time) it reconnects with exponential backoff and seeded jitter,
and resends every unacknowledged utterance with the same ``utterance_id``: the backend's
idempotency key makes the retry store nothing twice.

What happened to each utterance goes into the :class:`~simulator.fleet.ledger.Ledger` the
moment it is known:

- first byte sent → an entry with outcome ``info`` (it may or may not be stored);
- ``utterance.stored`` → ``ok`` with the ``recording_id``;
- an ``error`` frame naming the utterance → ``fail`` (the backend stored nothing of it),
  except ``storage_failed``: the backend's disk failed a sync, so the utterance may or may
  not be stored; it stays ``info`` and is resent on the next connection, like a lost ack;
- given up before it was ever sent → ``fail``; sent but never acknowledged → stays ``info``.

If the task is cancelled (Ctrl-C), entries stay as they are: ``info`` for what was in
flight, nothing for what was never sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from contract.audio import BYTES_PER_SECOND
from contract.stream import PATH, RETRYABLE, end_json, start_json
from simulator.fleet.ledger import Ledger, LedgerEntry, Outcome, pcm_sha256
from simulator.world.households import Utterance

log = logging.getLogger("overheard.device")

STREAM_PATH = PATH


@dataclass(frozen=True)
class DeviceOptions:
    """How devices talk to the backend; the defaults suit an accelerated fleet."""

    window: int = 8
    """Utterances sent and not yet acknowledged, at most (the backend allows 32)."""
    chunk_min: int = 3200
    """Smallest PCM chunk in bytes (100 ms); sizes are multiples of 320 bytes (10 ms)."""
    chunk_max: int = BYTES_PER_SECOND // 2
    """Largest PCM chunk in bytes (500 ms); at most 64 KiB per frame on the wire."""
    realtime: bool = False
    """Pace the audio as a microphone would: a chunk of 300 ms takes 300 ms to send."""
    backoff_base: float = 0.05
    """First reconnect delay in seconds; doubles per failed attempt, jittered 50-100 %."""
    backoff_max: float = 5.0
    max_attempts: int = 8
    """Consecutive connections without progress before the device gives up."""
    ack_timeout: float = 30.0
    """Seconds without any answer while utterances await acks before reconnecting."""
    connect_timeout: float = 10.0


DropHook = Callable[[Utterance, int, int, int], bool]
"""``(utterance, chunk_index, n_chunks, attempt) -> True`` closes the socket before that chunk
(``chunk_index == n_chunks`` means after ``utterance.end``, before its ack)."""


@dataclass
class DeviceStats:
    """Counters a fleet sums over its devices (and shows on the progress bar)."""

    ok: int = 0
    fail: int = 0
    info: int = 0
    sent: int = 0
    resent: int = 0
    duplicates: int = 0
    reconnects: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1


class DeviceGaveUp(Exception):
    """The device could not deliver (token refused, or too many failed connections)."""


class _Dropped(Exception):
    """The connection ended; reconnect and resend what is unacknowledged."""


@dataclass
class _Pending:
    utt: Utterance
    pcm: bytes
    sha: str


class StreamingDevice:
    """A device with a token, a queue of utterances and a share of the ledger."""

    def __init__(self, base_url: str, token: str, serial: str, utterances: Sequence[Utterance],
                 *, ledger: Ledger, account_id: str | None, seed: int = 0,
                 options: DeviceOptions | None = None, stats: DeviceStats | None = None,
                 session: aiohttp.ClientSession | None = None,
                 on_outcome: Callable[[Outcome], None] | None = None,
                 drop: DropHook | None = None) -> None:
        self.url = "ws" + base_url.rstrip("/").removeprefix("http") + STREAM_PATH
        self.token = token
        self.serial = serial
        self.queue = list(utterances)
        self.ledger = ledger
        self.account_id = account_id
        """The account the device was registered to: the true owner in the ledger."""
        self.options = options or DeviceOptions()
        self.stats = stats or DeviceStats()
        self.session = session
        self.on_outcome = on_outcome
        self.drop = drop
        self.rng = random.Random(f"device/{seed}/{serial}")
        self._next = 0
        self._pending: dict[str, _Pending] = {}
        """Sent (at least partly) and not answered, in sending order."""
        self._attempt = 0

    # -- outcome bookkeeping -------------------------------------------------------
    def _record(self, p: _Pending, outcome: Outcome, recording_id: str | None = None) -> None:
        u = p.utt
        self.ledger.record(LedgerEntry(
            utterance_id=u.utterance_id, recording_id=recording_id, household=u.household,
            account_id=self.account_id, device_serial=u.device_serial,
            speaker=u.speaker.speaker_id, recorded_at=u.recorded_at_iso,
            transcript=u.transcript, pcm_sha256=p.sha, outcome=outcome))

    def _settle(self, uid: str, outcome: Outcome, recording_id: str | None = None) -> None:
        p = self._pending.pop(uid, None)
        if p is None:
            return  # an answer to something already settled (a late duplicate ack)
        self._record(p, outcome, recording_id)
        setattr(self.stats, outcome, getattr(self.stats, outcome) + 1)
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    def _give_up(self) -> None:
        """Sent-but-unanswered stay ``info``; never-sent become ``fail`` (not stored)."""
        for uid in list(self._pending):
            self._settle(uid, "info")
        while self._next < len(self.queue):
            u = self.queue[self._next]
            self._next += 1
            pcm = u.pcm()
            p = _Pending(u, pcm, pcm_sha256(pcm))
            self._pending[u.utterance_id] = p
            self._settle(u.utterance_id, "fail")

    # -- the loop ------------------------------------------------------------------
    async def run(self) -> DeviceStats:
        """Stream every utterance; returns when each has an outcome (or raises on give-up)."""
        own = self.session is None
        session = self.session or aiohttp.ClientSession()
        try:
            while self._next < len(self.queue) or self._pending:
                progressed = False
                try:
                    progressed = await self._connection(session)
                except DeviceGaveUp:
                    self._give_up()
                    raise
                except (_Dropped, aiohttp.ClientError, OSError, TimeoutError) as exc:
                    log.debug("device %s: connection ended: %r", self.serial, exc)
                if self._next >= len(self.queue) and not self._pending:
                    break
                self._attempt = 0 if progressed else self._attempt + 1
                if self._attempt >= self.options.max_attempts:
                    self._give_up()
                    raise DeviceGaveUp(f"device {self.serial}: no progress after "
                                       f"{self._attempt} connections")
                self.stats.reconnects += 1
                await asyncio.sleep(self._backoff())
        finally:
            if own:
                await session.close()
        return self.stats

    def _backoff(self) -> float:
        o = self.options
        delay: float = min(o.backoff_max, o.backoff_base * (2 ** max(0, self._attempt - 1)))
        return delay * self.rng.uniform(0.5, 1.0)

    async def _connection(self, session: aiohttp.ClientSession) -> bool:
        """One connection: resend the unacknowledged, then send the rest; True on progress."""
        try:
            ws = await asyncio.wait_for(session.ws_connect(
                self.url, headers={"Authorization": f"Bearer {self.token}"}, autoping=True,
                timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
                max_msg_size=4 * 1024 * 1024, compress=0,
            ), self.options.connect_timeout)
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (401, 403):
                raise DeviceGaveUp(f"device {self.serial}: token refused ({exc.status})") from None
            raise
        settled_before = self.stats.ok + self.stats.fail
        answered = asyncio.Event()
        reader = asyncio.create_task(self._read(ws, answered))
        writer = asyncio.create_task(self._write(ws, answered))
        try:
            done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            if writer in done:
                writer.result()  # raises when the connection broke (or a test hook cut it)
                # Everything is sent: wait for the remaining acks. The reader also sets
                # ``answered`` when the connection ends.
                while self._pending and not reader.done():
                    answered.clear()
                    try:
                        await asyncio.wait_for(answered.wait(), self.options.ack_timeout)
                    except TimeoutError:
                        raise _Dropped("no acknowledgement in time") from None
            if reader.done():
                reader.result()  # raises DeviceGaveUp on a revoked token
        finally:
            for task in (writer, reader):
                task.cancel()
            if not ws.closed:
                await ws.close()
            await asyncio.gather(writer, reader, return_exceptions=True)
        return self.stats.ok + self.stats.fail > settled_before

    async def _write(self, ws: aiohttp.ClientWebSocketResponse, answered: asyncio.Event) -> None:
        attempt = self.stats.reconnects
        resend = list(self._pending.values())
        for p in resend:
            self.stats.resent += 1
            await self._send(ws, p, attempt)
        sent_here = len(resend)
        while self._next < len(self.queue):
            while len(self._pending) >= self.options.window:
                answered.clear()
                await answered.wait()
            u = self.queue[self._next]
            self._next += 1
            pcm = u.pcm()
            p = _Pending(u, pcm, pcm_sha256(pcm))
            self._pending[u.utterance_id] = p
            self._record(p, "info")  # sent (or about to be): from now on, maybe stored
            self.stats.sent += 1
            sent_here += 1
            await self._send(ws, p, attempt)

    async def _send(self, ws: aiohttp.ClientWebSocketResponse, p: _Pending, attempt: int) -> None:
        u = p.utt
        await ws.send_str(start_json(u.utterance_id, u.recorded_at_iso))
        chunks = self._chunks(p.pcm)
        for i, chunk in enumerate(chunks):
            if self.drop is not None and self.drop(u, i, len(chunks), attempt):
                await ws.close()
                raise _Dropped(f"test hook dropped the connection at chunk {i}/{len(chunks)}")
            await ws.send_bytes(chunk)
            if self.options.realtime:
                await asyncio.sleep(len(chunk) / BYTES_PER_SECOND)
        await ws.send_str(end_json(u.utterance_id, u.transcript, u.locale))
        if self.drop is not None and self.drop(u, len(chunks), len(chunks), attempt):
            await ws.close()
            raise _Dropped("test hook dropped the connection before the ack")

    def _chunks(self, pcm: bytes) -> list[bytes]:
        lo, hi = self.options.chunk_min // 320, self.options.chunk_max // 320
        out = []
        pos = 0
        while pos < len(pcm):
            n = self.rng.randint(lo, hi) * 320
            out.append(pcm[pos:pos + n])
            pos += n
        return out

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, answered: asyncio.Event) -> None:
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            try:
                frame: dict[str, Any] = json.loads(msg.data)
            except ValueError:
                self.stats.error("bad_frame")
                continue
            kind = frame.get("type")
            uid = frame.get("utterance_id")
            if kind == "utterance.stored" and isinstance(uid, str):
                if frame.get("duplicate"):
                    self.stats.duplicates += 1
                self._settle(uid, "ok", str(frame.get("recording_id")))
            elif kind == "error":
                code = str(frame.get("code"))
                self.stats.error(code)
                log.info("device %s: error %s: %s", self.serial, code, frame.get("message"))
                if code in RETRYABLE:
                    pass  # stays pending (info): resent, same utterance_id, after reconnecting
                elif isinstance(uid, str) and uid in self._pending:
                    self._settle(uid, "fail")  # definite: nothing of it was stored
                if code == "device_revoked":
                    raise DeviceGaveUp(f"device {self.serial}: token revoked")
            answered.set()
        answered.set()
