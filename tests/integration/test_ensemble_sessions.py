"""Sessions across a 3-server ensemble of real processes, spoken to with the raw client:
local sessions (localSessionsEnabled, with and without localSessionsUpgradingEnabled) and
SESSIONMOVED.

Every test runs against Corral; with `--run-slow` the same tests also run against an
ensemble of Apache ZooKeeper 3.8 servers (Debian's), which is how the behaviour pinned here
was checked against ZooKeeper's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from corral.proto.codes import OpCode
from corral.proto.records import GetDataRequest, SetDataRequest
from support import zookeeper as zookeeper_support
from support.corral_ensemble import LocalEnsemble
from support.rawclient import ConnectionClosed, RawClient

IMPLS = [
    "corral",
    pytest.param("zookeeper", marks=[pytest.mark.slow, pytest.mark.zookeeper]),
]
LOCAL = ("localSessionsEnabled=true", "localSessionsUpgradingEnabled=false")
LOCAL_UPGRADING = ("localSessionsEnabled=true", "localSessionsUpgradingEnabled=true")
EPHEMERAL = 1
EPHEMERAL_ON_LOCAL_SESSION = -120
WAIT_S = 20.0


def _ensemble(
    factory: pytest.TempPathFactory, impl: str, name: str, cfg: tuple[str, ...]
) -> Iterator[LocalEnsemble]:
    if impl == "zookeeper":
        why = zookeeper_support.available()
        if why is not None:
            pytest.skip(why)
    with LocalEnsemble(factory.mktemp(f"{name}-{impl}"), size=3, tick_ms=200, cfg=cfg) as ens:
        for sid in ens.members:
            if impl == "zookeeper":
                ens.start_zookeeper(sid)
            else:
                ens.start(sid)
        ens.wait_serving(sorted(ens.members), timeout_s=60)
        yield ens


@pytest.fixture(scope="module", params=IMPLS)
def plain(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalEnsemble]:
    yield from _ensemble(tmp_path_factory, request.param, "plain", ())


@pytest.fixture(scope="module", params=IMPLS)
def local(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalEnsemble]:
    yield from _ensemble(tmp_path_factory, request.param, "local", LOCAL)


@pytest.fixture(scope="module", params=IMPLS)
def upgrading(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalEnsemble]:
    yield from _ensemble(tmp_path_factory, request.param, "upgrading", LOCAL_UPGRADING)


def roles(ens: LocalEnsemble) -> tuple[int, int, int]:
    """(leader, follower, other follower)."""
    leader = ens.leader()
    a, b = (s for s in sorted(ens.members) if s != leader)
    return leader, a, b


def address(ens: LocalEnsemble, sid: int) -> tuple[str, int]:
    return ("127.0.0.1", ens.members[sid].client_port)


def wait_until(what: str, check: Callable[[], bool], ens: LocalEnsemble) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{ens.logs()}")
        time.sleep(0.05)


def refused(ens: LocalEnsemble, sid: int, client: RawClient) -> bool:
    """Whether reconnecting `client`'s session to `sid` is answered 'expired' (zeros)."""
    try:
        other = RawClient.connect(
            address(ens, sid), session_id=client.session_id, passwd=client.passwd
        )
    except ConnectionClosed:
        return True
    other.abort()
    return False


# --- local sessions ----------------------------------------------------------------------


def test_local_session_costs_no_txn_and_cannot_own_ephemerals(local: LocalEnsemble) -> None:
    leader, follower, _ = roles(local)
    with RawClient.connect(address(local, leader)) as first:
        assert first.session_id >> 56 == leader  # the server's id in the top byte
        base = first.create("/local-base")
        assert base.err == 0
    with RawClient.connect(address(local, follower)) as c:
        assert c.session_id >> 56 == follower
        p = c.create("/local-p", b"v")
        assert p.err == 0
        # Neither the first session's close nor this session's creation logged anything.
        assert p.zxid == base.zxid + 1
        e = c.create("/local-e", b"", flags=EPHEMERAL)
        assert e.err == EPHEMERAL_ON_LOCAL_SESSION
        # The leader still logged the refused create as an error txn (it cannot know the
        # session; the follower answers with the error it knows).
        assert e.zxid == p.zxid + 1
        assert c.exists("/local-e").err != 0
        assert c.set_data("/local-p", b"w").zxid == e.zxid + 1


