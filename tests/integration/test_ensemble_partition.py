"""Network partitions of a 3-server Corral ensemble of real processes.

Every peer link (election and quorum ports) goes through a proxy the test controls
(support/tcpproxy.py): each member's zoo.cfg lists the other members at proxies dedicated to
it and its own line at its real ports; clients connect to the client ports directly. Cutting
a member's proxies cuts it off from its peers while its clients still reach it.

- The leader cut off, black-holed (connections stall, nothing is refused) or one-way
  (whatever it sends stalls, whatever is sent to it arrives): the other two elect a new
  leader and keep acknowledging writes; the old leader stops serving (its clients are
  disconnected, srvr answers "not currently serving") until the network heals, then it
  rejoins as a follower and has every acknowledged write.
- A follower cut off (connections refused and reset): the leader and the other follower
  keep serving; the cut-off follower stops serving; healed, it catches up.
- A partial partition (only the leader-follower link cut, both still reach the third): the
  leader keeps its quorum through the third server; the cut-off follower does not serve
  (it cannot reach the leader the others follow); healed, it rejoins.

Throughout, kazoo clients run a recorded workload; the history is checked linearizable
(writes and the final reads on every server) and each session's reads consistent. The seed
is printed; PARTITION_SEED=<n> replays the same client choices.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from kazoo.protocol.states import KazooState  # type: ignore[import-untyped]

from support import kazoo_client
from support.corral_ensemble import LocalEnsemble
from support.kazoo_workload import (
    Workload,
    make_client,
    setup_keys,
    wait_for,
)
from support.tcpproxy import Mode, PeerNetwork, ProxyHub

WAIT_S = 30.0
KEYS = ["/part/a", "/part/b", "/part/c"]
NODES = "/part/nodes"
NOT_SERVING = "This ZooKeeper instance is not currently serving requests"
# Writes the service must acknowledge in each phase (progress, not a rate).
WRITES_PER_PHASE = 20
# How long a cut is held once in effect, sampling meanwhile: 10 ticks, twice syncLimit (the
# time after which a leader drops a silent follower and a follower a silent leader).
HOLD_S = 2.0


def seed_from_env() -> int:
    seed = int(os.environ.get("PARTITION_SEED", random.randrange(2**32)))
    print(f"PARTITION_SEED={seed}")
    return seed


@contextmanager
def proxied_ensemble(tmp_path: Path) -> Iterator[tuple[LocalEnsemble, PeerNetwork]]:
    with ProxyHub() as hub:
        net = PeerNetwork(hub)
        with LocalEnsemble(tmp_path / "ens", size=3, tick_ms=200, peer_ports=net.route) as ens:
            ens.start_all()
            # The peers really talk through the proxies (every pair's election connection is
            # tried once each has a notification for the other: a quorum may elect first).
            wait_for(
                "every election proxy to carry a connection",
                lambda: all(p.accepted > 0 for p in net.proxies() if "election" in p.name),
                15.0,
            )
            yield ens, net


def srvr(ens: LocalEnsemble, sid: int) -> str:
    try:
        return ens.four_letter(sid, "srvr")
    except OSError as exc:
        return f"({exc})"


def not_serving(ens: LocalEnsemble, sid: int) -> bool:
    return ens.members[sid].serving_as() is None and NOT_SERVING in srvr(ens, sid)


def serving_as(ens: LocalEnsemble, sid: int, role: str) -> bool:
    return ens.members[sid].serving_as() == role and f"Mode: {role}" in srvr(ens, sid)


class Pinned:
    """A client pinned to one server (no other host to fail over to, no command retry):
    shows what that server's own clients see."""

    def __init__(self, ens: LocalEnsemble, sid: int) -> None:
        self.sid = sid
        self.zk = make_client(ens.connect_string([sid]), retry=False)
        self.states: list[str] = []
        self.zk.add_listener(self.states.append)

    def wait_disconnected(self, since: int) -> None:
        """Until the connection is lost (a state change after the first `since` ones)."""
        wait_for(
            f"the client of server {self.sid} to be disconnected",
            lambda: any(
                st in (KazooState.SUSPENDED, KazooState.LOST) for st in self.states[since:]
            ),
            WAIT_S,
        )
        # A request through it does not succeed (it waits for a connection, or fails).
        with pytest.raises(Exception):  # noqa: B017 - a timeout or a connection loss
            self.zk.exists_async("/").get(timeout=1.0)

    def wait_reconnected(self) -> None:
        wait_for(f"the client of server {self.sid} to reconnect", lambda: self.zk.connected, WAIT_S)
        self.zk.exists("/")

    def close(self) -> None:
        kazoo_client.stop(self.zk)


