"""The data model, watches and sessions through unmodified kazoo, for what the other kazoo
tests leave to the raw client: every Stat field as ZooKeeper keeps it (times included), the
/zookeeper subtree (and the quota stats kept under it), and the operations kazoo has no
call for (createContainer, createTTL, getEphemerals, getAllChildrenNumber, multiRead,
addWatch, checkWatches/removeWatches, setWatches, and setWatches2 after a reconnect), sent
over kazoo's own connection.

kazoo's connection sends any request object that has a `type` and `serialize()`, and hands
the reply body to its `deserialize()` (test_auth.py sends whoAmI the same way). kazoo has no
persistent watches, so a notification nobody registered for is only logged by its
connection ("Received EVENT"); the tests read the events from that log, through a logger
handed to KazooClient. The one-shot watch ACL check (ZooKeeper 3.9.2+) is shown with
kazoo's own watch callbacks.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kazoo.client import KazooClient  # type: ignore[import-untyped]
from kazoo.exceptions import (  # type: ignore[import-untyped]
    BadArgumentsError,
    NoAuthError,
    NoNodeError,
    NoWatcherError,
)
from kazoo.protocol.states import KazooState  # type: ignore[import-untyped]
from kazoo.security import (  # type: ignore[import-untyped]
    OPEN_ACL_UNSAFE,
    READ_ACL_UNSAFE,
    make_digest_acl,
)

from conftest import ServerPool
from corral.proto.codes import AddWatchMode, EventType, OpCode, WatcherType
from corral.proto.records import (
    ACL,
    AddWatchRequest,
    CheckWatchesRequest,
    Create2Response,
    CreateRequest,
    CreateTTLRequest,
    ErrorResponse,
    GetAllChildrenNumberRequest,
    GetAllChildrenNumberResponse,
    GetChildrenRequest,
    GetDataRequest,
    GetEphemeralsRequest,
    GetEphemeralsResponse,
    Id,
    RemoveWatchesRequest,
    SetWatches,
    SetWatches2,
)
from support import kazoo_client
from support.kazoo_calls import KazooCall, call, send
from support.procs import HOST, ServerProcess, ServerSettings
from support.rawclient import MultiResult, decode_multi_response, encode_multi
from support.tcpproxy import Mode, ProxyHub

WAIT_S = 10.0

# TTL nodes on, containers and TTL nodes reaped every 100 ms so reaping is observable.
SETTINGS = ServerSettings(extended_types=True, container_check_interval_ms=100)
OPEN = (ACL(31, Id("world", "anyone")),)
FAST_RETRY = {"max_tries": -1, "delay": 0.05, "backoff": 1.5, "max_delay": 0.3}
_loggers = itertools.count()


@pytest.fixture(scope="module")
def server(corral_pool: ServerPool) -> ServerProcess:
    return corral_pool.get(SETTINGS)


class EventLog(logging.Handler):
    """The notifications a kazoo connection reads, as (type, path), from its debug log."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.events: queue.Queue[tuple[int, str]] = queue.Queue()
        self.logger = logging.getLogger(f"kazoo-coverage-{next(_loggers)}")
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "Received EVENT: %s" and record.args:
            watch = record.args[0]  # type: ignore[index]
            self.events.put((int(watch.type), str(watch.path)))

    def take(self, n: int) -> list[tuple[int, str]]:
        return [self.events.get(timeout=WAIT_S) for _ in range(n)]

    def drained(self, zk: KazooClient) -> list[tuple[int, str]]:
        """Events still queued once a round trip has passed (kazoo reads in order)."""
        zk.sync("/")
        out = []
        while not self.events.empty():
            out.append(self.events.get_nowait())
        return out

    def detach(self) -> None:
        self.logger.removeHandler(self)


def call_multi(zk: KazooClient, op: int, ops: list[tuple[int, Any]]) -> list[MultiResult]:
    return send(  # type: ignore[no-any-return]
        zk, KazooCall(op, encode_multi(ops), decode_multi_response), WAIT_S
    )


