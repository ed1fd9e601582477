"""Random scenarios from the full scenario vocabulary, each a valid :class:`Scenario`.

A scenario is a world (2-4 named households, small recording counts, a random locale), the
faults and guards asked for, and a timeline: traffic, then a few *motifs* (resale, a
duplicate serial, requests in flight together, the email path, impersonation, a misaddressed
contact, a guessed link, erasure then a stale download, four-eyes review, clock advances and
revokes), each a short run of steps that gives one fault its chance to fire. Everything is
drawn from ``random.Random(seed)``: the same seed gives the same scenario.

Sometimes (:data:`CRASH_RATE`, in every mode) the backend is also crashed at a named crash
point and restarted, right after the world motifs: either traffic passes an ingest point,
or everyone's access request passes an export point. That draw has a random stream of its
own, so the rest of each scenario is what it would be without it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from backend.crashpoints import POINTS
from backend.faults import FAULTS
from simulator.scenario.invariants import NAMES
from simulator.scenario.model import LOCALES, Scenario

Steps = list[dict[str, Any]]
Motif = Callable[[random.Random, list[dict[str, Any]], bool], Steps]


def _pick_two(rng: random.Random, homes: list[dict[str, Any]]) -> tuple[str, str]:
    a, b = rng.sample([h["key"] for h in homes], 2)
    return a, b


def _with_devices(homes: list[dict[str, Any]]) -> list[str]:
    return [h["key"] for h in homes if h["devices"] > 0]


def _served(review: bool) -> Steps:
    """An operator works the queue (when requests wait for one), then everything settles."""
    return ([{"do": "operator", "second": "Operator B"}] if review else []) + [{"do": "wait"}]


def m_pair(rng: random.Random, homes: list[dict[str, Any]], review: bool) -> Steps:
    a, b = _pick_two(rng, homes)
    return [{"do": "access_request", "by": [a, b]}, *_served(review),
            {"do": "download", "by": a}, {"do": "download", "by": b}]


def m_sequential(rng: random.Random, homes: list[dict[str, Any]], review: bool) -> Steps:
    a, b = _pick_two(rng, homes)
    return [{"do": "access_request", "by": a}, *_served(review), {"do": "download", "by": a},
            {"do": "access_request", "by": b, "at": rng.choice(["1h", "2h", "6h"])},
            *_served(review), {"do": "download", "by": b}]


def m_email(rng: random.Random, homes: list[dict[str, Any]], review: bool) -> Steps:
    a = rng.choice(homes)["key"]
    return [{"do": "access_request", "by": a, "via": "email"}, *_served(review),
            {"do": "download", "by": a}]


def m_impersonate(rng: random.Random, homes: list[dict[str, Any]], review: bool) -> Steps:
    attacker, victim = _pick_two(rng, homes)
    return [{"do": "access_request", "by": attacker, "email_of": victim}, *_served(review),
            {"do": "download", "by": attacker}]


def m_misaddressed(rng: random.Random, homes: list[dict[str, Any]], review: bool) -> Steps:
    a, b = _pick_two(rng, homes)
    email = next(h["email"] for h in homes if h["key"] == b)
    return [{"do": "access_request", "by": a, "contact": email}, *_served(review),
            {"do": "download", "by": b}]


def m_guess(rng: random.Random, homes: list[dict[str, Any]], review: bool) -> Steps:
    victim, prober = _pick_two(rng, homes)
    return [{"do": "access_request", "by": victim}, *_served(review),
            {"do": "access_request", "by": prober, "at": "1h"}, *_served(review),
            {"do": "download", "by": prober, "guess_next": True}]


def m_erasure(rng: random.Random, homes: list[dict[str, Any]], review: bool) -> Steps:
    a = rng.choice(homes)["key"]
    return [{"do": "access_request", "by": a}, *_served(review), {"do": "download", "by": a},
            {"do": "erasure_request", "by": a, "at": "1d"}, *_served(review),
            {"do": "download", "by": a, "at": "1h"}]


def m_forwarded(rng: random.Random, homes: list[dict[str, Any]], review: bool) -> Steps:
    a, b = _pick_two(rng, homes)
    return [{"do": "access_request", "by": a}, *_served(review),
            {"do": "download", "by": b, "link_of": a}]


def _speaks(homes: list[dict[str, Any]], key: str) -> None:
    """A household that gets a device speaks into it: one drawn without a device had 0
    recordings, and a resold or shared device nobody talks to shows nothing (and no crash
    step after it could pass an ingest point)."""
    home = next(h for h in homes if h["key"] == key)
    home["recordings"] = home["recordings"] or 3


def m_resale(rng: random.Random, homes: list[dict[str, Any]], review: bool) -> Steps:
    sellers = _with_devices(homes)
    if not sellers:
        return []
    seller = rng.choice(sellers)
    buyer = rng.choice([h["key"] for h in homes if h["key"] != seller])
    _speaks(homes, buyer)
    return [{"do": "transfer_device", "household": seller, "to": buyer},
            {"do": "traffic", "days": rng.choice([2, 3]), "households": [buyer]}]


def m_collision(rng: random.Random, homes: list[dict[str, Any]], review: bool) -> Steps:
    owners = _with_devices(homes)
    if not owners:
        return []
    owner = rng.choice(owners)
    second = rng.choice([h["key"] for h in homes if h["key"] != owner])
    _speaks(homes, second)
    return [{"do": "register_device", "household": second, "serial": owner},
            {"do": "traffic", "days": 2, "households": [second]}]


def m_clock(rng: random.Random, homes: list[dict[str, Any]], review: bool) -> Steps:
    steps: Steps = [{"do": "advance_clock", "by": rng.choice(["1h", "2d", "6d"])}]
    if rng.random() < 0.5:
        steps.append({"do": "revoke", "link_of": rng.choice(homes)["key"]})
    return steps


def m_crash(rng: random.Random, homes: list[dict[str, Any]], review: bool) -> Steps:
    """A kill at a crash point and the steps that pass it: traffic for an ingest point (every
    traffic step gives each household with a device 3 or more recordings), everyone's access
    request for an export point (after fresh traffic, so the packages hold 3 or more)."""
    point = rng.choice(POINTS)
    if point.startswith("ingest."):
        nth = {"ingest.upgraded": 1, "ingest.mid_utterance": rng.randint(1, 4)}.get(
            point, rng.randint(1, 3))
        return [{"do": "crash", "point": point, "nth": nth},
                {"do": "traffic", "days": rng.choice([1, 2])}]
    everyone = [h["key"] for h in homes]
    nth = rng.randint(1, 3) if point == "export.mid_build" else 1
    return [{"do": "traffic", "days": 1}, {"do": "crash", "point": point, "nth": nth},
            {"do": "access_request", "by": everyone}, *_served(review),
            *({"do": "download", "by": k} for k in everyone)]


CRASH_RATE = 0.05
"""Share of generated scenarios whose backend is crashed and restarted once."""


def _crash(seed: int, homes: list[dict[str, Any]], review: bool) -> Steps:
    """The crash motif's steps, or none; from a random stream of its own (see above)."""
    rng = random.Random(f"crash:{seed}")
    return m_crash(rng, homes, review) if rng.random() < CRASH_RATE else []


