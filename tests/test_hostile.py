"""Hostile input: the device stream and HTTP bodies under a corpus of bad, big and slow input.

Whatever arrives, the answer is an error code (or, for bytes that are merely odd audio, the
bytes stored as sent), nothing half-stored, and a server that keeps serving with bounded
memory and file descriptors:

- WAV/PCM headers sent as PCM frames (truncated, lying about rate or size): PCM is bytes;
  stored byte-exact, or refused (``odd_byte_count``);
- zero and absurd sample rates, widths and channel counts: ``unsupported_format``;
- oversize frames (``frame_too_large``; beyond the message limit the socket closes) and
  oversize bodies (413), while the server process's RSS stays flat;
- slowloris: a request header or a body trickled in byte by byte is cut off by the
  server's timeouts (``Config.keepalive_timeout``, ``Config.body_timeout``);
- 1,000 connections opened and dropped: the server still answers and its descriptors
  return to where they were;
- unicode edge cases in transcripts: stored exactly as their NFC form, or refused with
  ``invalid_text``;
- a hypothesis fuzz of the message parser: a typed message or a ``ProtocolError`` with a
  known code, never anything else.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import struct
import sys
import time
import unicodedata
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import ADMIN_TOKEN, Api, make_config, pcm_bytes, receive_json, send_utterance
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.ingest.protocol import ProtocolError, parse_frame
from contract.audio import CHANNELS, RATE, WIDTH
from contract.stream import FORMAT, UtteranceEnd, UtteranceStart
from simulator.bench.ingest import proc_status_kb
from simulator.fleet.embedded import ServerProcess, embedded_backend, start_server_process

UID = "123e4567-e89b-12d3-a456-426614174000"


def wav_header(rate: int, data_len: int, *, channels: int = 1, width: int = 2) -> bytes:
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", (36 + data_len) & 0xFFFFFFFF, b"WAVE", b"fmt ", 16, 1,
                       channels, rate, rate * channels * width, channels * width, width * 8,
                       b"data", data_len)


# (name, the one binary frame sent as "audio")
PCM_CORPUS: list[tuple[str, bytes]] = [
    ("wav header, truthful", wav_header(RATE, 3200) + pcm_bytes(1, 1600)),
    ("wav header lying about 48 kHz stereo", wav_header(48000, 10**9, channels=2) + pcm_bytes(2, 800)),
    ("wav header claiming 4 GiB", wav_header(RATE, 0xFFFFFFFF)),
    ("wav header truncated to 20 bytes", wav_header(RATE, 3200)[:20]),
    ("wav header truncated to 43 bytes", wav_header(RATE, 3200)[:43]),
    ("RIFF magic only", b"RIFF"),
    ("a single byte", b"\x00"),
    ("empty frame", b""),
    ("0xFF noise", b"\xff" * 4096),
    ("ID3 tag of an mp3", b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\x00" * 22),
]


async def _stored_pcm(api: Api, user_token: str, recording_id: str) -> bytes:
    import io
    import wave

    _, wav = await api.call("GET", f"/v1/me/recordings/{recording_id}/audio", token=user_token,
                            expect=200)
    with wave.open(io.BytesIO(wav), "rb") as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (RATE, WIDTH, CHANNELS)
        return w.readframes(w.getnframes())


async def _count(api: Api, user_token: str) -> int:
    _, body = await api.call("GET", "/v1/me/recordings?limit=500", token=user_token, expect=200)
    return len(body["recordings"])


async def _device(api: Api, serial: str) -> tuple[dict[str, Any], dict[str, Any]]:
    acc = await api.create_account(name="Hanna Hostile")
    dev = await api.register_device(acc["account_id"], serial)
    return acc, dev


@pytest.mark.parametrize("name,frame", PCM_CORPUS, ids=[n for n, _ in PCM_CORPUS])
async def test_headers_as_pcm_are_bytes_stored_as_sent_or_refused(
        api: Api, name: str, frame: bytes) -> None:
    acc, dev = await _device(api, "G0HOSTILE01")
    ws = await api.device_ws(dev["device_token"])
    uid = str(uuid.uuid4())
    await ws.send_json({"type": "utterance.start", "utterance_id": uid,
                        "recorded_at": "2024-05-01T08:30:00Z",
                        "audio": FORMAT.model_dump()})
    await ws.send_bytes(frame)  # one frame, whatever it holds (also an empty one)
    await ws.send_json({"type": "utterance.end", "utterance_id": uid, "transcript": name,
                        "locale": "de-DE"})
    answer = await receive_json(ws)
    assert answer["utterance_id"] == uid
    if len(frame) % 2:
        assert (answer["type"], answer["code"]) == ("error", "odd_byte_count"), answer
        assert await _count(api, acc["user_token"]) == 0
    else:
        assert answer["type"] == "utterance.stored", answer
        assert await _stored_pcm(api, acc["user_token"], answer["recording_id"]) == frame
    # The connection survived: a good utterance still goes through.
    await send_utterance(ws, pcm_bytes(9, 800))
    assert (await receive_json(ws))["type"] == "utterance.stored"
    await ws.close()


@pytest.mark.parametrize("audio", [
    {"rate": 0, "width": 2, "channels": 1},
    {"rate": -RATE, "width": 2, "channels": 1},
    {"rate": 1, "width": 2, "channels": 1},
    {"rate": 44100, "width": 2, "channels": 1},
    {"rate": 2**63, "width": 2, "channels": 1},
    {"rate": 10**40, "width": 2, "channels": 1},
    {"rate": RATE, "width": 0, "channels": 1},
    {"rate": RATE, "width": 4, "channels": 1},
    {"rate": RATE, "width": 2, "channels": 0},
    {"rate": RATE, "width": 2, "channels": 2**31},
], ids=lambda a: f"{a['rate']}-{a['width']}-{a['channels']}")
async def test_zero_and_absurd_formats_are_unsupported(api: Api, audio: dict[str, int]) -> None:
    acc, dev = await _device(api, "G0HOSTILE02")
    ws = await api.device_ws(dev["device_token"])
    await ws.send_str(json.dumps({"type": "utterance.start", "utterance_id": UID,
                                  "recorded_at": "2024-05-01T08:30:00Z", "audio": audio}))
    await ws.send_bytes(pcm_bytes(3, 800))
    await ws.send_json({"type": "utterance.end", "utterance_id": UID, "transcript": "x",
                        "locale": "de-DE"})
    answer = await receive_json(ws)
    assert (answer["type"], answer["code"], answer["utterance_id"]) == ("error",
                                                                         "unsupported_format", UID)
    await send_utterance(ws, pcm_bytes(4, 800))
    assert (await receive_json(ws))["type"] == "utterance.stored"
    await ws.close()
    assert await _count(api, acc["user_token"]) == 1


TRANSCRIPTS: list[tuple[str, str]] = [
    ("combining marks", "Cafe\u0301 und Mu\u0308nchen, A\u030a"),
    ("already NFC", "Café und München"),
    ("right-to-left with override", "\u0645\u0631\u062d\u0628\u0627 \u202eabc\u202c \u05e9\u05dc\u05d5\u05dd"),
    ("emoji ZWJ sequence", "spiel \U0001f469\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 und \U0001f3f3\ufe0f\u200d\U0001f308"),
    ("noncharacter U+FFFF", "end\uffffhere"),
    ("astral plane", "\U0001d54f\U0001d56a\U0001d57a \U00010348"),
    ("zero width and BOM", "a\u200bb\ufeffc"),
    ("Hangul jamo compose", "\u1112\u1161\u11ab"),
]


async def test_unicode_transcripts_are_stored_as_their_nfc(api: Api) -> None:
    acc, dev = await _device(api, "G0HOSTILE03")
    ws = await api.device_ws(dev["device_token"])
    sent: dict[str, str] = {}
    for i, (_name, text) in enumerate(TRANSCRIPTS):
        uid = await send_utterance(ws, pcm_bytes(100 + i, 800), transcript=text)
        answer = await receive_json(ws)
        assert answer["type"] == "utterance.stored", (_name, answer)
        sent[answer["recording_id"]] = text
    # Lone surrogates and NUL are refused by code, written as raw JSON escapes on purpose.
    for raw in ('"half \\ud800 a pair"', '"\\udfff"', '"nul\\u0000byte"'):
        uid = str(uuid.uuid4())
        await ws.send_str(json.dumps({"type": "utterance.start", "utterance_id": uid,
                                      "recorded_at": "2024-05-01T08:30:00Z",
                                      "audio": FORMAT.model_dump()}))
        await ws.send_bytes(pcm_bytes(5, 800))
        await ws.send_str(f'{{"type":"utterance.end","utterance_id":"{uid}",'
                          f'"transcript":{raw},"locale":"de-DE"}}')
        answer = await receive_json(ws)
        assert (answer["type"], answer["code"], answer["utterance_id"]) == (
            "error", "invalid_text", uid), (raw, answer)
    await ws.close()
    _, page = await api.call("GET", "/v1/me/recordings?limit=500", token=acc["user_token"],
                             expect=200)
    got = {r["recording_id"]: r["transcript"] for r in page["recordings"]}
    assert got.keys() == sent.keys()  # nothing of the refused three
    for rid, text in sent.items():
        nfc = unicodedata.normalize("NFC", text)
        assert got[rid].encode("utf-8") == nfc.encode("utf-8"), (text, got[rid])
    assert got[next(r for r, t in sent.items() if t.startswith("Cafe"))] == "Café und München, Å"


async def test_hostile_json_bodies_get_400_not_500(api: Api) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
    bodies = [
        ('{"name": "\\ud800", "email": "a@example.org", "locale": "de-DE"}', "invalid_field"),
        ('{"name": "ok", "email": "a@example.org", "locale": "de-DE", "address": "a\\u0000b"}',
         "invalid_field"),
        ("[" * 100_000, "malformed_json"),
        ('{"name":' * 50_000, "malformed_json"),
        ("\xff\xfe{", "malformed_json"),
        ('{"name": "x", "email": "a@example.org", "locale": "de-DE", "extra": 1}',
         "invalid_field"),
        ('{"name": "x", "email": "a@example.org", "locale": 1e400}', "invalid_field"),
        ("null", "invalid_field"),
    ]
    for body, code in bodies:
        async with api.session.post(api.handle.url + "/v1/accounts",
                                    data=body.encode("utf-8", "surrogateescape"),
                                    headers=headers) as resp:
            out = await resp.json()
            assert (resp.status, out["error"]) == (400, code), (body[:60], out)
    _, health = await api.call("GET", "/healthz", token=None, expect=200)
    assert health["status"] == "ok"


def _rss_kb(pid: int) -> int:
    kb = proc_status_kb("VmRSS", pid)
    assert kb is not None, "no VmRSS"
    return kb


def _fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


@pytest.fixture
async def server(tmp_path: Path) -> Any:
    sp = await start_server_process(tmp_path / "data", admin_token=ADMIN_TOKEN)
    try:
        yield sp
    finally:
        sp.kill()
        await sp.wait()


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/<pid>/status")
async def test_oversize_frames_and_bodies_are_refused_with_bounded_memory(
        server: ServerProcess) -> None:
    url = server.handle.url
    pid = server.proc.pid
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:
        api = Api(session, server.handle)
        acc, dev = await _device(api, "G0HOSTILE04")
        # Warm up: a first round of everything, so allocator pools exist before measuring.
        for _ in range(2):
            async with session.post(url + "/v1/accounts", data=io.BytesIO(b" " * (2 << 20)),
                                    headers=headers) as resp:
                assert resp.status == 413
        before = _rss_kb(pid)
        for _ in range(25):
            # 8 MB with a Content-Length (refused by the declared length; asked first with
            # Expect: 100-continue, so the client never sends the body and no close races
            # its upload), and 8 MB chunked: read up to the 1 MB limit, then refused.
            async with session.post(url + "/v1/accounts", data=io.BytesIO(b"{" + b" " * (8 << 20) + b"}"),
                                    headers=headers, expect100=True) as resp:
                assert resp.status == 413, await resp.text()
                assert (await resp.json())["error"] == "too_large"

            async def chunked() -> Any:
                for _ in range(32):
                    yield b" " * (256 << 10)

            async with session.post(url + "/v1/privacy/requests", data=chunked(),
                                    headers={"Content-Type": "application/json"}) as resp:
                assert resp.status == 413
        ws = await api.device_ws(dev["device_token"])
        for _ in range(40):
            uid = str(uuid.uuid4())
            await ws.send_json({"type": "utterance.start", "utterance_id": uid,
                                "recorded_at": "2024-05-01T08:30:00Z",
                                "audio": FORMAT.model_dump()})
            await ws.send_bytes(b"\x00" * (64 * 1024 + 2))
            await ws.send_json({"type": "utterance.end", "utterance_id": uid,
                                "transcript": "zu groß", "locale": "de-DE"})
            answer = await receive_json(ws)
            assert (answer["code"], answer["utterance_id"]) == ("frame_too_large", uid)
        # Past 60 s of audio the utterance is refused; the server holds at most that much.
        uid = str(uuid.uuid4())
        await ws.send_json({"type": "utterance.start", "utterance_id": uid,
                            "recorded_at": "2024-05-01T08:30:00Z",
                            "audio": FORMAT.model_dump()})
        for _ in range(40):  # 40 × 64 KiB ≈ 82 s of audio
            await ws.send_bytes(b"\x01\x00" * (32 * 1024))
        await ws.send_json({"type": "utterance.end", "utterance_id": uid, "transcript": "lang",
                            "locale": "de-DE"})
        assert (await receive_json(ws))["code"] == "utterance_too_long"
        await ws.close()
        # A frame beyond the WebSocket message limit closes that socket, nothing more.
        for _ in range(5):
            ws = await api.device_ws(dev["device_token"])
            closing = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                       aiohttp.WSMsgType.CLOSING)
            try:
                await ws.send_bytes(b"\x00" * (1 << 20))
            except ConnectionError:
                # The server read the frame's header, saw its length and hung up while the
                # rest was still being written: the reader then ends with the lost connection.
                closing += (aiohttp.WSMsgType.ERROR,)
            msg = await ws.receive(timeout=10)
            assert msg.type in closing, msg
            await ws.close()
        after = _rss_kb(pid)
        assert await _count(api, acc["user_token"]) == 0
        _, health = await api.call("GET", "/healthz", token=None, expect=200)
    # ~240 MB of hostile bytes went in; the server kept at most a few MB of it.
    print(f"server RSS before {before / 1024:.1f} MB, after {after / 1024:.1f} MB")
    assert after - before < 32 * 1024, (before, after)


async def _trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   data: bytes, every: float) -> tuple[float, bytes]:
    """Send ``data`` a byte at a time (the attack's pace) until the server answers or hangs
    up; (seconds taken, what it answered)."""
    started = time.monotonic()
    answer = b""
    try:
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            try:
                answer = await asyncio.wait_for(reader.read(4096), every)
            except TimeoutError:
                continue  # no answer yet: go on trickling
            break  # an answer, or the server hung up (b"")
    except ConnectionError:
        pass
    finally:
        writer.close()
    return time.monotonic() - started, answer


@pytest.mark.slow
async def _raw_exchange(url: str, head: bytes, body: bytes | None = None) -> tuple[bytes, bytes]:
    """Send ``head``; if the server says ``100 Continue``, send ``body``. Returns the first
    answer's head, and the final answer (head and body, by its Content-Length)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head)
        first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        final = first
        if first.startswith(b"HTTP/1.1 100") and body is not None:
            writer.write(body)
            final = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        length = int(final.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
        return first, final + await asyncio.wait_for(reader.readexactly(length), 10)
    finally:
        writer.close()


async def test_expect_continue_refuses_an_oversize_body_before_it_is_sent(api: Api) -> None:
    url = api.handle.url
    auth = b"Authorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\n"
    # Declared 8 MB: 413 at once instead of 100 Continue, and the connection is closed.
    first, rest = await _raw_exchange(url, b"POST /v1/accounts HTTP/1.1\r\nHost: x\r\n" + auth +
                                      b"Content-Type: application/json\r\n"
                                      b"Content-Length: 8388608\r\nExpect: 100-continue\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 413"), first
    assert b"Connection: close" in first  # the body will not come: no reuse
    assert json.loads(rest.split(b"\r\n\r\n", 1)[1])["error"] == "too_large"
    assert b"8388608 bytes" in rest
    # Declared small: 100 Continue, then the body is read and the request served.
    body = json.dumps({"name": "Expecting", "email": "expect@example.org",
                       "locale": "de-DE"}).encode()
    first, rest = await _raw_exchange(url, b"POST /v1/accounts HTTP/1.1\r\nHost: x\r\n" + auth +
                                      b"Content-Type: application/json\r\nContent-Length: " +
                                      str(len(body)).encode() +
                                      b"\r\nExpect: 100-continue\r\n\r\n", body)
    assert first == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert rest.startswith(b"HTTP/1.1 201"), rest
    # An expectation the server does not know: 417.
    first, rest = await _raw_exchange(url, b"POST /v1/accounts HTTP/1.1\r\nHost: x\r\n" + auth +
                                      b"Content-Length: 2\r\nExpect: 200-ok\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 417"), first
    assert json.loads(rest.split(b"\r\n\r\n", 1)[1])["error"] == "expectation_failed"
    # Without Expect, a declared 8 MB body is refused by its length too, without reading it
    # into memory; the server reads and drops the rest so the client can see the answer.
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/v1/accounts", data=io.BytesIO(b" " * (8 << 20)),
                                headers={"Authorization": f"Bearer {ADMIN_TOKEN}",
                                         "Content-Type": "application/json"}) as resp:
            assert resp.status == 413
            assert "8388608 bytes" in (await resp.json())["message"]


async def test_slowloris_header_and_body_are_cut_off(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data", keepalive_timeout=1.0, body_timeout=1.0)
    async with embedded_backend(config) as handle:
        host, port = handle.url.removeprefix("http://").split(":")
        # A request header that never ends.
        reader, writer = await asyncio.open_connection(host, int(port))
        header = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200
        took, answer = await _trickle(reader, writer, header, 0.1)
        assert took < 5.0, took  # closed after ~1 s, not after 20 s of trickling
        assert answer == b"" or b"400" in answer.split(b"\r\n", 1)[0], answer[:100]
        # A body that never ends.
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /v1/accounts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\n"
                     b"Content-Length: 1000\r\n\r\n")
        took, answer = await _trickle(reader, writer, b'{"name": "' + b"s" * 900, 0.1)
        assert took < 5.0, took
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        # The handler is free at once; the socket goes after aiohttp's lingering read
        # (bounded, 10 s), and the client is told not to reuse it.
        assert b"Connection: close" in answer and b"body_timeout" in answer
        # And the server still serves.
        async with aiohttp.ClientSession() as session:
            async with session.get(handle.url + "/healthz") as resp:
                assert resp.status == 200


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="counts /proc/<pid>/fd")
async def test_a_thousand_connections_dropped_leave_nothing_behind(server: ServerProcess) -> None:
    host, port = server.handle.url.removeprefix("http://").split(":")
    pid = server.proc.pid
    async with aiohttp.ClientSession() as session:
        async with session.get(server.handle.url + "/healthz") as resp:
            assert resp.status == 200
    baseline = _fds(pid)
    opened = 0
    for round_ in range(5):
        conns = await asyncio.gather(*(asyncio.open_connection(host, int(port))
                                       for _ in range(200)))
        for i, (_reader, writer) in enumerate(conns):
            kind = (i + round_) % 4
            if kind == 1:
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # half a request
            elif kind == 2:
                writer.write(b"GET /v1/device/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
            elif kind == 3:  # reset instead of a clean close
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await asyncio.gather(*(w.drain() for _r, w in conns), return_exceptions=True)
        for _reader, writer in conns:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for _r, w in conns), return_exceptions=True)
        opened += len(conns)
    assert opened == 1000
    async with aiohttp.ClientSession() as session:
        async with session.get(server.handle.url + "/healthz") as resp:
            assert resp.status == 200
            assert (await resp.json())["status"] == "ok"
    # The server notices each hang-up; wait (bounded) until its descriptors are back.
    deadline = time.monotonic() + 10
    while _fds(pid) > baseline + 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert _fds(pid) <= baseline + 2, (baseline, _fds(pid))


