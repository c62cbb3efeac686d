"""Local sessions (localSessionsEnabled / localSessionsUpgradingEnabled) on an in-process
ensemble (tests/unit/ensemble_harness.py): server 1 leads servers 2 and 3.

What ZooKeeper does, and these tests pin: a new session is local to the server it connects
to (no createSession txn, no zxid, unknown to the leader), reads and writes persistent nodes,
expires on its own server without a txn, cannot move (another server says it expired), and
either upgrades itself with a createSession on its first ephemeral create or, without
upgrading, gets EPHEMERALONLOCALSESSION. A standalone server ignores the setting.
"""

from __future__ import annotations

from typing import Any

import pytest
from core_harness import Harness, frame, multi_body, request
from ensemble_harness import TICK_MS, Ensemble

from corral.proto import jute
from corral.proto.codes import CreateMode, Err, OpCode
from corral.proto.records import (
    ACL,
    CreateRequest,
    CreateResponse,
    DeleteRequest,
    GetDataRequest,
    GetDataResponse,
    Id,
    RequestHeader,
    SetDataRequest,
)
from corral.server.core import CoreConfig
from corral.server.global_sessions import LeaderSessions, LearnerSessions
from corral.server.local_sessions import creates_ephemeral

OPEN = (ACL(31, Id("world", "anyone")),)
FOLLOWER, LEADER = 2, 1


def create(path: str, data: bytes = b"", flags: int = 0) -> CreateRequest:
    return CreateRequest(path, data, OPEN, flags)


class LocalEnsemble(Ensemble):
    """An Ensemble whose members run with local sessions (and maybe upgrading) on."""

    def __init__(self, upgrading: bool, **kw: Any) -> None:
        self.upgrading = upgrading
        super().__init__(**kw)

    def core_config(self, sid: int) -> CoreConfig:
        return CoreConfig(
            tick_ms=TICK_MS,
            server_id=sid,
            local_sessions_enabled=True,
            local_sessions_upgrading_enabled=self.upgrading,
        )

    def logged(self) -> list[list[int]]:
        return [list(m.logged) for m in self.members.values()]

    def leader_sessions(self) -> LeaderSessions:
        sessions = self.core(LEADER).sessions
        assert isinstance(sessions, LeaderSessions)
        return sessions


@pytest.mark.parametrize("server", [FOLLOWER, LEADER])
def test_a_local_session_logs_nothing_and_reads_and_writes_persistent_nodes(server: int) -> None:
    ens = LocalEnsemble(upgrading=False)
    before = ens.logged()
    zxid_before = ens.core(LEADER).tree.last_zxid
    conn, resp = ens.connect(server)
    sid = resp.session_id
    assert resp.timeout > 0 and sid >> 56 == server  # the server's id in the top byte
    # No createSession txn: nothing logged anywhere, no zxid consumed, the leader's
    # session table does not have it, and neither does any tree.
    assert ens.logged() == before
    assert all(m.tree.last_zxid == zxid_before for m in ens.members.values())
    assert sid not in ens.leader_sessions().timeouts
    assert all(sid not in m.tree.sessions for m in ens.members.values())
    assert ens.core(server).sessions.local_count() == 1  # type: ignore[attr-defined]
    assert ens.core(server).snapshot_for_4lw().local_sessions == 1  # mntr zk_local_sessions

    (c,) = ens.call(conn, 1, OpCode.CREATE, create("/p", b"v"))
    assert c.err == 0 and c.decode(CreateResponse).path == "/p"
    assert c.zxid & 0xFFFFFFFF == 1  # the epoch's first txn: the session cost no zxid
    (s,) = ens.call(conn, 2, OpCode.SET_DATA, SetDataRequest("/p", b"w", -1))
    (g,) = ens.call(conn, 3, OpCode.GET_DATA, GetDataRequest("/p", False))
    assert s.err == 0 and g.decode(GetDataResponse).data == b"w"
    for m in ens.members.values():
        node = m.tree.get("/p")
        assert node is not None and node.data == b"w"


@pytest.mark.parametrize("server", [FOLLOWER, LEADER])
def test_ephemeral_on_a_local_session_without_upgrading(server: int) -> None:
    ens = LocalEnsemble(upgrading=False)
    conn, resp = ens.connect(server)
    for xid, flags in ((1, CreateMode.EPHEMERAL), (2, CreateMode.EPHEMERAL_SEQUENTIAL)):
        (r,) = ens.call(conn, xid, OpCode.CREATE2, create("/e", flags=flags))
        assert r.err == Err.EPHEMERALONLOCALSESSION
    assert all(m.tree.get("/e") is None for m in ens.members.values())
    assert all(resp.session_id not in m.tree.sessions for m in ens.members.values())
    # A multi holding an ephemeral create fails as a whole, the op in error.
    ens.send(
        conn,
        frame(
            jute.encode(RequestHeader(3, int(OpCode.MULTI)))
            + multi_body(
                [
                    (OpCode.CREATE, create("/m")),
                    (OpCode.CREATE, create("/m/e", flags=CreateMode.EPHEMERAL)),
                ]
            )
        ),
    )
    (m,) = ens.replies(conn)
    assert m.xid == 3
    # The leader judges the op: its own local session is EPHEMERALONLOCALSESSION, another
    # server's is SESSIONEXPIRED (checkGlobalSession), as Apache ZooKeeper 3.8 answers.
    err = Err.EPHEMERALONLOCALSESSION if server == LEADER else Err.SESSIONEXPIRED
    assert err.value.to_bytes(4, "big", signed=True) in m.body
    assert all(mem.tree.get("/m") is None for mem in ens.members.values())
    # The session is fine otherwise: containers and persistent nodes work.
    (p,) = ens.call(conn, 4, OpCode.CREATE, create("/p"))
    assert p.err == 0


