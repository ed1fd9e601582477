"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable

import click

from simulator.fleet.progress import MODES


def progress_option(func: Callable[..., object]) -> Callable[..., object]:
    """``--progress bar|plain|none`` for a command (the default depends on stderr)."""
    return click.option(
        "--progress", "progress", type=click.Choice(MODES), default=None,
        help="progress on stderr: bar (terminal), plain (a line every few seconds, "
             "for CI logs) or none; default: bar on a terminal, plain otherwise")(func)
