"""The pytest plugin (entry point ``pytest11``, installed with the package).

``pytest path/to/scenarios/`` collects every scenario TOML file below the path as one test
item named by the scenario; an item passes when every expectation held, and a failing one
prints the failed expectations with their details and the path of its report.html.
Options: ``--overheard-seed`` (override every scenario's seed), ``--overheard-out`` (keep
run folders there, one per scenario; default: pytest's temporary folders) and
``--overheard-backend URL`` (play against a running backend; the admin token from
``--overheard-admin-token`` or ``$OVERHEARD_ADMIN_TOKEN``).

Fixtures for hand-written tests, usable from plain and from async tests (the backend and the
runs have their own event loop, in a thread):

- ``overheard_config``: the :class:`backend.Config` of the embedded backend; override it in a
  conftest.py to switch on manual review, a link lifetime and so on;
- ``overheard_backend``: that backend, started on 127.0.0.1 port 0 (or the one given with
  ``--overheard-backend``), as a :class:`simulator.fleet.embedded.BackendHandle`;
- ``overheard_admin``: a blocking admin client for it, with every method of
  :class:`simulator.fleet.client.Client` (``create_account``, ``put_faults``, ``alerts``...);
- ``overheard_world``: builds a seeded :class:`simulator.world.households.World` from household specs;
- ``run_scenario``: ``run_scenario(path_or_model, seed=None)`` plays a scenario (a file, the
  name of a bundled one, a :class:`simulator.scenario.model.Scenario` or its dict) and returns the
  typed :class:`simulator.judge.report.RunResult`.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from backend import Config
    from simulator.fleet.embedded import BackendHandle
    from simulator.judge.report import RunResult
    from simulator.scenario.model import Scenario
    from simulator.world.households import World

T = TypeVar("T")
PYTEST_ADMIN_TOKEN = "adm_pytest_embedded"


# -- options -----------------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("overheard", "overheard scenarios")
    group.addoption("--overheard-seed", type=int, default=None, metavar="SEED",
                    help="override every scenario's seed")
    group.addoption("--overheard-out", default=None, metavar="DIR",
                    help="keep each scenario's run folder in DIR/<scenario> "
                         "(default: pytest's temporary folders)")
    group.addoption("--overheard-backend", default=None, metavar="URL",
                    help="play scenarios against this running backend instead of an "
                         "embedded one per scenario")
    group.addoption("--overheard-admin-token", default=None, metavar="TOKEN",
                    help="admin token for --overheard-backend (default: $OVERHEARD_ADMIN_TOKEN)")


def _backend_option(config: pytest.Config) -> tuple[str | None, str | None]:
    url = config.getoption("overheard_backend")
    token = config.getoption("overheard_admin_token") or os.environ.get("OVERHEARD_ADMIN_TOKEN")
    if url and not token:
        raise pytest.UsageError("--overheard-backend needs --overheard-admin-token "
                                "or $OVERHEARD_ADMIN_TOKEN")
    return url, token


def _out_dir(config: pytest.Config, name: str) -> Path:
    """Where a run of scenario ``name`` writes its folder."""
    base = config.getoption("overheard_out")
    if base:
        return Path(base) / name
    # Items are not functions and get no fixtures: use the factory behind ``tmp_path``
    # (numbered folders, cleaned like pytest's own, one base per xdist worker).
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is not None:
        return Path(factory.mktemp(name, numbered=True))
    import tempfile

    return Path(tempfile.mkdtemp(prefix=f"{name}-"))


# -- a loop in a thread: blocking calls into async code, from sync or async tests --------
class LoopThread:
    """An event loop running in a daemon thread; :meth:`call` runs a coroutine on it and
    waits. A test's own loop (pytest-asyncio) is not involved, so a blocking call from an
    async test cannot deadlock against a backend served from this loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="overheard-loop",
                                       daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def close(self) -> None:
        """Cancel what is left on the loop, as ``asyncio.run`` does, then stop it."""
        self.call(_drain(self.loop), timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


async def _drain(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await loop.shutdown_asyncgens()
    await loop.shutdown_default_executor()


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` with ``asyncio.run`` in a thread of its own: works from a plain test and
    from inside a running loop (an async test) alike."""
    with ThreadPoolExecutor(1, thread_name_prefix="overheard-run") as pool:
        return pool.submit(asyncio.run, coro).result()


# -- scenario items ----------------------------------------------------------------------
def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Scenario TOML files only: every other file costs one suffix comparison."""
    if file_path.suffix != ".toml":
        return None
    from simulator.scenario.suite import is_scenario_file

    return ScenarioFile.from_parent(parent, path=file_path) if is_scenario_file(file_path) else None


class ScenarioFile(pytest.File):
    """One scenario TOML file: one item, named by the scenario."""

    def collect(self) -> Iterator[pytest.Item]:
        import tomllib

        try:
            name = str(tomllib.loads(self.path.read_text(encoding="utf-8")).get("name")
                       or self.path.stem)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            name = self.path.stem
        yield ScenarioItem.from_parent(self, name=name)


class ScenarioFailed(Exception):
    """A scenario ran and an expectation did not hold, or the run could not decide."""

    def __init__(self, result: RunResult, out: Path) -> None:
        super().__init__(result.verdict)
        self.result = result
        self.out = out


class ScenarioItem(pytest.Item):
    """Plays the scenario on an embedded backend (or ``--overheard-backend``) and judges it."""

    def runtest(self) -> None:
        from simulator.scenario.model import load_scenario
        from simulator.scenario.runner import run_scenario

        scenario = load_scenario(self.path, seed=self.config.getoption("overheard_seed"))
        out = _out_dir(self.config, scenario.name)
        url, token = _backend_option(self.config)
        result = run_blocking(run_scenario(scenario, out, backend_url=url, admin_token=token,
                                           progress="none"))
        self.user_properties.append(("report", str((out / "report.html").resolve())))
        if result.verdict != "pass":
            raise ScenarioFailed(result, out)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str | Any:
        from simulator.scenario.model import ScenarioError

        if isinstance(excinfo.value, ScenarioFailed):
            return failure_text(excinfo.value.result, excinfo.value.out)
        if isinstance(excinfo.value, ScenarioError):
            return f"invalid scenario: {excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"scenario {self.name}"


def failure_text(result: RunResult, out: Path) -> str:
    """What a failing item prints: the expectations that did not hold, each with its detail."""
    verdict = "could not decide" if result.verdict == "unknown" else "failed"
    lines = [f"scenario {result.scenario} (seed {result.seed}) {verdict}:"]
    for e in result.expectations:
        if e.passed is not True:
            mark = "FAILED" if e.passed is False else "UNDECIDED"
            lines.append(f"  {mark} {e.name}: {e.detail}")
    held = sum(1 for e in result.expectations if e.passed)
    lines.append(f"  ({held} of {len(result.expectations)} expectations held)")
    lines.append(f"report: {(out / 'report.html').resolve()}")
    return "\n".join(lines)


# -- fixtures for hand-written tests -----------------------------------------------------
@pytest.fixture
def overheard_config(tmp_path: Path, request: pytest.FixtureRequest) -> Config:
    """The embedded backend's config: a fresh data dir, a known admin token, seeded ids and
    a frozen clock (it moves only by ``advance_clock``). Override it to change settings."""
    from backend import Config

    seed = request.config.getoption("overheard_seed")
    return Config(data_dir=tmp_path / "backend-data", admin_token=PYTEST_ADMIN_TOKEN,
                  id_seed=0 if seed is None else seed, clock_frozen=True)


@pytest.fixture
def overheard_loop() -> Iterator[LoopThread]:
    """The event loop (in its own thread) that serves the backend and runs the admin client."""
    box = LoopThread()
    yield box
    box.close()


@pytest.fixture
def overheard_backend(overheard_config: Config, overheard_loop: LoopThread,
                      request: pytest.FixtureRequest) -> Iterator[BackendHandle]:
    """An embedded backend on 127.0.0.1 port 0, or the ``--overheard-backend`` one."""
    from simulator.fleet.embedded import BackendHandle, embedded_backend

    url, token = _backend_option(request.config)
    if url:
        yield BackendHandle(url.rstrip("/"), token or "")
        return
    ctx = embedded_backend(overheard_config)
    handle = overheard_loop.call(ctx.__aenter__())
    try:
        yield handle
    finally:
        overheard_loop.call(ctx.__aexit__(None, None, None))


class AdminClient:
    """Every coroutine method of :class:`simulator.fleet.client.Client`, as a blocking call."""

    def __init__(self, handle: BackendHandle, loop: LoopThread) -> None:
        from simulator.fleet.client import Client

        self.handle = handle
        self._loop = loop
        self._client = Client(handle.url, admin_token=handle.admin_token)

    @property
    def url(self) -> str:
        return self.handle.url

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method: Callable[..., Any] = getattr(self._client, name)
        if not inspect.iscoroutinefunction(method):
            return method

        def blocking(*args: Any, **kwargs: Any) -> Any:
            return self._loop.call(method(*args, **kwargs))

        return blocking

    def close(self) -> None:
        self._loop.call(self._client.close())


@pytest.fixture
def overheard_admin(overheard_backend: BackendHandle,
                    overheard_loop: LoopThread) -> Iterator[AdminClient]:
    """A blocking admin client for ``overheard_backend``."""
    client = AdminClient(overheard_backend, overheard_loop)
    yield client
    client.close()


@pytest.fixture
def overheard_world(request: pytest.FixtureRequest) -> Callable[..., World]:
    """``overheard_world(households=[...], seed=0, locale="de_DE", background=0, start=None)``:
    a seeded world. Households are :class:`simulator.world.households.HouseholdSpec` or dicts with a
    scenario's ``[[household]]`` keys (``key``, ``members``, ``devices``, ``recordings``,
    ``locale``)."""
    from simulator.world.households import HouseholdSpec, World

    default_seed = request.config.getoption("overheard_seed") or 0

    def build(households: Sequence[HouseholdSpec | Mapping[str, Any]] = (), *,
              seed: int | None = None, locale: str = "de_DE", background: int = 0,
              start: Any = None) -> World:
        specs = [h if isinstance(h, HouseholdSpec) else HouseholdSpec(**h) for h in households]
        return World.build(default_seed if seed is None else seed, locale, specs,
                           background=background, start=start)

    return build


@pytest.fixture
def run_scenario(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., RunResult]:
    """``run_scenario(path_or_model, seed=None)``: play a scenario, return its RunResult.

    The run folder is ``--overheard-out``/<scenario> or under the test's ``tmp_path``; the
    result's ``run_info["out"]`` names it."""
    from simulator.scenario.runner import run_scenario as play

    url, token = _backend_option(request.config)
    option_seed = request.config.getoption("overheard_seed")
    base = request.config.getoption("overheard_out")

    def run(path_or_model: Scenario | Mapping[str, Any] | str | Path, *,
            seed: int | None = None) -> RunResult:
        scenario = _scenario_of(path_or_model, seed if seed is not None else option_seed)
        out = Path(base) / scenario.name if base else tmp_path / scenario.name
        return run_blocking(play(scenario, out, backend_url=url, admin_token=token,
                                 progress="none"))

    return run


def _scenario_of(value: Scenario | Mapping[str, Any] | str | Path, seed: int | None) -> Scenario:
    """A scenario from a model, its dict, a file or a bundled scenario's name."""
    from simulator.scenario.model import Scenario, bundled_scenario, load_scenario

    if isinstance(value, Scenario):
        return value if seed is None else value.model_copy(update={"seed": seed})
    if isinstance(value, Mapping):
        raw = dict(value) if seed is None else {**value, "seed": seed}
        return Scenario.model_validate(raw)
    path = Path(value)
    if not path.exists():
        path = bundled_scenario(str(value)) or path
    return load_scenario(path, seed=seed)
