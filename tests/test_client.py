"""The API client: thin methods over a real backend, errors carry the backend's code."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend import Config
from simulator.fleet.client import ApiError, Client, Unreachable
from simulator.fleet.embedded import BackendHandle, embedded_backend
from simulator.fleet.homes import register_world
from simulator.fleet.ledger import Ledger
from simulator.fleet.streaming import pair_with_devices, stream
from simulator.world.households import HouseholdSpec, World


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[BackendHandle]:
    async with embedded_backend(Config(data_dir=tmp_path / "data")) as handle:
        yield handle


async def test_admin_calls_and_error_codes(backend: BackendHandle) -> None:
    async with Client(backend.url, backend.admin_token) as c:
        assert (await c.healthz()) is not None
        assert "/v1/accounts" in (await c.openapi())["paths"]
        acc = await c.create_account("Jonas Becker", "jonas@example.org", "de-DE")
        assert acc["account_id"] and acc["user_token"]
        with pytest.raises(ApiError) as dup:
            await c.create_account("Jonas Becker", "jonas@example.org", "de-DE")
        assert dup.value.status == 409 and dup.value.code
        with pytest.raises(ApiError) as bad:
            await c.create_account("x", "not-an-email", "de-DE")
        assert bad.value.status == 400 and "email" in bad.value.message
        dev = await c.register_device(acc["account_id"], "G090LF0000000007", "Echo Dot (3rd Gen)",
                                      "kitchen")
        assert dev["device_id"] and dev["device_token"]
        await c.deregister_device(dev["device_id"])
        op = await c.create_operator("Ops One")
        assert op.operator_id and op.operator_token
        before = await c.get_clock()
        after = await c.advance_clock(3600)
        assert after > before
        faults = (await c.get_faults())["faults"]
        name = faults[0]["name"]
        switched = await c.put_faults({name: False})
        assert not next(f for f in switched["faults"] if f["name"] == name)["enabled"]
        with pytest.raises(ApiError) as unknown:
            await c.put_faults({"no.such_fault": True})
        assert unknown.value.status == 400
        assert isinstance(await c.outbox(to="jonas@example.org"), list)
        assert any(e.action == "operator.created" for e in (await c.audit()).entries)


async def test_tokens_are_per_call_and_not_leaked(backend: BackendHandle) -> None:
    async with Client(backend.url) as anon:
        with pytest.raises(ApiError) as no_token:
            await anon.create_account("A", "a@example.org", "de-DE")
        assert no_token.value.status == 401 and no_token.value.code == "unauthorized"
        with pytest.raises(ApiError) as link:
            await anon.download("not-a-real-link-token-secret")
        assert link.value.status in (404, 410)
        assert "secret" not in str(link.value) and "downloads/…" in str(link.value)


async def test_voice_history_pages_and_audio(backend: BackendHandle) -> None:
    world = World.build(2, "en_GB", households=[HouseholdSpec("x", members=1, devices=1,
                                                              recordings=7)])
    async with Client(backend.url, backend.admin_token) as c:
        regs = await register_world(c, world.households)
        ledger = Ledger()
        await stream(backend.url, pair_with_devices(world.traffic(1), regs), ledger)
        token = regs["x"].user_token
        page = await c.my_recordings(token, limit=3)
        assert len(page.recordings) == 3 and page.next_cursor
        every = [r async for r in c.iter_my_recordings(token, limit=3)]
        assert [r.recording_id for r in every] == [e.recording_id for e in ledger.entries()]
        wav = await c.recording_audio(token, every[0].recording_id)
        assert wav[:4] == b"RIFF"
        await c.delete_recording(token, every[0].recording_id)
        assert len(await c.all_my_recordings(token)) == 6
        with pytest.raises(ApiError) as gone:
            await c.recording_audio(token, every[0].recording_id)
        assert gone.value.status == 404


async def test_unreachable_backend() -> None:
    async with Client("http://127.0.0.1:9", "t", timeout=5) as c:
        with pytest.raises(Unreachable):
            await c.healthz()