# -- the parser, fuzzed -------------------------------------------------------------------

CODES = {"malformed_json", "unknown_type", "invalid_uuid", "unsupported_format",
         "transcript_too_long", "invalid_text", "invalid_field"}

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                    st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
KEYS = ["type", "utterance_id", "recorded_at", "audio", "transcript", "locale", "rate",
        "width", "channels", "extra"]


def _frame_like() -> st.SearchStrategy[Any]:
    good_start = {"type": "utterance.start", "utterance_id": UID,
                  "recorded_at": "2024-05-01T08:30:00Z",
                  "audio": FORMAT.model_dump()}
    good_end = {"type": "utterance.end", "utterance_id": UID, "transcript": "hallo",
                "locale": "de-DE"}
    mutated = st.tuples(st.sampled_from([good_start, good_end]),
                        st.dictionaries(st.sampled_from(KEYS), values, max_size=3),
                        st.lists(st.sampled_from(KEYS), max_size=2)).map(
        lambda t: {**{k: v for k, v in t[0].items() if k not in t[2]}, **t[1]})
    return st.one_of(mutated, st.dictionaries(st.sampled_from(KEYS), values, max_size=6), values)


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_frame_like().map(lambda v: json.dumps(v)), st.text(max_size=200),
                 st.binary(max_size=64).map(lambda b: b.decode("latin-1"))))
def test_the_parser_returns_a_message_or_a_protocol_error(text: str) -> None:
    try:
        msg = parse_frame(text)
    except ProtocolError as exc:
        assert exc.code in CODES, exc.code
        assert exc.message
        return
    assert isinstance(msg, UtteranceStart | UtteranceEnd)
    # What parses round-trips: its own JSON parses to the same message.
    assert parse_frame(msg.to_json()) == msg
