"""A recorded history of kazoo clients on a 3-server ensemble whose leader is killed (-9)
mid-run, checked: writes (sets and conditional sets, with the versions the servers report)
are linearizable, and reads are sequentially consistent per session (ZooKeeper serves reads
locally, so they are not linearizable: a session's reads never go back, and see its writes).

The seed of the client workload is printed; LIN_SEED=<n> replays the same choices.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from kazoo.client import KazooClient  # type: ignore[import-untyped]
from kazoo.exceptions import BadVersionError  # type: ignore[import-untyped]
from kazoo.protocol.states import KazooState  # type: ignore[import-untyped]
from kazoo.retry import KazooRetry  # type: ignore[import-untyped]

from support.corral_ensemble import LocalEnsemble
from support.history import History, Kind
from support.linearizability import check_linearizable, check_sessions

WAIT_S = 20.0
OP_TIMEOUT_S = 3.0
RUN_BEFORE_KILL_S = 2.0
RUN_AFTER_KILL_S = 5.0
KEYS = ["/lin/a", "/lin/b", "/lin/c"]
INITIAL = b"init"


def client(hosts: str) -> KazooClient:
    retry = KazooRetry(max_tries=-1, delay=0.05, backoff=1.5, max_delay=0.5)
    zk = KazooClient(
        hosts=hosts,
        timeout=4.0,
        randomize_hosts=False,
        connection_retry=retry,
        command_retry=retry.copy(),
    )
    zk.start(timeout=WAIT_S)
    return zk


class Worker(threading.Thread):
    """One client: sets, conditional sets and reads on KEYS until stopped, each recorded."""

    def __init__(self, n: int, zk: KazooClient, hist: History, seed: int) -> None:
        super().__init__(name=f"lin-worker-{n}", daemon=True)
        self.n = n
        self.zk = zk
        self.hist = hist
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.generation = 0  # bumped when the session is lost: a new session, a new name
        self.errors: Counter[str] = Counter()
        self.oks_after: Callable[[], bool] = lambda: False
        self.ok_writes_after_kill = 0
        zk.add_listener(self._state)

    def _state(self, state: str) -> None:
        if state == KazooState.LOST:
            self.generation += 1

    @property
    def session(self) -> str:
        return f"c{self.n}.{self.generation}"

    def run(self) -> None:
        versions = {k: 0 for k in KEYS}  # the last version this client saw per key
        i = 0
        while not self.stop.is_set():
            i += 1
            key = self.rng.choice(KEYS)
            r = self.rng.random()
            if r < 0.45:
                self.read(key, versions)
            else:
                value = f"c{self.n}-{i}".encode()
                expected = versions[key] if r < 0.6 else None
                self.write(key, value, expected, versions)
            time.sleep(self.rng.uniform(0, 0.004))

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
        if self.oks_after():
            self.ok_writes_after_kill += 1


def wait_until(what: str, check: Callable[[], bool], ens: LocalEnsemble) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{ens.logs()}")
        time.sleep(0.05)


def test_history_through_a_leader_kill_is_linearizable(tmp_path: Path) -> None:
    seed = int(os.environ.get("LIN_SEED", random.randrange(2**32)))
    print(f"LIN_SEED={seed}")
    hist = History()
    with LocalEnsemble(tmp_path / "lin", size=3, tick_ms=200) as ens:
        ens.start_all()
        sids = sorted(ens.members)
        old_leader = ens.leader()
        survivors = [s for s in sids if s != old_leader]
        setup = client(ens.connect_string())
        try:
            setup.ensure_path("/lin")
            for k in KEYS:
                setup.create(k, INITIAL)
        finally:
            setup.stop()
            setup.close()

        # Four clients: one on each server (so one on the leader), plus a second one on a
        # follower; each can fail over to the others.
        homes = [*sids, survivors[0]]
        workers: list[Worker] = []
        killed = threading.Event()
        try:
            for n, home in enumerate(homes):
                order = [home, *(s for s in sids if s != home)]
                w = Worker(n, client(ens.connect_string(order)), hist, seed + n)
                w.oks_after = killed.is_set
                workers.append(w)
            for w in workers:
                w.start()
            time.sleep(RUN_BEFORE_KILL_S)
            ens.kill(old_leader)
            killed.set()
            wait_until(
                "a new leader among the survivors",
                lambda: [ens.members[s].serving_as() for s in survivors].count("leader") == 1,
                ens,
            )
            ens.wait_serving(survivors)
            time.sleep(RUN_AFTER_KILL_S)
        finally:
            for w in workers:
                w.stop.set()
            for w in workers:
                w.join(OP_TIMEOUT_S * 2 + 2)
            for w in workers:
                w.zk.stop()
                w.zk.close()
        assert not any(w.is_alive() for w in workers)

        # Final reads on each survivor, after sync and after every client has gone: each
        # follows every operation in real time, so lost acknowledged writes show up here.
        for sid in survivors:
            zk = client(ens.connect_string([sid]))
            try:
                for k in KEYS:
                    zk.sync(k)
                    op = hist.invoke(f"final{sid}", "read", k)
                    data, stat = zk.get(k)
                    hist.ok(op, value=data, version=stat.version)
            finally:
                zk.stop()
                zk.close()

    ops = hist.ops()
    outcomes = Counter(f"{o.kind}:{o.outcome}" for o in ops)
    errors = sum((w.errors for w in workers), Counter[str]())
    print(f"{len(ops)} ops {dict(outcomes)}; errors {dict(errors)}")
    assert outcomes["write:ok"] + outcomes["cas:ok"] > 50, outcomes
    assert outcomes["read:ok"] > 50, outcomes
    # Clients moved off the dead leader and kept writing.
    assert sum(w.ok_writes_after_kill for w in workers) > 10

    initial = {k: (INITIAL, 0) for k in KEYS}
    writes_and_final = [o for o in ops if o.kind != "read" or o.client.startswith("final")]
    started = time.monotonic()
    result = check_linearizable(writes_and_final, initial)
    print(
        f"linearizability: {result.status} in {time.monotonic() - started:.2f}s, steps "
        + str({k: r.steps for k, r in result.keys.items()})
    )
    assert result.ok, f"LIN_SEED={seed}\n{result.explain()}"
    # The checker is not vacuous on this history: a final read that lost the last write
    # (it returns the initial value) is rejected.
    final = next(o for o in writes_and_final if o.client.startswith("final"))
    lost = replace(final, value=INITIAL, version=0)
    mutated = [lost if o.id == final.id else o for o in writes_and_final]
    assert check_linearizable(mutated, initial).status == "violation"
    write_order = {k: r.order for k, r in result.keys.items()}
    sessions = check_sessions(ops, initial, write_order)
    assert sessions.ok, f"LIN_SEED={seed}\n" + "\n".join(sessions.problems[:20])
