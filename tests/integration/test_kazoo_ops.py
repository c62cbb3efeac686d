"""Every client operation against a Corral server over TCP: through unmodified kazoo where it
has the operation, through the raw-protocol client (tests/support/rawclient.py) where it
does not (containers, TTL nodes, getEphemerals, getAllChildrenNumber, whoAmI, multiRead,
addWatch, removeWatches/checkWatches, setWatches/setWatches2, check outside multi, and
reconfig, which kazoo has but cannot report RECONFIGDISABLED from).

One server per settings for the whole module; each test works under its own paths.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient  # type: ignore[import-untyped]
from kazoo.exceptions import (  # type: ignore[import-untyped]
    BadArgumentsError,
    BadVersionError,
    ConnectionLoss,
    InvalidACLError,
    NoAuthError,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    RolledBackError,
    RuntimeInconsistency,
    UnimplementedError,
)
from kazoo.protocol.states import KazooState, ZnodeStat  # type: ignore[import-untyped]
from kazoo.security import ACL, Id, Permissions  # type: ignore[import-untyped]

from conftest import ServerPool
from corral.proto.codes import AddWatchMode, Err, EventType, OpCode, WatcherType
from corral.proto.records import ACL as RawACL
from corral.proto.records import (
    CheckVersionRequest,
    ClientInfo,
    CreateRequest,
    GetChildrenRequest,
    GetDataRequest,
    ReconfigRequest,
    SetDataRequest,
)
from corral.proto.records import Id as RawId
from support import kazoo_client
from support.procs import ServerProcess, ServerSettings
from support.rawclient import OPEN_ACL_UNSAFE, RawClient, digest

WAIT_S = 10.0

# The module's main server: TTL nodes on through the zoo.cfg key (not -D), containers and
# TTL nodes reaped every 100 ms (znode.container.checkIntervalMs), so reaping is observable.
MAIN = ServerSettings(
    cfg=(("extendedTypesEnabled", "true"),),
    container_check_interval_ms=100,
)
# TTL nodes on through the system property only, and reconfigEnabled=true.
BY_PROPERTY = ServerSettings(
    properties=(("zookeeper.extendedTypesEnabled", "true"),),
    cfg=(("reconfigEnabled", "true"),),
)


@pytest.fixture(scope="module")
def server(corral_pool: ServerPool) -> ServerProcess:
    return corral_pool.get(MAIN)


@pytest.fixture
def zk(server: ServerProcess) -> Iterator[KazooClient]:
    with kazoo_client.session(server.address) as client:
        yield client


@pytest.fixture
def raw(server: ServerProcess) -> Iterator[RawClient]:
    client = RawClient.connect(server.address)
    yield client
    client.close()


# --- kazoo: the operations it has ---------------------------------------------------------


def test_create_every_mode(zk: KazooClient) -> None:
    assert zk.create("/modes", b"root") == "/modes"
    assert zk.create("/modes/p", b"p") == "/modes/p"
    assert zk.create("/modes/e", b"e", ephemeral=True) == "/modes/e"
    seq = zk.create("/modes/s-", b"s", sequence=True)
    eseq = zk.create("/modes/es-", b"es", ephemeral=True, sequence=True)
    # Sequence numbers come from the parent's cversion (children created before: 2),
    # padded to ten digits.
    assert seq == "/modes/s-0000000002"
    assert eseq == "/modes/es-0000000003"
    session_id = zk.client_id[0]
    assert zk.exists("/modes/e").ephemeralOwner == session_id
    assert zk.exists(eseq).ephemeralOwner == session_id
    assert zk.exists(seq).ephemeralOwner == 0
    with pytest.raises(NodeExistsError):
        zk.create("/modes/p")
    with pytest.raises(NoNodeError):
        zk.create("/modes/missing/child")
    with pytest.raises(NoChildrenForEphemeralsError):
        zk.create("/modes/e/child")
    with pytest.raises(BadArgumentsError):
        zk.create("/modes/bad\u0001")  # kazoo passes it through; ZooKeeper's PathUtils refuses it
    assert zk.create("/modes/deep/er/path", b"x", makepath=True) == "/modes/deep/er/path"
    assert zk.get("/modes/deep/er")[0] == b""


def test_create2_returns_the_stat(zk: KazooClient) -> None:
    path, stat = zk.create("/c2", b"abc", include_data=True)
    assert path == "/c2"
    assert isinstance(stat, ZnodeStat)
    assert stat.dataLength == 3
    assert stat.version == 0
    assert stat.czxid == stat.mzxid == stat.pzxid
    assert stat == zk.exists("/c2")
    path, stat = zk.create("/c2/s-", sequence=True, ephemeral=True, include_data=True)
    assert path == "/c2/s-0000000000"
    assert stat.ephemeralOwner == zk.client_id[0]


def test_get_set_delete_with_versions(zk: KazooClient) -> None:
    zk.create("/gsd", b"v0")
    data, stat = zk.get("/gsd")
    assert (data, stat.version) == (b"v0", 0)
    stat1 = zk.set("/gsd", b"v1", version=0)
    assert stat1.version == 1
    assert stat1.mzxid > stat.mzxid
    assert stat1.czxid == stat.czxid
    with pytest.raises(BadVersionError):
        zk.set("/gsd", b"v2", version=0)
    stat2 = zk.set("/gsd", b"v2")  # -1: unconditional
    assert stat2.version == 2
    assert zk.get("/gsd")[0] == b"v2"
    with pytest.raises(BadVersionError):
        zk.delete("/gsd", version=1)
    zk.create("/gsd/child")
    with pytest.raises(NotEmptyError):
        zk.delete("/gsd")
    zk.delete("/gsd", version=2, recursive=True)
    assert zk.exists("/gsd") is None
    with pytest.raises(NoNodeError):
        zk.get("/gsd")
    with pytest.raises(NoNodeError):
        zk.set("/gsd", b"")
    with pytest.raises(NoNodeError):
        zk.delete("/gsd")
    with pytest.raises(BadArgumentsError):
        zk.delete("/zookeeper")


def test_exists_and_children(zk: KazooClient) -> None:
    assert zk.exists("/kids") is None
    zk.create("/kids")
    for name in ("a", "b", "c"):
        zk.create(f"/kids/{name}", name.encode())
    assert sorted(zk.get_children("/kids")) == ["a", "b", "c"]
    children, stat = zk.get_children("/kids", include_data=True)
    assert sorted(children) == ["a", "b", "c"]
    assert stat.numChildren == 3
    assert stat.cversion == 3
    zk.delete("/kids/b")
    after = zk.exists("/kids")
    assert (after.numChildren, after.cversion) == (2, 4)
    assert after.pzxid > stat.pzxid
    assert after.mzxid == after.czxid  # children do not change the parent's data
    with pytest.raises(NoNodeError):
        zk.get_children("/nokids")
    assert "zookeeper" in zk.get_children("/")
    assert sorted(zk.get_children("/zookeeper")) == ["config", "quota"]


def test_acls(zk: KazooClient) -> None:
    read_only = [ACL(Permissions.READ, Id("world", "anyone"))]
    zk.create("/acl", b"x", acl=read_only)
    acls, stat = zk.get_acls("/acl")
    assert acls == read_only
    assert stat.aversion == 0
    with pytest.raises(NoAuthError):
        zk.set("/acl", b"y")
    with pytest.raises(NoAuthError):
        zk.set_acls("/acl", [ACL(Permissions.ALL, Id("world", "anyone"))])
    zk.create("/acl2")
    with pytest.raises(BadVersionError):
        zk.set_acls("/acl2", read_only, version=3)
    stat = zk.set_acls("/acl2", read_only, version=0)
    assert stat.aversion == 1
    assert zk.get_acls("/acl2")[0] == read_only
    with pytest.raises(InvalidACLError):
        # "auth" with no authenticated id on the connection.
        zk.create("/acl3", acl=[ACL(Permissions.ALL, Id("auth", ""))])


def test_transaction_success(zk: KazooClient) -> None:
    zk.create("/txn", b"0")
    t = zk.transaction()
    t.check("/txn", 0)
    t.create("/txn/a", b"a")
    t.set_data("/txn", b"1")
    t.create("/txn/b")
    t.delete("/txn/b")
    results = t.commit()
    assert results[0] is True
    assert results[1] == "/txn/a"
    assert isinstance(results[2], ZnodeStat)
    assert results[2].version == 1
    assert results[3] == "/txn/b"
    assert results[4] is True
    # All sub-ops share one zxid.
    assert zk.exists("/txn/a").czxid == zk.exists("/txn").mzxid == results[2].mzxid


def test_transaction_failure_shape(zk: KazooClient) -> None:
    zk.create("/txnf", b"0")
    t = zk.transaction()
    t.create("/txnf/a")
    t.set_data("/txnf", b"1", version=7)
    t.create("/txnf/b")
    t.delete("/txnf/missing")
    results = t.commit()
    # Before the failing op: rolled back (0); the failure; after it: -2.
    assert [type(r) for r in results] == [
        RolledBackError,
        BadVersionError,
        RuntimeInconsistency,
        RuntimeInconsistency,
    ]
    assert zk.exists("/txnf/a") is None
    assert zk.get("/txnf") == (b"0", zk.exists("/txnf"))
    t = zk.transaction()
    t.check("/txnf/none", -1)
    results = t.commit()
    assert [type(r) for r in results] == [NoNodeError]


def test_sync_and_ensure_path(zk: KazooClient) -> None:
    assert zk.sync("/") == "/"
    assert zk.ensure_path("/ens/a/b") == "/ens/a/b"
    assert zk.exists("/ens/a/b") is not None
    assert zk.ensure_path("/ens/a/b") is True
    assert zk.sync("/ens/a") == "/ens/a"


def test_recipes(server: ServerProcess, zk: KazooClient) -> None:
    other = kazoo_client.start(server.address)
    try:
        # Lock: the second contender cannot take it while the first holds it.
        lock = zk.Lock("/recipes/lock", "first")
        assert lock.acquire(timeout=WAIT_S)
        rival = other.Lock("/recipes/lock", "second")
        assert not rival.acquire(blocking=False)
        assert lock.contenders() == ["first"]
        lock.release()
        assert rival.acquire(timeout=WAIT_S)
        rival.release()

        # Election: the one running the leader function is the first contender.
        elected = threading.Event()
        done = threading.Event()
        election = zk.Election("/recipes/election", "leader-a")

        def lead() -> None:
            elected.set()
            done.wait(WAIT_S)

        runner = threading.Thread(target=election.run, args=(lead,), daemon=True)
        runner.start()
        assert elected.wait(WAIT_S)
        assert other.Election("/recipes/election").contenders() == ["leader-a"]
        done.set()
        runner.join(WAIT_S)
        assert not runner.is_alive()

        # Barrier: waiting returns once the barrier node is removed.
        barrier = zk.Barrier("/recipes/barrier")
        barrier.create()
        assert zk.exists("/recipes/barrier") is not None
        waiter_result: list[bool] = []
        waiter = threading.Thread(
            target=lambda: waiter_result.append(other.Barrier("/recipes/barrier").wait(WAIT_S))
        )
        waiter.start()
        barrier.remove()
        waiter.join(WAIT_S)
        assert waiter_result == [True]

        # Counter: versioned read-modify-write from two clients.
        counter = zk.Counter("/recipes/counter")
        counter += 5
        other_counter = other.Counter("/recipes/counter")
        other_counter -= 2
        assert counter.value == 3

        # Queue: FIFO through sequential nodes.
        queue = zk.Queue("/recipes/queue")
        queue.put(b"one")
        queue.put(b"two")
        assert len(queue) == 2
        assert other.Queue("/recipes/queue").get() == b"one"
        assert queue.get() == b"two"
        assert queue.get() is None

        # Party: members are ephemeral nodes.
        party = zk.Party("/recipes/party", "alice")
        party.join()
        other.Party("/recipes/party", "bob").join()
        assert sorted(party) == ["alice", "bob"]
        party.leave()
        assert list(other.Party("/recipes/party")) == ["bob"]
    finally:
        kazoo_client.stop(other)


def test_chroot(server: ServerProcess, zk: KazooClient) -> None:
    """A chroot is kazoo's own business; the server sees and reports full paths."""
    zk.create("/jail")
    jailed = kazoo_client.start(kazoo_client.hosts_of(server.address, "/jail"))
    try:
        changed = threading.Event()
        assert jailed.create("/inside", b"1") == "/inside"
        jailed.get(
            "/inside", watch=lambda event: changed.set() if event.path == "/inside" else None
        )
        zk.set("/jail/inside", b"2")
        assert changed.wait(WAIT_S)
        t = jailed.transaction()
        t.create("/seq-", sequence=True)
        t.check("/inside", 1)
        assert t.commit() == ["/seq-0000000001", True]
        assert sorted(zk.get_children("/jail")) == ["inside", "seq-0000000001"]
    finally:
        kazoo_client.stop(jailed)