def hold_cut(ens: LocalEnsemble, wl: Workload, pinned: Pinned, why: str) -> None:
    """Keep a cut for HOLD_S (the fault's duration, not a synchronisation): at every sample
    the cut-off member does not serve and its pinned client is not connected, while the
    others acknowledge writes."""
    cut_off = pinned.sid
    start = time.monotonic()
    while time.monotonic() - start < HOLD_S:
        assert not_serving(ens, cut_off), f"server {cut_off} serves while cut off:\n{ens.logs()}"
        assert not pinned.zk.connected, f"server {cut_off} took a session while cut off"
        time.sleep(0.1)
    wl.wait_writes(WRITES_PER_PHASE, start, WAIT_S, why)
    assert not_serving(ens, cut_off), f"server {cut_off} serves while cut off:\n{ens.logs()}"


def start_workload(ens: LocalEnsemble, seed: int, extra_home: int) -> Workload:
    """Four clients: one homed on each server plus a second on `extra_home`."""
    sids = sorted(ens.members)
    setup = make_client(ens.connect_string())
    try:
        setup_keys(setup, KEYS, ["/part", NODES])
    finally:
        kazoo_client.stop(setup)
    strings = [
        ens.connect_string([home, *(s for s in sids if s != home)]) for home in [*sids, extra_home]
    ]
    wl = Workload(strings, seed, KEYS, create_prefix=NODES)
    wl.start()
    return wl


def finish(ens: LocalEnsemble, wl: Workload) -> None:
    """After the workers stopped: every server, read directly after a sync, has every
    acknowledged create and agrees with the history (final reads); then check it."""
    created = set(wl.created())
    for sid in sorted(ens.members):
        zk = make_client(ens.connect_string([sid]))
        try:
            wl.final_reads(f"final{sid}", zk)
            zk.sync(NODES)
            present = {f"{NODES}/{c}" for c in zk.get_children(NODES)}
        finally:
            kazoo_client.stop(zk)
        missing = created - present
        assert not missing, f"server {sid} lacks acknowledged creates {sorted(missing)[:10]}"
        unexpected = present - created - set(wl.maybe_created())
        assert not unexpected, f"server {sid} has creates nobody made {sorted(unexpected)[:10]}"
    summary = wl.check()
    print(summary)
    assert summary.outcomes.get("write:ok", 0) + summary.outcomes.get("cas:ok", 0) > 30


# -- the proxy itself ----------------------------------------------------------------------


