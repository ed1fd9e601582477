"""The embedded backend in a child process, so that a scenario can crash it at a named point.

A backend in this process cannot be crashed honestly: a crash point pauses the thread that
passes it (for the ingest points, the event loop itself), and nothing in a process can lose
exactly what a killed one loses. So a scenario with a crash step runs its backend as
``python -m simulator.fleet.crashable``: the same :class:`backend.Config` the embedded
backend gets, handed over on stdin, served on 127.0.0.1. The parent then drives it through
stdin, one command a line, each answered on stdout:

``arm <point>:<n>``  the n-th pass of ``<point>`` from now pauses the server → ``armed <spec>``
``disarm``           → ``disarmed``, or ``passed`` when the point was reached first

When the child prints ``reached <point>`` (:mod:`backend.crashpoints`), the parent kills it
with SIGKILL (no ``finally``, no flush, no atexit) and starts a new child on the same data
dir and the same port. The new child is told what the killed one held only in memory and
a restart would otherwise forget: the clock (as the admin API last set it), the faults and
guards switched on, and an id epoch so that its seeded ids do not repeat the stored ones.
Devices see their connection drop and reconnect to resend what was not acknowledged; the
backend requeues the privacy jobs the kill interrupted.

:class:`CrashSafeClient` is the API client for such a backend: the kill never lands inside
a call that changes something (the parent waits for those, a bounded time), and a read cut
by the kill is sent again to the restarted backend.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
import os
import pickle
import signal
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from backend import Config
from backend.crashpoints import parse
from simulator.fleet.client import Client, Unreachable
from simulator.fleet.embedded import BackendHandle, stop_process
from simulator.fleet.errors import FleetError

KILL_GRACE = 10.0
"""Seconds a reached crash point waits for the parent's changing calls before the kill."""
START_TIMEOUT = 60.0
"""Seconds a child may take to say ``listening on``."""


@dataclasses.dataclass(frozen=True)
class Crash:
    """One kill: the point and the pass of it (counted from the arming) it happened at."""

    point: str
    nth: int


class _Gate:
    """Calls that change the backend's state, counted; a crash closes the gate and waits
    until none is in flight, so the kill never leaves one half-answered."""

    def __init__(self) -> None:
        self.busy = 0
        self.opened = asyncio.Event()
        self.opened.set()
        self.idle = asyncio.Event()
        self.idle.set()

    @asynccontextmanager
    async def call(self) -> AsyncIterator[None]:
        await self.opened.wait()
        self.busy += 1
        self.idle.clear()
        try:
            yield
        finally:
            self.busy -= 1
            if not self.busy:
                self.idle.set()


