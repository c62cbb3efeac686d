"""ReadOnlyCore: a member's read-only service (ZooKeeper's ReadOnlyZooKeeperServer), driven
with raw protocol bytes over a tree a standalone core built first.

What is checked against ZooKeeper 3.8 in read-only mode (probed by hand; the integration
test compares a few ops live): only readOnly clients are admitted, the ConnectResponse says
readOnly, every state-changing op (and sync) answers NOTREADONLY with the tree's zxid,
reads and watches work, global sessions are closed, and the tree is never changed.
"""

from __future__ import annotations

import struct

import pytest
from core_harness import SECRET, Harness, connect_body, frame, multi_body, request

from corral.proto import jute
from corral.proto.codes import CreateMode, Err, EventType, OpCode
from corral.proto.records import (
    ACL,
    CheckVersionRequest,
    CreateRequest,
    CreateTTLRequest,
    DeleteRequest,
    ExistsRequest,
    GetACLRequest,
    GetAllChildrenNumberRequest,
    GetAllChildrenNumberResponse,
    GetChildren2Request,
    GetChildren2Response,
    GetChildrenRequest,
    GetChildrenResponse,
    GetDataRequest,
    GetDataResponse,
    Id,
    MultiHeader,
    ReconfigRequest,
    SetACLRequest,
    SetDataRequest,
    SetWatches,
    SyncRequest,
)
from corral.server.core import CoreConfig
from corral.server.readonly_core import READ_ONLY_REFUSED_OPS, ReadOnlyCore
from corral.server.sessions import initial_session_id, password_hmac
from corral.tree.datatree import DataTree

OPEN = (ACL(31, Id("world", "anyone")),)
TICK_MS = 2000
CONFIG = CoreConfig(tick_ms=TICK_MS, server_id=3)


def create(path: str, data: bytes = b"", flags: int = 0) -> CreateRequest:
    return CreateRequest(path, data, OPEN, flags)


def tree_state(tree: DataTree) -> dict[str, tuple[bytes, bytes, tuple[str, ...]]]:
    """Everything a client could read of the tree (data, Stat, children), by path."""
    return {
        path: (node.data or b"", node.stat_bytes(), tuple(sorted(node.children)))
        for path, node in tree.nodes.items()
    }


@pytest.fixture
def h() -> Harness:
    """A read-only core over a tree with /a (data A), /a/b, an ephemeral /eph of a global
    session, and some history (a setData), as a member has when it loses its quorum."""
    h = Harness(config=CONFIG)
    h.connect(1)
    h.call(1, 1, OpCode.CREATE, create("/a", b"A0"))
    h.call(1, 2, OpCode.CREATE, create("/a/b", b"B"))
    h.call(1, 3, OpCode.CREATE, create("/eph", flags=CreateMode.EPHEMERAL))
    h.call(1, 4, OpCode.SET_DATA, SetDataRequest("/a", b"A", -1))
    h.close(1)  # the session lives on: a global session in the tree
    h.log.clear()
    h.core = ReadOnlyCore(CONFIG, h.tree, h.now, h.wall, SECRET)
    h.closed.clear()
    return h


def ro(h: Harness) -> ReadOnlyCore:
    assert isinstance(h.core, ReadOnlyCore)
    return h.core


def global_session(h: Harness) -> tuple[int, bytes]:
    [sid] = h.tree.sessions
    return sid, password_hmac(sid, SECRET)


def ro_connect(h: Harness, cid: int, timeout: int = 30_000) -> None:
    resp = h.connect(cid, read_only=True, timeout=timeout)
    assert resp.read_only and resp.timeout > 0 and resp.session_id != 0


def test_the_connect_response_says_read_only_and_the_session_is_local(h: Harness) -> None:
    before = dict(h.tree.sessions)
    resp = h.connect(5, read_only=True, timeout=10_000)
    assert resp.read_only
    assert resp.timeout == 10_000
    assert resp.session_id >> 56 == 3  # this server's id in the top byte, as ZooKeeper
    assert resp.session_id not in h.tree.sessions
    assert h.tree.sessions == before  # not a global session: nothing in the tree
    assert h.log == []  # nothing to persist, ever
    assert h.core.mode == "read-only"
    # mntr's zk_global_sessions: the tree's table, as ZooKeeper's read-only server says.
    assert ro(h).snapshot_for_4lw().global_sessions == len(before) == 1
    assert ro(h).snapshot_for_4lw().local_sessions == 1  # ... and its own count as local


def test_clients_that_do_not_ask_for_read_only_are_closed_without_a_reply(h: Harness) -> None:
    for cid, read_only in ((5, False), (6, None)):  # None: a 44-byte ConnectRequest
        h.open(cid)
        h.send(cid, frame(connect_body(read_only=read_only)))
        assert cid in h.closed
        assert h.raw(cid) == b""