@pytest.fixture
def events() -> Iterator[EventLog]:
    log = EventLog()
    yield log
    log.detach()


def connect(port: int, events: EventLog | None = None, **kwargs: Any) -> KazooClient:
    if events is not None:
        kwargs["logger"] = events.logger
    client = KazooClient(hosts=f"{HOST}:{port}", timeout=10.0, **kwargs)
    client.start(timeout=15.0)
    return client


@pytest.fixture
def zk(server: ServerProcess, events: EventLog) -> Iterator[KazooClient]:
    client = connect(server.port, events)
    yield client
    kazoo_client.stop(client)


@pytest.fixture
def writer(server: ServerProcess) -> Iterator[KazooClient]:
    client = connect(server.port)
    yield client
    kazoo_client.stop(client)


def now_ms() -> int:
    return time.time_ns() // 1_000_000  # as the server reads its clock


# --- the data model -----------------------------------------------------------------------


def test_stat_fields_follow_zookeeper(zk: KazooClient) -> None:
    """Every Stat field: what creates, setData, setACL and child changes do to it."""
    before = now_ms()
    _, made = zk.create("/stat", b"abc", include_data=True)
    after = now_ms()
    # A new node: one zxid and one time for everything, nothing counted yet.
    assert made.czxid == made.mzxid == made.pzxid == zk.last_zxid
    assert made.ctime == made.mtime
    assert before <= made.ctime <= after  # ms since the epoch, from the server's clock
    assert (made.version, made.cversion, made.aversion) == (0, 0, 0)
    assert (made.dataLength, made.numChildren, made.ephemeralOwner) == (3, 0, 0)

    # setData: data version, mzxid and mtime move; nothing else.
    changed = zk.set("/stat", b"abcdef")
    assert changed.mzxid == zk.last_zxid > made.mzxid
    assert changed.mtime >= made.mtime
    assert (changed.version, changed.dataLength) == (1, 6)
    assert (changed.czxid, changed.ctime, changed.pzxid) == (made.czxid, made.ctime, made.pzxid)
    assert (changed.cversion, changed.aversion) == (0, 0)

    # A child create: the parent's pzxid is the child's czxid, cversion and numChildren
    # count it; its data stat (mzxid, mtime, version) stays.
    _, kid = zk.create("/stat/kid", ephemeral=True, include_data=True)
    parent = zk.exists("/stat")
    assert kid.ephemeralOwner == zk.client_id[0]
    assert parent.pzxid == kid.czxid
    assert (parent.cversion, parent.numChildren) == (1, 1)
    assert (parent.mzxid, parent.mtime, parent.version) == (
        changed.mzxid,
        changed.mtime,
        changed.version,
    )

    # A child delete: pzxid moves to the delete's zxid; cversion counts the deletion too
    # (ZooKeeper shows creations + deletions).
    zk.delete("/stat/kid")
    delete_zxid = zk.last_zxid
    parent = zk.exists("/stat")
    assert parent.pzxid == delete_zxid > kid.czxid
    assert (parent.cversion, parent.numChildren) == (2, 0)
    assert parent.mzxid == changed.mzxid

    # setACL: only aversion moves (not mzxid, mtime or version).
    acl_stat = zk.set_acls("/stat", OPEN_ACL_UNSAFE, version=0)
    assert acl_stat.aversion == 1
    assert (acl_stat.mzxid, acl_stat.mtime, acl_stat.version, acl_stat.pzxid) == (
        changed.mzxid,
        changed.mtime,
        changed.version,
        delete_zxid,
    )
    emptied = zk.set("/stat", b"")
    assert (emptied.dataLength, emptied.version) == (0, 2)


