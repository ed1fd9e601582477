"""What decides a campaign's runs: its options, each run's seed and faults, and shards.

Run ``i`` of a campaign (0 ≤ i < runs) has the scenario seed :func:`run_seed` (seed, i) and
its own draw of the faults named; shard ``I/N`` plays the indices with ``i % N == I - 1``.
None of it depends on how the runs are spread over processes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from simulator.explore.generator import generate


@dataclass(frozen=True)
class Options:
    """What decides a campaign's runs (not how they are spread)."""

    seed: int
    runs: int
    faults: tuple[str, ...]
    guards: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "runs": self.runs, "faults": list(self.faults),
                "guards": list(self.guards)}


def run_seed(seed: int, index: int) -> int:
    """The scenario seed of run ``index``: independent of sharding and jobs."""
    return random.Random(f"explore:{seed}:{index}").getrandbits(31)


def draw_faults(opts: Options, index: int) -> list[str]:
    """Run ``index``'s faults: one to three of those named (all of them when ≤ 3)."""
    if len(opts.faults) <= 3:
        return list(opts.faults)
    rng = random.Random(f"faults:{opts.seed}:{index}")
    return sorted(rng.sample(opts.faults, rng.randint(1, 3)))


def shard_indices(runs: int, shard: tuple[int, int]) -> list[int]:
    i, n = shard
    return [k for k in range(runs) if k % n == i - 1]


def scenario_for(opts: Options, index: int) -> dict[str, Any]:
    """The raw (TOML-ready) scenario of run ``index``."""
    scenario = generate(run_seed(opts.seed, index), draw_faults(opts, index), list(opts.guards))
    return scenario.model_dump(mode="json", by_alias=True, exclude_none=True)