def test_a_client_ahead_of_the_tree_is_closed(h: Harness) -> None:
    h.open(5)
    h.send(5, frame(connect_body(read_only=True, last_zxid=h.tree.last_zxid + 1)))
    assert 5 in h.closed and h.raw(5) == b""


def test_a_global_session_is_closed_and_an_unknown_one_is_expired(h: Harness) -> None:
    sid, passwd = global_session(h)
    h.open(5)
    h.send(5, frame(connect_body(sid, passwd, read_only=True)))
    assert 5 in h.closed and h.raw(5) == b""  # ZooKeeper: "Refusing global session ..."
    h.open(6)
    h.send(6, frame(connect_body(sid + 1000, b"\x01" * 16, read_only=True)))
    raw = h.raw(6)
    assert 6 in h.closed
    # The all-zeros answer of an invalid session, readOnly set as ZooKeeper's RO server does.
    assert raw == struct.pack(">iiiqi", 37, 0, 0, 0, 16) + bytes(16) + b"\x01"


def test_reads_are_served_from_the_tree(h: Harness) -> None:
    ro_connect(h, 5)
    zxid = h.tree.last_zxid
    [rep] = h.call(5, 1, OpCode.GET_DATA, GetDataRequest("/a", False))
    assert (rep.err, rep.zxid) == (0, zxid)
    got = rep.decode(GetDataResponse)
    assert got.data == b"A" and got.stat.version == 1
    [rep] = h.call(5, 2, OpCode.EXISTS, ExistsRequest("/nope", False))
    assert rep.err == Err.NONODE
    [rep] = h.call(5, 3, OpCode.GET_CHILDREN, GetChildrenRequest("/a", False))
    assert rep.decode(GetChildrenResponse).children == ("b",)
    [rep] = h.call(5, 4, OpCode.GET_CHILDREN2, GetChildren2Request("/", False))
    assert sorted(rep.decode(GetChildren2Response).children) == ["a", "eph", "zookeeper"]
    [rep] = h.call(5, 5, OpCode.GET_ACL, GetACLRequest("/a"))
    assert rep.err == 0
    [rep] = h.call(5, 6, OpCode.GET_ALL_CHILDREN_NUMBER, GetAllChildrenNumberRequest("/"))
    assert rep.decode(GetAllChildrenNumberResponse).total_number == 6
    body = multi_body([(OpCode.GET_DATA, GetDataRequest("/a/b", False))])
    h.send(5, frame(struct.pack(">ii", 7, OpCode.MULTI_READ) + body))
    [rep] = h.replies(5)
    mh, pos = jute.decode(MultiHeader, rep.body)
    assert (mh.type, mh.err) == (OpCode.GET_DATA, 0)
    assert jute.decode(GetDataResponse, rep.body, pos)[0].data == b"B"
    [rep] = h.call(5, -2, OpCode.PING)
    assert (rep.xid, rep.err) == (-2, 0)


WRITES: list[tuple[int, object | None]] = [
    (OpCode.SYNC, SyncRequest("/a")),
    (OpCode.CREATE, create("/x")),
    (OpCode.CREATE2, create("/x")),
    (OpCode.CREATE_CONTAINER, create("/x", flags=CreateMode.CONTAINER)),
    (OpCode.CREATE_TTL, CreateTTLRequest("/x", b"", OPEN, 5, 1000)),
    (OpCode.DELETE, DeleteRequest("/a/b", -1)),
    (OpCode.DELETE_CONTAINER, None),  # ZooKeeper refuses it before reading the body
    (OpCode.SET_DATA, SetDataRequest("/a", b"z", -1)),
    (OpCode.SET_ACL, SetACLRequest("/a", OPEN, -1)),
    (OpCode.CHECK, CheckVersionRequest("/a", 1)),
    (OpCode.RECONFIG, ReconfigRequest("", "", "", -1)),
]


def test_the_refused_ops_are_zookeepers_list() -> None:
    assert {op for op, _ in WRITES} | {OpCode.MULTI} == READ_ONLY_REFUSED_OPS


@pytest.mark.parametrize(("op", "rec"), WRITES, ids=[OpCode(op).name for op, _ in WRITES])
def test_every_write_answers_not_read_only(h: Harness, op: int, rec: object | None) -> None:
    ro_connect(h, 5)
    before = tree_state(h.tree)
    [rep] = h.call(5, 9, op, rec)
    assert (rep.xid, rep.zxid, rep.err, rep.body) == (9, h.tree.last_zxid, Err.NOTREADONLY, b"")
    assert 5 not in h.closed  # the client goes on reading
    assert tree_state(h.tree) == before and h.log == []


