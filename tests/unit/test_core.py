"""StandaloneCore driven with raw protocol bytes: replies, ordering, watches, sessions."""

from __future__ import annotations

import struct

from core_harness import Harness, connect_body, frame, multi_body, request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.proto import jute
from corral.proto.codes import CreateMode, Err, EventType, KeeperState, OpCode, Perm
from corral.proto.records import (
    ACL,
    AuthPacket,
    CheckVersionRequest,
    CloseSessionTxn,
    Create2Response,
    CreateRequest,
    CreateResponse,
    CreateSessionTxn,
    DeleteRequest,
    ErrorResponse,
    ExistsRequest,
    GetACLRequest,
    GetACLResponse,
    GetChildrenRequest,
    GetChildrenResponse,
    GetDataRequest,
    GetDataResponse,
    Id,
    MultiHeader,
    SetDataRequest,
    SetDataResponse,
    Stat,
    TxnHeader,
    WhoAmIResponse,
)
from corral.server.acl import digest_id
from corral.server.core import CoreConfig
from corral.server.sessions import password_hmac

OPEN = (ACL(int(Perm.ALL), Id("world", "anyone")),)
SECRET = b"test-secret"


def create(path: str, data: bytes = b"", flags: int = 0, acl: tuple[ACL, ...] = OPEN) -> object:
    return CreateRequest(path, data, acl, flags)


def test_connect_creates_a_session_only_once_durable() -> None:
    h = Harness(auto_persist=False)
    h.open(1)
    h.send(1, frame(connect_body(timeout=30_000)))
    assert h.raw(1) == b""  # nothing before the createSession txn is durable
    [(hdr, body)] = h.log
    assert hdr.type == OpCode.CREATE_SESSION
    assert hdr.zxid == 1
    assert jute.decode_exact(CreateSessionTxn, body) == CreateSessionTxn(30_000)
    h.persist()
    [f] = [h.raw(1)]
    (n,) = struct.unpack_from(">i", f)
    assert n == 4 + 4 + 8 + 4 + 16 + 1 == len(f) - 4
    proto, timeout, sid, plen = struct.unpack_from(">iiqi", f, 4)
    assert (proto, timeout, plen) == (0, 30_000, 16)
    assert sid == hdr.client_id
    assert f[24:40] == password_hmac(sid, SECRET)
    assert f[40:] == b"\x00"
    assert h.tree.sessions == {sid: 30_000}


def test_connect_without_read_only_byte_gets_a_44_byte_style_reply() -> None:
    h = Harness()
    h.open(1)
    h.send(1, frame(connect_body(read_only=None)))
    f = h.raw(1)
    assert struct.unpack_from(">i", f)[0] == 36  # no trailing readOnly byte


def test_timeout_is_clamped_to_2x_and_20x_tick() -> None:
    h = Harness(config=CoreConfig(tick_ms=2000))
    assert h.connect(1, timeout=10).timeout == 4000
    assert h.connect(2, timeout=10**9).timeout == 40_000


def test_client_ahead_of_us_is_refused() -> None:
    h = Harness()
    h.open(1)
    h.send(1, frame(connect_body(last_zxid=5)))
    assert h.raw(1) == b""
    assert 1 in h.closed
    assert h.log == []


def test_reconnect_with_password_and_with_a_wrong_one() -> None:
    h = Harness()
    r = h.connect(1)
    h.close(1)
    again = h.connect(2, session_id=r.session_id, passwd=r.passwd)
    assert (again.session_id, again.passwd, again.timeout) == (r.session_id, r.passwd, r.timeout)
    h.open(3)
    h.send(3, frame(connect_body(session_id=r.session_id, passwd=b"x" * 16)))
    f = h.raw(3)
    assert f == struct.pack(">iiiqi", 37, 0, 0, 0, 16) + b"\0" * 16 + b"\0"
    assert 3 in h.closed
    # An unknown session gets the same answer, in the client's format.
    h.open(4)
    h.send(4, frame(connect_body(session_id=12345, read_only=None)))
    assert h.raw(4) == struct.pack(">iiiqi", 36, 0, 0, 0, 16) + b"\0" * 16


def test_reconnect_closes_the_sessions_old_connection() -> None:
    h = Harness()
    r = h.connect(1)
    h.connect(2, session_id=r.session_id, passwd=r.passwd)
    assert 1 in h.closed


def test_pipelined_requests_after_connect_wait_for_the_session() -> None:
    h = Harness(auto_persist=False)
    h.open(1)
    h.send(
        1,
        frame(connect_body())
        + request(1, OpCode.EXISTS, ExistsRequest("/", False))
        + request(2, OpCode.CREATE, create("/a")),
    )
    assert h.raw(1) == b""
    h.persist()  # the session; then the create is prepped
    frames = h.raw(1)
    assert len(frames) > 40  # the ConnectResponse and the exists reply
    assert len(h.log) == 2 and h.log[1][0].type == OpCode.CREATE
    h.persist()
    [rep] = h.replies(1)
    assert (rep.xid, rep.err) == (2, 0)
    assert rep.decode(CreateResponse) == CreateResponse("/a")