def test_zookeeper_subtree(zk: KazooClient) -> None:
    """/zookeeper, /zookeeper/config and /zookeeper/quota exist from the start, with
    ZooKeeper's ACLs, and neither they nor the root can be deleted."""
    assert sorted(zk.get_children("/zookeeper")) == ["config", "quota"]
    assert zk.get_acls("/zookeeper/config")[0] == READ_ACL_UNSAFE
    assert zk.get_acls("/zookeeper/quota")[0] == OPEN_ACL_UNSAFE
    assert zk.get_acls("/zookeeper")[0] == OPEN_ACL_UNSAFE
    for path in ("/zookeeper", "/zookeeper/config", "/zookeeper/quota"):
        data, stat = zk.get(path)
        # Standalone: no dynamic config to show; the nodes predate every txn.
        assert data == b""
        assert (stat.czxid, stat.ctime) == (0, 0)
    for path in ("/", "/zookeeper", "/zookeeper/config", "/zookeeper/quota"):
        with pytest.raises(BadArgumentsError):
            zk.delete(path)
    # READ-only for world: writes below or to /zookeeper/config need the super user.
    with pytest.raises(NoAuthError):
        zk.set("/zookeeper/config", b"server.1=x")
    with pytest.raises(NoAuthError):
        zk.create("/zookeeper/config/x")


def test_quota_nodes_are_kept_up_to_date(zk: KazooClient) -> None:
    """/zookeeper/quota/<path>/zookeeper_stats follows the subtree (count includes the node
    itself, bytes are data bytes), as zkCli's setquota leaves it and ZooKeeper 3.8 updates
    it (same numbers, run against Debian's ZooKeeper)."""
    zk.create("/kq", b"12")
    zk.create("/kq/pre", b"abcd")
    zk.create("/zookeeper/quota/kq")
    zk.create("/zookeeper/quota/kq/zookeeper_limits", b"count=3,bytes=10")
    stats = "/zookeeper/quota/kq/zookeeper_stats"
    zk.create(stats, b"count=1,bytes=0")
    assert zk.get(stats)[0] == b"count=2,bytes=6"  # recounted when the stats node appears
    zk.create("/kq/a", b"xyz")
    assert zk.get(stats)[0] == b"count=3,bytes=9"
    zk.set("/kq/a", b"xyz" * 4)
    assert zk.get(stats)[0] == b"count=3,bytes=18"
    zk.create("/kq/a/b")
    zk.create("/kq/a/c", b"1")  # over the soft limits: only logged
    assert zk.get(stats)[0] == b"count=5,bytes=19"
    zk.delete("/kq/a/c")
    data, stat = zk.get(stats)
    assert data == b"count=4,bytes=18"
    assert (stat.version, stat.mzxid) == (0, stat.czxid)  # rewritten in place, not by setData


def test_container_through_kazoo(server: ServerProcess, zk: KazooClient, events: EventLog) -> None:
    request = CreateRequest("/kbox", b"c", OPEN, 4)
    made = call(zk, OpCode.CREATE_CONTAINER, request, Create2Response)
    assert made.path == "/kbox"
    assert made.stat.ephemeral_owner == 0  # the container marker is hidden
    assert zk.exists("/kbox").ephemeralOwner == 0
    # Its only child is an ephemeral; when the owning session closes the container is
    # empty again, and the reaper removes it.
    owner = connect(server.port)
    try:
        owner.create("/kbox/item", ephemeral=True)
        assert zk.exists("/kbox", watch=lambda event: None).numChildren == 1
    finally:
        kazoo_client.stop(owner)
    assert events.take(1) == [(EventType.NODE_DELETED, "/kbox")]
    assert zk.exists("/kbox") is None
    # Never used (no child ever): kept.
    call(zk, OpCode.CREATE_CONTAINER, CreateRequest("/kbox-unused", b"", OPEN, 4))
    zk.sync("/")
    assert zk.exists("/kbox-unused") is not None