MOTIFS: dict[str, Motif] = {
    "pair": m_pair, "sequential": m_sequential, "email": m_email, "impersonate": m_impersonate,
    "misaddressed": m_misaddressed, "guess": m_guess, "erasure": m_erasure,
    "forwarded": m_forwarded, "resale": m_resale, "collision": m_collision, "clock": m_clock,
}
WORLD_MOTIFS = ("collision", "resale")
"""Motifs that change who owns which device: they come before the requests."""

FAULT_NEEDS: dict[str, tuple[str, ...]] = {
    "export.operator_voice_mixup": ("pair",), "export.operator_swap": ("pair",),
    "export.operator_wrong_account": ("email",), "export.device_history_join": ("resale",),
    "export.shared_staging": ("pair",), "export.cache_key_collision": ("sequential",),
    "ingest.stale_binding": ("resale",), "ingest.serial_collision": ("collision",),
    "delivery.unbound_link": ("guess",), "delivery.misaddressed_email": ("misaddressed",),
    "identity.weak_verification": ("impersonate",), "erasure.partial": ("erasure",),
}
"""For each fault, motifs that give it a chance to fire (one of them is always drawn when
the fault is on)."""

REVIEWED = {"export.operator_voice_mixup", "export.operator_swap",
            "export.operator_wrong_account"}