def test_create_get_set_with_watch_fires_before_the_reply() -> None:
    h = Harness()
    h.connect(1)
    h.connect(2)
    [rep] = h.call(1, 1, OpCode.CREATE, create("/n", b"v1"))
    assert (rep.xid, rep.err, rep.zxid) == (1, 0, 3)
    assert rep.decode(CreateResponse) == CreateResponse("/n")
    [rep] = h.call(1, 2, OpCode.GET_DATA, GetDataRequest("/n", True))
    got = rep.decode(GetDataResponse)
    assert got.data == b"v1"
    assert (got.stat.czxid, got.stat.mzxid, got.stat.version, got.stat.data_length) == (3, 3, 0, 2)
    assert rep.zxid == 3
    [rep] = h.call(2, 1, OpCode.SET_DATA, SetDataRequest("/n", b"v2", 0))
    stat = rep.decode(SetDataResponse).stat
    assert (stat.version, stat.mzxid, rep.zxid) == (1, 4, 4)
    [ev] = h.replies(1)
    assert (ev.xid, ev.zxid, ev.err) == (-1, 4, 0)
    e = ev.event()
    assert (e.type, e.state, e.path) == (
        EventType.NODE_DATA_CHANGED,
        KeeperState.SYNC_CONNECTED,
        "/n",
    )


def test_event_precedes_the_reply_of_the_write_that_fired_it() -> None:
    h = Harness()
    h.connect(1)
    h.call(1, 1, OpCode.CREATE, create("/n"))
    h.call(1, 2, OpCode.EXISTS, ExistsRequest("/n", True))
    reps = h.call(1, 3, OpCode.DELETE, DeleteRequest("/n", -1))
    assert [(r.xid, r.err) for r in reps] == [(-1, 0), (3, 0)]
    assert reps[0].event().type == EventType.NODE_DELETED
    assert reps[1].body == b""


def test_exists_on_missing_node_arms_the_watch() -> None:
    h = Harness()
    h.connect(1)
    h.connect(2)
    [rep] = h.call(1, 1, OpCode.EXISTS, ExistsRequest("/x", True))
    assert (rep.err, rep.body) == (Err.NONODE, b"")
    h.call(2, 1, OpCode.CREATE, create("/x"))
    [ev] = h.replies(1)
    assert ev.event().type == EventType.NODE_CREATED


def test_reads_wait_for_the_connections_own_writes() -> None:
    h = Harness()
    h.connect(1)
    h.connect(2)
    h.auto_persist = False
    h.send(
        1,
        request(1, OpCode.CREATE, create("/w", b"x"))
        + request(2, OpCode.GET_DATA, GetDataRequest("/w", False))
        + request(-2, OpCode.PING),
    )
    assert h.raw(1) == b""  # the read waits behind the write
    # Another connection's read is not held back.
    [rep] = h.call(2, 1, OpCode.EXISTS, ExistsRequest("/w", False))
    assert rep.err == Err.NONODE
    h.persist()
    reps = h.replies(1)
    assert [(r.xid, r.err) for r in reps] == [(1, 0), (2, 0), (-2, 0)]
    assert reps[1].decode(GetDataResponse).data == b"x"


def test_multi_success_and_failure_shapes() -> None:
    h = Harness()
    h.connect(1)
    ok = multi_body(
        [
            (OpCode.CREATE, create("/m")),
            (OpCode.CREATE2, create("/m/c", b"d")),
            (OpCode.SET_DATA, SetDataRequest("/m", b"z", -1)),
            (OpCode.CHECK, CheckVersionRequest("/m", 1)),
            (OpCode.DELETE, DeleteRequest("/m/c", -1)),
        ]
    )
    h.send(1, frame(struct.pack(">ii", 7, OpCode.MULTI) + ok))
    [rep] = h.replies(1)
    assert (rep.xid, rep.err) == (7, 0)
    body = rep.body
    pos = 0
    seen = []
    while True:
        mh, pos = jute.decode(MultiHeader, body, pos)
        if mh.done:
            assert (mh.type, mh.err) == (-1, -1)
            break
        seen.append(mh.type)
        if mh.type == OpCode.CREATE:
            r, pos = jute.decode(CreateResponse, body, pos)
            assert r.path == "/m"
        elif mh.type == OpCode.CREATE2:
            r2, pos = jute.decode(Create2Response, body, pos)
            assert r2.path == "/m/c" and r2.stat.data_length == 1
        elif mh.type == OpCode.SET_DATA:
            r3, pos = jute.decode(SetDataResponse, body, pos)
            assert r3.stat.version == 1
    assert pos == len(body)
    assert seen == [OpCode.CREATE, OpCode.CREATE2, OpCode.SET_DATA, OpCode.CHECK, OpCode.DELETE]
    bad = multi_body(
        [
            (OpCode.CREATE, create("/m2")),
            (OpCode.DELETE, DeleteRequest("/nope", -1)),
            (OpCode.CREATE, create("/m3")),
        ]
    )
    h.send(1, frame(struct.pack(">ii", 8, OpCode.MULTI) + bad))
    [rep] = h.replies(1)
    assert (rep.xid, rep.err) == (8, 0)  # a failed multi still has err 0
    expect = b""
    for err in (0, Err.NONODE, Err.RUNTIMEINCONSISTENCY):
        expect += jute.encode(MultiHeader(-1, False, int(err))) + jute.encode(
            ErrorResponse(int(err))
        )
    expect += jute.encode(MultiHeader(-1, True, -1))
    assert rep.body == expect
    assert "/m2" not in h.tree.nodes