class CrashableBackend:
    """One backend data dir served by a child process that a crash point may kill."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.port = 0
        self.epoch = 0
        self.crashes: list[Crash] = []
        self.armed: Crash | None = None
        self.generation = 0
        """Bumped at every restart: a read that began before it may be sent again."""
        self.gate = _Gate()
        self.up = asyncio.Event()
        self.failure: str | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._standby: asyncio.subprocess.Process | None = None
        """The next child, launched ahead so that a restart finds it imported."""
        self._answers: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._clock: datetime | None = config.clock_start
        self._switches: dict[str, dict[str, dict[str, Any]]] = {
            "faults": dict(config.faults), "guards": dict(config.guards)}
        self.url = ""

    # -- the child ----------------------------------------------------------------------
    async def start(self) -> BackendHandle:
        await self._spawn()
        # Only scenarios with a crash step run this way: the restart's child starts now.
        self._standby = await self._launch()
        return BackendHandle(self.url, self.config.admin_token, self.config.data_dir,
                             crashable=self)

    def _child_config(self) -> Config:
        return dataclasses.replace(
            self.config, clock_start=self._clock, id_epoch=self.epoch,
            faults={k: dict(v) for k, v in self._switches["faults"].items()},
            guards={k: dict(v) for k, v in self._switches["guards"].items()})

    @staticmethod
    async def _launch() -> asyncio.subprocess.Process:
        """A child that imports the backend, then waits for its settings on stdin."""
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "simulator.fleet.crashable", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)

    async def _spawn(self) -> None:
        payload = base64.b64encode(pickle.dumps((self._child_config(), self.port)))
        # A standby launched ahead has done its imports by now: most of a start.
        proc, self._standby = self._standby or await self._launch(), None
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(payload + b"\n")
        await proc.stdin.drain()
        try:
            line = (await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT)).decode().strip()
        except TimeoutError:
            line = "(nothing)"
        if not line.startswith("listening on "):
            proc.kill()
            await proc.wait()
            raise FleetError(f"the backend child process did not start on port {self.port}: "
                             f"{line or 'it exited'}")
        self.url = line.removeprefix("listening on ")
        self.port = int(self.url.rsplit(":", 1)[1])
        self._proc = proc
        self.up.set()
        self._spawn_task(self._read(proc))

    def _spawn_task(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        """The child's answers go to :meth:`_command`; ``reached`` starts the crash."""
        assert proc.stdout is not None
        while line := (await proc.stdout.readline()).decode():
            if line.startswith("reached "):
                self.up.clear()  # at once: whoever looks next must wait for the restart
                self._spawn_task(self._crash())
            else:
                self._answers.put_nowait(line.strip())

    async def _command(self, text: str) -> str:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise FleetError("the backend child process is not running")
        proc.stdin.write(text.encode() + b"\n")
        await proc.stdin.drain()
        return await asyncio.wait_for(self._answers.get(), START_TIMEOUT)

    async def _crash(self) -> None:
        """SIGKILL at the reached point, then a new child on the same data dir and port."""
        crash, self.armed = self.armed, None
        self.gate.opened.clear()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.gate.idle.wait(), KILL_GRACE)
            if self._proc is not None:
                self._proc.kill()
                await self._proc.wait()
            if crash is not None:
                self.crashes.append(crash)
            self.epoch += 1
            self.generation += 1
            await self._spawn()
        except (FleetError, OSError) as exc:
            self.failure = f"restart after the crash failed: {exc}"
            self.up.set()  # wake the waiters; they see the failure
        finally:
            self.gate.opened.set()

    # -- what the scenario runner asks ----------------------------------------------------
    async def arm(self, point: str, nth: int) -> None:
        """The n-th pass of ``point`` from now on kills the backend."""
        spec = f"{point}:{nth}"
        parse(spec)
        if self.armed is not None:
            raise FleetError(f"a crash at {self.armed.point} is armed and was not reached yet")
        answer = await self._command(f"arm {spec}")
        if answer != f"armed {spec}":
            raise FleetError(f"the backend child did not arm {spec}: {answer!r}")
        self.armed = Crash(point, nth)
        if self._standby is None:
            self._standby = await self._launch()

    async def settle(self) -> Crash | None:
        """After the scenario's steps: the armed crash nobody reached (disarmed now), if any.
        A crash under way is waited for."""
        if self.armed is not None and self.up.is_set():
            answer = await self._command("disarm")
            if answer == "disarmed":
                missed, self.armed = self.armed, None
                return missed
        await self.wait_up()
        return None

    async def wait_up(self) -> None:
        await self.up.wait()
        if self.failure:
            raise FleetError(self.failure)

    def observe(self, method: str, path: str, body: Any, answer: Any) -> None:
        """Remember what the admin API set that the backend keeps only in memory."""
        if method == "POST" and path == "/v1/admin/clock" and isinstance(answer, dict):
            self._clock = datetime.fromisoformat(str(answer["now"]).replace("Z", "+00:00"))
        elif method == "PUT" and path in ("/v1/admin/faults", "/v1/admin/guards"):
            table = self._switches[path.rsplit("/", 1)[1]]
            for sw in (body or {}).get("switches", []):
                if sw.get("enabled", True):
                    table[sw["name"]] = dict(sw.get("params") or {})
                else:
                    table.pop(sw["name"], None)

    async def stop(self) -> None:
        """SIGTERM (a clean stop), up to 10 s, then SIGKILL; no crash is handled after."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for proc in (self._proc, self._standby):
            if proc is not None:
                await stop_process(proc)


class CrashSafeClient(Client):
    """A :class:`Client` for a :class:`CrashableBackend`: changing calls hold the gate (the
    kill waits for them); reads and downloads cut by a kill are sent again after the restart."""

    def __init__(self, backend: CrashableBackend, **kwargs: Any) -> None:
        super().__init__(backend.url, backend.config.admin_token, **kwargs)
        self.backend = backend

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        if method in ("GET", "HEAD") and "/downloads/" not in path:
            return await self._read(method, path, **kwargs)
        async with self.backend.gate.call():
            await self.backend.wait_up()
            answer = await super().request(method, path, **kwargs)
        self.backend.observe(method, path, kwargs.get("json_body"), answer)
        return answer

    async def _read(self, method: str, path: str, **kwargs: Any) -> Any:
        for _attempt in range(3):
            await self.backend.wait_up()
            began = self.backend.generation
            try:
                return await super().request(method, path, **kwargs)
            except Unreachable:
                await asyncio.sleep(0)  # let the reader see a ``reached`` line first
                if self.backend.up.is_set() and self.backend.generation == began:
                    raise  # no crash in between: a real failure
        return await super().request(method, path, **kwargs)


# -- the child process ----------------------------------------------------------------------
def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _commands() -> None:
    """Answer the parent's commands; the parent gone (stdin closed) stops the server."""
    from backend import crashpoints

    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "arm":
            try:
                crashpoints.arm(arg)
                _say(f"armed {arg}")
            except ValueError as exc:
                _say(f"error {exc}")
        elif cmd == "disarm":
            _say("disarmed" if crashpoints.disarm() else "passed")
        else:
            _say(f"error unknown command {cmd!r}")
    os.kill(os.getpid(), signal.SIGTERM)


def main() -> None:
    from backend.serve import serve

    payload = sys.stdin.buffer.readline()
    config, port = pickle.loads(base64.b64decode(payload))  # from our own parent only
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    threading.Thread(target=_commands, name="crash-commands", daemon=True).start()
    asyncio.run(serve(config, "127.0.0.1", port))


if __name__ == "__main__":
    main()