def test_ttl_node_through_kazoo(zk: KazooClient, events: EventLog) -> None:
    seq = call(
        zk, OpCode.CREATE_TTL, CreateTTLRequest("/kttl-", b"", OPEN, 6, 60_000), Create2Response
    )
    suffix = seq.path.removeprefix("/kttl-")
    assert len(suffix) == 10 and suffix.isdigit()
    assert seq.stat.ephemeral_owner == 0  # the TTL encoding is hidden
    with pytest.raises(BadArgumentsError):
        call(zk, OpCode.CREATE_TTL, CreateTTLRequest("/kttl-bad", b"", OPEN, 5, 2**40))
    # A 200 ms TTL node born with a child (one multi, so the reaper cannot take it first,
    # however slow this machine is) is kept while the child lives; once childless and
    # unchanged for its TTL, the reaper deletes it.
    call(zk, OpCode.ADD_WATCH, AddWatchRequest("/kttl", AddWatchMode.PERSISTENT))
    results = call_multi(
        zk,
        OpCode.MULTI,
        [
            (OpCode.CREATE_TTL, CreateTTLRequest("/kttl", b"t", OPEN, 5, 200)),
            (OpCode.CREATE, CreateRequest("/kttl/kid", b"", OPEN, 0)),
        ],
    )
    assert [(r.type, r.err) for r in results] == [(OpCode.CREATE2, 0), (OpCode.CREATE, 0)]
    assert results[0].body.stat.ephemeral_owner == 0
    assert events.take(2) == [
        (EventType.NODE_CREATED, "/kttl"),
        (EventType.NODE_CHILDREN_CHANGED, "/kttl"),
    ]
    zk.delete("/kttl/kid")
    assert events.take(2) == [
        (EventType.NODE_CHILDREN_CHANGED, "/kttl"),
        (EventType.NODE_DELETED, "/kttl"),
    ]
    zk.delete(seq.path)


def test_get_ephemerals_and_all_children_number(zk: KazooClient, writer: KazooClient) -> None:
    zk.create("/keph/a/b", makepath=True)
    zk.create("/keph/a/b/e1", ephemeral=True)
    zk.create("/keph/e2-", ephemeral=True, sequence=True)
    writer.create("/keph/theirs", ephemeral=True)
    mine = call(zk, OpCode.GET_EPHEMERALS, GetEphemeralsRequest("/keph"), GetEphemeralsResponse)
    assert sorted(mine.ephemerals) == ["/keph/a/b/e1", "/keph/e2-0000000001"]
    everything = call(zk, OpCode.GET_EPHEMERALS, GetEphemeralsRequest("/"), GetEphemeralsResponse)
    assert sorted(everything.ephemerals) == sorted(mine.ephemerals)
    count = call(
        zk,
        OpCode.GET_ALL_CHILDREN_NUMBER,
        GetAllChildrenNumberRequest("/keph"),
        GetAllChildrenNumberResponse,
    )
    assert count.total_number == 5  # a, a/b, a/b/e1, e2-..., theirs
    with pytest.raises(NoNodeError):
        call(
            zk,
            OpCode.GET_ALL_CHILDREN_NUMBER,
            GetAllChildrenNumberRequest("/keph-none"),
            GetAllChildrenNumberResponse,
        )


def test_multi_read_through_kazoo(zk: KazooClient) -> None:
    zk.create("/kmr", b"top")
    zk.create("/kmr/k")
    results = call_multi(
        zk,
        OpCode.MULTI_READ,
        [
            (OpCode.GET_DATA, GetDataRequest("/kmr", False)),
            (OpCode.GET_CHILDREN, GetChildrenRequest("/kmr", False)),
            (OpCode.GET_DATA, GetDataRequest("/kmr-none", False)),
        ],
    )
    assert [(r.type, r.err) for r in results] == [
        (OpCode.GET_DATA, 0),
        (OpCode.GET_CHILDREN, 0),
        (OpCode.ERROR, NoNodeError.code),
    ]
    assert results[0].body.data == b"top"
    assert results[1].body.children == ("k",)


# --- watches ------------------------------------------------------------------------------