def _ephemeral_setup(h: Harness) -> int:
    sid = h.connect(1).session_id
    h.connect(2)
    h.call(1, 1, OpCode.CREATE, create("/e", flags=CreateMode.EPHEMERAL))
    [rep] = h.call(2, 1, OpCode.EXISTS, ExistsRequest("/e", True))
    assert rep.decode(Stat).ephemeral_owner == sid
    return sid


def test_close_session_removes_ephemerals_and_fires() -> None:
    h = Harness()
    sid = _ephemeral_setup(h)
    reps = h.call(1, 2, OpCode.CLOSE_SESSION)
    assert [(r.xid, r.err, r.body) for r in reps] == [(2, 0, b"")]
    assert 1 in h.closed
    hdr, body = h.log[-1]
    assert (hdr.type, hdr.client_id) == (OpCode.CLOSE_SESSION, sid)
    assert jute.decode_exact(CloseSessionTxn, body) == CloseSessionTxn(("/e",))
    assert "/e" not in h.tree.nodes
    assert sid not in h.tree.sessions
    [ev] = h.replies(2)
    assert (ev.event().type, ev.zxid) == (EventType.NODE_DELETED, hdr.zxid)


def test_session_expiry_removes_ephemerals_and_closes_its_connection() -> None:
    h = Harness(config=CoreConfig(tick_ms=2000))
    sid = _ephemeral_setup(h)
    h.tick(10_000)
    h.call(2, 5, OpCode.PING)  # connection 2 stays alive
    h.tick(20_000)
    h.call(2, 5, OpCode.PING)
    assert sid in h.tree.sessions  # 30 s timeout, touched at t=0: not yet
    h.tick(1_999)
    assert sid in h.tree.sessions  # the bucket is 30 s rounded up to the next tick
    h.tick(1)
    assert sid not in h.tree.sessions
    assert "/e" not in h.tree.nodes
    assert 1 in h.closed
    assert h.raw(1) == b""
    [ev] = h.replies(2)
    assert ev.event().type == EventType.NODE_DELETED


def test_expiry_bucket_rounding() -> None:
    h = Harness(config=CoreConfig(tick_ms=2000))
    sid = h.connect(1, timeout=4000).session_id
    expiry = h.core.sessions.expiry_of(sid)
    assert expiry is not None and expiry % 2000 == 0 and 4000 < expiry - h.now <= 6000


def test_unknown_and_internal_ops_are_unimplemented_and_close() -> None:
    for op in (
        OpCode.CHECK,
        OpCode.CREATE_SESSION,
        OpCode.DELETE_CONTAINER,
        OpCode.ERROR,
        0,
        10,
        99,
    ):
        h = Harness()
        h.connect(1)
        [rep] = h.call(1, 3, op)
        assert (rep.xid, rep.zxid, rep.err) == (3, -1, Err.UNIMPLEMENTED)
        assert 1 in h.closed


def test_malformed_read_body_is_a_marshalling_error() -> None:
    h = Harness()
    h.connect(1)
    h.send(1, frame(struct.pack(">iii", 4, OpCode.GET_DATA, 1000)))
    [rep] = h.replies(1)
    assert (rep.xid, rep.err) == (4, Err.MARSHALLINGERROR)
    assert 1 not in h.closed


def test_malformed_write_body_fails_in_order_without_a_zxid() -> None:
    """ZooKeeper 3.9 (ZOOKEEPER-4575): a write whose body does not decode is answered
    MARSHALLINGERROR without spending a zxid, after the connection's earlier writes."""
    h = Harness()
    h.connect(1)
    h.auto_persist = False
    logged = len(h.log)
    h.send(
        1,
        request(1, OpCode.CREATE, create("/mw", b"x"))
        + frame(struct.pack(">iii", 2, OpCode.CREATE, 1000))
        + frame(struct.pack(">iii", 3, OpCode.SET_DATA, 1000)),
    )
    assert h.raw(1) == b""  # behind the create
    assert len(h.log) == logged + 1  # only the create is a txn
    h.persist()
    reps = h.replies(1)
    created = h.log[-1][0].zxid
    assert [(r.xid, r.zxid, r.err) for r in reps] == [
        (1, created, 0),
        (2, created, Err.MARSHALLINGERROR),
        (3, created, Err.MARSHALLINGERROR),
    ]
    # With nothing ahead of it the answer comes at once; the next write takes the next zxid.
    h.send(1, frame(struct.pack(">iii", 4, OpCode.DELETE, 1000)))
    [rep] = h.replies(1)
    assert (rep.xid, rep.zxid, rep.err) == (4, created, Err.MARSHALLINGERROR)
    h.auto_persist = True
    [rep] = h.call(1, 5, OpCode.CREATE, create("/mw2", b""))
    assert (rep.err, rep.zxid) == (0, created + 1)


def test_malformed_multi_body_spends_a_zxid() -> None:
    """ZooKeeper takes a multi's zxid before decoding it (3.8 and 3.9)."""
    h = Harness()
    h.connect(1)
    h.send(1, frame(struct.pack(">iii", 4, OpCode.MULTI, 1000)))
    [rep] = h.replies(1)
    assert (rep.xid, rep.err) == (4, Err.MARSHALLINGERROR)
    assert h.log[-1][0].type == OpCode.ERROR
    assert rep.zxid == h.log[-1][0].zxid


def test_bad_frame_length_closes() -> None:
    h = Harness()
    h.connect(1)
    h.send(1, struct.pack(">i", -5))
    assert 1 in h.closed
    h.connect(2)
    h.send(2, struct.pack(">i", 0xFFFFF + 1))
    assert 2 in h.closed


