"""The ensemble core driven by real Zab cores in one process (tests/unit/ensemble_harness.py).

Server 1 leads servers 2 and 3 (and an observer where a test says so); clients speak raw
protocol bytes to any of them.
"""

from __future__ import annotations

from core_harness import frame, multi_body, request
from ensemble_harness import Ensemble

from corral.net.zab_bridge import outstanding_proposals
from corral.proto import jute
from corral.proto.codes import CreateMode, Err, EventType, OpCode
from corral.proto.records import (
    ACL,
    CreateRequest,
    CreateResponse,
    GetDataRequest,
    GetDataResponse,
    Id,
    RequestHeader,
    SetDataRequest,
    SetDataResponse,
    SyncRequest,
    SyncResponse,
)

OPEN = (ACL(31, Id("world", "anyone")),)


def create(path: str, data: bytes = b"", flags: int = 0) -> CreateRequest:
    return CreateRequest(path, data, OPEN, flags)


def test_all_servers_established_with_modes() -> None:
    ens = Ensemble(3)
    assert [ens.core(s).mode for s in (1, 2, 3)] == ["leader", "follower", "follower"]


def test_write_on_a_follower_is_committed_everywhere_and_answered() -> None:
    ens = Ensemble(3)
    conn, resp = ens.connect(2)
    assert resp.session_id >> 56 == 2  # the follower's id is in the session id
    for m in ens.members.values():
        assert resp.session_id in m.tree.sessions  # createSession went through the leader
    (reply,) = ens.call(conn, 1, OpCode.CREATE, create("/a", b"x"))
    assert reply.err == 0 and reply.decode(CreateResponse).path == "/a"
    for m in ens.members.values():
        node = m.tree.get("/a")
        assert node is not None and node.data == b"x"
        assert m.tree.last_zxid == reply.zxid
    # Every server logged the txn before it was applied anywhere.
    assert all(reply.zxid in m.logged for m in ens.members.values())


def test_write_on_the_leader() -> None:
    ens = Ensemble(3)
    conn, resp = ens.connect(1)
    assert resp.session_id >> 56 == 1
    (reply,) = ens.call(conn, 1, OpCode.CREATE, create("/l"))
    assert reply.err == 0
    assert all(m.tree.get("/l") is not None for m in ens.members.values())


def test_errors_from_the_leaders_prep_reach_the_followers_client() -> None:
    ens = Ensemble(3)
    conn, _ = ens.connect(3)
    (r1,) = ens.call(conn, 1, OpCode.CREATE, create("/dup"))
    (r2,) = ens.call(conn, 2, OpCode.CREATE, create("/dup"))
    (r3,) = ens.call(conn, 3, OpCode.SET_DATA, SetDataRequest("/missing", b"", -1))
    assert (r1.err, r2.err, r3.err) == (0, Err.NODEEXISTS, Err.NONODE)
    assert r1.zxid < r2.zxid < r3.zxid  # failed writes consume zxids too


def test_pipelined_read_waits_behind_the_write_on_a_follower() -> None:
    ens = Ensemble(3)
    conn, _ = ens.connect(2)
    data = request(1, OpCode.CREATE, create("/p", b"v")) + request(
        2, OpCode.GET_DATA, GetDataRequest("/p", False)
    )
    ens.send(conn, data)
    r1, r2 = ens.replies(conn)
    assert (r1.xid, r1.err, r2.xid, r2.err) == (1, 0, 2, 0)
    assert r2.decode(GetDataResponse).data == b"v"


def test_sync_then_read_on_another_server_sees_the_write() -> None:
    ens = Ensemble(3)
    writer, _ = ens.connect(2)
    reader, _ = ens.connect(3)
    (w,) = ens.call(writer, 1, OpCode.CREATE, create("/s", b"1"))
    assert w.err == 0
    (s,) = ens.call(reader, 1, OpCode.SYNC, SyncRequest("/s"))
    assert s.err == 0 and s.decode(SyncResponse).path == "/s"
    assert s.zxid >= w.zxid
    (g,) = ens.call(reader, 2, OpCode.GET_DATA, GetDataRequest("/s", False))
    assert g.decode(GetDataResponse).data == b"1"


def test_sync_is_answered_only_after_the_leaders_sync() -> None:
    ens = Ensemble(3)
    reader, _ = ens.connect(3)
    # Deliver the client's sync but hold the quorum traffic: no answer yet.
    ens.clients[reader].inbox.clear()
    core = ens.core(3)
    out = core.receive(reader, request(5, OpCode.SYNC, SyncRequest("/")), ens.now, ens.wall)
    assert not out.sends
    ens.run()
    (s,) = ens.replies(reader)
    assert s.xid == 5 and s.err == 0


