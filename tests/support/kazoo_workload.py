"""A recorded kazoo workload for ensemble fault tests: clients on threads doing register
operations (read, set, conditional set) recorded in a `History` for the linearizability
checker, and optionally creates of unique znodes, whose acknowledged paths are kept so a
test can check that every acknowledged write survived.

Used by the partition and rolling-restart tests: the faults differ, the workload and the
checks are the same. Every wait is a bounded poll of recorded progress.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from kazoo.client import KazooClient  # type: ignore[import-untyped]
from kazoo.exceptions import BadVersionError  # type: ignore[import-untyped]
from kazoo.protocol.states import KazooState  # type: ignore[import-untyped]
from kazoo.retry import KazooRetry  # type: ignore[import-untyped]

from support import kazoo_client
from support.history import History, Kind
from support.linearizability import check_linearizable, check_sessions

OP_TIMEOUT_S = 3.0
CONNECT_TIMEOUT_S = 20.0
INITIAL = b"init"


def make_client(hosts: str, timeout_s: float = 4.0, retry: bool = True) -> KazooClient:
    """A started kazoo client on `hosts` in the given order; with `retry`, it reconnects
    forever (the workload's clients), without it one connection attempt at a time."""
    conn = KazooRetry(max_tries=-1, delay=0.05, backoff=1.5, max_delay=0.5)
    return kazoo_client.start(
        hosts,
        timeout=timeout_s,
        start_timeout=CONNECT_TIMEOUT_S,
        randomize_hosts=False,
        connection_retry=conn,
        command_retry=conn.copy() if retry else None,
    )


class Worker(threading.Thread):
    """One client: reads, sets and conditional sets on `keys` (recorded), and with
    `create_prefix` also creates of unique znodes under it (acknowledged ones kept)."""

    def __init__(
        self,
        n: int,
        zk: KazooClient,
        hist: History,
        seed: int,
        keys: list[str],
        create_prefix: str | None = None,
    ) -> None:
        super().__init__(name=f"workload-{n}", daemon=True)
        self.n = n
        self.zk = zk
        self.hist = hist
        self.keys = keys
        self.create_prefix = create_prefix
        self.rng = random.Random(seed)
        self.stop_event = threading.Event()
        self.generation = 0  # bumped when the session is lost: a new session, a new name
        self.errors: Counter[str] = Counter()
        self.ok_write_times: list[float] = []  # completion times of acknowledged writes
        self.created: list[str] = []  # acknowledged creates
        self.maybe_created: list[str] = []  # creates of unknown outcome
        zk.add_listener(self._state)

    def _state(self, state: str) -> None:
        if state == KazooState.LOST:
            self.generation += 1

    @property
    def session(self) -> str:
        return f"c{self.n}.{self.generation}"

    def run(self) -> None:
        versions = {k: 0 for k in self.keys}  # the last version this client saw per key
        i = 0
        while not self.stop_event.is_set():
            i += 1
            key = self.rng.choice(self.keys)
            r = self.rng.random()
            if self.create_prefix is not None and r < 0.3:
                self.create(f"{self.create_prefix}/c{self.n}-{i:06d}")
            elif r < 0.6:
                self.read(key, versions)
            else:
                value = f"c{self.n}-{i}".encode()
                expected = versions[key] if r < 0.75 else None
                self.write(key, value, expected, versions)
            time.sleep(self.rng.uniform(0, 0.004))  # pacing, not synchronisation

    def read(self, key: str, versions: dict[str, int]) -> None:
        op = self.hist.invoke(self.session, "read", key)
        try:
            data, stat = self.zk.get_async(key).get(timeout=OP_TIMEOUT_S)
        except Exception as e:  # any failed read tells nothing
            self.errors[type(e).__name__] += 1
            self.hist.fail(op)
            return
        self.hist.ok(op, value=data, version=stat.version)
        versions[key] = max(versions[key], stat.version)

    def write(self, key: str, value: bytes, expected: int | None, versions: dict[str, int]) -> None:
        kind: Kind = "write" if expected is None else "cas"
        op = self.hist.invoke(self.session, kind, key, value, expected=expected)
        try:
            stat = self.zk.set_async(key, value, -1 if expected is None else expected).get(
                timeout=OP_TIMEOUT_S
            )
        except BadVersionError:
            self.hist.fail(op)
            return
        except Exception as e:  # connection loss, timeout: may have applied
            self.errors[type(e).__name__] += 1
            self.hist.unknown(op)
            return
        self.hist.ok(op, version=stat.version)
        versions[key] = max(versions[key], stat.version)
        self.ok_write_times.append(time.monotonic())

    def create(self, path: str) -> None:
        try:
            self.zk.create_async(path, path.encode()).get(timeout=OP_TIMEOUT_S)
        except Exception as e:  # connection loss, timeout: may have applied
            self.errors[type(e).__name__] += 1
            self.maybe_created.append(path)
            return
        self.created.append(path)
        self.ok_write_times.append(time.monotonic())


@dataclass
class Summary:
    ops: int
    outcomes: dict[str, int]
    errors: dict[str, int]
    created: int
    lin_status: str
    lin_seconds: float
    # The non-vacuity check ran: a copy of the history whose first final read lost the
    # last write (it returns the initial value) was rejected by the checker.
    mutation_rejected: bool = False

    def __str__(self) -> str:
        return (
            f"{self.ops} register ops {self.outcomes}; {self.created} acknowledged creates; "
            f"client errors {self.errors}; linearizability {self.lin_status} in "
            f"{self.lin_seconds:.2f}s"
        )


class Workload:
    """Workers on an ensemble, one per entry of `homes` (a connect string each: the home
    server first, so each server gets clients, and the others to fail over to)."""

    def __init__(
        self,
        connect_strings: list[str],
        seed: int,
        keys: list[str],
        create_prefix: str | None = None,
    ) -> None:
        self.hist = History()
        self.keys = keys
        self.seed = seed
        self.workers = [
            Worker(n, make_client(hosts), self.hist, seed + n, keys, create_prefix)
            for n, hosts in enumerate(connect_strings)
        ]

    def start(self) -> None:
        for w in self.workers:
            w.start()

    def stop(self) -> None:
        for w in self.workers:
            w.stop_event.set()
        for w in self.workers:
            w.join(OP_TIMEOUT_S * 2 + 5)
        for w in self.workers:
            kazoo_client.stop(w.zk)
        alive = [w.name for w in self.workers if w.is_alive()]
        assert not alive, f"workers did not stop: {alive}"

    def ok_writes_since(self, t: float) -> int:
        return sum(sum(1 for x in list(w.ok_write_times) if x > t) for w in self.workers)

    def wait_writes(self, n: int, since: float, timeout_s: float, why: str = "") -> None:
        """Until `n` writes acknowledged after `since` (the service makes progress)."""
        deadline = time.monotonic() + timeout_s
        while self.ok_writes_since(since) < n:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"only {self.ok_writes_since(since)} of {n} writes acknowledged {why}"
                    f" in {timeout_s}s; errors {self.errors()}"
                )
            time.sleep(0.05)

    def created(self) -> list[str]:
        return [p for w in self.workers for p in w.created]

    def maybe_created(self) -> list[str]:
        return [p for w in self.workers for p in w.maybe_created]

    def errors(self) -> dict[str, int]:
        return dict(sum((w.errors for w in self.workers), Counter[str]()))

    def final_reads(self, name: str, zk: KazooClient) -> None:
        """Read every key through `zk` after a sync, recorded as client `name`: run after
        every worker stopped, so these follow every operation in real time."""
        for k in self.keys:
            zk.sync(k)
            op = self.hist.invoke(name, "read", k)
            data, stat = zk.get(k)
            self.hist.ok(op, value=data, version=stat.version)

    def check(self, final_prefix: str = "final") -> Summary:
        """Writes (and the final reads) linearizable, every session's reads consistent;
        raises AssertionError naming the seed otherwise."""
        ops = self.hist.ops()
        initial = {k: (INITIAL, 0) for k in self.keys}
        checked = [o for o in ops if o.kind != "read" or o.client.startswith(final_prefix)]
        started = time.monotonic()
        result = check_linearizable(checked, initial)
        took = time.monotonic() - started
        assert result.ok, f"seed {self.seed}\n{result.explain()}"
        # Not vacuous: a final read that lost the last write is rejected.
        final = next((o for o in checked if o.client.startswith(final_prefix)), None)
        mutation_rejected = False
        if final is not None and final.version:
            lost = replace(final, value=INITIAL, version=0)
            mutated = [lost if o.id == final.id else o for o in checked]
            assert check_linearizable(mutated, initial).status == "violation"
            mutation_rejected = True
        order = {k: r.order for k, r in result.keys.items()}
        sessions = check_sessions(ops, initial, order)
        assert sessions.ok, f"seed {self.seed}\n" + "\n".join(sessions.problems[:20])
        return Summary(
            ops=len(ops),
            outcomes=dict(Counter(f"{o.kind}:{o.outcome}" for o in ops)),
            errors=self.errors(),
            created=len(self.created()),
            lin_status=result.status,
            lin_seconds=took,
            mutation_rejected=mutation_rejected,
        )


def setup_keys(zk: KazooClient, keys: Iterable[str], parents: Iterable[str]) -> None:
    for p in parents:
        zk.ensure_path(p)
    for k in keys:
        zk.create(k, INITIAL)


def wait_for(
    what: str, check: Callable[[], bool], timeout_s: float, context: Callable[[], str] | None = None
) -> None:
    """Poll `check` until true (bounded): a wait for observable state, never a timed sleep.
    `context()` (e.g. the servers' logs) goes into the failure message."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            extra = context() if context is not None else ""
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}\n{extra}")
        time.sleep(0.05)