"""Faults that act at the operator's desk: they need manual review of access requests."""


def _fault_params(name: str, rng: random.Random, homes: list[dict[str, Any]]) -> dict[str, Any]:
    params = FAULTS[name].params
    keys = [h["key"] for h in homes]
    out: dict[str, Any] = {}
    if "between" in params:
        out["between"] = rng.sample(keys, 2)
    if "jobs" in params:
        out["jobs"] = 2
    if "wait_seconds" in params:
        out["wait_seconds"] = 1  # a lone job (one request that day) must not stall the run

    return out


def _backend(review: bool) -> dict[str, Any]:
    return {"manual_review": ["access"]} if review else {}


def _households(rng: random.Random, seed: int) -> list[dict[str, Any]]:
    n = rng.randint(2, 4)
    homes = []
    for i in range(n):
        devices = rng.choice([0, 1, 1, 1, 2]) if i else 1
        homes.append({"key": f"h{i}", "members": rng.randint(1, 3), "devices": devices,
                      "recordings": rng.randint(3, 10) if devices else 0,
                      "email": f"h{i}.{seed % 100_000}@example.net"})
    if rng.random() < 0.3:
        homes[-1]["lookalike_of"] = homes[0]["key"]
    return homes


def generate(seed: int, faults: list[str], guards: list[str]) -> Scenario:
    """A random scenario with ``faults`` and ``guards`` on and every invariant expected."""
    rng = random.Random(seed)
    homes = _households(rng, seed)
    review = bool(REVIEWED & set(faults)) or rng.random() < 0.25
    needed = [rng.choice(FAULT_NEEDS[f]) for f in faults if f in FAULT_NEEDS]
    # A holder who forwards his own link shares it on purpose: only the bound-links guard
    # refuses that, so the motif is drawn only when that guard is on.
    pool = sorted(m for m in MOTIFS if m != "forwarded" or "delivery.bound_links" in guards)
    extra = rng.sample(pool, rng.randint(0, 2))
    chosen = list(dict.fromkeys(needed + extra))
    rng.shuffle(chosen)
    # Stable sort: world changes first, a duplicate serial before a resale can move it away.
    chosen.sort(key=lambda m: WORLD_MOTIFS.index(m) if m in WORLD_MOTIFS else len(WORLD_MOTIFS))
    steps: Steps = [{"do": "traffic", "days": rng.choice([3, 5, 7])}]
    crash = _crash(seed, homes, review)
    if crash:
        # After the world motifs, before any request: a household that erased its account
        # sends no traffic.
        chosen.insert(sum(1 for m in chosen if m in WORLD_MOTIFS), "crash")
    for name in chosen:
        steps += crash if name == "crash" else MOTIFS[name](rng, homes, review)
    raw: dict[str, Any] = {
        "name": f"explore-{seed}",
        "description": "generated by overheard explore (motifs: " + ", ".join(chosen) + ")",
        "seed": seed % 2**31,
        "world": {"locale": rng.choice(LOCALES), "background_households": rng.choice([0, 0, 1])},
        "household": homes,
        "backend": _backend(review),
        "faults": {f: _fault_params(f, rng, homes) for f in faults},
        "guards": {g: {} for g in guards},
        "step": steps,
        "expect": [{"invariant": n} for n in NAMES],
    }
    return Scenario.model_validate(raw)