def test_watch_on_one_server_fires_for_a_write_on_another() -> None:
    ens = Ensemble(3)
    a, _ = ens.connect(2)
    b, _ = ens.connect(3)
    ens.call(a, 1, OpCode.CREATE, create("/w", b"0"))
    ens.call(b, 1, OpCode.SYNC, SyncRequest("/w"))
    (g,) = ens.call(b, 2, OpCode.GET_DATA, GetDataRequest("/w", True))
    assert g.err == 0
    (s,) = ens.call(a, 2, OpCode.SET_DATA, SetDataRequest("/w", b"1", -1))
    assert s.decode(SetDataResponse).stat.version == 1
    (ev,) = ens.replies(b)
    assert ev.xid == -1 and ev.event().type == EventType.NODE_DATA_CHANGED


def test_session_moves_to_another_server_after_revalidation() -> None:
    ens = Ensemble(3)
    c1, resp = ens.connect(2)
    ens.call(c1, 1, OpCode.CREATE, create("/e", flags=CreateMode.EPHEMERAL))
    ens.close(c1)
    c2, resp2 = ens.connect(3, session_id=resp.session_id, passwd=resp.passwd)
    assert resp2.session_id == resp.session_id and resp2.timeout > 0
    (g,) = ens.call(c2, 5, OpCode.GET_DATA, GetDataRequest("/e", False))
    assert g.err == 0
    # The ephemeral still belongs to the session, which now lives on server 3.
    assert all(m.tree.get("/e") is not None for m in ens.members.values())


def test_reconnect_with_a_wrong_password_or_unknown_session_is_refused() -> None:
    ens = Ensemble(3)
    _, resp = ens.connect(2)
    c, bad = ens.connect(3, session_id=resp.session_id, passwd=b"\1" * 16)
    assert bad.session_id == 0 and ens.clients[c].closed
    unknown = (3 << 56) | 12345
    c2, bad2 = ens.connect(2, session_id=unknown, passwd=ens.core(2)._password(unknown))
    assert bad2.session_id == 0 and ens.clients[c2].closed


def test_sessions_on_followers_live_by_pings_and_expire_without_them() -> None:
    ens = Ensemble(3)
    live, lresp = ens.connect(2, timeout=6000)
    dead, dresp = ens.connect(3, timeout=6000)
    ens.call(live, 1, OpCode.CREATE, create("/live", flags=CreateMode.EPHEMERAL))
    ens.call(dead, 1, OpCode.CREATE, create("/dead", flags=CreateMode.EPHEMERAL))
    for _ in range(10):  # 20 s of client pings on the live session only
        ens.advance(2000)
        ens.send(live, request(-2, OpCode.PING))
        ens.raw(live)
    for m in ens.members.values():
        assert m.tree.get("/live") is not None, m.sid
        assert m.tree.get("/dead") is None, m.sid  # expired by the leader, deleted everywhere
        assert lresp.session_id in m.tree.sessions
        assert dresp.session_id not in m.tree.sessions
    assert ens.clients[dead].closed  # the expired session's connection is dropped


def test_close_session_from_a_follower_client() -> None:
    ens = Ensemble(3)
    c, resp = ens.connect(2)
    ens.call(c, 1, OpCode.CREATE, create("/eph", flags=CreateMode.EPHEMERAL))
    (r,) = ens.call(c, 2, OpCode.CLOSE_SESSION)
    assert r.err == 0 and ens.clients[c].closed
    for m in ens.members.values():
        assert m.tree.get("/eph") is None
        assert resp.session_id not in m.tree.sessions


def test_observer_serves_reads_and_forwards_writes() -> None:
    ens = Ensemble(4, observers=(4,))
    assert ens.core(4).mode == "observer"
    c, _ = ens.connect(4)
    (r,) = ens.call(c, 1, OpCode.CREATE, create("/o", b"z"))
    assert r.err == 0
    (g,) = ens.call(c, 2, OpCode.GET_DATA, GetDataRequest("/o", False))
    assert g.decode(GetDataResponse).data == b"z"


def test_many_clients_interleaved_keep_per_connection_order() -> None:
    ens = Ensemble(3)
    conns = [ens.connect(sid)[0] for sid in (1, 2, 3, 2, 3)]
    for i, conn in enumerate(conns):
        ens.call(conn, 1, OpCode.CREATE, create(f"/c{i}", b"0"))
    for round_ in range(1, 4):
        for i, conn in enumerate(conns):
            value = b"%d" % round_
            data = request(10 * round_, OpCode.SET_DATA, SetDataRequest(f"/c{i}", value, -1))
            data += request(10 * round_ + 1, OpCode.GET_DATA, GetDataRequest(f"/c{i}", False))
            ens.deliver(conn, data)
        ens.run()
        for conn in conns:
            s, g = ens.replies(conn)
            assert (s.xid, g.xid) == (10 * round_, 10 * round_ + 1)
            assert g.decode(GetDataResponse).data == b"%d" % round_
    trees = [m.tree for m in ens.members.values()]
    assert len({t.last_zxid for t in trees}) == 1
    for i in range(len(conns)):
        assert len({t.get(f"/c{i}").data for t in trees}) == 1  # type: ignore[union-attr]


