"""``overheard run FILE --interactive``: a person, not a script, works the review queue.

At the scenario's ``operator`` step the run mints an operator for the person (and a second
one for four-eyes reviews), prints the console's URL with a one-time sign-in link for each,
and waits until no request is left for review or the person presses "Done" in the
console. The wait is woken by the operator steps themselves
(:func:`backend.web.interactive.await_console`). The run then carries on with its
remaining steps and audits the packages exactly as after a scripted operator: a person who
assigns the wrong account makes the report find the leak.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from backend.web.interactive import await_console
from backend.web.pages import SESSIONS
from simulator.fleet.client import Client


@dataclass(frozen=True)
class Handoff:
    """What the person at the console needs: where to go and how to sign in."""

    console_url: str
    operator: str
    signin_url: str
    """One-time sign-in as ``operator`` (works once, for 15 minutes)."""
    second_operator: str
    second_signin_url: str
    """One-time sign-in as a second operator, for approvals held by four-eyes review."""
    operator_token: str
    """The operator's token, for the sign-in form once the link is used up."""


Announce = Callable[[Handoff], Awaitable[None]]


async def print_handoff(h: Handoff) -> None:
    """Tell the person at the terminal where the console is and how to sign in."""
    print("", file=sys.stderr, flush=True)
    print(f"  the review queue waits for you at {h.console_url}", file=sys.stderr, flush=True)
    print(f"  sign in once as {h.operator}: {h.signin_url}", file=sys.stderr, flush=True)
    print(f"  (or paste the operator token {h.operator_token})", file=sys.stderr, flush=True)
    print(f"  a second operator, for held approvals: {h.second_signin_url}",
          file=sys.stderr, flush=True)
    print("  the run carries on when no request is left for review, or when you press "
          "Done in the console", file=sys.stderr, flush=True)


async def hand_to_console(app: web.Application, url: str, client: Client, name: str,
                          announce: Announce) -> tuple[str, dict[str, str]]:
    """Mint the operators, announce the console, wait for the person; returns how the
    wait ended (``empty`` or ``done``) and the operator ids (for the timeline)."""
    first = await client.create_operator(name)
    second_name = f"{name} (second)"
    second = await client.create_operator(second_name)
    sessions = app[SESSIONS]
    once = sessions.one_time("console", first.operator_token)
    twice = sessions.one_time("console", second.operator_token)
    base = url.rstrip("/")
    await announce(Handoff(
        console_url=f"{base}/console/", operator=name,
        signin_url=f"{base}/console/signin/once/{once}", second_operator=second_name,
        second_signin_url=f"{base}/console/signin/once/{twice}",
        operator_token=first.operator_token))
    ended = await await_console(app)
    return ended, {first.operator_id: name, second.operator_id: second_name}


async def steps_taken(client: Client, operators: dict[str, str]) -> list[str]:
    """What the person did at the console, from the backend's audit log, in order."""
    out: list[str] = []
    after = 0
    while True:
        entries = (await client.audit(after=after, limit=5000)).entries
        for e in entries:
            who = operators.get(e.actor.removeprefix("operator:"))
            if who is not None and e.action != "ops.accounts.searched":
                detail = ", ".join(f"{k} {v}" for k, v in sorted(e.detail.items()))
                out.append(f"{who}: {e.action} {e.object_id or ''}"
                           + (f" ({detail})" if detail else ""))
        if len(entries) < 5000:
            return out
        after = entries[-1].seq