def test_four_letter_word_on_a_fresh_connection() -> None:
    h = Harness()
    h.open(1)
    h.send(1, b"ruok")
    assert h.four_letter == [(1, "ruok")]


def test_digest_auth_acl_and_getacl_masking() -> None:
    h = Harness()
    h.connect(1)
    h.connect(2)
    [rep] = h.call(1, -4, OpCode.AUTH, AuthPacket(0, "digest", b"bob:pw"))
    assert (rep.xid, rep.zxid, rep.err) == (-4, 0, 0)
    did = digest_id("bob:pw")
    secret = (ACL(int(Perm.ALL), Id("digest", did)), ACL(int(Perm.READ), Id("world", "anyone")))
    h.call(1, 1, OpCode.CREATE, create("/s", b"x", acl=secret))
    [rep] = h.call(2, 1, OpCode.SET_DATA, SetDataRequest("/s", b"y", -1))
    assert rep.err == Err.NOAUTH
    [rep] = h.call(2, 2, OpCode.GET_ACL, GetACLRequest("/s"))
    got = rep.decode(GetACLResponse)
    assert got.acl[0].id == Id("digest", "bob:x")
    [rep] = h.call(1, 2, OpCode.GET_ACL, GetACLRequest("/s"))
    assert rep.decode(GetACLResponse).acl == secret
    [rep] = h.call(1, 3, OpCode.WHO_AM_I)
    infos = rep.decode(WhoAmIResponse).client_info
    # ZooKeeper 3.8.0 lists these two in this order (its hash set's order, auth_order.py).
    assert [(i.auth_scheme, i.user) for i in infos] == [("digest", "bob"), ("ip", "127.0.0.1")]


def test_bad_auth_scheme_fails_and_closes() -> None:
    h = Harness()
    h.connect(1)
    [rep] = h.call(1, -4, OpCode.AUTH, AuthPacket(0, "nope", b"x"))
    assert (rep.xid, rep.err) == (-4, Err.AUTHFAILED)
    assert 1 in h.closed


def test_watch_events_are_filtered_by_read_acl() -> None:
    h = Harness()
    h.connect(1)
    h.connect(2)
    h.call(1, -4, OpCode.AUTH, AuthPacket(0, "digest", b"bob:pw"))
    did = digest_id("bob:pw")
    h.call(1, 1, OpCode.CREATE, create("/p", acl=(ACL(int(Perm.ALL), Id("digest", did)),)))
    h.call(2, 1, OpCode.EXISTS, ExistsRequest("/p", True))  # NOAUTH: no watch
    h.send(2, request(2, OpCode.ADD_WATCH, _add_watch("/", 1)))
    [rep] = h.replies(2)
    assert rep.decode(ErrorResponse) == ErrorResponse(0)
    h.call(1, 2, OpCode.SET_DATA, SetDataRequest("/p", b"z", -1))
    assert h.replies(2) == []  # the recursive watch's event is filtered out


def _add_watch(path: str, mode: int) -> object:
    from corral.proto.records import AddWatchRequest

    return AddWatchRequest(path, mode)


def test_get_children_and_ping() -> None:
    h = Harness()
    h.connect(1)
    h.call(1, 1, OpCode.CREATE, create("/c"))
    h.call(1, 2, OpCode.CREATE, create("/c/a"))
    [rep] = h.call(1, 3, OpCode.GET_CHILDREN, GetChildrenRequest("/c", False))
    assert rep.decode(GetChildrenResponse).children == ("a",)
    [rep] = h.call(1, 77, OpCode.PING)
    assert (rep.xid, rep.err, rep.body) == (-2, 0, b"")
    assert rep.zxid == h.tree.last_zxid


def test_container_reaped_once_emptied() -> None:
    h = Harness(config=CoreConfig(container_check_interval_ms=1000))
    h.connect(1)
    h.call(1, 1, OpCode.CREATE_CONTAINER, create("/box", flags=CreateMode.CONTAINER))
    h.tick(2000)
    assert "/box" in h.tree.nodes  # never had children
    h.call(1, 2, OpCode.CREATE, create("/box/x"))
    h.call(1, 3, OpCode.DELETE, DeleteRequest("/box/x", -1))
    h.tick(2000)
    assert "/box" not in h.tree.nodes
    hdr: TxnHeader = h.log[-1][0]
    assert hdr.client_id == 0


def test_set_watches_fires_missed_changes_before_the_reply() -> None:
    from corral.proto.records import SetWatches

    h = Harness()
    h.connect(1)
    h.call(1, 1, OpCode.CREATE, create("/gone"))
    h.call(1, 2, OpCode.CREATE, create("/kept"))
    zxid = h.tree.last_zxid
    h.call(1, 3, OpCode.DELETE, DeleteRequest("/gone", -1))
    h.call(1, 4, OpCode.SET_DATA, SetDataRequest("/kept", b"new", -1))
    h.connect(2)
    sw = SetWatches(zxid, ("/gone", "/kept"), ("/new",), ())
    reps = h.call(2, -8, OpCode.SET_WATCHES, sw)
    assert [(r.xid, r.err) for r in reps] == [(-1, 0), (-1, 0), (-8, 0)]
    assert [(r.event().type, r.event().path) for r in reps[:2]] == [
        (EventType.NODE_DELETED, "/gone"),
        (EventType.NODE_DATA_CHANGED, "/kept"),
    ]
    h.call(1, 5, OpCode.CREATE, create("/new"))  # the re-armed exist watch fires
    [ev] = h.replies(2)
    assert (ev.event().type, ev.event().path) == (EventType.NODE_CREATED, "/new")