def test_connect_frame_pipelined_with_requests_on_a_follower() -> None:
    ens = Ensemble(3)
    conn = ens.open(2)
    from core_harness import connect_body

    ens.send(conn, frame(connect_body()) + request(1, OpCode.CREATE, create("/pp")))
    data = ens.raw(conn)
    assert data  # connect response then the create reply
    assert ens.members[3].tree.get("/pp") is not None


def test_undecodable_write_on_a_follower_is_a_marshalling_error_everywhere() -> None:
    ens = Ensemble(3)
    conn, _ = ens.connect(2)
    bad = frame(jute.encode(RequestHeader(7, int(OpCode.CREATE))) + b"\x00\x00\x00\x09/tr")
    ens.send(conn, bad)
    (r,) = ens.replies(conn)
    assert r.xid == 7 and r.err == Err.MARSHALLINGERROR
    assert len({m.tree.last_zxid for m in ens.members.values()}) == 1  # an ErrorTxn, logged


def test_multi_through_a_follower_answers_in_the_multi_shape() -> None:
    ens = Ensemble(3)
    conn, _ = ens.connect(3)
    ens.send(
        conn,
        frame(
            jute.encode(RequestHeader(1, int(OpCode.MULTI)))
            + multi_body(
                [
                    (OpCode.CREATE2, create("/m1", b"a")),
                    (OpCode.CREATE, create("/m2", b"b")),
                ]
            )
        ),
    )
    (r,) = ens.replies(conn)
    assert r.err == 0
    assert all(m.tree.get("/m1") and m.tree.get("/m2") for m in ens.members.values())
    # A failing multi: every op gets its error, nothing applies anywhere.
    ens.send(
        conn,
        frame(
            jute.encode(RequestHeader(2, int(OpCode.MULTI)))
            + multi_body([(OpCode.CREATE, create("/m3")), (OpCode.CREATE, create("/m1"))])
        ),
    )
    (r2,) = ens.replies(conn)
    assert r2.xid == 2
    assert all(m.tree.get("/m3") is None for m in ens.members.values())


def test_outstanding_proposals_count_from_the_epoch_start() -> None:
    # Nothing committed in epoch 2 yet: the commit point is the last txn of epoch 1.
    assert outstanding_proposals(0x200000000, 0x100000007) == 0
    assert outstanding_proposals(0x200000003, 0x100000007) == 3
    assert outstanding_proposals(0x200000003, 0x200000001) == 2
    assert outstanding_proposals(0x200000003, 0x200000003) == 0


def test_forwarded_requests_wait_while_the_proposal_backlog_is_full() -> None:
    ens = Ensemble(3, soft_max=2)
    conn, _ = ens.connect(2)
    ens.hold_acks = True
    data = b"".join(request(i, OpCode.CREATE, create(f"/b{i}")) for i in range(1, 6))
    data += request(6, OpCode.SYNC, SyncRequest("/"))
    ens.send(conn, data)
    assert ens.replies(conn) == []  # nothing commits: the leader holds 3 of 5 back
    # Three writes wait at the leader; the sync waits on the follower behind its writes.
    assert len(ens.core(1)._deferred) == 3
    ens.hold_acks = False
    ens.run()
    replies = ens.replies(conn)
    assert [r.xid for r in replies] == [1, 2, 3, 4, 5, 6]
    assert all(r.err == 0 for r in replies)
    assert all(m.tree.get("/b5") is not None for m in ens.members.values())


def test_the_leaders_own_clients_wait_while_the_proposal_backlog_is_full() -> None:
    ens = Ensemble(3, soft_max=2)
    conn, _ = ens.connect(1)
    ens.hold_acks = True
    data = b"".join(request(i, OpCode.CREATE, create(f"/l{i}")) for i in range(1, 6))
    data += request(6, OpCode.GET_DATA, GetDataRequest("/l5", False))
    ens.send(conn, data)
    assert ens.replies(conn) == []
    assert ens.members[1].zab.last_proposed & 0xFFFFFFFF == 3  # session + two creates
    ens.hold_acks = False
    ens.run()
    replies = ens.replies(conn)
    assert [r.xid for r in replies] == [1, 2, 3, 4, 5, 6]
    assert all(r.err == 0 for r in replies)
    assert replies[-1].decode(GetDataResponse).data == b""


# --- SESSIONMOVED: a session's requests through a server it moved away from ---------------