def test_concurrent_clients_counter_and_lock(server: ServerProcess) -> None:
    """Versioned read-modify-write and the Lock recipe under contention from 6 sessions."""
    clients = [kazoo_client.start(server.address) for _ in range(6)]
    try:
        state = {"inside": 0, "most": 0, "total": 0}
        errors: list[BaseException] = []

        def work(zk: KazooClient) -> None:
            try:
                counter = zk.Counter("/busy/counter")
                lock = zk.Lock("/busy/lock")
                for _ in range(10):
                    counter += 1
                    with lock:
                        state["inside"] += 1
                        state["most"] = max(state["most"], state["inside"])
                        state["total"] += 1
                        state["inside"] -= 1
            except BaseException as exc:  # reported on the test thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(zk,)) for zk in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)
        assert errors == []
        assert clients[0].Counter("/busy/counter").value == 60
        assert state == {"inside": 0, "most": 1, "total": 60}
    finally:
        for zk in clients:
            kazoo_client.stop(zk)


def test_large_data_and_an_oversized_request(zk: KazooClient) -> None:
    big = bytes(range(256)) * 3900  # just under jute.maxbuffer (1 MiB - 1) with headers
    zk.create("/large", big)
    data, stat = zk.get("/large")
    assert data == big
    assert stat.dataLength == len(big)
    session = zk.client_id
    reconnected = threading.Event()
    zk.add_listener(lambda state: reconnected.set() if state == KazooState.CONNECTED else None)
    # A frame over jute.maxbuffer: the server closes this connection (ZooKeeper's
    # "Len error"); the session lives on and kazoo reconnects to it.
    with pytest.raises(ConnectionLoss):
        zk.create("/too-large", b"x" * 1_100_000)
    assert reconnected.wait(WAIT_S)
    assert zk.client_id == session
    assert zk.exists("/too-large") is None
    assert zk.get("/large")[0] == big


