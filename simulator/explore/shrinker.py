"""Shrinking: reduce a violating scenario while it still violates the same invariant.

Greedy and deterministic: candidates are tried in a fixed order (drop a step, drop a
household and every step that names it, drop a fault, fewer recordings, members, devices
and background households, shorter traffic) and the first that still fails is kept, until no
candidate fails or the budget of runs is spent. Several candidates may be played at once;
the answer is still the first failing one in that order.

Guards are never dropped: with guards on, a violation is a guard's escape, and a guard
that failed to stop it changes nothing while it is broken, so dropping it would "shrink"
the file into one that still fails once the guard is fixed.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from pydantic import ValidationError

from simulator.explore.play import Outcome, play, with_only
from simulator.scenario.model import Scenario

Raw = dict[str, Any]
Player = Callable[[Raw], Awaitable[Outcome]]


def _names(step: dict[str, Any]) -> set[str]:
    """Household keys a step refers to."""
    out: set[str] = set()
    for k in ("household", "to", "email_of", "link_of", "by", "households"):
        v = step.get(k)
        if isinstance(v, str):
            out.add(v)
        elif isinstance(v, list):
            out.update(v)
    return out


def _drop_household(raw: Raw, key: str) -> Raw:
    out = copy.deepcopy(raw)
    out["household"] = [h for h in out["household"] if h["key"] != key]
    for h in out["household"]:
        if h.get("lookalike_of") == key:
            h.pop("lookalike_of")
    out["step"] = [s for s in out["step"] if key not in _names(s)]
    for p in out["faults"].values():
        if key in p.get("between", []) or key in (p.get("into"), p.get("from")):
            p.clear()
    return out


def candidates(raw: Raw) -> Iterator[Raw]:
    """Smaller variants of ``raw``, the biggest cuts first."""
    for h in raw["household"]:
        yield _drop_household(raw, h["key"])
    for i in range(len(raw["step"])):
        if raw["step"][i]["do"] == "wait":
            continue  # without it a download races the export job: the verdict would wobble
        yield {**raw, "step": raw["step"][:i] + raw["step"][i + 1:]}
    for name in raw["faults"]:
        yield {**raw, "faults": {k: v for k, v in raw["faults"].items() if k != name}}
    if raw["world"].get("background_households"):
        yield {**raw, "world": {**raw["world"], "background_households": 0}}
    for i, h in enumerate(raw["household"]):
        for field, smaller in (("recordings", (h.get("recordings") or 0) // 2),
                               ("members", 1), ("devices", min(h["devices"], 1))):
            if h.get(field) is not None and smaller < h[field]:
                homes = copy.deepcopy(raw["household"])
                homes[i][field] = smaller
                yield {**raw, "household": homes}
    for i, s in enumerate(raw["step"]):
        if s["do"] == "traffic" and s.get("days", 7) > 1:
            steps = copy.deepcopy(raw["step"])
            steps[i]["days"] = 1
            yield {**raw, "step": steps}


def _valid(raw: Raw) -> bool:
    try:
        Scenario.model_validate(raw)
    except ValidationError:
        return False
    return True


async def play_here(raw: Raw) -> Outcome:
    """Play a raw scenario in this event loop."""
    return await play(Scenario.model_validate(raw))


async def shrink(raw: Raw, invariant: str, budget: int = 60, player: Player = play_here,
                 window: int = 1) -> tuple[Raw, str]:
    """The smallest variant of ``raw`` found that still violates ``invariant``, and the
    violation's message in it.

    ``player`` plays a candidate (in this loop, or in a pool of processes), ``window``
    candidates at once. The result is the one-at-a-time search's whatever the window: the
    first failing candidate in order is taken, and the budget counts the runs that search
    would have made (what runs beyond it is work thrown away, not a different answer).
    """
    current = with_only(raw, invariant)
    outcome = await player(current)
    message = outcome.violated.get(invariant, "")
    runs = 1
    while runs < budget:
        tried, hit = await first_failing((c for c in candidates(current) if _valid(c)),
                                         invariant, budget - runs, player, window)
        runs += tried
        if hit is None:
            break
        current, message = hit
    return current, message


async def first_failing(cands: Iterator[Raw], invariant: str, limit: int, player: Player,
                        window: int) -> tuple[int, tuple[Raw, str] | None]:
    """Play ``cands`` in order, ``window`` at a time and at most ``limit`` of them, until one
    violates ``invariant``: ``(runs a one-at-a-time search makes, (that candidate, its
    message))``, or ``(runs, None)`` when none does."""
    order: list[Raw] = []
    pending: dict[int, asyncio.Future[Outcome]] = {}
    results: dict[int, Outcome] = {}
    decided = 0
    try:
        while True:
            while len(pending) < window and len(order) < limit:
                cand = next(cands, None)
                if cand is None:
                    limit = len(order)  # no more candidates
                    break
                pending[len(order)] = asyncio.ensure_future(player(cand))
                order.append(cand)
            while decided in results:
                got = results.pop(decided)
                decided += 1
                if invariant in got.violated:
                    return decided, (order[decided - 1], got.violated[invariant])
            if not pending:
                return decided, None
            done, _ = await asyncio.wait(pending.values(), return_when=asyncio.FIRST_COMPLETED)
            for i, fut in list(pending.items()):
                if fut in done:
                    results[i] = fut.result()
                    del pending[i]
    finally:
        # Runs started beyond the answer finish on their own; wait so none is left behind.
        if pending:
            await asyncio.gather(*pending.values(), return_exceptions=True)
