"""Run the backend for the simulator: embedded in this event loop, or as a subprocess.

Embedded is the default for scenarios and tests (one process, port 0). Benchmarks use a
subprocess so server and client each get a core.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from backend import Config, create_app
from backend.keys import CONFIG

if TYPE_CHECKING:
    from simulator.fleet.crashable import CrashableBackend


@dataclass(frozen=True)
class BackendHandle:
    """Where a backend listens and how to talk to it as admin."""

    url: str
    admin_token: str
    data_dir: Path | None = None
    app: web.Application | None = None
    """The embedded app (None for subprocess or remote backends)."""
    crashable: CrashableBackend | None = None
    """The child process a crash step may kill (:mod:`simulator.fleet.crashable`), if so run."""


@asynccontextmanager
async def embedded_backend(config: Config) -> AsyncIterator[BackendHandle]:
    """Start ``create_app(config)`` on 127.0.0.1:0 in this loop; stop it on exit."""
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None, handle_signals=False,
                           keepalive_timeout=app[CONFIG].keepalive_timeout)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield BackendHandle(f"http://127.0.0.1:{port}", app[CONFIG].admin_token,
                            Path(config.data_dir), app)
    finally:
        await runner.cleanup()


@dataclass
class ServerProcess:
    """A backend in a child process (``python -m backend --port 0``)."""

    proc: asyncio.subprocess.Process
    handle: BackendHandle

    def kill(self) -> None:
        """SIGKILL: no cleanup, no flush, exactly like a crash."""
        if self.proc.returncode is None:
            self.proc.kill()

    async def wait(self) -> int:
        return await self.proc.wait()


async def spawn_listening(*args: str, what: str,
                          env: dict[str, str] | None = None) -> tuple[asyncio.subprocess.Process, str]:
    """Start ``python *args`` and wait for its first stdout line, ``listening on URL``;
    ``(process, URL)``. A child that says anything else is killed and ``what`` named."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, env={**os.environ, **(env or {})})
    assert proc.stdout is not None
    line = (await proc.stdout.readline()).decode().strip()
    if not line.startswith("listening on "):
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"{what} did not start: {line!r}")
    return proc, line.removeprefix("listening on ")


async def stop_process(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM, up to 10 s to go, then SIGKILL."""
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def start_server_process(data_dir: Path, admin_token: str = "adm_subprocess_server",
                               extra_args: tuple[str, ...] = (),
                               env: dict[str, str] | None = None) -> ServerProcess:
    """Start ``python -m backend`` on a free port and wait for its ``listening on`` line.
    The admin token goes by the environment, never the command line (the process list)."""
    proc, url = await spawn_listening(
        "-m", "backend", "--data", str(data_dir), "--port", "0",
        "--log-level", "WARNING", *extra_args, what="backend",
        env={"OVERHEARD_ADMIN_TOKEN": admin_token, **(env or {})})
    return ServerProcess(proc, BackendHandle(url, admin_token, data_dir))


@asynccontextmanager
async def server_process(data_dir: Path, admin_token: str = "adm_subprocess_server",
                         extra_args: tuple[str, ...] = (),
                         env: dict[str, str] | None = None) -> AsyncIterator[ServerProcess]:
    """:func:`start_server_process` as a context: the process is stopped on exit."""
    sp = await start_server_process(data_dir, admin_token, extra_args, env)
    try:
        yield sp
    finally:
        await stop_process(sp.proc)