# --- raw protocol: the operations kazoo lacks --------------------------------------------


def test_container_is_reaped_after_its_last_child_goes(raw: RawClient) -> None:
    reply = raw.create_container("/box", b"c")
    assert reply.err == Err.OK
    assert reply.result.path == "/box"
    stat = raw.exists("/box").result.stat
    # A container's owner is hidden from clients.
    assert stat.ephemeral_owner == 0
    assert raw.create("/box/item").err == Err.OK
    # Watched before its last child goes (the reaper may be quicker than a later exists).
    assert raw.exists("/box", watch=True).err == Err.OK
    assert raw.delete("/box/item").err == Err.OK
    # A never-used container stays; this one had a child, so the reaper removes it.
    event = raw.wait_event()
    assert (event.type, event.path) == (EventType.NODE_DELETED, "/box")
    assert raw.exists("/box").err == Err.NONODE
    # An empty container never used stays (ZooKeeper needs cversion > 0).
    assert raw.create_container("/box-unused").err == Err.OK
    raw.ping()
    assert raw.exists("/box-unused").err == Err.OK
    # createContainer inside multi works too.
    multi = raw.multi(
        [(OpCode.CREATE_CONTAINER, CreateRequest("/box-multi", b"", OPEN_ACL_UNSAFE, 4))]
    )
    assert multi.err == Err.OK
    assert [(r.type, r.err) for r in multi.result] == [(OpCode.CREATE2, 0)]