def test_check_and_remove_watches() -> None:
    from corral.proto.records import CheckWatchesRequest, RemoveWatchesRequest

    h = Harness()
    h.connect(1)
    h.call(1, 1, OpCode.CREATE, create("/w"))
    [rep] = h.call(1, 2, OpCode.CHECK_WATCHES, CheckWatchesRequest("/w", 2))
    assert rep.err == Err.NOWATCHER
    h.call(1, 3, OpCode.GET_DATA, GetDataRequest("/w", True))
    [rep] = h.call(1, 4, OpCode.CHECK_WATCHES, CheckWatchesRequest("/w", 2))
    assert rep.err == 0
    [rep] = h.call(1, 5, OpCode.REMOVE_WATCHES, RemoveWatchesRequest("/w", 3))
    assert rep.err == 0
    [rep] = h.call(1, 6, OpCode.REMOVE_WATCHES, RemoveWatchesRequest("/w", 3))
    assert rep.err == Err.NOWATCHER
    [rep] = h.call(1, 7, OpCode.CHECK_WATCHES, CheckWatchesRequest("/w", 9))
    assert rep.err == Err.MARSHALLINGERROR  # WatcherType.fromInt fails


def test_get_ephemerals_all_children_number_and_multi_read() -> None:
    from corral.proto.records import (
        GetAllChildrenNumberRequest,
        GetAllChildrenNumberResponse,
        GetEphemeralsRequest,
        GetEphemeralsResponse,
    )

    h = Harness()
    h.connect(1)
    h.call(1, 1, OpCode.CREATE, create("/a", b"A"))
    h.call(1, 2, OpCode.CREATE, create("/a/e1", flags=CreateMode.EPHEMERAL))
    h.call(1, 3, OpCode.CREATE, create("/a/e2", flags=CreateMode.EPHEMERAL))
    h.call(1, 4, OpCode.CREATE, create("/b", flags=CreateMode.EPHEMERAL))
    [rep] = h.call(1, 5, OpCode.GET_EPHEMERALS, GetEphemeralsRequest("/a"))
    assert rep.decode(GetEphemeralsResponse).ephemerals == ("/a/e1", "/a/e2")
    [rep] = h.call(1, 6, OpCode.GET_EPHEMERALS, GetEphemeralsRequest("/"))
    assert len(rep.decode(GetEphemeralsResponse).ephemerals) == 3
    [rep] = h.call(1, 7, OpCode.GET_ALL_CHILDREN_NUMBER, GetAllChildrenNumberRequest("/"))
    # /zookeeper, /zookeeper/quota, /zookeeper/config, /a, /a/e1, /a/e2, /b
    assert rep.decode(GetAllChildrenNumberResponse).total_number == 7
    body = multi_body(
        [
            (OpCode.GET_DATA, GetDataRequest("/a", False)),
            (OpCode.GET_CHILDREN, GetChildrenRequest("/nope", False)),
        ]
    )
    h.send(1, frame(struct.pack(">ii", 8, OpCode.MULTI_READ) + body))
    [rep] = h.replies(1)
    mh, pos = jute.decode(MultiHeader, rep.body)
    assert (mh.type, mh.err) == (OpCode.GET_DATA, 0)
    gd, pos = jute.decode(GetDataResponse, rep.body, pos)
    assert gd.data == b"A"
    mh, pos = jute.decode(MultiHeader, rep.body, pos)
    assert (mh.type, mh.err) == (-1, Err.NONODE)
    er, pos = jute.decode(ErrorResponse, rep.body, pos)
    assert er.err == Err.NONODE
    mh, pos = jute.decode(MultiHeader, rep.body, pos)
    assert mh.done and pos == len(rep.body)


def test_outstanding_bound_pauses_and_resumes_reading() -> None:
    h = Harness(config=CoreConfig(outstanding_max=2))
    h.connect(1)
    h.auto_persist = False
    out = h.core.receive(
        1, b"".join(request(i, OpCode.CREATE, create(f"/n{i}")) for i in range(1, 5)), h.now, h.wall
    )
    assert out.pause_reading == [1]
    assert len(out.persist) == 2  # only two in flight
    h.log.extend(out.persist)
    out = h.core.persisted(h.log[-1][0].zxid, h.now, h.wall)
    assert len(out.persist) == 2 and out.resume_reading == [1]
    h.log.extend(out.persist)
    h._take(h.core.persisted(h.log[-1][0].zxid, h.now, h.wall))
    assert sorted(p for p in h.tree.nodes if p.startswith("/n")) == ["/n1", "/n2", "/n3", "/n4"]


def test_requests_of_an_expired_session_are_dropped() -> None:
    h = Harness(config=CoreConfig(tick_ms=2000))
    h.connect(1)
    h.auto_persist = False
    h.tick(60_000)  # expired: its closeSession txn is not durable yet
    [reply] = [h.call(1, 1, OpCode.EXISTS, ExistsRequest("/", False))]
    assert reply == []
    h.persist()
    assert 1 in h.closed


