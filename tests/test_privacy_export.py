"""Export jobs and the access package: the whole access flow, the zip's contents, restarts."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import sqlite_utils
from privacy_support import (
    access_by_email,
    access_signed_in,
    audit_entries,
    download,
    household,
    outbox,
    privacy_env,
    read_package,
    status,
)

from backend.privacy.export import StagingBarrier
from backend.storage.db import connect
from contract.audio import CHANNELS, RATE, WIDTH
from contract.package import FORMAT


async def test_full_access_flow_by_email(tmp_path: Path) -> None:
    async with privacy_env(tmp_path) as env:
        nasty = '<script>alert("x")</script> & "Wetter"'
        alice = await household(env, "Alice Wagner", "alice@example.org", recordings=6, seed=1,
                                transcripts=[nasty])
        bob = await household(env, "Bob Wagner", "bob@example.org", recordings=4, seed=2)

        rid, rtok, st = await access_by_email(env, alice)
        assert st["progress"] == {"done": 6, "total": 6}
        assert st["link"]["state"] == "active"
        url = st["download_url"]
        assert url.startswith("/v1/privacy/downloads/")
        mails = [m for m in await outbox(env, alice.email) if m.get("url")]
        assert [m["url"] for m in mails] == [url]
        assert not [m for m in await outbox(env, bob.email)]

        code, data, headers = await download(env, url)
        assert code == 200
        assert headers["Content-Disposition"].startswith("attachment")
        assert headers["Cache-Control"] == "no-store"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["X-Content-Type-Options"] == "nosniff"

        zf, manifest = read_package(data)
        assert manifest["format"] == FORMAT
        assert manifest["request_id"] == rid
        assert manifest["account_id"] == alice.account_id
        assert manifest["counts"]["recordings"] == 6
        names = set(zf.namelist())
        for required in ("manifest.json", "README.txt", "index.html", "account/profile.json",
                         "devices/devices.csv", "voice/transcripts.csv"):
            assert required in names
        # Every listed file is there with the listed hash and size, and nothing else is.
        listed = {f["path"]: f for f in manifest["files"]}
        assert set(listed) | {"manifest.json"} == names
        for path, f in listed.items():
            blob = zf.read(path)
            assert hashlib.sha256(blob).hexdigest() == f["sha256"], path
            assert len(blob) == f["bytes"]
            assert f["account_id"] == alice.account_id
        # The recordings are exactly Alice's, with her audio, as valid WAVs.
        wavs = {f["recording_id"]: f["path"] for f in manifest["files"] if f["recording_id"]}
        assert set(wavs) == set(alice.recordings)
        for rec_id, path in wavs.items():
            assert path == f"voice/recordings/{rec_id}.wav"
            assert zf.getinfo(path).compress_type == 0  # stored
            with wave.open(io.BytesIO(zf.read(path))) as w:
                assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (RATE, WIDTH, CHANNELS)
                pcm = w.readframes(w.getnframes())
            assert hashlib.sha256(pcm).hexdigest() == alice.recordings[rec_id]["pcm_sha256"]
        rows = list(csv.DictReader(io.StringIO(zf.read("voice/transcripts.csv").decode())))
        assert {r["recording_id"]: r["transcript"] for r in rows} == {
            k: v["transcript"] for k, v in alice.recordings.items()}
        assert all(r["file"] == wavs[r["recording_id"]] for r in rows)
        html = zf.read("index.html").decode()
        assert "<script>alert" not in html
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#34;Wetter&#34;" in html
        assert html.count("<audio ") == 6
        profile = zf.read("account/profile.json").decode()
        assert "alice@example.org" in profile and "bob" not in profile
        devices = list(csv.DictReader(io.StringIO(zf.read("devices/devices.csv").decode())))
        assert [d["device_id"] for d in devices] == [alice.device_id]

        built = await audit_entries(env, "package.built")
        assert len(built) == 1 and built[0]["object_id"] == rid
        assert built[0]["detail"]["manifest_sha256"] == hashlib.sha256(
            zf.read("manifest.json")).hexdigest()
        assert built[0]["detail"]["owners"] == {alice.account_id: 6}
        assert [e["detail"]["outcome"] for e in await audit_entries(env, "package.downloaded")] == ["ok"]
        # The requester token is needed to read the request; the download is not logged with it.
        assert (await status(env, rid, rtok))["status"] == "complete"


async def test_signed_in_access_and_range_request(tmp_path: Path) -> None:
    async with privacy_env(tmp_path) as env:
        carol = await household(env, "Carol Hahn", "carol@example.org", recordings=3, seed=3)
        st = await access_signed_in(env, carol)
        assert st["status"] == "complete"
        code, whole, _ = await download(env, st["download_url"])
        assert code == 200
        code, part, headers = await download(env, st["download_url"],
                                             headers={"Range": "bytes=10-109"})
        assert code == 206
        assert part == whole[10:110]
        assert headers["Cache-Control"] == "no-store"


async def test_account_without_recordings_gets_a_package(tmp_path: Path) -> None:
    async with privacy_env(tmp_path) as env:
        dora = await household(env, "Dora Roth", "dora@example.org")
        st = await access_signed_in(env, dora)
        assert st["status"] == "complete"
        _, data, _ = await download(env, st["download_url"])
        _, manifest = read_package(data)
        assert manifest["counts"]["recordings"] == 0
        assert manifest["subject"]["email"] == "dora@example.org"


async def test_interrupted_job_is_requeued_on_restart(tmp_path: Path) -> None:
    async with privacy_env(tmp_path) as env:
        erin = await household(env, "Erin Koch", "erin@example.org", recordings=3, seed=4)
        st = await access_signed_in(env, erin)
        assert st["status"] == "complete"
        request_id = st["request_id"]
    # As after a crash mid-build: the request is in_processing, a partial file is staged and
    # an orphan package file lies around.
    data = tmp_path / "data"
    db = connect(data / "overheard.db")
    db.execute("UPDATE privacy_requests SET status = 'in_processing', package_id = NULL")
    db.execute("DELETE FROM links")
    db.execute("DELETE FROM packages")
    db.conn.close()
    (data / "staging" / request_id).mkdir(parents=True)
    (data / "staging" / request_id / "x.zip.part").write_bytes(b"partial")
    orphans = list((data / "packages").iterdir())
    assert len(orphans) == 1
    async with privacy_env(tmp_path) as env:
        st = await status(env, request_id, erin.user_token, wait=30)
        assert st["status"] == "complete"
        requeued = await audit_entries(env, "export.requeued")
        assert [e["object_id"] for e in requeued] == [request_id]
        assert not orphans[0].exists()
        assert not (data / "staging" / request_id).exists()
        code, blob, _ = await download(env, st["download_url"])
        assert code == 200
        assert read_package(blob)[1]["counts"]["recordings"] == 3
    db = sqlite_utils.Database(data / "overheard.db")
    assert db.execute("SELECT attempts FROM privacy_requests").fetchone()[0] == 2
    db.conn.close()


async def test_job_over_its_attempts_becomes_error(tmp_path: Path) -> None:
    async with privacy_env(tmp_path, export_attempts=1) as env:
        fay = await household(env, "Fay Lang", "fay@example.org", recordings=1, seed=5)
        st = await access_signed_in(env, fay)
        request_id = st["request_id"]
    db = connect(tmp_path / "data" / "overheard.db")
    db.execute("UPDATE privacy_requests SET status = 'in_processing'")
    db.conn.close()
    async with privacy_env(tmp_path, export_attempts=1) as env:
        st = await status(env, request_id, fay.user_token, wait=30)
        assert st["status"] == "error"
        assert "interrupted" in st["error"]


async def test_device_history_join_fault_and_the_ownership_guard(tmp_path: Path) -> None:
    """After a resale the device-history query gives the buyer the seller's recordings, and
    the seller a package without them: nothing foreign in the seller's, yet it is short.
    The guard refuses both."""
    for guarded in (False, True):
        guards = {"export.ownership_check": {}} if guarded else {}
        async with privacy_env(tmp_path / str(guarded), guards=guards,
                               faults={"export.device_history_join": {}}) as env:
            seller = await household(env, "Sam Seller", "sam@example.org", recordings=4, seed=1)
            buyer = await household(env, "Bea Buyer", "bea@example.org", recordings=1, seed=2)
            # The seller's speaker is resold: the buyer registers the same serial.
            await env.api.register_device(buyer.account_id, seller.serial)
            st = await access_signed_in(env, buyer)
            sold = await access_signed_in(env, seller)
            if not guarded:
                _, data, _ = await download(env, st["download_url"])
                _, manifest = read_package(data)
                owners = {f["recording_id"]: f["account_id"] for f in manifest["files"]
                          if f["recording_id"]}
                # The seller's recordings came along, with the seller as their stored owner.
                assert owners == {**{r: seller.account_id for r in seller.recordings},
                                  **{r: buyer.account_id for r in buyer.recordings}}
                # And the seller's own package is clean-looking and empty.
                _, data, _ = await download(env, sold["download_url"])
                _, manifest = read_package(data)
                assert manifest["account_id"] == seller.account_id
                assert manifest["counts"]["recordings"] == 0
                continue
            for refused in (st, sold):
                assert refused["status"] == "pending" and "download_url" not in refused
            _, alerts = await env.api.call("GET", "/v1/admin/alerts", expect=200)
            by_account = {a["account_id"]: a for a in alerts["alerts"]}
            assert by_account[buyer.account_id]["detail"]["foreign"] == {seller.account_id: 4}
            short = by_account[seller.account_id]
            assert (short["detail"]["foreign"], short["detail"]["missing"]) == ({}, 4)
            assert "lacked 4 of the account's own recordings" in short["summary"]
            quarantined = await audit_entries(env, "package.quarantined")
            assert sorted(q["detail"]["missing"] for q in quarantined) == [0, 4]


async def test_cache_key_collision_fault_serves_the_first_package(tmp_path: Path) -> None:
    async with privacy_env(tmp_path, faults={"export.cache_key_collision": {}}) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org", recordings=2, seed=1)
        bob = await household(env, "Bob Wagner", "bob@example.org", recordings=3, seed=2)
        await access_signed_in(env, alice)
        st = await access_signed_in(env, bob)
        _, data, _ = await download(env, st["download_url"])
        _, manifest = read_package(data)
        assert manifest["account_id"] == alice.account_id  # bob got alice's package


async def test_the_ownership_guard_refuses_a_cached_package_of_another_profile(
        tmp_path: Path) -> None:
    """A wrongly cached package that holds no recordings at all, only the first requester's
    profile and device list, is still someone else's personal data."""
    for guarded in (False, True):
        guards = {"export.ownership_check": {}} if guarded else {}
        async with privacy_env(tmp_path / str(guarded), guards=guards,
                               faults={"export.cache_key_collision": {}}) as env:
            dora = await household(env, "Dora Roth", "dora@example.org")
            emil = await household(env, "Emil Roth", "emil@example.org")
            assert (await access_signed_in(env, dora))["status"] == "complete"
            st = await access_signed_in(env, emil)
            if not guarded:
                _, data, _ = await download(env, st["download_url"])
                zf, manifest = read_package(data)
                assert manifest["counts"]["recordings"] == 0
                assert json.loads(zf.read("account/profile.json"))["email"] == "dora@example.org"
                continue
            assert st["status"] == "pending" and "download_url" not in st
            _, alerts = await env.api.call("GET", "/v1/admin/alerts", expect=200)
            [alert] = alerts["alerts"]
            assert alert["account_id"] == emil.account_id
            assert alert["detail"]["foreign"] == {dora.account_id: 0}
            assert alert["detail"]["reused_from_cache"] is True