def test_ttl_nodes_with_the_zoo_cfg_key(raw: RawClient) -> None:
    # Watched before it exists: on a slow machine the reaper may take the 100 ms node
    # before any later exists could arm a watch on it.
    assert raw.add_watch("/ttl", AddWatchMode.PERSISTENT).result.err == 0
    reply = raw.create_ttl("/ttl", ttl=100, data=b"t")
    assert reply.err == Err.OK
    assert reply.result.stat.ephemeral_owner == 0  # TTL encoding hidden
    seq = raw.create_ttl("/ttl-seq-", ttl=60_000, flags=6)
    assert seq.err == Err.OK
    assert seq.result.path.startswith("/ttl-seq-")
    assert raw.create_ttl("/ttl-bad", ttl=0).err == Err.BADARGUMENTS
    assert raw.create_ttl("/ttl-bad", ttl=100, flags=0).err == Err.BADARGUMENTS
    # The reaper removes the TTL node once it is childless and unchanged for ttl ms.
    events = [raw.wait_event() for _ in range(2)]
    assert [(e.type, e.path) for e in events] == [
        (EventType.NODE_CREATED, "/ttl"),
        (EventType.NODE_DELETED, "/ttl"),
    ]


def test_ttl_nodes_with_the_system_property(corral_pool: ServerPool) -> None:
    server = corral_pool.get(BY_PROPERTY)
    with RawClient.connect(server.address) as raw:
        reply = raw.create_ttl("/ttl-prop", ttl=60_000)
        assert reply.err == Err.OK