def test_persistent_recursive_watch_through_kazoo(
    zk: KazooClient, writer: KazooClient, events: EventLog
) -> None:
    reply = call(
        zk, OpCode.ADD_WATCH, AddWatchRequest("/krw", AddWatchMode.PERSISTENT_RECURSIVE),
        ErrorResponse,
    )  # fmt: skip
    assert reply.err == 0  # addWatch answers with a 4-byte ErrorResponse
    writer.create("/krw")
    writer.create("/krw/a/b", b"", makepath=True)
    writer.set("/krw/a/b", b"x")
    writer.delete("/krw/a/b")
    writer.create("/krw-sibling")  # not under /krw
    assert events.take(5) == [
        (EventType.NODE_CREATED, "/krw"),
        (EventType.NODE_CREATED, "/krw/a"),
        (EventType.NODE_CREATED, "/krw/a/b"),
        (EventType.NODE_DATA_CHANGED, "/krw/a/b"),
        (EventType.NODE_DELETED, "/krw/a/b"),
    ]
    assert events.drained(zk) == []  # never NodeChildrenChanged, nothing for the sibling
    check = CheckWatchesRequest("/krw", WatcherType.PERSISTENT_RECURSIVE)
    assert call(zk, OpCode.CHECK_WATCHES, check) is True
    remove = RemoveWatchesRequest("/krw", WatcherType.PERSISTENT_RECURSIVE)
    assert call(zk, OpCode.REMOVE_WATCHES, remove) is True
    with pytest.raises(NoWatcherError):
        call(zk, OpCode.CHECK_WATCHES, check)
    writer.create("/krw/after")
    assert events.drained(zk) == []


def test_persistent_watch_and_remove_watches_through_kazoo(
    zk: KazooClient, writer: KazooClient, events: EventLog
) -> None:
    call(zk, OpCode.ADD_WATCH, AddWatchRequest("/kpw", AddWatchMode.PERSISTENT))
    writer.create("/kpw")
    writer.create("/kpw/kid")
    writer.create("/kpw/kid/grandkid")  # not a direct child: nothing
    writer.set("/kpw", b"1")
    writer.set("/kpw", b"2")  # persistent: fires again
    assert events.take(4) == [
        (EventType.NODE_CREATED, "/kpw"),
        (EventType.NODE_CHILDREN_CHANGED, "/kpw"),
        (EventType.NODE_DATA_CHANGED, "/kpw"),
        (EventType.NODE_DATA_CHANGED, "/kpw"),
    ]
    # A kazoo one-shot data watch beside it; removeWatches(DATA) takes only that one.
    fired = threading.Event()
    zk.get("/kpw", watch=lambda event: fired.set())
    call(zk, OpCode.CHECK_WATCHES, CheckWatchesRequest("/kpw", WatcherType.DATA))
    call(zk, OpCode.REMOVE_WATCHES, RemoveWatchesRequest("/kpw", WatcherType.DATA))
    with pytest.raises(NoWatcherError):
        call(zk, OpCode.REMOVE_WATCHES, RemoveWatchesRequest("/kpw", WatcherType.DATA))
    writer.set("/kpw", b"3")
    assert events.take(1) == [(EventType.NODE_DATA_CHANGED, "/kpw")]  # one: the persistent
    assert events.drained(zk) == []
    call(zk, OpCode.REMOVE_WATCHES, RemoveWatchesRequest("/kpw", WatcherType.ANY))
    writer.delete("/kpw/kid/grandkid")
    writer.delete("/kpw/kid")
    assert events.drained(zk) == []
    with pytest.raises(NoWatcherError):
        call(zk, OpCode.CHECK_WATCHES, CheckWatchesRequest("/kpw", WatcherType.ANY))


def test_one_shot_watch_events_need_read(zk: KazooClient, writer: KazooClient) -> None:
    """ZooKeeper 3.9.2+ (CVE-2024-23944) checks READ on the node before it delivers any
    event, one-shot ones included; the watch is spent either way."""
    writer.add_auth("digest", "wendy:pw")
    writer.create("/kread", b"0")
    writer.create("/kread-barrier")
    fired: queue.Queue[Any] = queue.Queue()
    zk.get("/kread", watch=fired.put)
    writer.set_acls("/kread", [make_digest_acl("wendy", "pw", all=True)])
    writer.set("/kread", b"1")  # the watcher may no longer READ /kread: dropped
    writer.set_acls("/kread", OPEN_ACL_UNSAFE)
    writer.set("/kread", b"2")  # the watch was spent on the dropped event
    barrier: queue.Queue[Any] = queue.Queue()
    zk.get("/kread-barrier", watch=barrier.put)
    writer.set("/kread-barrier", b"go")
    assert barrier.get(timeout=WAIT_S).path == "/kread-barrier"
    assert fired.empty()  # kazoo runs watch callbacks in order: anything earlier is in


