"""A 3-server Corral ensemble of real processes on loopback, driven with kazoo.

Writes on one server are read on another after sync; a session moves between servers; and
killing the leader (SIGKILL) elects a new one, clients move to the survivors with their
sessions, and every acknowledged write is still there.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient  # type: ignore[import-untyped]
from kazoo.protocol.states import KazooState  # type: ignore[import-untyped]
from kazoo.retry import KazooRetry  # type: ignore[import-untyped]

from support import kazoo_client
from support.corral_ensemble import LocalEnsemble

WAIT_S = 20.0


@pytest.fixture
def ensemble(tmp_path: Path) -> Iterator[LocalEnsemble]:
    with LocalEnsemble(tmp_path / "ensemble", size=3, tick_ms=200) as ens:
        try:
            ens.start_all()
        except AssertionError:
            ens.stop_all()
            raise
        yield ens


def client(hosts: str, timeout: float = 4.0) -> KazooClient:
    zk = KazooClient(
        hosts=hosts,
        timeout=timeout,
        randomize_hosts=False,
        connection_retry=KazooRetry(max_tries=-1, delay=0.05, backoff=1.5, max_delay=0.5),
        command_retry=KazooRetry(max_tries=-1, delay=0.05, backoff=1.5, max_delay=0.5),
    )
    zk.start(timeout=WAIT_S)
    return zk


def wait_until(what: str, check: object, ens: LocalEnsemble, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{ens.logs()}")
        time.sleep(0.05)


def test_one_leader_two_followers(ensemble: LocalEnsemble) -> None:
    roles = sorted(m.serving_as() or "-" for m in ensemble.members.values())
    assert roles == ["follower", "follower", "leader"], ensemble.logs()


def test_write_on_one_server_read_on_another_after_sync(ensemble: LocalEnsemble) -> None:
    leader = ensemble.leader()
    followers = [s for s in ensemble.members if s != leader]
    writer = client(ensemble.connect_string([followers[0]]))
    reader = client(ensemble.connect_string([followers[1]]))
    on_leader = client(ensemble.connect_string([leader]))
    try:
        writer.create("/e2e", b"v1")
        writer.set("/e2e", b"v2")
        on_leader.create("/from-leader", b"L")
        reader.sync("/e2e")
        data, stat = reader.get("/e2e")
        assert data == b"v2" and stat.version == 1
        reader.sync("/from-leader")
        assert reader.get("/from-leader")[0] == b"L"
        assert sorted(reader.get_children("/")) == ["e2e", "from-leader", "zookeeper"]
        # A transaction across servers: multi from the reader's server.
        t = reader.transaction()
        t.check("/e2e", 1)
        t.set_data("/e2e", b"v3")
        t.create("/e2e/child", b"")
        assert all(not isinstance(r, Exception) for r in t.commit())
        writer.sync("/")
        assert writer.get("/e2e")[0] == b"v3"
        assert writer.get_children("/e2e") == ["child"]
    finally:
        for zk in (writer, reader, on_leader):
            kazoo_client.stop(zk)


def test_killing_the_leader_elects_a_new_one_and_clients_move(ensemble: LocalEnsemble) -> None:
    kill_the_leader_under_a_client(ensemble)


def test_killing_the_leader_of_five(tmp_path: Path) -> None:
    with LocalEnsemble(tmp_path / "five", size=5, tick_ms=200) as ens:
        ens.start_all()
        kill_the_leader_under_a_client(ens)


def kill_the_leader_under_a_client(ensemble: LocalEnsemble) -> None:
    old_leader = ensemble.leader()
    survivors = [s for s in ensemble.members if s != old_leader]
    # The client starts on the leader and can fail over to the others.
    zk = client(ensemble.connect_string([old_leader, *survivors]), timeout=4.0)
    states: list[str] = []
    zk.add_listener(lambda state: states.append(state))
    try:
        zk.create("/eph", b"mine", ephemeral=True)
        acked = []
        for i in range(20):
            zk.create(f"/k{i}", b"%d" % i)
            acked.append(f"/k{i}")
        session_id = zk.client_id[0]
        fired: list[object] = []
        zk.get("/k0", watch=fired.append)

        ensemble.kill(old_leader)
        wait_until(
            "a new leader among the survivors",
            lambda: [ensemble.members[s].serving_as() for s in survivors].count("leader") == 1,
            ensemble,
        )
        new_leader = ensemble.leader(survivors)
        ensemble.wait_serving(survivors)
        # kazoo reconnects to a survivor with its session; the write goes through.
        zk.create("/after", b"x")
        assert zk.client_id[0] == session_id
        assert zk.state == KazooState.CONNECTED
        assert zk.exists("/eph") is not None  # the session (and its ephemeral) survived
        assert KazooState.SUSPENDED in states and KazooState.LOST not in states
        # The watch moved with the session (setWatches on reconnect) and still fires.
        other = client(ensemble.connect_string([survivors[-1]]))
        try:
            other.set("/k0", b"changed")
        finally:
            kazoo_client.stop(other)
        wait_until("the moved watch to fire", lambda: bool(fired), ensemble)

        # Every acknowledged write is on both survivors.
        for sid in survivors:
            other = client(ensemble.connect_string([sid]))
            try:
                other.sync("/")
                for path in [*acked, "/after", "/eph"]:
                    assert other.exists(path) is not None, (sid, path)
            finally:
                kazoo_client.stop(other)
        assert new_leader in survivors
    finally:
        kazoo_client.stop(zk)


def test_a_killed_server_restarts_and_catches_up(ensemble: LocalEnsemble) -> None:
    leader = ensemble.leader()
    follower = next(s for s in ensemble.members if s != leader)
    zk = client(ensemble.connect_string([leader]))
    try:
        zk.create("/before", b"1")
        ensemble.kill(follower)
        for i in range(10):
            zk.create(f"/while-down{i}", b"")
    finally:
        kazoo_client.stop(zk)
    ensemble.start(follower)
    ensemble.wait_serving([follower])
    assert ensemble.members[follower].serving_as() == "follower"
    back = client(ensemble.connect_string([follower]))
    try:
        back.sync("/")
        assert back.exists("/before") is not None
        assert all(back.exists(f"/while-down{i}") is not None for i in range(10))
    finally:
        kazoo_client.stop(back)


def test_the_whole_ensemble_restarts_with_its_data(ensemble: LocalEnsemble) -> None:
    zk = client(ensemble.connect_string())
    try:
        zk.create("/durable", b"d")
    finally:
        kazoo_client.stop(zk)
    ensemble.stop_all()
    for sid in ensemble.members:
        ensemble.start(sid)
    ensemble.wait_serving(sorted(ensemble.members))
    zk = client(ensemble.connect_string())
    try:
        assert zk.get("/durable")[0] == b"d"
        zk.create("/second-life", b"")
    finally:
        kazoo_client.stop(zk)


def test_a_server_far_behind_catches_up_by_snapshot(tmp_path: Path) -> None:
    # A DIFF window of 20 txns: a follower that misses 60 must get a SNAP.
    props = {"zookeeper.commitLogCount": "20"}
    with LocalEnsemble(tmp_path / "snap", size=3, tick_ms=200, properties=props) as ens:
        ens.start_all()
        leader = ens.leader()
        follower = next(s for s in ens.members if s != leader)
        zk = client(ens.connect_string([leader]))
        try:
            zk.create("/eph-owner", b"", ephemeral=True)
            ens.kill(follower)
            for i in range(60):
                zk.create(f"/n{i}", b"%d" % i)
            ens.start(follower)
            ens.wait_serving([follower])
            back = client(ens.connect_string([follower]))
            try:
                back.sync("/")
                assert back.get("/n59")[0] == b"59"
                assert len(back.get_children("/")) == 60 + 2  # + /eph-owner, /zookeeper
                back.create("/after-snap", b"")
                zk.sync("/")
                assert zk.exists("/after-snap") is not None
            finally:
                kazoo_client.stop(back)
            assert "SNAP" in ens.members[leader].log_text()
        finally:
            kazoo_client.stop(zk)


def test_an_observer_serves_reads_and_forwards_writes(tmp_path: Path) -> None:
    with LocalEnsemble(tmp_path / "obs", size=4, tick_ms=200, observers=(4,)) as ens:
        ens.start_all()
        assert ens.members[4].serving_as() == "observer"
        zk = client(ens.connect_string([4]))
        other = client(ens.connect_string([1]))
        try:
            zk.create("/via-observer", b"o")
            other.sync("/")
            assert other.get("/via-observer")[0] == b"o"
            other.set("/via-observer", b"p")
            zk.sync("/")
            assert zk.get("/via-observer")[0] == b"p"
        finally:
            for c in (zk, other):
                kazoo_client.stop(c)


def test_a_paused_follower_is_dropped_and_rejoins(ensemble: LocalEnsemble) -> None:
    leader = ensemble.leader()
    follower = next(s for s in ensemble.members if s != leader)
    proc = ensemble.members[follower].proc
    assert proc is not None
    zk = client(ensemble.connect_string([leader]))
    try:
        proc.send_signal(signal.SIGSTOP)
        try:
            for i in range(20):
                zk.create(f"/paused{i}", b"")  # a quorum of two keeps committing
            wait_until(
                "the leader to drop the paused follower",
                lambda: "dropping learner" in ensemble.members[leader].log_text(),
                ensemble,
            )
        finally:
            proc.send_signal(signal.SIGCONT)
        wait_until(
            "the follower to rejoin",
            lambda: ensemble.members[follower].log_text().count("serving clients as") >= 2,
            ensemble,
        )
        ensemble.wait_serving([follower])
        back = client(ensemble.connect_string([follower]))
        try:
            back.sync("/")
            assert all(back.exists(f"/paused{i}") is not None for i in range(20))
        finally:
            kazoo_client.stop(back)
    finally:
        kazoo_client.stop(zk)


def test_an_uncommitted_txn_is_truncated_when_its_leader_returns(ensemble: LocalEnsemble) -> None:
    old_leader = ensemble.leader()
    followers = [s for s in ensemble.members if s != old_leader]
    zk = client(ensemble.connect_string([old_leader]))
    try:
        zk.create("/committed", b"")
        # Killed, not paused: a paused follower would still find the proposal in its socket
        # buffer when resumed, log it, and (legitimately) let the next leader commit it.
        for sid in followers:
            ensemble.kill(sid)
        # Proposed and logged by the leader alone: never committed.
        zk.create_async("/uncommitted", b"")
        wait_until(
            "the leader to lose its quorum",
            lambda: "stops leading" in ensemble.members[old_leader].log_text(),
            ensemble,
        )
    finally:
        kazoo_client.stop(zk)
    ensemble.kill(old_leader)
    for sid in followers:
        ensemble.start(sid)
    wait_until(
        "a new leader among the followers",
        lambda: [ensemble.members[s].serving_as() for s in followers].count("leader") == 1,
        ensemble,
    )
    ensemble.wait_serving(followers)
    ensemble.start(old_leader)
    ensemble.wait_serving([old_leader])
    assert ensemble.members[old_leader].serving_as() == "follower"
    # Its log is cut back by a TRUNC, or, when its recovery snapshot already holds the txn
    # (the store snapshots after replay, as ZooKeeper does), replaced by a SNAP.
    text = ensemble.members[old_leader].log_text()
    assert "TRUNC to" in text or "cannot truncate" in text, text
    for sid in ensemble.members:
        c = client(ensemble.connect_string([sid]))
        try:
            c.sync("/")
            assert c.exists("/committed") is not None, sid
            assert c.exists("/uncommitted") is None, sid
        finally:
            kazoo_client.stop(c)