async def test_erasure_during_a_build_discards_the_package(tmp_path: Path) -> None:
    from backend.keys import STORE
    from backend.privacy.export import erased_since

    async with privacy_env(tmp_path) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org")
        store = env.app[STORE]
        seq = await store.read(lambda db: db.execute("SELECT MAX(seq) FROM audit_log").fetchone()[0])
        assert not await store.read(lambda db: erased_since(db, seq, {alice.account_id}))
        st = await access_signed_in(env, alice, kind="erasure")
        assert st["status"] == "complete"
        assert await store.read(lambda db: erased_since(db, seq, {alice.account_id}))
        assert not await store.read(lambda db: erased_since(db, seq, {"acc_other"}))


async def test_recordings_streamed_by_a_device_reach_the_package(tmp_path: Path) -> None:
    from conftest import pcm_bytes, receive_json, send_utterance

    async with privacy_env(tmp_path) as env:
        acc = await env.api.create_account(name="Gina Berg", email="gina@example.org")
        dev = await env.api.register_device(acc["account_id"], "G0WS0001")
        ws = await env.api.device_ws(dev["device_token"])
        sent = {}
        for i in range(3):
            pcm = pcm_bytes(100 + i)
            await send_utterance(ws, pcm, transcript=f"spiel Musik {i}")
            ack = await receive_json(ws)
            assert ack["type"] == "utterance.stored", ack
            sent[ack["recording_id"]] = pcm
        await ws.close()
        _, body = await env.api.call("POST", "/v1/privacy/requests", token=acc["user_token"],
                                     json_body={"kind": "access"}, expect=201)
        st = await status(env, body["request_id"], acc["user_token"], wait=30)
        _, data, _ = await download(env, st["download_url"])
        zf, manifest = read_package(data)
        assert {f["recording_id"] for f in manifest["files"] if f["recording_id"]} == set(sent)
        for rec_id, pcm in sent.items():
            with wave.open(io.BytesIO(zf.read(f"voice/recordings/{rec_id}.wav"))) as w:
                assert w.readframes(w.getnframes()) == pcm


def test_staging_barrier_meets_in_generations_and_releases_a_lone_job() -> None:
    """The shared-staging fault's barrier: jobs of a batch meet; a lone job goes on alone."""
    barrier, stop = StagingBarrier(), threading.Event()
    with ThreadPoolExecutor(4) as pool:
        first = [pool.submit(barrier.meet, "d", 2, 30, stop) for _ in range(2)]
        assert [f.result(timeout=30) for f in first] == [2, 2]
        # The next generation starts empty: the two before do not let a newcomer through.
        second = [pool.submit(barrier.meet, "d", 2, 30, stop) for _ in range(2)]
        assert [f.result(timeout=30) for f in second] == [2, 2]
    assert barrier.meet("d", 2, 0.01, stop) == 1  # nobody came: it zips alone
    stop.set()
    assert barrier.meet("e", 3, 30, stop) == 1  # shutdown never waits
