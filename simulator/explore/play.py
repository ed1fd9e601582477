"""One generated scenario, played in this process against a fresh embedded backend.

No process start and no fresh import per scenario: the world, the voices (the fast splice)
and the backend code stay loaded; only the backend's data dir is new (a temp folder,
removed afterwards). That folder goes in memory (``/dev/shm``) where the machine has it:
the backend still syncs every acknowledged write exactly as on a disk, but a sync of a
file in memory returns at once, and nothing of a run that lasts a fraction of a second
needs to outlive the machine.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulator.fleet.client import ClientError
from simulator.scenario.model import Scenario
from simulator.scenario.runner import RunAborted, run_scenario


@dataclass(frozen=True)
class Outcome:
    """What a run showed: the invariants it broke (name → message), or why it could not decide."""

    violated: dict[str, str]
    error: str | None = None


MEMORY = Path("/dev/shm")
MEMORY_FREE = 512 * 2**20
"""Free bytes :data:`MEMORY` must have to be used (a container may give it only 64 MB)."""


@functools.cache
def scratch_root() -> Path | None:
    """Where run folders go: :data:`MEMORY` if this process may write there and it has
    room, else the system's temp folder (``None``)."""
    try:
        usable = (os.access(MEMORY, os.W_OK | os.X_OK)
                  and shutil.disk_usage(MEMORY).free >= MEMORY_FREE)
    except OSError:
        usable = False
    return MEMORY if usable else None


async def play(scenario: Scenario, scratch: Path | None = None) -> Outcome:
    """Run ``scenario`` quietly with the fast voice; its ``invariant`` expectations decide."""
    out = Path(tempfile.mkdtemp(prefix="explore-", dir=scratch or scratch_root()))
    try:
        result = await run_scenario(scenario, out, progress=False, voice="fast", reports=False)
    except (RunAborted, ClientError, OSError) as exc:
        return Outcome({}, f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - a crash of the run is a finding, not the campaign's end
        return Outcome({}, f"crash: {type(exc).__name__}: {exc}")
    finally:
        shutil.rmtree(out, ignore_errors=True)
    violated: dict[str, str] = {}
    error = None
    for e in result.expectations:
        name = e.name.removeprefix("invariant(").removesuffix(")")
        if e.passed is None:
            error = f"{e.name}: {e.detail}"
        elif not e.passed:
            violated[name] = e.detail
    return Outcome(violated, error)


def with_only(raw: dict[str, Any], invariant: str) -> dict[str, Any]:
    """The scenario's raw form expecting just ``invariant``."""
    return {**raw, "expect": [{"invariant": invariant}]}