class EchoServer:
    """A loopback echo server on a thread (the proxies' target in the proxy's own test)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()


def dial(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5.0)
    return s


def echoes(s: socket.socket, data: bytes) -> bool:
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = s.recv(65536)
        if not chunk:
            return False
        got += chunk
    return got == data


def closed_by_peer(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def refused(port: int) -> bool:
    """A new connection fails: reset during connect (RST may beat connect's return) or
    right after."""
    try:
        s = dial(port)
    except ConnectionError:
        return True
    with s:
        return closed_by_peer(s)


def test_proxy_modes() -> None:
    echo = EchoServer()
    try:
        with ProxyHub() as hub:
            proxy = hub.add(echo.port, "test")
            a = dial(proxy.port)
            assert echoes(a, b"hello")
            # Black hole: the existing connection stalls, a new one is accepted and dead.
            proxy.set_mode(Mode.BLACKHOLE)
            b = dial(proxy.port)
            a.sendall(b"stalled")
            b.sendall(b"lost")
            a.settimeout(0.5)
            with pytest.raises(TimeoutError):
                a.recv(100)
            a.settimeout(5.0)
            # Healed: the stalled bytes arrive late and in order; the black-holed
            # connection (it never reached the target) is reset.
            proxy.set_mode(Mode.PASS)
            got = b""
            while len(got) < len(b"stalled"):
                got += a.recv(100)
            assert got == b"stalled"
            assert closed_by_peer(b)
            # Refuse: new connections are reset, existing ones live until cut.
            proxy.set_mode(Mode.REFUSE)
            assert refused(proxy.port)
            assert echoes(a, b"still")
            proxy.cut()
            assert closed_by_peer(a)
            proxy.set_mode(Mode.PASS)
            d = dial(proxy.port)
            assert echoes(d, b"again")
            for s in (a, b, d):
                s.close()
    finally:
        echo.close()


# -- partitions of an ensemble -------------------------------------------------------------


@pytest.mark.parametrize("cut", ["blackhole", "one-way"])
def test_cut_off_leader_stops_serving_then_rejoins_with_every_write(
    tmp_path: Path, cut: str
) -> None:
    """blackhole: nothing passes either way. one-way: everything the leader sends stalls,
    everything sent to it still arrives (it hears the others, they do not hear it)."""
    seed = seed_from_env()
    with proxied_ensemble(tmp_path) as (ens, net):
        sids = sorted(ens.members)
        old = ens.leader()
        others = [s for s in sids if s != old]
        logs = ens.logs
        wl = start_workload(ens, seed, extra_home=others[0])
        pinned = Pinned(ens, old)
        try:
            wl.wait_writes(WRITES_PER_PHASE, 0.0, WAIT_S, "before the cut")
            seen = len(pinned.states)
            if cut == "blackhole":
                net.isolate(old, Mode.BLACKHOLE)
            else:
                net.mute(old)
            wait_for(
                "a new leader among the two others",
                lambda: [ens.members[s].serving_as() for s in others].count("leader") == 1,
                WAIT_S,
                logs,
            )
            new = ens.leader(others)
            wait_for("the old leader to stop serving", lambda: not_serving(ens, old), WAIT_S, logs)
            pinned.wait_disconnected(seen)
            # The majority keeps acknowledging writes; the old leader still does not serve.
            hold_cut(ens, wl, pinned, "by the majority")
            assert ens.leader(others) == new

            net.heal()
            wait_for(
                "the old leader to follow", lambda: serving_as(ens, old, "follower"), WAIT_S, logs
            )
            assert ens.leader() == new
            pinned.wait_reconnected()
            wl.wait_writes(WRITES_PER_PHASE, time.monotonic(), WAIT_S, "after healing")
        finally:
            wl.stop()
            pinned.close()
        finish(ens, wl)


def test_isolated_follower_then_partial_partition(tmp_path: Path) -> None:
    seed = seed_from_env()
    with proxied_ensemble(tmp_path) as (ens, net):
        sids = sorted(ens.members)
        leader = ens.leader()
        f1, f2 = (s for s in sids if s != leader)
        logs = ens.logs
        wl = start_workload(ens, seed, extra_home=f1)
        pinned = Pinned(ens, f1)
        try:
            wl.wait_writes(WRITES_PER_PHASE, 0.0, WAIT_S, "before the cut")

            # A follower cut off: refused and reset connections.
            seen = len(pinned.states)
            net.isolate(f1, Mode.REFUSE)
            wait_for(
                "the cut-off follower to stop serving", lambda: not_serving(ens, f1), WAIT_S, logs
            )
            pinned.wait_disconnected(seen)
            hold_cut(ens, wl, pinned, "by leader and follower")
            assert ens.leader() == leader and serving_as(ens, f2, "follower")
            net.heal()
            wait_for(
                "the follower to rejoin", lambda: serving_as(ens, f1, "follower"), WAIT_S, logs
            )
            pinned.wait_reconnected()
            wl.wait_writes(WRITES_PER_PHASE, time.monotonic(), WAIT_S, "after healing")

            # A partial partition: only the leader-f1 link is cut; f2 reaches both.
            seen = len(pinned.states)
            net.cut_pair(leader, f1, Mode.REFUSE)
            wait_for("f1 to stop serving", lambda: not_serving(ens, f1), WAIT_S, logs)
            pinned.wait_disconnected(seen)
            hold_cut(ens, wl, pinned, "through f2's quorum")
            assert ens.leader() == leader and serving_as(ens, f2, "follower")
            net.heal()
            wait_for("f1 to rejoin", lambda: serving_as(ens, f1, "follower"), WAIT_S, logs)
            assert ens.leader() == leader
            pinned.wait_reconnected()
            wl.wait_writes(WRITES_PER_PHASE, time.monotonic(), WAIT_S, "after healing")
        finally:
            wl.stop()
            pinned.close()
        finish(ens, wl)
