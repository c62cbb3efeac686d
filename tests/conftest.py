"""Shared fixtures: Apache ZooKeeper and Corral servers, and the process/port leak check.

Server fixtures:
- `zookeeper`, `corral`: one default server per test module (JVM start is slow).
- `zookeeper_pool`, `corral_pool`: per module, `pool.get(ServerSettings(...))` starts (once
  per distinct settings) and shares servers with other settings.
- `zookeeper_factory`, `corral_factory`: `factory(settings)` starts a fresh server owned by
  the calling test and stopped after it (for tests that stop, kill or restart servers).

Tests using a ZooKeeper fixture get the `zookeeper` marker automatically. Tests marked
`slow` are skipped unless `--run-slow` is given or `-m` selects markers explicitly.

Leak check: each server's `stop()` asserts its port is closed; after every test, any
process started during it and not owned by a longer-lived fixture is killed and fails the
test; at the end of the session nothing may remain.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support import corral as corral_support
from support import procs
from support import zookeeper as zookeeper_support
from support.procs import ServerProcess, ServerSettings

ZOOKEEPER_FIXTURES = {"zookeeper", "zookeeper_pool", "zookeeper_factory"}

# PIDs of servers owned by module- or session-scoped pools (not leaks while the pool lives).
_SHARED: set[int] = set()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow", action="store_true", default=False, help="also run tests marked slow"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_slow = config.getoption("--run-slow") or bool(config.getoption("-m"))
    skip_slow = pytest.mark.skip(reason="slow: use --run-slow (or -m slow)")
    for item in items:
        if ZOOKEEPER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.zookeeper)
        if not run_slow and item.get_closest_marker("slow") is not None:
            item.add_marker(skip_slow)


class ServerPool:
    """Servers of one kind shared by the tests of a module, one per distinct settings."""

    def __init__(
        self,
        start: Callable[[ServerSettings, Path], ServerProcess],
        tmp: pytest.TempPathFactory,
        kind: str,
    ) -> None:
        self._start = start
        self._tmp = tmp
        self._kind = kind
        self._servers: dict[ServerSettings, ServerProcess] = {}
        self._failed: dict[ServerSettings, str] = {}

    def get(self, settings: ServerSettings | None = None) -> ServerProcess:
        settings = settings or ServerSettings()
        if settings in self._failed:
            pytest.fail(self._failed[settings])
        server = self._servers.get(settings)
        if server is None:
            try:
                server = self._start(settings, self._tmp.mktemp(self._kind))
            except procs.ServerStartError as exc:
                # One failure report per settings, not one per test of the module.
                self._failed[settings] = f"{self._kind} did not start: {exc}"
                raise
            assert server.pid is not None
            _SHARED.add(server.pid)
            self._servers[settings] = server
        return server

    def close(self) -> None:
        errors = []
        for server in self._servers.values():
            if server.pid is not None:
                _SHARED.discard(server.pid)
            try:
                server.stop()
            except AssertionError as exc:
                errors.append(str(exc))
        self._servers.clear()
        if errors:
            raise AssertionError("; ".join(errors))


def _need_zookeeper() -> None:
    why = zookeeper_support.available()
    if why is not None:
        pytest.skip(why)


def _need_corral() -> None:
    why = corral_support.available()
    if why is not None:
        pytest.skip(why)


@pytest.fixture(scope="module")
def zookeeper_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPool]:
    _need_zookeeper()
    pool = ServerPool(zookeeper_support.start_zookeeper, tmp_path_factory, "zookeeper")
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def corral_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerPool]:
    _need_corral()
    pool = ServerPool(corral_support.start_corral, tmp_path_factory, "corral")
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def zookeeper(zookeeper_pool: ServerPool) -> ServerProcess:
    """Apache ZooKeeper with default settings, shared by the module."""
    return zookeeper_pool.get(ServerSettings())


@pytest.fixture(scope="module")
def corral(corral_pool: ServerPool) -> ServerProcess:
    """Corral with default settings, shared by the module."""
    return corral_pool.get(ServerSettings())


def _factory(
    start: Callable[[ServerSettings, Path], ServerProcess], tmp_path: Path, kind: str
) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def make(settings: ServerSettings | None = None) -> ServerProcess:
        server = start(settings or ServerSettings(), tmp_path / f"{kind}{len(started)}")
        started.append(server)
        return server

    yield make
    errors = []
    for server in started:
        try:
            server.stop()
        except AssertionError as exc:
            errors.append(str(exc))
    if errors:
        raise AssertionError("; ".join(errors))


@pytest.fixture
def zookeeper_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """factory(settings) -> a fresh, started ZooKeeper stopped after the test."""
    _need_zookeeper()
    yield from _factory(zookeeper_support.start_zookeeper, tmp_path, "zookeeper")


@pytest.fixture
def corral_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """factory(settings) -> a fresh, started Corral stopped after the test."""
    _need_corral()
    yield from _factory(corral_support.start_corral, tmp_path, "corral")


@pytest.fixture(autouse=True)
def _no_leaked_processes() -> Iterator[None]:
    """Fail a test that leaves a server process running that no live fixture owns.

    Autouse, so it is set up first and torn down last: function-scoped factories have
    stopped their servers by the time this checks.
    """
    before = set(procs.LIVE)
    yield
    leaked = procs.reap_new(before, _SHARED)
    if leaked:
        pytest.fail(f"processes left running by the test (now killed): {leaked}")


@pytest.fixture(autouse=True)
def _no_frozen_objects() -> Iterator[None]:
    """Fail a test that leaves the collector frozen (a server run in-process calls
    gc.freeze): frozen objects are invisible to gc.get_referrers, and hypothesis, under its CI
    profile, then fails a later test with a warning about its own PRNG."""
    yield
    frozen = gc.get_freeze_count()
    if frozen:
        gc.unfreeze()
        pytest.fail(f"the test left {frozen} objects frozen (gc.freeze): unfreeze them")


@pytest.fixture(autouse=True, scope="session")
def _no_processes_after_session() -> Iterator[None]:
    yield
    remaining = procs.leaked()
    for server in list(procs.LIVE.values()):
        server.kill()
    assert not remaining, f"server processes still running at the end: {remaining}"
    ports = procs.open_ports()
    assert not ports, f"ports still open after their servers stopped: {ports}"
