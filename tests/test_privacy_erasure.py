"""Erasure: the subject's recordings, audio, packages and links are gone, down to the bytes of
the database file and its WAL; others' data stays; the audit keeps the fact, not the data."""

from __future__ import annotations

from pathlib import Path

from privacy_support import (
    access_signed_in,
    audit_entries,
    download,
    household,
    privacy_env,
)

SECRET = "Meine Geheimzahl ist 4711 Zebra Kolibri"
OTHER = "Erinnere mich an den Zahnarzt Pelikan"


def _db_bytes(data: Path) -> bytes:
    return b"".join(p.read_bytes() for p in data.glob("overheard.db*"))


async def test_erasure_leaves_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with privacy_env(tmp_path) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org", recordings=5, seed=1,
                                transcripts=[SECRET])
        bob = await household(env, "Bob Wagner", "bob@example.org", recordings=3, seed=2,
                              transcripts=[OTHER])
        access = await access_signed_in(env, alice)
        assert (await download(env, access["download_url"]))[0] == 200
        assert len(list((data / "packages").iterdir())) == 1
        alice_pcm = next(iter(alice.recordings.values()))["pcm"][1000:1064]
        assert SECRET.encode() in _db_bytes(data)

        st = await access_signed_in(env, alice, kind="erasure")
        assert st["status"] == "complete", st
        result = st["result"]
        assert result["verified"] is True
        assert result["erased"]["recordings"] == 5
        assert result["erased"]["packages"] == 1 and result["erased"]["links"] == 1
        assert not any(result["remaining"].values())
        assert result["wal_checkpointed"] is True

        raw = _db_bytes(data)
        assert SECRET.encode() not in raw
        assert alice_pcm not in raw
        assert OTHER.encode() in raw  # the scan does see data that is still there
        assert list((data / "packages").iterdir()) == []
        assert list((data / "staging").iterdir()) == []
        code, _, _ = await download(env, access["download_url"])
        assert code in (404, 410)
        _, body = await env.api.call("GET", "/v1/me/recordings", token=bob.user_token)
        assert {r["recording_id"] for r in body["recordings"]} == set(bob.recordings)

        done = await audit_entries(env, "erasure.completed")
        assert done[0]["detail"]["verified"] is True
        deleted = await audit_entries(env, "erasure.deleted")
        assert deleted[0]["detail"]["recordings"] == 5
        assert SECRET not in str(await audit_entries(env))
    raw = _db_bytes(data)
    assert SECRET.encode() not in raw and alice_pcm not in raw


async def test_partial_erasure_fault_and_its_guard(tmp_path: Path) -> None:
    faults = {"erasure.partial": {}}
    async with privacy_env(tmp_path, faults=faults) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org", recordings=2, seed=1)
        access = await access_signed_in(env, alice)
        st = await access_signed_in(env, alice, kind="erasure")
        assert st["result"]["verified"] is False
        assert st["result"]["remaining"]["package_files"] == 1
        assert (await download(env, access["download_url"]))[0] == 200  # still out there
    async with privacy_env(tmp_path / "guarded", faults=faults,
                           guards={"erasure.verify": {}}) as env:
        alice = await household(env, "Alice Wagner", "alice@example.org", recordings=2, seed=1)
        access = await access_signed_in(env, alice)
        st = await access_signed_in(env, alice, kind="erasure")
        assert st["result"]["verified"] is True
        assert (await download(env, access["download_url"]))[0] in (404, 410)
        _, alerts = await env.api.call("GET", "/v1/admin/alerts", expect=200)
        assert [a["guard"] for a in alerts["alerts"]] == ["erasure.verify"]
