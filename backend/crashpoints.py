"""Test-only crash points: pause the server at a named moment so a test can SIGKILL it there.

Off by default. ``overheard serve`` / ``python -m backend`` read ``OVERHEARD_CRASH_AT`` ONCE
at start into ``Config.crash_at`` as ``<point>:<n>``: the n-th time the code passes
``<point>`` it prints ``reached <point>`` on stdout and blocks the thread it runs on
forever. The test waits for that line and kills the process from outside with SIGKILL, so
the crash is real (no ``finally``, no flush, no atexit) and lands exactly at the point.

Points (each is one call of :func:`reach` in the code that owns the moment):

``ingest.upgraded``      a device stream was upgraded to a WebSocket (blocks the loop)
``ingest.mid_utterance`` a PCM chunk was received inside an open utterance (blocks the loop)
``ingest.after_commit``  a recording's write committed; its ack is not sent yet (blocks the loop)
``export.mid_build``     an export job wrote one more recording into its staged zip
                         (blocks that job's thread; the rest of the server keeps serving)
``export.before_release`` the zip is in ``packages/``; its row, link and ``complete`` are not
                         committed yet (blocks that job's thread)

A process that controls its server from outside (the scenario runner's crashable backend)
may instead :func:`arm` a point while the server runs: the count starts at the arming, so
"the n-th pass after this moment" is what crashes.
"""

from __future__ import annotations

import sys
import threading
from typing import Literal, get_args

from backend.config import Config

Point = Literal["ingest.upgraded", "ingest.mid_utterance", "ingest.after_commit",
                "export.mid_build", "export.before_release"]
"""A crash point's name, as a type (a scenario's crash step is validated against it)."""
POINTS: tuple[str, ...] = get_args(Point)

_lock = threading.Lock()
_counts: dict[str, int] = {}
_armed = ""
"""A point armed at run time (:func:`arm`), ``<point>:<n>``; empty: none."""


def parse(spec: str) -> tuple[str, int]:
    """``"ingest.after_commit:3"`` → ``("ingest.after_commit", 3)``; ValueError otherwise."""
    point, _, n = spec.rpartition(":")
    if point not in POINTS or not n.isdigit() or int(n) < 1:
        raise ValueError(f"crash point must be one of {', '.join(POINTS)} followed by :N "
                         f"(N >= 1); got {spec!r}")
    return point, int(n)


def arm(spec: str) -> None:
    """Arm ``<point>:<n>`` now: the n-th pass from here on pauses; ValueError if malformed."""
    global _armed
    parse(spec)
    with _lock:
        _armed = spec
        _counts.clear()


def disarm() -> bool:
    """Disarm the point armed by :func:`arm`; False when it was reached already (too late)."""
    global _armed
    with _lock:
        if not _armed:
            return False
        _armed = ""
        return True


def reach(config: Config, point: str) -> None:
    """Pass ``point``; when ``config.crash_at`` (or the armed point) names it and this is the
    n-th pass, pause forever."""
    global _armed
    spec = config.crash_at or _armed
    if not spec:
        return  # the served default: an attribute and a global read
    want, n = parse(spec)
    if point != want:
        return
    with _lock:
        _counts[point] = _counts.get(point, 0) + 1
        hit = _counts[point] == n
        if hit:
            if spec == _armed:
                _armed = ""  # reached: a later disarm() comes too late
            # Under the lock: whoever reads stdout sees this before any answer to a disarm.
            sys.stdout.write(f"reached {point}\n")
            sys.stdout.flush()
    if hit:
        threading.Event().wait()  # until SIGKILL
