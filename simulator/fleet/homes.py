"""A household as the backend knows it, and the one place that registers households.

The world's :class:`~simulator.world.households.Household` is who lives there, what they
own and say. A :class:`Home` is that household once registered: the account the backend
gave it, the account's user token, each device's id and token, and the requests it filed.
The runner, ``overheard simulate``, the soak and the benches all register through
:func:`register_home` / :func:`register_world`, one household at a time in world order by
default (so a backend with a seeded id generator assigns the same ids every run).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from simulator.fleet.client import Client
from simulator.world.households import Device, Household


@dataclass(frozen=True)
class DeviceAccount:
    """A registered device: whose it truly is, and the token it streams with."""

    household: str
    account_id: str
    """The account the simulator registered it to: the true owner of what it hears."""
    serial: str
    device_id: str
    token: str


@dataclass(frozen=True)
class Filed:
    """A request as its requester holds it."""

    kind: str
    request_id: str
    status: str
    """The status the backend answered the filing with."""
    token: str
    """What the requester follows it with: the account's user token when signed in, the
    request's own requester token on the email path."""
    email: str
    """The address the request names (the holder's own when signed in)."""
    filed_at: str = ""
    """When it was filed, in simulated time (set by a filer that keeps the clock)."""


@dataclass
class Home:
    """A household as the backend knows it: account, user token, devices, requests."""

    household: Household
    account_id: str = ""
    user_token: str = ""
    devices: dict[str, DeviceAccount] = field(default_factory=dict)
    """serial → the registered device (the last registration of a serial wins)."""
    requests: dict[str, list[Filed]] = field(default_factory=dict)
    """kind → the requests filed, in filing order."""

    @property
    def key(self) -> str:
        return self.household.key


async def register_home(client: Client, home: Home, *, with_address: bool = True) -> Home:
    """Create the account of ``home``'s household and register each of its devices.

    ``with_address``: sign up with the holder's postal address (a scenario's accounts are
    made without one, as the bundled scenarios' packages were recorded)."""
    holder = home.household.holder
    address = holder.address if with_address else None
    acc = await client.create_account(holder.name, holder.email, home.household.phrasebook.tag,
                                      address=address)
    home.account_id = acc["account_id"]
    home.user_token = acc["user_token"]
    for d in home.household.devices:
        await register_device(client, home, d)
    return home


async def register_device(client: Client, home: Home, device: Device, *,
                          transfer: bool = False) -> DeviceAccount:
    """Register ``device`` to ``home``'s account and note it there (``transfer``: take it
    over from the account that holds it)."""
    extra: dict[str, Any] = {"transfer": True} if transfer else {}
    reg = await client.register_device(home.account_id, device.serial, device.model,
                                       device.room, **extra)
    acct = DeviceAccount(home.key, home.account_id, device.serial, reg["device_id"],
                         reg["device_token"])
    home.devices[device.serial] = acct
    return acct


async def register_world(client: Client, households: Iterable[Household], *,
                         at_once: int = 1) -> dict[str, Home]:
    """Register every household. One at a time by default, so that ids follow world order;
    ``at_once`` > 1 overlaps that many (ids then depend on timing)."""
    if at_once <= 1:
        return {h.key: await register_home(client, Home(h)) for h in households}
    limit = asyncio.Semaphore(at_once)

    async def one(h: Household) -> tuple[str, Home]:
        async with limit:
            return h.key, await register_home(client, Home(h))

    return dict(await asyncio.gather(*(one(h) for h in households)))