def test_ttl_nodes_off_by_default(corral_pool: ServerPool) -> None:
    server = corral_pool.get(ServerSettings())
    with RawClient.connect(server.address) as raw:
        assert raw.create_ttl("/ttl-off", ttl=60_000).err == Err.UNIMPLEMENTED
        assert raw.exists("/ttl-off").err == Err.NONODE


def test_get_ephemerals(server: ServerProcess, raw: RawClient) -> None:
    assert raw.create("/ephs").err == Err.OK
    for name in ("/ephs/a", "/ephs/b", "/ephs-sibling"):
        assert raw.create(name, flags=1).err == Err.OK
    assert raw.create("/ephs/persistent").err == Err.OK
    with RawClient.connect(server.address) as other:
        assert other.create("/ephs/others", flags=1).err == Err.OK
        assert other.get_ephemerals("/").result.ephemerals == ("/ephs/others",)
    # A raw string prefix, not a path component.
    found = raw.get_ephemerals("/ephs").result.ephemerals
    assert sorted(found) == ["/ephs-sibling", "/ephs/a", "/ephs/b"]
    assert sorted(raw.get_ephemerals("/ephs/").result.ephemerals) == ["/ephs/a", "/ephs/b"]
    assert raw.get_ephemerals("/nothing").result.ephemerals == ()


def test_empty_acl_is_invalid(raw: RawClient) -> None:
    # kazoo turns an empty ACL list into its default, so this one goes raw.
    assert raw.create("/acl-empty", acl=()).err == Err.INVALIDACL


def test_get_all_children_number(raw: RawClient) -> None:
    for path in ("/gacn", "/gacn/a", "/gacn/a/b", "/gacn/c"):
        assert raw.create(path).err == Err.OK
    assert raw.get_all_children_number("/gacn").result.total_number == 3
    assert raw.get_all_children_number("/gacn/c").result.total_number == 0
    assert raw.get_all_children_number("/missing").err == Err.NONODE


def test_who_am_i(raw: RawClient) -> None:
    assert raw.who_am_i().result.client_info == (ClientInfo("ip", "127.0.0.1"),)
    assert raw.add_digest("carol", "pw").err == Err.OK
    assert set(raw.who_am_i().result.client_info) == {
        ClientInfo("ip", "127.0.0.1"),
        ClientInfo("digest", "carol"),
    }


def test_multi_read(raw: RawClient) -> None:
    assert raw.create("/mr", b"top").err == Err.OK
    assert raw.create("/mr/k").err == Err.OK
    reply = raw.multi_read(
        [
            (OpCode.GET_DATA, GetDataRequest("/mr", False)),
            (OpCode.GET_CHILDREN, GetChildrenRequest("/mr", False)),
            (OpCode.GET_DATA, GetDataRequest("/mr/none", False)),
            (OpCode.GET_CHILDREN, GetChildrenRequest("/mr/k", False)),
        ]
    )
    assert reply.err == Err.OK
    results = reply.result
    assert [(r.type, r.err) for r in results] == [
        (OpCode.GET_DATA, 0),
        (OpCode.GET_CHILDREN, 0),
        (OpCode.ERROR, Err.NONODE),
        (OpCode.GET_CHILDREN, 0),
    ]
    assert results[0].body.data == b"top"
    assert results[1].body.children == ("k",)
    assert results[3].body.children == ()


