"""The fleet's one registration and one access flow, against a real embedded backend: what
the runner, the soak and the benches all call."""

from __future__ import annotations

import json
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend import Config
from contract.package import PROFILE
from simulator.fleet.access import (
    AccessOutcome,
    access_flow,
    code_in_mailbox,
    file_request,
    settle,
    verify,
)
from simulator.fleet.client import Client
from simulator.fleet.embedded import embedded_backend
from simulator.fleet.homes import Home, register_home, register_world
from simulator.fleet.ledger import Ledger
from simulator.fleet.streaming import pair_with_devices, stream
from simulator.judge.audit import audit_package
from simulator.world.households import HouseholdSpec, World

SPECS = [HouseholdSpec("stranger", members=2, devices=2, recordings=12),
         HouseholdSpec("requester", members=1, devices=1, recordings=6),
         HouseholdSpec("impostor", members=1, devices=0)]


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    config = Config(data_dir=tmp_path / "data", id_seed=3)
    async with embedded_backend(config) as handle, \
            Client(handle.url, handle.admin_token) as c:
        yield c


def _profile(package: Path) -> dict[str, object]:
    with zipfile.ZipFile(package) as z:
        return dict(json.loads(z.read(PROFILE)))


@pytest.mark.parametrize("seed", [3, 11])
async def test_the_flow_downloads_the_households_own_complete_package(
        client: Client, tmp_path: Path, seed: int) -> None:
    world = World.build(seed, "fr_FR", households=SPECS)
    homes = await register_world(client, world.households)
    assert [h.key for h in homes.values()] == ["stranger", "requester", "impostor"]
    assert set(homes["stranger"].devices) == {d.serial for d in world.household("stranger").devices}
    ledger = Ledger()
    await stream(client.base_url, pair_with_devices(world.traffic(3), homes), ledger,
                 seed=seed)
    assert ledger.counts()["ok"] == 18
    outcome = await access_flow(client, homes["requester"], tmp_path, AccessOutcome(),
                                polls=20, wait=5)
    assert outcome.filed is not None and outcome.status == "complete"
    assert outcome.package == tmp_path / f"{outcome.filed.request_id}.zip"
    audit = audit_package(outcome.package, ledger.entries(), subject_household="requester")
    assert audit.clean and audit.files == 6 and audit.missing == 0
    # registered with the holder's postal address (``overheard simulate``, the soak)
    assert _profile(outcome.package)["address"] == world.household("requester").holder.address


async def test_a_scenario_home_is_registered_without_an_address(client: Client,
                                                                tmp_path: Path) -> None:
    world = World.build(5, "de_DE", households=[HouseholdSpec("a", members=1, devices=1)])
    home = await register_home(client, Home(world.household("a")), with_address=False)
    assert home.account_id and home.user_token and len(home.devices) == 1
    outcome = await access_flow(client, home, tmp_path, AccessOutcome(), via="account",
                                polls=20, wait=5)
    assert outcome.status == "complete" and outcome.package is not None
    profile = _profile(outcome.package)
    assert profile["address"] is None and profile["email"] == world.household("a").holder.email


async def test_an_impostor_finds_no_code_in_his_own_mailbox(client: Client) -> None:
    world = World.build(8, "en_GB", households=SPECS)
    homes = await register_world(client, world.households)
    victim, impostor = homes["stranger"], homes["impostor"]
    # he types the victim's address and name into the web form
    filed = await file_request(client, impostor, "access", via="email",
                               email=victim.household.holder.email,
                               name=victim.household.holder.name)
    assert filed.status == "identity_unverified" and filed.email == victim.household.holder.email
    assert await verify(client, impostor, filed) is None
    # the code went to the victim's mailbox, where only the victim reads it
    assert await code_in_mailbox(client, victim.household.holder.email, filed.request_id)
    st = await settle(client, filed.request_id, filed.token, polls=1, wait=0)
    assert st is not None and st.status == "identity_unverified"


async def test_the_code_is_the_one_that_names_the_request(client: Client) -> None:
    world = World.build(9, "en_US", households=SPECS)
    homes = await register_world(client, world.households)
    home = homes["requester"]
    first = await file_request(client, home, "access", via="email")
    second = await file_request(client, home, "erasure", via="email")
    own = home.household.holder.email
    codes = {m.request_id: m.code for m in await client.outbox(to=own) if m.code}
    assert codes.keys() == {first.request_id, second.request_id}
    assert await code_in_mailbox(client, own, first.request_id) == codes[first.request_id]
    assert await code_in_mailbox(client, own, "req_unknown") == codes[second.request_id]
    answer = await verify(client, home, first)
    assert answer is not None and answer.status != "identity_unverified"
    assert await settle(client, first.request_id, first.token, polls=0, wait=0) is None
