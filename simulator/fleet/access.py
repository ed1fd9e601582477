"""The one place that drives privacy requests: file, read the code, verify, wait, download.

A requester files signed in (``via="account"``: the account's user token) or through the
web form (``via="email"``: an address, and the name typed with it). On the email path the
backend mails a code; the requester reads only their own mailbox and types the code they
find there. The request is then followed until it is finished or waits for a person, and
a finished access request's package is downloaded by its link (from the request's status,
or the newest link in a mailbox).

The scenario runner uses the steps one by one (its steps file, wait and download at
different simulated times, and it plays impersonators and misaddressed mail through the
parameters); the soak runs :func:`access_flow` end to end.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from simulator.fleet.api import Mail, RequestStatus
from simulator.fleet.client import Client
from simulator.fleet.homes import Filed, Home

Via = Literal["account", "email"]

TERMINAL = frozenset({"complete", "denied", "canceled", "error"})
"""Statuses a request never leaves."""
WAITING_FOR_A_PERSON = frozenset({"pending", "identity_unverified"})
"""Statuses a request leaves only when an operator or the requester acts."""


async def file_request(client: Client, home: Home, kind: str, *, via: Via = "account",
                       email: str | None = None, name: str | None = None,
                       contact: str | None = None) -> Filed:
    """``home`` files an ``access`` or ``erasure`` request.

    Signed in, ``contact`` is the contact address typed into the form (if any). On the
    email path, ``email`` is the address typed (default: the holder's own) and ``name``
    the name typed with it (None: left empty); an impersonator types someone else's.
    """
    own = home.household.holder.email
    if via == "account":
        res = await client.privacy_request(kind, user_token=home.user_token, email=contact)
        return Filed(kind, res.request_id, res.status, home.user_token, own)
    email = email or own
    extra: dict[str, Any] = {} if name is None else {"name": name}
    res = await client.privacy_request(kind, email=email, **extra)
    return Filed(kind, res.request_id, res.status, res.requester_token or "", email)


async def code_in_mailbox(client: Client, mailbox: str, request_id: str) -> str | None:
    """The code a person finds in ``mailbox`` for ``request_id``: the newest message that
    names the request, else the newest code there at all (they type what they have)."""
    messages = await client.outbox(to=mailbox)
    code = next((m.code for m in reversed(messages)
                 if m.code and request_id in (m.body + m.subject)), None)
    if code is None:
        code = next((m.code for m in reversed(messages) if m.code), None)
    return code


async def link_message(client: Client, mailbox: str) -> Mail | None:
    """The newest message in ``mailbox`` that carries a download link, whoever's request
    it answers."""
    return next((m for m in reversed(await client.outbox(to=mailbox)) if m.url), None)


async def link_in_mailbox(client: Client, mailbox: str) -> str | None:
    """The newest download link in ``mailbox``."""
    message = await link_message(client, mailbox)
    return None if message is None else message.url


async def verify(client: Client, home: Home, filed: Filed) -> RequestStatus | None:
    """Enter the code that reached ``home``'s own mailbox; the backend's answer, or None
    when no code reached it."""
    code = await code_in_mailbox(client, home.household.holder.email, filed.request_id)
    if code is None:
        return None
    return await client.verify_privacy_request(filed.request_id, code, token=filed.token)


async def settle(client: Client, request_id: str, token: str, *, polls: int,
                 wait: float) -> RequestStatus | None:
    """Long-poll (``polls`` times, ``wait`` seconds each) until the request is finished or
    waits for a person; its status then, or None if it still works after all the polls."""
    for _ in range(polls):
        st = await client.get_privacy_request(request_id, token=token, wait=wait)
        if st.status in TERMINAL or st.status in WAITING_FOR_A_PERSON:
            return st
    return None


@dataclass
class AccessOutcome:
    """What :func:`access_flow` got: the request, its last status and the package."""

    filed: Filed | None = None
    status: str = "not filed"
    """The request's last status, or why the flow stopped before it (``no_code``,
    ``unsettled``)."""
    package: Path | None = None


async def access_flow(client: Client, home: Home, folder: Path, outcome: AccessOutcome, *,
                      via: Via = "email", polls: int = 10, wait: float = 60) -> AccessOutcome:
    """An access request end to end: file, verify by the mailed code (email path), wait,
    download the package into ``folder`` as ``<request_id>.zip``. ``outcome`` is filled
    in as it goes, so a caller that stops the flow still sees how far it got."""
    filed = outcome.filed = await file_request(client, home, "access", via=via)
    outcome.status = filed.status
    if filed.status == "identity_unverified":
        if await verify(client, home, filed) is None:
            outcome.status = "no_code"
            return outcome
    st = await settle(client, filed.request_id, filed.token, polls=polls, wait=wait)
    if st is None:
        outcome.status = "unsettled"
        return outcome
    outcome.status = st.status
    if outcome.status == "complete" and st.download_url is not None:
        outcome.package = await client.download_to(st.download_url,
                                                   folder / f"{filed.request_id}.zip")
    return outcome