def test_add_watch_persistent(server: ServerProcess, raw: RawClient) -> None:
    assert raw.add_watch("/pw", AddWatchMode.PERSISTENT).result.err == 0
    with RawClient.connect(server.address) as writer:
        writer.create("/pw", b"1")
        writer.set_data("/pw", b"2")
        writer.create("/pw/kid")
        writer.create("/pw/kid/grandkid")  # not a direct child: no event
        writer.set_data("/pw", b"3")
        writer.delete("/pw/kid/grandkid")
        writer.delete("/pw/kid")
        writer.delete("/pw")
    events = [raw.wait_event() for _ in range(6)]
    assert [(e.type, e.path) for e in events] == [
        (EventType.NODE_CREATED, "/pw"),
        (EventType.NODE_DATA_CHANGED, "/pw"),
        (EventType.NODE_CHILDREN_CHANGED, "/pw"),
        (EventType.NODE_DATA_CHANGED, "/pw"),
        (EventType.NODE_CHILDREN_CHANGED, "/pw"),
        (EventType.NODE_DELETED, "/pw"),
    ]
    # 3.9: notifications carry the zxid of the change, increasing.
    zxids = [e.zxid for e in events]
    assert zxids == sorted(zxids) and zxids[0] > 0
    assert raw.check_watches("/pw", WatcherType.PERSISTENT).err == Err.OK
    assert raw.remove_watches("/pw", WatcherType.PERSISTENT).err == Err.OK
    assert raw.check_watches("/pw", WatcherType.PERSISTENT).err == Err.NOWATCHER


def test_add_watch_recursive(server: ServerProcess, raw: RawClient) -> None:
    assert raw.add_watch("/rw", AddWatchMode.PERSISTENT_RECURSIVE).result.err == 0
    with RawClient.connect(server.address) as writer:
        writer.create("/rw")
        writer.create("/rw/a")
        writer.create("/rw/a/b", b"")
        writer.set_data("/rw/a/b", b"x")
        writer.delete("/rw/a/b")
        writer.create("/rwsibling")  # not under /rw
    events = [raw.wait_event() for _ in range(5)]
    # Never NodeChildrenChanged for a recursive watch.
    assert [(e.type, e.path) for e in events] == [
        (EventType.NODE_CREATED, "/rw"),
        (EventType.NODE_CREATED, "/rw/a"),
        (EventType.NODE_CREATED, "/rw/a/b"),
        (EventType.NODE_DATA_CHANGED, "/rw/a/b"),
        (EventType.NODE_DELETED, "/rw/a/b"),
    ]
    raw.ping()
    assert raw.take_events() == []
    assert raw.remove_watches("/rw", WatcherType.PERSISTENT_RECURSIVE).err == Err.OK


def test_recursive_watch_events_need_read(server: ServerProcess, raw: RawClient) -> None:
    """Events pass a READ check on the changed node before delivery (CVE-2024-23944)."""
    assert raw.add_watch("/rwacl", AddWatchMode.PERSISTENT_RECURSIVE).result.err == 0
    with RawClient.connect(server.address) as writer:
        writer.add_digest("kim", "pw")
        writer.create("/rwacl")
        writer.create("/rwacl/secret", acl=[RawACL(31, RawId("digest", digest("kim", "pw")))])
        writer.set_data("/rwacl/secret", b"hidden")
        writer.create("/rwacl/open")
    events = [raw.wait_event() for _ in range(2)]
    assert [(e.type, e.path) for e in events] == [
        (EventType.NODE_CREATED, "/rwacl"),
        (EventType.NODE_CREATED, "/rwacl/open"),
    ]


def test_remove_and_check_watches(server: ServerProcess, raw: RawClient) -> None:
    assert raw.create("/rmw", b"").err == Err.OK
    assert raw.get_data("/rmw", watch=True).err == Err.OK
    assert raw.get_children("/rmw", watch=True).err == Err.OK
    assert raw.check_watches("/rmw", WatcherType.DATA).err == Err.OK
    assert raw.check_watches("/rmw", WatcherType.CHILDREN).err == Err.OK
    assert raw.remove_watches("/rmw", WatcherType.DATA).err == Err.OK
    assert raw.check_watches("/rmw", WatcherType.DATA).err == Err.NOWATCHER
    assert raw.remove_watches("/rmw", WatcherType.DATA).err == Err.NOWATCHER
    assert raw.check_watches("/rmw", WatcherType.ANY).err == Err.OK  # the child watch
    with RawClient.connect(server.address) as writer:
        writer.set_data("/rmw", b"changed")  # the data watch is gone: no event
        writer.create("/rmw/kid")
    event = raw.wait_event()
    assert (event.type, event.path) == (EventType.NODE_CHILDREN_CHANGED, "/rmw")
    raw.ping()
    assert raw.take_events() == []
    assert raw.remove_watches("/rmw", WatcherType.ANY).err == Err.NOWATCHER
    assert raw.check_watches("/nowhere", WatcherType.ANY).err == Err.NOWATCHER