def _moved(ens: Ensemble, home: int, to: int) -> tuple[int, int, int]:
    """A session created on `home` reconnects to `to` (its old connection stays open).
    Returns (old conn, new conn, session id)."""
    old, resp = ens.connect(home)
    (r,) = ens.call(old, 1, OpCode.CREATE, create("/n", b"v"))
    assert r.err == 0
    new, resp2 = ens.connect(to, session_id=resp.session_id, passwd=resp.passwd)
    assert resp2.session_id == resp.session_id and resp2.timeout > 0
    assert not ens.clients[old].closed
    return old, new, resp.session_id


def test_write_through_the_old_follower_after_a_move_closes_that_connection() -> None:
    ens = Ensemble(3)
    old, new, sid = _moved(ens, 2, 3)
    assert ens.core(1).sessions.owners[sid] == 3  # type: ignore[attr-defined]
    zxid = ens.core(1).tree.last_zxid
    # The leader fails it with SESSIONMOVED (an ERROR txn, logged everywhere); server 2
    # answers nothing and closes the stale connection, as ZooKeeper's FinalRequestProcessor.
    ens.send(old, request(2, OpCode.SET_DATA, SetDataRequest("/n", b"stale", -1)))
    assert ens.raw(old) == b"" and ens.clients[old].closed
    for m in ens.members.values():
        assert m.tree.last_zxid == zxid + 1  # the error txn consumed a zxid
        node = m.tree.get("/n")
        assert node is not None and node.data == b"v"
    (w,) = ens.call(new, 2, OpCode.SET_DATA, SetDataRequest("/n", b"fresh", -1))
    assert w.err == 0 and not ens.clients[new].closed


def test_reads_on_a_follower_are_served_after_a_move_writes_are_not() -> None:
    ens = Ensemble(3)
    old, _, _ = _moved(ens, 2, 1)  # moved to the leader itself
    # A follower answers reads from its own tree without asking anyone (as ZooKeeper's).
    (g,) = ens.call(old, 2, OpCode.GET_DATA, GetDataRequest("/n", False))
    assert g.err == 0 and not ens.clients[old].closed
    # A multi fails op by op and is answered (the follower's copy of the request carries
    # no exception in ZooKeeper either): the connection stays.
    ens.send(
        old,
        frame(
            jute.encode(RequestHeader(5, int(OpCode.MULTI)))
            + multi_body([(OpCode.CREATE, create("/x"))])
        ),
    )
    (m,) = ens.replies(old)
    assert m.xid == 5 and m.err == 0 and not ens.clients[old].closed
    assert Err.SESSIONMOVED.value.to_bytes(4, "big", signed=True) in m.body
    ens.send(old, request(3, OpCode.CREATE, create("/x")))
    assert ens.raw(old) == b"" and ens.clients[old].closed
    assert all(m.tree.get("/x") is None for m in ens.members.values())


def test_a_moved_sessions_old_connection_on_the_leader_is_closed_on_any_request() -> None:
    """ZooKeeper's leader checks the session of every request of its own clients, reads
    and pings included."""
    for first in (
        request(2, OpCode.GET_DATA, GetDataRequest("/n", False)),
        request(-2, OpCode.PING),
        request(2, OpCode.SET_DATA, SetDataRequest("/n", b"stale", -1)),
        frame(
            jute.encode(RequestHeader(2, int(OpCode.MULTI)))
            + multi_body([(OpCode.CREATE, create("/y"))])
        ),
    ):
        ens = Ensemble(3)
        old, new, _ = _moved(ens, 1, 2)
        ens.send(old, first)
        assert ens.raw(old) == b"" and ens.clients[old].closed
        (w,) = ens.call(new, 3, OpCode.SET_DATA, SetDataRequest("/n", b"fresh", -1))
        assert w.err == 0
        assert all(m.tree.get("/y") is None for m in ens.members.values())


def test_a_session_that_moves_back_is_served_again() -> None:
    ens = Ensemble(3)
    old, new, sid = _moved(ens, 2, 3)
    ens.close(new)
    back, resp = ens.connect(2, session_id=sid, passwd=ens.core(2)._password(sid))
    assert resp.session_id == sid
    (w,) = ens.call(back, 2, OpCode.SET_DATA, SetDataRequest("/n", b"home", -1))
    assert w.err == 0
    # The first connection was replaced on server 2 when the session came back.
    assert ens.clients[old].closed


def test_close_session_through_the_old_server_is_not_checked() -> None:
    """ZooKeeper's prep skips the owner check for closeSession (the expirer sends it too):
    closing through the stale connection ends the session."""
    ens = Ensemble(3)
    old, new, sid = _moved(ens, 2, 3)
    (r,) = ens.call(old, 2, OpCode.CLOSE_SESSION)
    assert r.err == 0 and ens.clients[old].closed
    assert all(sid not in m.tree.sessions for m in ens.members.values())
    assert ens.clients[new].closed  # its new server drops it when the close applies
