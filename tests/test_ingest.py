"""The device stream: acks after commit, idempotency, every refused input, bindings and faults."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import Api, make_config, pcm_bytes, receive_json, send_utterance

from backend.ids import token_hash
from backend.ingest.bindings import lookup_device
from backend.ingest.stream import RecordingRow, budget_of, digest, store_recordings
from backend.keys import CLOCK, STORE
from contract.audio import BYTES_PER_SECOND, RATE, WIDTH
from contract.stream import FORMAT, ErrorCode
from simulator.fleet.embedded import BackendHandle, embedded_backend

START = {"type": "utterance.start", "recorded_at": "2024-05-01T08:30:00Z",
         "audio": FORMAT.model_dump()}
END = {"type": "utterance.end", "transcript": "wie wird das Wetter", "locale": "de-DE"}


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[BackendHandle]:
    # One second of audio at most, so that the length limit is cheap to reach.
    async with embedded_backend(make_config(tmp_path / "data", max_utterance_seconds=1.0)) as h:
        yield h


async def rows(api: Api, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return await api.handle.app[STORE].read(  # type: ignore[index]
        lambda db: [tuple(r) for r in db.execute(sql, list(params)).fetchall()])


async def count_recordings(api: Api) -> tuple[int, int]:
    ((recs,),) = await rows(api, "SELECT count(*) FROM recordings")
    ((blobs,),) = await rows(api, "SELECT count(*) FROM audio")
    return recs, blobs


async def device(api: Api, serial: str = "SN-1") -> tuple[dict[str, Any], dict[str, Any]]:
    acc = await api.create_account()
    return acc, await api.register_device(acc["account_id"], serial)


async def metric(api: Api, line_start: str) -> float:
    _, text = await api.call("GET", "/metrics", token=None)
    for line in text.decode().splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    return 0.0


async def test_stream_is_stored_and_acknowledged(api: Api) -> None:
    acc, dev = await device(api)
    ws = await api.device_ws(dev["device_token"])
    pcm = pcm_bytes(7, RATE)  # 1 s
    uid = await send_utterance(ws, pcm, transcript="Cafe\u0301 öffnet um 8",
                               recorded_at="2024-05-01T10:30:00.5+02:00")
    ack = await receive_json(ws)
    assert ack == {"type": "utterance.stored", "utterance_id": uid,
                   "recording_id": ack["recording_id"], "duplicate": False}
    assert ack["recording_id"].startswith("rec_")
    ((account, device_id, recorded_at, duration, transcript, size, digest, blob),) = await rows(
        api, "SELECT r.account_id, r.device_id, r.recorded_at, r.duration_ms, r.transcript,"
        " r.pcm_bytes, r.pcm_sha256, a.pcm FROM recordings r JOIN audio a USING (recording_id)")
    assert (account, device_id) == (acc["account_id"], dev["device_id"])
    assert recorded_at == "2024-05-01T08:30:00.500Z"
    assert duration == 1000 and size == len(pcm)
    assert transcript == "Café öffnet um 8"  # NFC
    assert digest == hashlib.sha256(pcm).hexdigest() and blob == pcm
    assert await metric(api, "overheard_utterances_stored_total") == 1
    assert await metric(api, "overheard_audio_bytes_stored_total") == len(pcm)
    await ws.close()


async def test_duplicate_utterance_is_stored_once(api: Api) -> None:
    _, dev = await device(api)
    ws = await api.device_ws(dev["device_token"])
    uid = str(uuid.uuid4())
    await send_utterance(ws, pcm_bytes(1), utterance_id=uid)
    first = await receive_json(ws)
    # A retry, on a new connection as after a lost ack, with different bytes even.
    ws2 = await api.device_ws(dev["device_token"])
    await send_utterance(ws2, pcm_bytes(2), utterance_id=uid.upper())
    second = await receive_json(ws2)
    assert second["duplicate"] is True and first["duplicate"] is False
    assert second["recording_id"] == first["recording_id"]
    assert await count_recordings(api) == (1, 1)
    ((digest,),) = await rows(api, "SELECT pcm_sha256 FROM recordings")
    assert digest == hashlib.sha256(pcm_bytes(1)).hexdigest()
    assert await metric(api, "overheard_utterance_duplicates_total") == 1
    await ws.close()
    await ws2.close()


async def test_utterance_id_of_another_account_is_a_conflict(api: Api) -> None:
    _, first = await device(api, "SN-1")
    _, second = await device(api, "SN-2")
    uid = str(uuid.uuid4())
    ws = await api.device_ws(first["device_token"])
    await send_utterance(ws, pcm_bytes(1), utterance_id=uid)
    assert (await receive_json(ws))["duplicate"] is False
    ws2 = await api.device_ws(second["device_token"])
    await send_utterance(ws2, pcm_bytes(2), utterance_id=uid)
    err = await receive_json(ws2)
    assert (err["type"], err["code"], err["utterance_id"]) == ("error", "utterance_conflict", uid)
    assert await count_recordings(api) == (1, 1)
    await send_utterance(ws2, pcm_bytes(3))  # the connection survives
    assert (await receive_json(ws2))["type"] == "utterance.stored"
    await ws.close()
    await ws2.close()


async def test_pipelined_utterances_are_acked_in_order(api: Api) -> None:
    _, dev = await device(api)
    ws = await api.device_ws(dev["device_token"])
    sent = [await send_utterance(ws, pcm_bytes(i), chunk=1000) for i in range(12)]
    acks = [await receive_json(ws) for _ in sent]
    assert [a["utterance_id"] for a in acks] == sent
    assert await count_recordings(api) == (12, 12)
    await ws.close()


def frames_for(case: str, uid: str) -> list[Any]:
    """The frames of one broken utterance; each must yield exactly one error."""
    start = {**START, "utterance_id": uid}
    end = {**END, "utterance_id": uid}
    pcm = b"\x01\x00" * 100
    return {
        "malformed_json": [start, pcm, "{this is not json"],
        "unknown_type": [start, pcm, {"type": "utterance.pause", "utterance_id": uid}],
        "binary_before_start": [pcm, pcm, end],
        "end_without_start": [end],
        "unsupported_format": [{**start, "audio": {"rate": 8000, "width": 2, "channels": 1}},
                               pcm, end],
        "odd_byte_count": [start, b"\x01\x02\x03", pcm, end],
        "utterance_too_long": [start, b"\x00" * BYTES_PER_SECOND, b"\x00\x00", end],
        "frame_too_large": [start, b"\x00" * (64 * 1024 + 2), end],
        "transcript_too_long": [start, pcm, {**end, "transcript": "ä" * 2049}],
        "invalid_text": [start, pcm, {**end, "transcript": "a\x00b"}],
        "invalid_uuid": [{**start, "utterance_id": "not-a-uuid"}, pcm,
                         {**end, "utterance_id": "not-a-uuid"}],
        "invalid_field": [start, pcm, {**end, "locale": "Deutsch"}],
    }[case]


CASES = ["malformed_json", "unknown_type", "binary_before_start", "end_without_start",
         "unsupported_format", "odd_byte_count", "utterance_too_long", "frame_too_large",
         "transcript_too_long", "invalid_text", "invalid_uuid", "invalid_field"]


async def send_frames(ws: aiohttp.ClientWebSocketResponse, frames: list[Any]) -> None:
    for frame in frames:
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)
        elif isinstance(frame, str):
            await ws.send_str(frame)
        else:
            await ws.send_json(frame)


@pytest.mark.parametrize("case", CASES)
async def test_bad_input_gets_its_code_and_stores_nothing(api: Api, case: str) -> None:
    _, dev = await device(api)
    ws = await api.device_ws(dev["device_token"])
    uid = str(uuid.uuid4())
    await send_frames(ws, frames_for(case, uid))
    err = await receive_json(ws)
    assert err["type"] == "error" and err["code"] == case, err
    assert err["message"]
    if case not in ("binary_before_start", "invalid_uuid", "malformed_json", "unknown_type"):
        assert err["utterance_id"] == uid
    assert await count_recordings(api) == (0, 0)
    # The connection survives, and the very next answer is the next utterance's ack:
    # the rest of the broken utterance produced no second error.
    good = await send_utterance(ws, pcm_bytes(3))
    ack = await receive_json(ws)
    assert (ack["type"], ack["utterance_id"]) == ("utterance.stored", good)
    assert await count_recordings(api) == (1, 1)
    assert await metric(api, f'overheard_ingest_rejects_total{{code="{case}"}}') == 1
    await ws.close()


async def test_lone_surrogate_in_transcript_is_invalid_text(api: Api) -> None:
    _, dev = await device(api)
    ws = await api.device_ws(dev["device_token"])
    uid = str(uuid.uuid4())
    # json.dumps escapes the lone surrogate as \ud800, which is valid JSON text.
    end = json.dumps({**END, "utterance_id": uid, "transcript": "a\ud800"})
    assert "\\ud800" in end
    await send_frames(ws, [{**START, "utterance_id": uid}, b"\x00\x00", end])
    err = await receive_json(ws)
    assert (err["code"], err["utterance_id"]) == ("invalid_text", uid)
    assert await count_recordings(api) == (0, 0)
    await ws.close()


@pytest.mark.parametrize("start", [
    {"recorded_at": "2024-05-01"},
    {"recorded_at": "2024-05-01T08:30:00"},
    {"recorded_at": "yesterday"},
    {"audio": {"rate": str(RATE), "width": 2, "channels": 1}},
    {"audio": {"rate": RATE, "width": WIDTH}},
    {"extra": 1},
])
async def test_bad_start_fields_are_invalid_field(api: Api, start: dict[str, Any]) -> None:
    _, dev = await device(api)
    ws = await api.device_ws(dev["device_token"])
    uid = str(uuid.uuid4())
    await send_frames(ws, [{**START, "utterance_id": uid, **start}, b"\x00\x00",
                           {**END, "utterance_id": uid}])
    err = await receive_json(ws)
    assert (err["code"], err["utterance_id"]) == ("invalid_field", uid)
    good = await send_utterance(ws, pcm_bytes(4))
    assert (await receive_json(ws))["utterance_id"] == good
    assert await count_recordings(api) == (1, 1)
    await ws.close()


async def test_transcript_at_the_limit_is_accepted(api: Api) -> None:
    _, dev = await device(api)
    ws = await api.device_ws(dev["device_token"])
    await send_utterance(ws, pcm_bytes(5), transcript="ä" * 2048)  # exactly 4096 bytes
    assert (await receive_json(ws))["type"] == "utterance.stored"
    await ws.close()


async def test_start_before_end_discards_the_open_utterance(api: Api) -> None:
    _, dev = await device(api)
    ws = await api.device_ws(dev["device_token"])
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    await send_frames(ws, [{**START, "utterance_id": first}, pcm_bytes(1),
                           {**START, "utterance_id": second}, pcm_bytes(2),
                           {**END, "utterance_id": second}])
    err = await receive_json(ws)
    assert (err["code"], err["utterance_id"]) == ("start_before_end", first)
    ack = await receive_json(ws)
    assert (ack["type"], ack["utterance_id"]) == ("utterance.stored", second)
    ((digest,),) = await rows(api, "SELECT pcm_sha256 FROM recordings")
    assert digest == hashlib.sha256(pcm_bytes(2)).hexdigest()
    await ws.close()


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer dvt_unknown"},
                                     {"Authorization": "Basic abc"}])
async def test_upgrade_without_a_device_token_is_401(api: Api, headers: dict[str, str]) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await api.session.ws_connect(api.handle.url + "/v1/device/stream", headers=headers)
    assert caught.value.status == 401


async def test_user_token_cannot_stream(api: Api) -> None:
    acc = await api.create_account()
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await api.device_ws(acc["user_token"])
    assert caught.value.status == 401


async def test_plain_get_is_refused(api: Api) -> None:
    _, dev = await device(api)
    status, body = await api.call("GET", "/v1/device/stream", token=dev["device_token"])
    assert (status, body["error"]) == (400, "upgrade_required")


async def test_concurrent_devices_store_under_their_own_accounts(api: Api) -> None:
    devices = [await device(api, f"SN-{n}") for n in range(16)]

    async def run(acc: dict[str, Any], dev: dict[str, Any], n: int) -> list[str]:
        ws = await api.device_ws(dev["device_token"])
        got = []
        for k in range(6):
            uid = await send_utterance(ws, pcm_bytes(100 * n + k, 800))
            ack = await receive_json(ws)
            assert ack["utterance_id"] == uid
            got.append(ack["recording_id"])
        await ws.close()
        return got

    results = await asyncio.gather(*(run(a, d, n) for n, (a, d) in enumerate(devices)))
    for (acc, _), recording_ids in zip(devices, results, strict=True):
        stored = await rows(api, "SELECT recording_id FROM recordings WHERE account_id = ?",
                            (acc["account_id"],))
        assert sorted(r[0] for r in stored) == sorted(recording_ids)
    assert await count_recordings(api) == (96, 96)


async def test_revoked_while_streaming_stores_nothing_more(api: Api) -> None:
    seller, dev = await device(api, "SN-SOLD")
    buyer = await api.create_account(name="Buyer")
    ws = await api.device_ws(dev["device_token"])
    await send_utterance(ws, pcm_bytes(1))
    assert (await receive_json(ws))["type"] == "utterance.stored"
    await api.register_device(buyer["account_id"], "SN-SOLD")
    uid = await send_utterance(ws, pcm_bytes(2))
    err = await receive_json(ws)
    assert (err["code"], err["utterance_id"]) == ("device_revoked", uid)
    closing = await ws.receive(timeout=10)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    stored = await rows(api, "SELECT account_id FROM recordings")
    assert stored == [(seller["account_id"],)]


async def test_idle_stream_is_closed(tmp_path: Path) -> None:
    async with embedded_backend(make_config(tmp_path / "d", ws_idle_timeout=0.2)) as handle, \
            aiohttp.ClientSession() as session:
        api = Api(session, handle)
        _, dev = await device(api)
        ws = await api.device_ws(dev["device_token"])
        err = await receive_json(ws)
        assert err["code"] == "idle_timeout"
        closing = await ws.receive(timeout=10)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_server_survives_a_frame_beyond_the_message_limit(api: Api) -> None:
    _, dev = await device(api)
    ws = await api.device_ws(dev["device_token"])
    await ws.send_json({**START, "utterance_id": str(uuid.uuid4())})
    await ws.send_bytes(b"\x00" * (1024 * 1024))
    closing = await ws.receive(timeout=10)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert await count_recordings(api) == (0, 0)
    ws2 = await api.device_ws(dev["device_token"])
    await send_utterance(ws2, pcm_bytes(1))
    assert (await receive_json(ws2))["type"] == "utterance.stored"
    await ws2.close()


# -- faults and the guard --------------------------------------------------------------

async def switch(api: Api, kind: str, name: str) -> None:
    await api.call("PUT", f"/v1/admin/{kind}s", expect=200,
                   json_body={"switches": [{"name": name, "enabled": True}]})


async def stream_one(api: Api, token: str, seed: int) -> dict[str, Any]:
    ws = await api.device_ws(token)
    await send_utterance(ws, pcm_bytes(seed))
    ack = await receive_json(ws)
    await ws.close()
    return ack


async def owner_of(api: Api, recording_id: str) -> str:
    ((account,),) = await rows(api, "SELECT account_id FROM recordings WHERE recording_id = ?",
                               (recording_id,))
    return str(account)


async def test_without_faults_a_resold_device_stores_for_the_buyer(api: Api) -> None:
    seller, old = await device(api, "SN-RESOLD")
    await stream_one(api, old["device_token"], 1)  # the binding is cached now
    buyer = await api.create_account(name="Buyer")
    new = await api.register_device(buyer["account_id"], "SN-RESOLD")
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await api.device_ws(old["device_token"])
    ack = await stream_one(api, new["device_token"], 2)
    assert await owner_of(api, ack["recording_id"]) == buyer["account_id"]


async def test_stale_binding_fault_lands_the_buyers_speech_with_the_seller(api: Api) -> None:
    await switch(api, "fault", "ingest.stale_binding")
    seller, old = await device(api, "SN-RESOLD")
    await stream_one(api, old["device_token"], 1)
    buyer = await api.create_account(name="Buyer")
    new = await api.register_device(buyer["account_id"], "SN-RESOLD")
    # The old token keeps working, and so does the cached serial binding for the new one.
    via_old = await stream_one(api, old["device_token"], 2)
    via_new = await stream_one(api, new["device_token"], 3)
    assert await owner_of(api, via_old["recording_id"]) == seller["account_id"]
    assert await owner_of(api, via_new["recording_id"]) == seller["account_id"]
    _, hist = await api.call("GET", f"/v1/accounts/{buyer['account_id']}/bindings")
    assert hist["bindings"][0]["bound_to"] is None  # the tables say the buyer owns it


async def test_guard_stops_the_stale_binding_fault(api: Api) -> None:
    await switch(api, "fault", "ingest.stale_binding")
    await switch(api, "guard", "binding.revoke_on_transfer")
    _, old = await device(api, "SN-RESOLD")
    await stream_one(api, old["device_token"], 1)
    buyer = await api.create_account(name="Buyer")
    new = await api.register_device(buyer["account_id"], "SN-RESOLD", transfer=True)
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await api.device_ws(old["device_token"])
    assert caught.value.status == 401
    ack = await stream_one(api, new["device_token"], 2)
    assert await owner_of(api, ack["recording_id"]) == buyer["account_id"]


async def test_serial_collision_fault_stores_the_second_household_under_the_first(
        api: Api) -> None:
    await switch(api, "fault", "ingest.serial_collision")
    first, _a = await device(api, "SN-TWIN")
    second = await api.create_account(name="Second")
    b = await api.register_device(second["account_id"], "SN-TWIN")
    ack = await stream_one(api, b["device_token"], 9)
    assert await owner_of(api, ack["recording_id"]) == first["account_id"]
    _, mine = await api.call("GET", "/v1/me/recordings", token=second["user_token"])
    assert mine["recordings"] == []


async def test_stream_route_is_documented(api: Api) -> None:
    _, spec = await api.call("GET", "/openapi.json", token=None)
    op = spec["paths"]["/v1/device/stream"]["get"]
    assert op["x-roles"] == ["device"] and "401" in op["responses"]


async def test_audio_in_flight_is_capped_across_streams(tmp_path: Path) -> None:
    """Many pipelining devices against a cap of three utterances: every one is acked, and
    the bytes waiting for a commit never exceed the cap (streams wait instead)."""
    size = 3200  # bytes of PCM per utterance
    cap = 3 * size
    config = make_config(tmp_path / "d", max_audio_in_flight_bytes=cap)
    async with embedded_backend(config) as handle, aiohttp.ClientSession() as session:
        api = Api(session, handle)
        app = handle.app
        assert app is not None
        budget = budget_of(app)
        seen: list[int] = []
        waiting = asyncio.Event()

        def on_wait() -> None:
            seen.append(budget.used)
            waiting.set()

        budget.on_wait = on_wait
        devices = [await device(api, f"SN-{n}") for n in range(12)]
        sockets = [await api.device_ws(dev["device_token"]) for _, dev in devices]
        # Hold the writer so that nothing commits until streams have had to wait.
        gate = threading.Event()
        held = app[STORE].write(lambda db: gate.wait(60))
        try:
            sent = await asyncio.gather(*(
                asyncio.gather(*[send_utterance(ws, pcm_bytes(10 * n + k, size // 2))
                                 for k in range(4)])
                for n, ws in enumerate(sockets)))
            await asyncio.wait_for(waiting.wait(), 10)
            # Three utterances fill the cap; the rest wait unread in their sockets.
            assert await metric(api, "overheard_ingest_audio_bytes_in_flight") == cap
            assert await metric(api, "overheard_ingest_audio_budget_bytes") == cap
        finally:
            gate.set()
        assert await held is True

        async def acks(ws: aiohttp.ClientWebSocketResponse) -> list[str]:
            got = [await receive_json(ws) for _ in range(4)]
            assert {a["type"] for a in got} == {"utterance.stored"}
            return [a["utterance_id"] for a in got]

        acked = await asyncio.gather(*(acks(ws) for ws in sockets))
        assert [sorted(a) for a in acked] == [sorted(s) for s in sent]
        assert await count_recordings(api) == (48, 48)
        assert budget.waits >= 1 and seen and max(seen) <= cap
        assert budget.high_water == cap
        assert await metric(api, "overheard_ingest_audio_bytes_in_flight_max") == cap
        assert await metric(api, "overheard_ingest_audio_bytes_in_flight") == 0
        for ws in sockets:
            await ws.close()


async def test_utterance_larger_than_the_cap_is_let_through_alone(tmp_path: Path) -> None:
    async with embedded_backend(make_config(tmp_path / "d", max_audio_in_flight_bytes=1000)) \
            as handle, aiohttp.ClientSession() as session:
        api = Api(session, handle)
        _, dev = await device(api)
        ws = await api.device_ws(dev["device_token"])
        sent = [await send_utterance(ws, pcm_bytes(k)) for k in range(3)]  # 6,400 B each
        got = [await receive_json(ws) for _ in sent]
        assert [(a["type"], a["utterance_id"]) for a in got] == [
            ("utterance.stored", uid) for uid in sent]
        assert await metric(api, "overheard_ingest_audio_bytes_in_flight_max") == 6400
        await ws.close()


async def test_a_run_of_utterances_stores_as_if_one_after_another(api: Api) -> None:
    """The writer's grouped path: duplicates and conflicts inside one run, a revoked device."""
    acc_a, dev_a = await device(api, "SN-A")
    _, dev_b = await device(api, "SN-B")
    _, dev_c = await device(api, "SN-C")
    store = api.handle.app[STORE]  # type: ignore[index]
    clock = api.handle.app[CLOCK]  # type: ignore[index]
    bindings = {d["device_id"]: await store.read(
        lambda db, t=d["device_token"]: lookup_device(db, token_hash(t)))
        for d in (dev_a, dev_b, dev_c)}
    await api.call("DELETE", f"/v1/devices/{dev_c['device_id']}")

    def rec(dev: dict[str, Any], uid: str, seed: int) -> RecordingRow:
        pcm = pcm_bytes(seed)
        return RecordingRow(f"rec_run_{seed}", uid, bindings[dev["device_id"]],
                            "2024-05-01T08:30:00.000Z", clock, "hallo", "de-DE", pcm,
                            digest(pcm))

    u1, u2, u3 = (str(uuid.uuid4()) for _ in range(3))
    run = [rec(dev_a, u1, 1), rec(dev_a, u1, 2), rec(dev_b, u1, 3), rec(dev_c, u3, 4),
           rec(dev_a, u2, 5)]
    outcomes = await store.write(lambda db: store_recordings(db, run))
    assert [o[1] if o[0] else o[1].code for o in outcomes] == [
        ("rec_run_1", False), ("rec_run_1", True), "utterance_conflict", "device_revoked",
        ("rec_run_5", False)]
    stored = await rows(api, "SELECT r.recording_id, r.account_id, r.pcm_sha256, a.pcm"
                        " FROM recordings r JOIN audio a USING (recording_id) ORDER BY 1")
    assert stored == [
        ("rec_run_1", acc_a["account_id"], hashlib.sha256(pcm_bytes(1)).hexdigest(),
         pcm_bytes(1)),
        ("rec_run_5", acc_a["account_id"], hashlib.sha256(pcm_bytes(5)).hexdigest(),
         pcm_bytes(5))]