def test_check_and_remove_by_watcher_type(server: ServerProcess, raw: RawClient) -> None:
    """ZooKeeper 3.9's matrix (DataTree.containsWatcher/removeWatch): DATA and CHILDREN mean
    standard watches only; PERSISTENT and PERSISTENT_RECURSIVE their own mode; ANY any."""
    raw.add_watch("/wt-p", AddWatchMode.PERSISTENT)
    raw.add_watch("/wt-r", AddWatchMode.PERSISTENT_RECURSIVE)
    answers = {
        (path, kind): raw.check_watches(path, kind).err
        for path in ("/wt-p", "/wt-r")
        for kind in WatcherType
    }
    ok, none = Err.OK, Err.NOWATCHER
    assert answers == {
        ("/wt-p", WatcherType.CHILDREN): none,
        ("/wt-p", WatcherType.DATA): none,
        ("/wt-p", WatcherType.ANY): ok,
        ("/wt-p", WatcherType.PERSISTENT): ok,
        ("/wt-p", WatcherType.PERSISTENT_RECURSIVE): none,
        ("/wt-r", WatcherType.CHILDREN): none,
        ("/wt-r", WatcherType.DATA): none,
        ("/wt-r", WatcherType.ANY): ok,
        ("/wt-r", WatcherType.PERSISTENT): none,
        ("/wt-r", WatcherType.PERSISTENT_RECURSIVE): ok,
    }
    # A standard and a persistent watch on one path (3.9): removing one keeps the other.
    raw.create("/wt-p")
    assert raw.wait_event().type == EventType.NODE_CREATED  # the persistent watch
    raw.get_data("/wt-p", watch=True)
    assert raw.remove_watches("/wt-p", WatcherType.DATA).err == ok
    assert raw.check_watches("/wt-p", WatcherType.PERSISTENT).err == ok
    with RawClient.connect(server.address) as writer:
        writer.set_data("/wt-p", b"x")
    event = raw.wait_event()
    assert (event.type, event.path) == (EventType.NODE_DATA_CHANGED, "/wt-p")
    assert raw.remove_watches("/wt-p", WatcherType.ANY).err == ok
    assert raw.remove_watches("/wt-r", WatcherType.ANY).err == ok
    assert raw.check_watches("/wt-r", WatcherType.ANY).err == none


def test_set_watches2_after_reconnect_fires_missed_events(server: ServerProcess) -> None:
    first = RawClient.connect(server.address)
    try:
        first.create("/sw", b"0")
        first.create("/sw/gone")
        first.create("/sw/kept")
        first.get_data("/sw", watch=True)
        first.exists("/sw/new", watch=True)
        first.get_children("/sw", watch=True)
        first.get_data("/sw/gone", watch=True)
        first.get_data("/sw/kept", watch=True)
        first.add_watch("/sw", AddWatchMode.PERSISTENT)
        first.add_watch("/sw/kept", AddWatchMode.PERSISTENT_RECURSIVE)
        seen = first.last_zxid
        session, passwd = first.session_id, first.passwd
    finally:
        first.abort()  # a network break: the session lives on
    with RawClient.connect(server.address) as writer:
        writer.set_data("/sw", b"1")
        writer.create("/sw/new")
        writer.delete("/sw/gone")
    again = RawClient.connect(
        server.address, session_id=session, passwd=passwd, last_zxid_seen=seen
    )
    try:
        assert again.session_id == session
        reply = again.set_watches2(
            seen,
            data=["/sw", "/sw/gone", "/sw/kept"],
            exist=["/sw/new"],
            child=["/sw"],
            persistent=["/sw"],
            recursive=["/sw/kept"],
        )
        assert reply.err == Err.OK
        again.ping()
        missed_events = again.take_events()
        # Not caused by a txn: no zxid in the notification (ZooKeeper's NO_ZXID).
        assert {e.zxid for e in missed_events} == {-1}
        missed = {(e.type, e.path) for e in missed_events}
        assert missed == {
            (EventType.NODE_DATA_CHANGED, "/sw"),
            (EventType.NODE_CREATED, "/sw/new"),
            (EventType.NODE_CHILDREN_CHANGED, "/sw"),
            (EventType.NODE_DELETED, "/sw/gone"),
        }
        # The unchanged node's watch and the persistent watches are re-armed (the data and
        # recursive watch on /sw/kept give one event; then only the recursive one is left).
        with RawClient.connect(server.address) as writer:
            writer.set_data("/sw/kept", b"k")
            writer.set_data("/sw", b"2")
            writer.create("/sw/kept/kid")
        events = [again.wait_event() for _ in range(3)]
        assert [(e.type, e.path) for e in events] == [
            (EventType.NODE_DATA_CHANGED, "/sw/kept"),
            (EventType.NODE_DATA_CHANGED, "/sw"),
            (EventType.NODE_CREATED, "/sw/kept/kid"),  # a grandchild: not /sw's child list
        ]
        again.ping()
        assert again.take_events() == []
    finally:
        again.close()