def test_ttl_node_expires_when_enabled() -> None:
    from corral.proto.records import CreateTTLRequest

    h = Harness(config=CoreConfig(extended_types_enabled=True, container_check_interval_ms=1000))
    h.connect(1)
    ttl_req = CreateTTLRequest("/t", b"", OPEN, int(CreateMode.PERSISTENT_WITH_TTL), 5000)
    [rep] = h.call(1, 1, OpCode.CREATE_TTL, ttl_req)
    assert rep.err == 0 and rep.decode(Create2Response).stat.ephemeral_owner == 0
    h.tick(3000)
    assert "/t" in h.tree.nodes
    h.tick(3000)
    assert "/t" not in h.tree.nodes


def test_ttl_disabled_is_unimplemented() -> None:
    from corral.proto.records import CreateTTLRequest

    h = Harness()
    h.connect(1)
    ttl_req = CreateTTLRequest("/t", b"", OPEN, int(CreateMode.PERSISTENT_WITH_TTL), 5000)
    [rep] = h.call(1, 1, OpCode.CREATE_TTL, ttl_req)
    assert rep.err == Err.UNIMPLEMENTED
    assert 1 not in h.closed


def test_reconfig_on_standalone() -> None:
    from corral.proto.records import ReconfigRequest

    h = Harness()
    h.connect(1)
    [rep] = h.call(1, 1, OpCode.RECONFIG, ReconfigRequest("", "", "", -1))
    assert (rep.err, rep.body) == (Err.RECONFIGDISABLED, b"")


def test_sasl_without_configuration_answers_ok_with_null_token() -> None:
    from corral.proto.records import GetSASLRequest, SetSASLResponse

    h = Harness()
    h.connect(1)
    [rep] = h.call(1, 1, OpCode.SASL, GetSASLRequest(b""))
    assert (rep.xid, rep.zxid, rep.err) == (1, 0, 0)
    assert rep.decode(SetSASLResponse) == SetSASLResponse(None)


def test_sasl_digest_md5_exchange() -> None:
    import hashlib
    import re

    from corral.proto.records import GetSASLRequest, SetSASLResponse
    from corral.server.sasl_digest import DigestConfig

    h = Harness(config=CoreConfig(sasl=DigestConfig({"alice": "pw"})))
    h.connect(1)
    [rep] = h.call(1, 1, OpCode.SASL, GetSASLRequest(b""))
    challenge = rep.decode(SetSASLResponse).token
    nonce = re.search(rb'nonce="([^"]+)"', challenge).group(1)  # type: ignore[union-attr]
    realm, cnonce, uri = b"zk-sasl-md5", b"abc", b"zookeeper/zk-sasl-md5"

    def hx(b: bytes) -> bytes:
        return hashlib.md5(b).hexdigest().encode()

    a1 = hashlib.md5(b"alice:" + realm + b":pw").digest() + b":" + nonce + b":" + cnonce
    resp = hx(
        hx(a1) + b":" + nonce + b":00000001:" + cnonce + b":auth:" + hx(b"AUTHENTICATE:" + uri)
    )
    token = (
        b'charset=utf-8,username="alice",realm="' + realm + b'",nonce="' + nonce
        + b'",nc=00000001,cnonce="' + cnonce + b'",digest-uri="' + uri
        + b'",maxbuf=65536,response=' + resp + b",qop=auth"
    )  # fmt: skip
    [rep] = h.call(1, 2, OpCode.SASL, GetSASLRequest(token))
    assert rep.err == 0
    assert rep.decode(SetSASLResponse).token.startswith(b"rspauth=")
    [rep] = h.call(1, 3, OpCode.WHO_AM_I)
    infos = rep.decode(WhoAmIResponse).client_info
    assert ("sasl", "alice") in [(i.auth_scheme, i.user) for i in infos]
    [rep] = h.call(1, 4, OpCode.SASL, GetSASLRequest(b"again"))
    assert rep.err == Err.AUTHFAILED
    assert 1 in h.closed


def test_four_letter_stats() -> None:
    h = Harness()
    h.connect(1)
    h.call(1, 1, OpCode.CREATE, create("/s"))
    h.open(2)
    h.send(2, b"cons")
    stats = h.core.snapshot_for_4lw(2)
    by_id = {c.conn_id: c for c in stats.connections}
    assert by_id[2].asking and by_id[2].session_id == 0
    c1 = by_id[1]
    assert (c1.last_operation, c1.last_cxid, c1.packets_received) == ("CREA", 1, 2)
    assert stats.global_sessions == 1 and stats.zxid == h.tree.last_zxid


def test_core_snapshot_renders_with_fourletter() -> None:
    from corral.admin.core_snapshot import server_snapshot
    from corral.admin.fourletter import ServerConf, render_cons, render_stat

    h = Harness()
    sid = h.connect(1).session_id
    h.core.open(2, "10.0.0.9", (), 5555)
    h.send(2, b"stat")
    conf = ServerConf(2181, "/d/version-2", "/d/version-2", 2000, 60, 4000, 40000)
    snap = server_snapshot(h.core.snapshot_for_4lw(2), conf)
    assert snap.mode == "standalone" and snap.global_sessions == 1
    cons = render_cons(snap)
    assert f"sid=0x{sid:x},lop=SESS" in cons
    assert " /10.0.0.9:5555[0](queued=0,recved=1,sent=0)" in cons
    assert "Mode: standalone" in render_stat(snap, with_clients=True)