@pytest.mark.parametrize("server", [FOLLOWER, LEADER])
def test_first_ephemeral_create_upgrades_the_session(server: int) -> None:
    ens = LocalEnsemble(upgrading=True)
    conn, resp = ens.connect(server)
    sid = resp.session_id
    (p,) = ens.call(conn, 1, OpCode.CREATE, create("/p"))
    assert p.err == 0 and all(sid not in m.tree.sessions for m in ens.members.values())
    (e,) = ens.call(conn, 2, OpCode.CREATE, create("/e", flags=CreateMode.EPHEMERAL))
    assert e.err == 0
    # createSession (same id, same timeout) was logged just before the create.
    assert e.zxid == p.zxid + 2
    for m in ens.members.values():
        assert m.tree.sessions.get(sid) == resp.timeout
        node = m.tree.get("/e")
        assert node is not None and node.ephemeral_owner == sid
        assert e.zxid - 1 in m.logged and e.zxid in m.logged
    assert sid in ens.leader_sessions().timeouts
    assert ens.core(server).sessions.local_count() == 0  # type: ignore[attr-defined]
    # A global session now: a second ephemeral costs no second createSession.
    (e2,) = ens.call(conn, 3, OpCode.CREATE, create("/e2", flags=CreateMode.EPHEMERAL))
    assert e2.err == 0 and e2.zxid == e.zxid + 1

    # It survives moving to another server, ephemerals and all.
    ens.close(conn)
    other = 3 if server != 3 else 2
    c2, resp2 = ens.connect(other, session_id=sid, passwd=resp.passwd)
    assert resp2.session_id == sid and resp2.timeout > 0
    (g,) = ens.call(c2, 4, OpCode.GET_DATA, GetDataRequest("/e", False))
    assert g.err == 0
    (d,) = ens.call(c2, 5, OpCode.DELETE, DeleteRequest("/e2", -1))
    assert d.err == 0
    # And it is kept alive by pings through its new server, then closes with a txn.
    for _ in range(10):
        ens.advance(2000)
        ens.send(c2, request(-2, OpCode.PING))
        ens.raw(c2)
    assert all(m.tree.get("/e") is not None for m in ens.members.values())
    (c,) = ens.call(c2, 6, OpCode.CLOSE_SESSION)
    assert c.err == 0 and ens.clients[c2].closed
    for m in ens.members.values():
        assert m.tree.get("/e") is None and sid not in m.tree.sessions


def test_upgrade_through_a_multi_with_an_ephemeral_create() -> None:
    ens = LocalEnsemble(upgrading=True)
    conn, resp = ens.connect(FOLLOWER)
    ens.send(
        conn,
        frame(
            jute.encode(RequestHeader(1, int(OpCode.MULTI)))
            + multi_body(
                [
                    (OpCode.CREATE, create("/m")),
                    (OpCode.CREATE2, create("/m/e", flags=CreateMode.EPHEMERAL)),
                ]
            )
        ),
    )
    (r,) = ens.replies(conn)
    assert r.err == 0
    for m in ens.members.values():
        assert resp.session_id in m.tree.sessions
        node = m.tree.get("/m/e")
        assert node is not None and node.ephemeral_owner == resp.session_id


@pytest.mark.parametrize("upgrading", [False, True])
@pytest.mark.parametrize("home", [FOLLOWER, LEADER])
def test_a_local_session_cannot_move_to_another_server(home: int, upgrading: bool) -> None:
    ens = LocalEnsemble(upgrading=upgrading)
    conn, resp = ens.connect(home)
    ens.call(conn, 1, OpCode.CREATE, create("/p"))  # persistent: no upgrade
    ens.close(conn)
    for other in (s for s in (1, 2, 3) if s != home):
        c, refused = ens.connect(other, session_id=resp.session_id, passwd=resp.passwd)
        assert refused.session_id == 0 and refused.timeout == 0 and ens.clients[c].closed
    # Its own server still knows it.
    c3, back = ens.connect(home, session_id=resp.session_id, passwd=resp.passwd)
    assert back.session_id == resp.session_id and not ens.clients[c3].closed
    (g,) = ens.call(c3, 2, OpCode.GET_DATA, GetDataRequest("/p", False))
    assert g.err == 0