def test_set_watches_after_reconnect(server: ServerProcess) -> None:
    """The older setWatches (op 101, what the Java client sends without persistent watches)."""
    first = RawClient.connect(server.address)
    try:
        first.create("/sw1", b"0")
        first.create("/sw1/k")
        seen = first.last_zxid
        session, passwd = first.session_id, first.passwd
    finally:
        first.abort()
    with RawClient.connect(server.address) as writer:
        writer.set_data("/sw1", b"1")
        writer.delete("/sw1/k")
    again = RawClient.connect(server.address, session_id=session, passwd=passwd)
    try:
        reply = again.set_watches(
            seen, data=["/sw1", "/sw1/k"], exist=["/sw1/none"], child=["/sw1"]
        )
        assert reply.err == Err.OK
        again.ping()
        assert {(e.type, e.path) for e in again.take_events()} == {
            (EventType.NODE_DATA_CHANGED, "/sw1"),
            (EventType.NODE_DELETED, "/sw1/k"),
            (EventType.NODE_CHILDREN_CHANGED, "/sw1"),
        }
        # The exist watch on a node still missing is armed.
        with RawClient.connect(server.address) as writer:
            writer.create("/sw1/none")
        event = again.wait_event()
        assert (event.type, event.path) == (EventType.NODE_CREATED, "/sw1/none")
    finally:
        again.close()


def test_check_outside_multi_is_unimplemented(server: ServerProcess) -> None:
    with RawClient.connect(server.address) as raw:
        raw.create("/chk")
        reply = raw.check("/chk", 0)
        assert reply.err == Err.UNIMPLEMENTED
        assert raw.connection_closed(WAIT_S)
    with RawClient.connect(server.address) as raw:
        # Inside a multi it is fine, and a version mismatch fails the multi.
        reply = raw.multi(
            [
                (OpCode.CHECK, CheckVersionRequest("/chk", 0)),
                (OpCode.SET_DATA, SetDataRequest("/chk", b"x", -1)),
            ]
        )
        assert [(r.type, r.err) for r in reply.result] == [
            (OpCode.CHECK, 0),
            (OpCode.SET_DATA, 0),
        ]
        reply = raw.multi([(OpCode.CHECK, CheckVersionRequest("/chk", 0))])
        assert [(r.type, r.err) for r in reply.result] == [(OpCode.ERROR, Err.BADVERSION)]


def test_reconfig_on_standalone(server: ServerProcess, corral_pool: ServerPool) -> None:
    request = ReconfigRequest("", "", "server.1=127.0.0.1:2888:3888", -1)
    with RawClient.connect(server.address) as raw:
        assert raw.request(OpCode.RECONFIG, request).err == Err.RECONFIGDISABLED
    # With reconfigEnabled=true a standalone ZooKeeper answers UNIMPLEMENTED.
    enabled = corral_pool.get(BY_PROPERTY)
    with RawClient.connect(enabled.address) as raw:
        assert raw.request(OpCode.RECONFIG, request).err == Err.UNIMPLEMENTED
    # The same through kazoo's reconfig. (kazoo has no exception for RECONFIGDISABLED, -123:
    # its reader raises RuntimeError and drops the connection, with ZooKeeper as with us.)
    zk = kazoo_client.start(enabled.address)
    try:
        with pytest.raises(UnimplementedError):
            zk.reconfig(joining="server.1=127.0.0.1:2888:3888", leaving=None, new_members=None)
    finally:
        kazoo_client.stop(zk)


def test_four_letter_words_through_kazoo(zk: KazooClient) -> None:
    # kazoo's server_version() parses the envi output.
    assert zk.server_version() >= (3, 8)
    assert zk.command(b"ruok") == "imok"