def test_a_multi_answers_not_read_only_as_a_whole(h: Harness) -> None:
    ro_connect(h, 5)
    body = multi_body([(OpCode.CHECK, CheckVersionRequest("/a", 1)), (OpCode.CREATE, create("/m"))])
    h.send(5, frame(struct.pack(">ii", 4, OpCode.MULTI) + body))
    [rep] = h.replies(5)
    assert (rep.xid, rep.err, rep.body) == (4, Err.NOTREADONLY, b"")
    assert "/m" not in h.tree.nodes


def test_replies_keep_request_order_across_refused_writes(h: Harness) -> None:
    ro_connect(h, 5)
    reqs = (
        request(1, OpCode.GET_DATA, GetDataRequest("/a", False))
        + request(2, OpCode.SET_DATA, SetDataRequest("/a", b"z", -1))
        + request(3, OpCode.EXISTS, ExistsRequest("/a", False))
        + request(4, OpCode.SYNC, SyncRequest("/"))
    )
    h.send(5, reqs)
    assert [(r.xid, r.err) for r in h.replies(5)] == [
        (1, 0),
        (2, Err.NOTREADONLY),
        (3, 0),
        (4, Err.NOTREADONLY),
    ]


def test_watches_are_set_and_missed_changes_fire_but_the_tree_never_changes(
    h: Harness,
) -> None:
    ro_connect(h, 5)
    h.call(5, 1, OpCode.GET_DATA, GetDataRequest("/a", True))
    h.call(5, 2, OpCode.EXISTS, ExistsRequest("/new", True))
    assert h.tree.watches.watcher_count(5) == 2
    # setWatches from a client that saw zxid 2: /a changed since (its setData).
    ro_connect(h, 6)
    reps = h.call(6, -8, OpCode.SET_WATCHES, SetWatches(2, ("/a",), (), ()))
    assert [(r.xid, r.err) for r in reps] == [(-1, 0), (-8, 0)]
    assert reps[0].event().type == EventType.NODE_DATA_CHANGED
    # The end of read-only service drops every watch of its connections from the tree.
    out = ro(h).shutdown()
    assert sorted(out.closes) == [5, 6]
    assert h.tree.watches.watcher_count(5) == 0
    assert h.tree.watches.watcher_count(6) == 0
    assert ro(h).tree_unchanged()


def test_close_session_ends_the_local_session(h: Harness) -> None:
    ro_connect(h, 5)
    sid = h.core.conns[5].session_id
    passwd = password_hmac(sid, SECRET)
    [rep] = h.call(5, 7, OpCode.CLOSE_SESSION)
    assert (rep.xid, rep.err) == (7, 0)
    assert 5 in h.closed
    h.open(6)
    h.send(6, frame(connect_body(sid, passwd, read_only=True)))
    assert h.raw(6)[4:20] == bytes(16)  # expired: timeout 0, session id 0
    assert h.log == []


def test_a_local_session_expires_and_its_connection_closes(h: Harness) -> None:
    ro_connect(h, 5, timeout=4000)
    sid = h.core.conns[5].session_id
    passwd = password_hmac(sid, SECRET)
    h.tick(2000)
    assert 5 not in h.closed
    h.tick(4000)
    assert 5 in h.closed
    assert h.raw(5) == b""
    h.open(6)
    h.send(6, frame(connect_body(sid, passwd, read_only=True)))
    assert h.raw(6)[4:20] == bytes(16)
    assert h.log == []
    assert ro(h).tree_unchanged()


def test_a_reconnect_with_the_local_session_moves_it(h: Harness) -> None:
    ro_connect(h, 5)
    sid = h.core.conns[5].session_id
    resp = h.connect(6, session_id=sid, passwd=password_hmac(sid, SECRET), read_only=True)
    assert resp.read_only and resp.session_id == sid
    assert 5 in h.closed


def test_session_ids_step_over_global_sessions() -> None:
    tree = DataTree()
    wall = 1_764_000_000_000
    first = initial_session_id(wall, CONFIG.server_id)
    tree.sessions[first] = 30_000  # a global session that happens to hold the next id
    h = Harness(config=CONFIG, tree=tree, wall=wall)
    h.core = ReadOnlyCore(CONFIG, tree, h.now, wall, SECRET)
    resp = h.connect(1, read_only=True)
    assert resp.session_id == first + 1


def test_the_tree_is_handed_back_unchanged(h: Harness) -> None:
    before = tree_state(h.tree)
    zxid = h.tree.last_zxid
    sessions = dict(h.tree.sessions)
    ro_connect(h, 5)
    for i, (op, rec) in enumerate(WRITES):
        h.call(5, 10 + i, op, rec)
    h.call(5, 50, OpCode.GET_CHILDREN, GetChildrenRequest("/", True))
    h.tick(100_000)  # every local session expired; no global one touched
    ro(h).shutdown()
    assert tree_state(h.tree) == before
    assert (h.tree.last_zxid, h.tree.sessions) == (zxid, sessions)
    assert h.log == []
    assert ro(h).tree_unchanged()