@pytest.mark.parametrize("server", [FOLLOWER, LEADER])
def test_a_local_session_expires_on_its_server_without_a_txn(server: int) -> None:
    ens = LocalEnsemble(upgrading=False)
    live, lresp = ens.connect(server, timeout=6000)
    dead, dresp = ens.connect(server, timeout=6000)
    before = ens.logged()
    for _ in range(10):  # 20 s of pings on one of them only
        ens.advance(2000)
        ens.send(live, request(-2, OpCode.PING))
        assert ens.replies(live)[0].err == 0
    assert ens.clients[dead].closed and not ens.clients[live].closed
    assert ens.logged() == before  # neither its life nor its end was logged
    tracker = ens.core(server).sessions
    assert isinstance(tracker, LeaderSessions | LearnerSessions)
    assert tracker.is_local(lresp.session_id) and not tracker.is_local(dresp.session_id)
    # A follower's pings of a local session are not reported to the leader.
    assert lresp.session_id not in ens.leader_sessions().timeouts
    c, refused = ens.connect(server, session_id=dresp.session_id, passwd=dresp.passwd)
    assert refused.session_id == 0 and ens.clients[c].closed


@pytest.mark.parametrize("server", [FOLLOWER, LEADER])
def test_close_of_a_local_session_is_answered_without_a_txn(server: int) -> None:
    ens = LocalEnsemble(upgrading=False)
    conn, resp = ens.connect(server)
    before = ens.logged()
    # Pipelined behind a write: the close is answered after it, in order.
    ens.send(
        conn,
        request(1, OpCode.CREATE, create("/p")) + request(2, OpCode.CLOSE_SESSION),
    )
    r1, r2 = ens.replies(conn)
    assert (r1.xid, r1.err, r2.xid, r2.err) == (1, 0, 2, 0)
    assert ens.clients[conn].closed
    assert [len(x) for x in ens.logged()] == [len(x) + 1 for x in before]  # the create only
    c, refused = ens.connect(server, session_id=resp.session_id, passwd=resp.passwd)
    assert refused.session_id == 0 and ens.clients[c].closed


def test_global_sessions_still_work_beside_local_ones() -> None:
    """A session upgraded on one follower and a local one on another, side by side; the
    leader tells another server's local session (fine) from an unknown one of its own."""
    ens = LocalEnsemble(upgrading=True)
    g, gresp = ens.connect(2)
    loc, lresp = ens.connect(3)
    ens.call(g, 1, OpCode.CREATE, create("/g", flags=CreateMode.EPHEMERAL))
    (w,) = ens.call(loc, 1, OpCode.SET_DATA, SetDataRequest("/g", b"x", -1))
    assert w.err == 0
    sessions = ens.leader_sessions()
    # Another server's local session: fine, but an ephemeral create is SESSIONEXPIRED there,
    # as ZooKeeper's leader says (checkGlobalSession).
    assert sessions.check(lresp.session_id, 3) == (Err.OK, Err.SESSIONEXPIRED)
    assert sessions.check(gresp.session_id, 2) == (Err.OK, Err.OK)
    assert sessions.check(gresp.session_id, 3) == (Err.SESSIONMOVED, Err.OK)
    mine = (1 << 56) | 4242  # an id of the leader's own it does not know
    assert sessions.check(mine, 2)[0] == Err.SESSIONEXPIRED


def test_standalone_ignores_local_sessions() -> None:
    """As ZooKeeper's ZooKeeperServer: every session is global and logged."""
    h = Harness(CoreConfig(local_sessions_enabled=True, local_sessions_upgrading_enabled=True))
    resp = h.connect(1)
    assert resp.session_id != 0
    assert [hdr.type for hdr, _ in h.log] == [OpCode.CREATE_SESSION]
    (r,) = h.call(1, 1, OpCode.CREATE, create("/e", flags=CreateMode.EPHEMERAL))
    assert r.err == 0


def test_creates_ephemeral() -> None:
    def body(op: int, rec: object) -> bytes:
        return request(1, op, rec)[4:]

    assert creates_ephemeral(OpCode.CREATE, body(OpCode.CREATE, create("/e", flags=1)))
    assert creates_ephemeral(OpCode.CREATE2, body(OpCode.CREATE2, create("/e", flags=3)))
    for flags in (0, 2, 4, 5, 6, 99):
        assert not creates_ephemeral(OpCode.CREATE, body(OpCode.CREATE, create("/e", b"", flags)))
    multi = jute.encode(RequestHeader(1, int(OpCode.MULTI))) + multi_body(
        [(OpCode.SET_DATA, SetDataRequest("/a", b"", -1)), (OpCode.CREATE, create("/e", flags=1))]
    )
    assert creates_ephemeral(OpCode.MULTI, multi)
    assert not creates_ephemeral(OpCode.MULTI, multi[:-5])  # truncated: prep answers it
    assert not creates_ephemeral(OpCode.CREATE, b"\0" * 9)