async def test_a_failed_disk_sync_is_refused_not_acknowledged(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed fdatasync of the WAL: the device gets storage_failed and 1013, the server
    reports itself degraded, reads go on, and further writes are refused."""
    from backend.storage import db as db_module

    acc, dev = await device(api)
    ws = await api.device_ws(dev["device_token"])
    await send_utterance(ws, pcm_bytes(1))
    assert (await receive_json(ws))["type"] == "utterance.stored"

    def broken_disk(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(db_module, "_fdatasync", broken_disk)
    uid = await send_utterance(ws, pcm_bytes(2))
    refused = await receive_json(ws)
    assert refused["type"] == "error" and refused["code"] == "storage_failed"
    assert refused["utterance_id"] == uid
    closing = await ws.receive(timeout=10)
    assert closing.type is aiohttp.WSMsgType.CLOSE
    assert closing.data == aiohttp.WSCloseCode.TRY_AGAIN_LATER
    status, health = await api.call("GET", "/healthz", token=None)
    assert status == 200 and health["status"] == "degraded"
    assert "Input/output error" in health["problem"]
    assert await metric(api, 'overheard_ingest_rejects_total{code="storage_failed"}') == 1
    # A new stream is refused at its first utterance; the account holder can still read.
    ws2 = await api.device_ws(dev["device_token"])
    await send_utterance(ws2, pcm_bytes(3))
    assert (await receive_json(ws2))["code"] == "storage_failed"
    closing = await ws2.receive(timeout=10)
    assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE,
                                            aiohttp.WSCloseCode.TRY_AGAIN_LATER)
    status, listing = await api.call("GET", "/v1/me/recordings", token=acc["user_token"])
    # Both are listed: the second committed before its sync failed; it was not acknowledged,
    # and a resend with its utterance_id would find it (idempotent), not store it twice.
    assert status == 200 and len(listing["recordings"]) == 2
    await ws.close()
    await ws2.close()


def test_readme_documents_every_device_error_code() -> None:
    """Every code the stream can send (the contract's enum, and the upgrade's HTTP codes
    found in the ingest sources) is in the README table."""
    import re

    root = Path(__file__).resolve().parent.parent
    source = "\n".join(p.read_text(encoding="utf-8")
                       for p in sorted((root / "backend" / "ingest").glob("*.py")))
    used = set(re.findall(r"ErrorCode\.([A-Z_]+)", source))
    assert used <= set(ErrorCode.__members__), used - set(ErrorCode.__members__)
    assert len(used) >= 12, sorted(used)  # the stream really refers to the enum
    sent = {code.value for code in ErrorCode} | set(re.findall(r'\bcode="([a-z_]+)"', source))
    readme = (root / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Device stream errors"):readme.index("## Faults and guards")]
    assert len(sent) >= 20, sorted(sent)
    missing = sorted(code for code in sent if f"`{code}`" not in section)
    assert not missing, f"README does not document: {missing}"
