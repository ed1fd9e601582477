"""Injectable clock: the backend asks it for the time, tests and scenarios move it forward.

Real time drives a served backend; a scenario pins the start and advances it with
``POST /v1/admin/clock`` so that link expiry and the Art. 12 one-month deadline can be
reached in a second.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from contract.rfc3339 import rfc3339

LATEST = datetime(2100, 1, 1, tzinfo=UTC)
"""The latest the clock may show. Everything dated from it must stay representable: a zip
entry's timestamp ends in 2107, ``datetime`` in 9999."""


class ClockRangeError(ValueError):
    """The clock was asked to move beyond :data:`LATEST`."""


class Clock:
    """Wall time plus an offset that only grows; optionally frozen at a fixed start.

    ``frozen`` clocks never move on their own: a scenario decides every tick, which keeps
    runs byte-for-byte repeatable.
    """

    def __init__(self, start: datetime | None = None, frozen: bool = False) -> None:
        self._lock = threading.Lock()
        self._frozen = frozen
        self._base_wall = time.time()
        self._start = (start or datetime.now(UTC)).astimezone(UTC)
        self._offset = 0.0

    def now(self) -> datetime:
        with self._lock:
            elapsed = 0.0 if self._frozen else time.time() - self._base_wall
            return self._start + timedelta(seconds=elapsed + self._offset)

    def advance(self, seconds: float) -> datetime:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            elapsed = 0.0 if self._frozen else time.time() - self._base_wall
            room = (LATEST - self._start).total_seconds() - elapsed - self._offset
            if seconds > room:
                raise ClockRangeError(
                    f"the clock may not pass {rfc3339(LATEST)}; at most {max(room, 0):.0f} more"
                    " seconds")
            self._offset += seconds
        return self.now()

    def iso(self) -> str:
        return rfc3339(self.now())