_ALL_OPS = [int(op) for op in OpCode] + [10, 23, 99, 1000, -2]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(-10, 10), st.sampled_from(_ALL_OPS), st.binary(max_size=64)),
        max_size=12,
    ),
    st.integers(1, 7),
)
def test_random_requests_never_break_the_core(
    reqs: list[tuple[int, int, bytes]], chunk: int
) -> None:
    h = Harness()
    h.connect(1)
    h.connect(2)
    h.call(1, 1, OpCode.CREATE, create("/f", b"x"))
    h.call(2, 1, OpCode.GET_DATA, GetDataRequest("/f", True))
    stream = b"".join(frame(struct.pack(">ii", xid, op) + body) for xid, op, body in reqs)
    for i in range(0, len(stream), chunk):  # arbitrary TCP segmentation
        if 1 in h.closed:
            break
        h.send(1, stream[i : i + chunk])
    h.tick(100_000)  # everything expires and is cleaned up
    for cid in (1, 2):
        h.raw(cid)
    assert not h.core.inflight
    assert h.tree.sessions == {}
    assert all(p in ("/", "/f") or p.startswith("/zookeeper") or "/" in p for p in h.tree.nodes)


_PATHS = ["/o", "/o/a", "/o/b", "/p"]


def _random_request(data: st.DataObject, xid: int) -> tuple[int, bytes]:
    draw = data.draw
    """(expected reply xid, framed request) for one random request: well-formed, or a write
    whose body does not decode (answered in order without a txn)."""
    op = draw(
        st.sampled_from(
            [
                -1,  # an undecodable setData
                OpCode.CREATE,
                OpCode.DELETE,
                OpCode.SET_DATA,
                OpCode.GET_DATA,
                OpCode.EXISTS,
                OpCode.GET_CHILDREN,
                OpCode.MULTI,
                OpCode.PING,
                OpCode.SYNC,
            ]
        )
    )
    path = draw(st.sampled_from(_PATHS))
    watch = draw(st.booleans())
    if op == -1:
        return xid, frame(struct.pack(">iii", xid, OpCode.SET_DATA, 1000))
    if op == OpCode.CREATE:
        flags = draw(st.sampled_from([0, 1, 2]))
        return xid, request(xid, op, create(path, b"d", flags=flags))
    if op == OpCode.DELETE:
        return xid, request(xid, op, DeleteRequest(path, -1))
    if op == OpCode.SET_DATA:
        return xid, request(xid, op, SetDataRequest(path, b"s", -1))
    if op == OpCode.GET_DATA:
        return xid, request(xid, op, GetDataRequest(path, watch))
    if op == OpCode.EXISTS:
        return xid, request(xid, op, ExistsRequest(path, watch))
    if op == OpCode.GET_CHILDREN:
        return xid, request(xid, op, GetChildrenRequest(path, watch))
    if op == OpCode.MULTI:
        other = draw(st.sampled_from(_PATHS))
        body = multi_body(
            [(OpCode.CREATE, create(path)), (OpCode.DELETE, DeleteRequest(other, -1))]
        )
        return xid, frame(struct.pack(">ii", xid, op) + body)
    if op == OpCode.PING:
        return -2, request(-2, op)
    from corral.proto.records import SyncRequest

    return xid, request(xid, op, SyncRequest(path))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_replies_stay_in_request_order_whatever_the_fsync_timing(data: st.DataObject) -> None:
    h = Harness()
    for cid in (1, 2, 3):
        h.connect(cid)
    h.auto_persist = False
    expected: dict[int, list[int]] = {1: [], 2: [], 3: []}
    got: dict[int, list[int]] = {1: [], 2: [], 3: []}
    zxids: dict[int, list[int]] = {1: [], 2: [], 3: []}
    xids = {1: 0, 2: 0, 3: 0}
    for _ in range(data.draw(st.integers(1, 40))):
        if data.draw(st.booleans()) and h.log and h.log[-1][0].zxid > h.durable:
            upto = data.draw(st.integers(h.durable + 1, h.log[-1][0].zxid))
            h.persist(upto)
        else:
            cid = data.draw(st.sampled_from([1, 2, 3]))
            xids[cid] += 1
            want, req = _random_request(data, xids[cid])
            expected[cid].append(want)
            h.send(cid, req)
        for cid in (1, 2, 3):
            for r in h.replies(cid):
                zxids[cid].append(r.zxid)
                if r.xid != -1:
                    got[cid].append(r.xid)
    if h.log and h.log[-1][0].zxid > h.durable:
        h.persist()
    for cid in (1, 2, 3):
        for r in h.replies(cid):
            zxids[cid].append(r.zxid)
            if r.xid != -1:
                got[cid].append(r.xid)
    assert got == expected
    # Events and replies reach each client in zxid order (a client never sees an older
    # state after a newer one, and sees an event before any reply showing its change).
    for cid in (1, 2, 3):
        assert zxids[cid] == sorted(zxids[cid])
    assert not h.core.inflight and len(h.core.pending) == 0


_FUZZ_PATHS = [
    "/",
    "/f",
    "/f/g",
    "/zookeeper",
    "/zookeeper/config",
    "",
    "f",
    "/f/",
    "/a\x00b",
    "/..",
]
_OP_RECORDS: dict[int, type] = {}


