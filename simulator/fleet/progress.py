"""Progress output on stderr that a terminal and a CI log can both read.

Three modes: ``bar`` (a tqdm bar, redrawn in place: for a terminal), ``plain`` (whole lines,
at most one every :data:`PLAIN_INTERVAL` seconds, never a carriage return: for CI logs and
pipes) and ``none``. Without a choice, a terminal gets ``bar`` and anything else ``plain``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Literal, TextIO, TypeGuard

from tqdm import tqdm

ProgressMode = Literal["bar", "plain", "none"]
MODES: tuple[ProgressMode, ...] = ("bar", "plain", "none")
PLAIN_INTERVAL = 5.0
"""Seconds between two plain progress lines: a CI log gets a pulse, not a flood."""


def default_mode(stream: TextIO | None = None) -> ProgressMode:
    """``bar`` on a terminal, ``plain`` otherwise."""
    stream = stream or sys.stderr
    isatty = getattr(stream, "isatty", None)
    return "bar" if isatty is not None and isatty() else "plain"


def resolve_mode(progress: bool | str | None, *, quiet: bool = False) -> ProgressMode:
    """The mode for a ``--progress`` value (``None``: the default), ``--quiet`` or a bool."""
    if quiet or progress is False:
        return "none"
    if progress is None or progress is True:
        return default_mode()
    if not _is_mode(progress):
        raise ValueError(f"progress must be one of {', '.join(MODES)}, not {progress!r}")
    return progress


def _is_mode(value: str) -> TypeGuard[ProgressMode]:
    return value in MODES


class Counter:
    """Counts done items out of ``total``; shows them as the mode says.

    ``plain`` prints ``desc: done/total (pct), rate/s`` when at least ``interval`` seconds
    passed since the last line, and once more at :meth:`close`.
    """

    def __init__(self, total: int, mode: ProgressMode, *, desc: str, unit: str,
                 interval: float = PLAIN_INTERVAL, out: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.mode = mode
        self.desc = desc
        self.unit = unit
        self.interval = interval
        self.out = out
        self.clock = clock
        self.n = 0
        self.postfix: dict[str, int] = {}
        self.started = clock()
        self.last_line = self.started
        self.bar = tqdm(total=total, unit=unit, file=out or sys.stderr, desc=desc,
                        disable=mode != "bar", dynamic_ncols=True, smoothing=0.1)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.mode == "bar":
            self.bar.update(n)
        elif self.mode == "plain":
            now = self.clock()
            if now - self.last_line >= self.interval:
                self.last_line = now
                self._line(now)

    def set_postfix(self, **counts: int) -> None:
        self.postfix = counts
        if self.mode == "bar":
            self.bar.set_postfix(refresh=False, **counts)

    def write(self, text: str) -> None:
        """A message that must not break the bar."""
        if self.mode == "bar":
            self.bar.write(text, file=self.out or sys.stderr)
        elif self.mode == "plain":
            print(text, file=self.out or sys.stderr, flush=True)

    def close(self) -> None:
        if self.mode == "plain" and self.total:
            self._line(self.clock())
        self.bar.close()

    def _line(self, now: float) -> None:
        elapsed = now - self.started
        rate = self.n / elapsed if elapsed > 0 else 0.0
        pct = 100 * self.n / self.total if self.total else 100.0
        extra = "".join(f", {k} {v:,}" for k, v in self.postfix.items() if v)
        print(f"  {self.desc}: {self.n:,}/{self.total:,} ({pct:.0f}%), "
              f"{rate:,.0f} {self.unit}/s{extra}", file=self.out or sys.stderr, flush=True)