def test_local_session_cannot_move_but_returns_to_its_server(local: LocalEnsemble) -> None:
    leader, follower, other = roles(local)
    for home in (follower, leader):
        c = RawClient.connect(address(local, home))
        try:
            assert c.create(f"/from-{home}").err == 0
            for sid in (s for s in local.members if s != home):
                assert refused(local, sid, c)  # "expired": only its server knows it
            c.abort()
            back = RawClient.connect(address(local, home), session_id=c.session_id, passwd=c.passwd)
            assert back.session_id == c.session_id
            back.close()
        finally:
            c.abort()


# --- upgrading -------------------------------------------------------------------------------


def test_ephemeral_create_upgrades_and_the_session_then_moves(upgrading: LocalEnsemble) -> None:
    leader, follower, other = roles(upgrading)
    c = RawClient.connect(address(upgrading, follower))
    try:
        p = c.create("/up-p")
        e = c.create("/up-e", b"", flags=EPHEMERAL)
        assert (p.err, e.err) == (0, 0)
        assert e.zxid == p.zxid + 2  # createSession (the upgrade), then the create
        c.abort()
        moved = RawClient.connect(
            address(upgrading, other), session_id=c.session_id, passwd=c.passwd
        )
        with moved:
            assert moved.sync("/").err == 0
            assert list(moved.get_ephemerals("/").result.ephemerals) == ["/up-e"]
        with RawClient.connect(address(upgrading, leader)) as check:
            wait_until(
                "the close deletes the ephemeral", lambda: check.exists("/up-e").err != 0, upgrading
            )
    finally:
        c.abort()


def test_local_session_dies_with_its_server(upgrading: LocalEnsemble) -> None:
    leader, follower, other = roles(upgrading)
    c = RawClient.connect(address(upgrading, follower))
    try:
        assert c.create("/doomed").err == 0
        upgrading.kill(follower)
        c.abort()
        assert refused(upgrading, other, c)
        assert refused(upgrading, leader, c)
    finally:
        c.abort()
        member = upgrading.members[follower]
        if not member.running:
            if member.zookeeper:
                upgrading.start_zookeeper(follower)
            else:
                upgrading.start(follower)
            upgrading.wait_serving([follower], timeout_s=60)


# --- SESSIONMOVED ----------------------------------------------------------------------------


def test_request_on_the_old_follower_connection_after_a_move(plain: LocalEnsemble) -> None:
    """The session reconnects to B while its old connection to A stays open; a write
    through A then fails with SESSIONMOVED at the leader, and A closes that connection
    without a reply."""
    leader, a, b = roles(plain)
    old = RawClient.connect(address(plain, a))
    try:
        assert old.create("/moved", b"v").err == 0
        new = RawClient.connect(address(plain, b), session_id=old.session_id, passwd=old.passwd)
        with new:
            assert new.session_id == old.session_id
            # A still serves reads from its own tree (nobody asks the leader)...
            assert old.get_data("/moved").err == 0
            # ...but a write goes to the leader, which knows the session is B's now.
            old.submit(OpCode.SET_DATA, SetDataRequest("/moved", b"stale", -1))
            assert old.connection_closed(WAIT_S)
            assert new.set_data("/moved", b"fresh").err == 0
            assert new.get_data("/moved").result.data == b"fresh"
    finally:
        old.abort()


def test_any_request_on_the_old_leader_connection_after_a_move(plain: LocalEnsemble) -> None:
    """ZooKeeper's leader checks the session of its own clients' reads and pings too."""
    leader, a, _ = roles(plain)
    for stale in ("read", "ping"):
        old = RawClient.connect(address(plain, leader))
        try:
            new = RawClient.connect(address(plain, a), session_id=old.session_id, passwd=old.passwd)
            with new:
                if stale == "read":
                    old.submit(OpCode.GET_DATA, GetDataRequest("/", False))
                else:
                    old.submit(OpCode.PING, None, -2)
                assert old.connection_closed(WAIT_S), stale
                assert new.ping().err == 0
        finally:
            old.abort()