# --- sessions: reconnect and setWatches2 ------------------------------------------------


def test_set_watches2_through_kazoo_after_a_reconnect(
    server: ServerProcess, writer: KazooClient, events: EventLog
) -> None:
    """kazoo keeps its session over a network break but does not re-register its watches
    (no setWatches); sent over its reconnected connection, setWatches2 re-arms them and
    fires the one-shot watches whose events were missed, as ZooKeeper does."""
    writer.create("/ksw", b"0")
    writer.create("/ksw/gone")
    writer.create("/ksw/kept")
    with ProxyHub() as hub:
        proxy = hub.add(server.port)
        zk = connect(proxy.port, events, connection_retry=FAST_RETRY)
        try:
            states: queue.Queue[str] = queue.Queue()
            zk.add_listener(states.put)
            session = zk.client_id
            assert zk.exists("/ksw/kept") is not None  # a reply: kazoo's last_zxid is current
            seen = zk.last_zxid
            assert seen >= zk.exists("/ksw/kept").mzxid
            proxy.set_mode(Mode.REFUSE)
            proxy.cut()
            assert states.get(timeout=WAIT_S) == KazooState.SUSPENDED
            writer.set("/ksw", b"1")
            writer.delete("/ksw/gone")
            writer.create("/ksw/new")
            proxy.set_mode(Mode.PASS)
            assert states.get(timeout=WAIT_S) == KazooState.CONNECTED
            assert zk.client_id == session  # the same session, not a new one
            request = SetWatches2(
                seen,
                ("/ksw", "/ksw/gone", "/ksw/kept"),
                ("/ksw/new", "/ksw/none"),
                ("/ksw",),
                (),
                ("/ksw/kept",),
            )
            assert call(zk, OpCode.SET_WATCHES2, request) is True
            missed = set(events.take(4))
            assert missed == {
                (EventType.NODE_DATA_CHANGED, "/ksw"),
                (EventType.NODE_DELETED, "/ksw/gone"),
                (EventType.NODE_CREATED, "/ksw/new"),
                (EventType.NODE_CHILDREN_CHANGED, "/ksw"),
            }
            assert events.drained(zk) == []
            # Re-armed: the data watch on the unchanged node, the exist watch on the
            # missing one and the recursive watch (one event each: they deduplicate).
            writer.set("/ksw/kept", b"k")
            writer.create("/ksw/none")
            assert events.take(2) == [
                (EventType.NODE_DATA_CHANGED, "/ksw/kept"),
                (EventType.NODE_CREATED, "/ksw/none"),
            ]
            writer.set("/ksw/kept", b"again")  # only the recursive watch is left there
            assert events.take(1) == [(EventType.NODE_DATA_CHANGED, "/ksw/kept")]
        finally:
            kazoo_client.stop(zk)


def test_set_watches_through_kazoo(zk: KazooClient, writer: KazooClient, events: EventLog) -> None:
    """The older setWatches (op 101) on a live kazoo connection: with relativeZxid 0 every
    existing node counts as changed, a missing one as deleted; an exist watch on a missing
    node is armed."""
    writer.create("/ksw1/kid", b"", makepath=True)
    request = SetWatches(0, ("/ksw1", "/ksw1-gone"), ("/ksw1-new",), ("/ksw1",))
    assert call(zk, OpCode.SET_WATCHES, request) is True
    assert set(events.take(3)) == {
        (EventType.NODE_DATA_CHANGED, "/ksw1"),
        (EventType.NODE_DELETED, "/ksw1-gone"),
        (EventType.NODE_CHILDREN_CHANGED, "/ksw1"),
    }
    writer.create("/ksw1-new")
    assert events.take(1) == [(EventType.NODE_CREATED, "/ksw1-new")]
    assert events.drained(zk) == []