def _op_records() -> dict[int, type]:
    if not _OP_RECORDS:
        from corral.proto import records as r

        _OP_RECORDS.update(
            {
                OpCode.CREATE: r.CreateRequest,
                OpCode.CREATE2: r.CreateRequest,
                OpCode.CREATE_CONTAINER: r.CreateRequest,
                OpCode.CREATE_TTL: r.CreateTTLRequest,
                OpCode.DELETE: r.DeleteRequest,
                OpCode.EXISTS: r.ExistsRequest,
                OpCode.GET_DATA: r.GetDataRequest,
                OpCode.SET_DATA: r.SetDataRequest,
                OpCode.GET_ACL: r.GetACLRequest,
                OpCode.SET_ACL: r.SetACLRequest,
                OpCode.GET_CHILDREN: r.GetChildrenRequest,
                OpCode.GET_CHILDREN2: r.GetChildren2Request,
                OpCode.SYNC: r.SyncRequest,
                OpCode.RECONFIG: r.ReconfigRequest,
                OpCode.CHECK_WATCHES: r.CheckWatchesRequest,
                OpCode.REMOVE_WATCHES: r.RemoveWatchesRequest,
                OpCode.GET_EPHEMERALS: r.GetEphemeralsRequest,
                OpCode.GET_ALL_CHILDREN_NUMBER: r.GetAllChildrenNumberRequest,
                OpCode.ADD_WATCH: r.AddWatchRequest,
                OpCode.SET_WATCHES: r.SetWatches,
                OpCode.SET_WATCHES2: r.SetWatches2,
                OpCode.AUTH: r.AuthPacket,
                OpCode.SASL: r.GetSASLRequest,
                OpCode.CHECK: r.CheckVersionRequest,
            }
        )
    return _OP_RECORDS


def _field_strategy(name: str, hint: object) -> st.SearchStrategy[object]:
    import typing

    from corral.proto.jute import Buffer, Int, Long

    if name == "path" or name == "prefix_path":
        return st.sampled_from(_FUZZ_PATHS)
    if hint == Int:
        return st.sampled_from([-1, 0, 1, 2, 3, 4, 5, 6, 7, 31, 2**31 - 1, -(2**31)])
    if hint == Long:
        return st.sampled_from([-1, 0, 1, 5000, 2**40, 2**63 - 1])
    if hint == Buffer:
        return st.one_of(st.none(), st.binary(max_size=8))
    if hint is bool:
        return st.booleans()
    if hint is str:
        return st.sampled_from(["", "digest", "world", "anyone", "ip", "u:p", "10.0.0.0/8", "x"])
    if typing.get_origin(hint) is tuple:
        (elem, _) = typing.get_args(hint)
        if elem is str:
            return st.lists(st.sampled_from(_FUZZ_PATHS), max_size=3).map(tuple)
        return st.lists(_record_strategy(elem), max_size=3).map(tuple)
    return _record_strategy(hint)  # type: ignore[arg-type]


def _record_strategy(cls: type) -> st.SearchStrategy[object]:
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: _field_strategy(f.name, hints[f.name]) for f in dataclasses.fields(cls)}
    return st.builds(cls, **fields)


@st.composite
def _fuzz_request(draw: st.DrawFn) -> bytes:
    records = _op_records()
    op = draw(st.sampled_from([*records, OpCode.MULTI, OpCode.MULTI_READ, OpCode.PING]))
    xid = draw(st.integers(-10, 100))
    if op in (OpCode.MULTI, OpCode.MULTI_READ):
        subs = draw(st.lists(st.sampled_from(sorted(records)), max_size=4))
        ops = [(s, draw(_record_strategy(records[s]))) for s in subs]
        return frame(struct.pack(">ii", xid, op) + multi_body(ops))
    if op == OpCode.PING:
        return request(xid, op)
    return request(xid, op, draw(_record_strategy(records[op])))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_fuzz_request(), max_size=10), st.booleans())
def test_fuzzed_well_formed_requests_never_break_the_core(
    reqs: list[bytes], ttl_enabled: bool
) -> None:
    h = Harness(config=CoreConfig(extended_types_enabled=ttl_enabled))
    h.connect(1)
    h.connect(2)
    h.call(1, 1, OpCode.CREATE, create("/f", b"x"))
    h.call(2, 1, OpCode.GET_CHILDREN, GetChildrenRequest("/", True))
    for req in reqs:
        if 1 in h.closed:
            break
        h.send(1, req)
    h.tick(10_000_000)
    assert not h.core.inflight
    assert h.tree.sessions == {}


def test_a_queued_read_keeps_the_auth_it_arrived_with() -> None:
    h = Harness()
    h.connect(1)
    h.connect(2)
    h.call(2, -4, OpCode.AUTH, AuthPacket(0, "digest", b"bob:pw"))
    bob = (ACL(int(Perm.ALL), Id("digest", digest_id("bob:pw"))),)
    h.call(2, 1, OpCode.CREATE, create("/s", b"x", acl=bob))
    h.auto_persist = False
    h.send(
        1,
        request(1, OpCode.CREATE, create("/t"))
        + request(2, OpCode.GET_DATA, GetDataRequest("/s", False))
        + request(-4, OpCode.AUTH, AuthPacket(0, "digest", b"bob:pw"))
        + request(3, OpCode.GET_DATA, GetDataRequest("/s", False)),
    )
    [auth] = h.replies(1)  # answered at once, ahead of the queued replies
    assert (auth.xid, auth.err) == (-4, 0)
    h.persist()
    reps = h.replies(1)
    assert [(r.xid, r.err) for r in reps] == [(1, 0), (2, Err.NOAUTH), (3, 0)]
