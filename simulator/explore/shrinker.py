"""Shrinking: reduce a violating scenario while it still violates the same invariant.

Greedy and deterministic: candidates are tried in a fixed order (drop a step, drop a
household and every step that names it, drop a fault, fewer recordings, members, devices
and background households, shorter traffic) and the first that still fails is kept, until no
candidate fails or the budget of runs is spent.

Guards are never dropped: with guards on, a violation is a guard's escape, and a guard
that failed to stop it changes nothing while it is broken, so dropping it would "shrink"
the file into one that still fails once the guard is fixed.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from simulator.explore.play import Outcome, play, with_only
from simulator.scenario.model import Scenario

Raw = dict[str, Any]


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


def _valid(raw: Raw) -> Scenario | None:
    try:
        return Scenario.model_validate(raw)
    except ValidationError:
        return None


async def shrink(raw: Raw, invariant: str, budget: int = 60) -> tuple[Raw, str]:
    """The smallest variant of ``raw`` found that still violates ``invariant``, and the
    violation's message in it."""
    current = with_only(raw, invariant)
    outcome: Outcome = await play(Scenario.model_validate(current))
    message = outcome.violated.get(invariant, "")
    runs = 1
    improved = True
    while improved and runs < budget:
        improved = False
        for cand in candidates(current):
            scenario = _valid(cand)
            if scenario is None:
                continue
            runs += 1
            got = await play(scenario)
            if invariant in got.violated:
                current, message, improved = cand, got.violated[invariant], True
                break
            if runs >= budget:
                break
    return current, message
