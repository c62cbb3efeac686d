"""DataTree.apply_txn semantics (ZooKeeper 3.9's DataTree.processTxn), snapshot helpers, counts."""

import pytest

from corral.proto import jute
from corral.proto.codes import Err, OpCode
from corral.proto.records import (
    ACL,
    CheckVersionTxn,
    CloseSessionTxn,
    CreateContainerTxn,
    CreateSessionTxn,
    CreateTTLTxn,
    CreateTxn,
    CreateTxnV0,
    DeleteTxn,
    ErrorTxn,
    Id,
    MultiTxn,
    SetACLTxn,
    SetDataTxn,
    Stat,
    Txn,
    TxnHeader,
)
from corral.tree.datatree import OPEN_ACL_UNSAFE, READ_ACL_UNSAFE, SPECIAL_PATHS, DataTree
from corral.tree.txn import (
    TxnTypeError,
    decode_sub_txns,
    decode_txn,
    encode_sub_txns,
    txn_class,
)
from corral.tree.znode import CONTAINER_OWNER, ZNode, ttl_owner

SID = 0x1234
DIGEST_ACL = (ACL(31, Id("digest", "user:hash")),)


def hdr(zxid: int, type_: int, session: int = SID, time: int | None = None) -> TxnHeader:
    return TxnHeader(session, 7, zxid, 1_000_000 + zxid if time is None else time, type_)


def create(path: str, pcv: int, data: bytes | None = b"", ephemeral: bool = False) -> CreateTxn:
    return CreateTxn(path, data, OPEN_ACL_UNSAFE, ephemeral, pcv)


def test_new_tree_has_zookeepers_special_nodes() -> None:
    t = DataTree()
    assert set(t.nodes) == SPECIAL_PATHS
    assert t.nodes["/"].children == {"zookeeper"}
    assert t.nodes["/zookeeper"].children == {"quota", "config"}
    # The root shows cversion -1: 0 stored creations, one child (ZooKeeper shows the same).
    assert t.nodes["/"].stat() == Stat(0, 0, 0, 0, 0, -1, 0, 0, 0, 1, 0)
    assert t.nodes["/zookeeper"].stat().cversion == -2
    config = t.nodes["/zookeeper/config"]
    assert config.acl == READ_ACL_UNSAFE
    assert config.stat().aversion == -1
    assert t.nodes["/zookeeper/quota"].acl == OPEN_ACL_UNSAFE
    assert all(n.data == b"" for n in t.nodes.values())
    # mntr on a fresh ZooKeeper: zk_znode_count 5, zk_approximate_data_size 44.
    assert t.count_nodes() == 5
    assert t.approximate_data_size() == 44
    assert t.sessions == {} and t.last_zxid == 0


def test_create_sets_stat_and_parent() -> None:
    t = DataTree()
    res = t.apply_txn(hdr(5, OpCode.CREATE), create("/a", 1, b"hello"))
    assert (res.err, res.path, res.type) == (Err.OK, "/a", OpCode.CREATE)
    assert res.stat == Stat(5, 5, 1_000_005, 1_000_005, 0, 0, 0, 0, 5, 0, 5)
    root = t.nodes["/"]
    assert root.cversion == 1 and root.pzxid == 5
    assert root.stat().cversion == 0  # 2*1 - 2 children
    assert t.last_zxid == 5
    assert t.nodes["/a"].data == b"hello"


def test_create_without_parent_is_nonode() -> None:
    t = DataTree()
    res = t.apply_txn(hdr(1, OpCode.CREATE), create("/x/y", 1))
    assert res.err == Err.NONODE
    assert "/x/y" not in t.nodes
    assert t.last_zxid == 1  # the zxid is consumed anyway


def test_cversion_counts_creations_and_deletions_for_clients() -> None:
    t = DataTree()
    t.apply_txn(hdr(1, OpCode.CREATE), create("/p", 1))
    for i in range(3):
        t.apply_txn(hdr(2 + i, OpCode.CREATE), create(f"/p/c{i}", i + 1))
    t.apply_txn(hdr(10, OpCode.DELETE), DeleteTxn("/p/c1"))
    p = t.nodes["/p"]
    assert p.cversion == 3  # stored: creations
    st = p.stat()
    assert (st.cversion, st.num_children, st.pzxid) == (4, 2, 10)


def test_set_data_and_set_acl() -> None:
    t = DataTree()
    t.apply_txn(hdr(1, OpCode.CREATE), create("/a", 1, b"x"))
    res = t.apply_txn(hdr(2, OpCode.SET_DATA, time=99), SetDataTxn("/a", None, 7))
    assert res.err == Err.OK
    assert res.stat is not None
    assert (res.stat.version, res.stat.mzxid, res.stat.mtime, res.stat.data_length) == (7, 2, 99, 0)
    assert t.nodes["/a"].data is None
    res = t.apply_txn(hdr(3, OpCode.SET_ACL), SetACLTxn("/a", DIGEST_ACL, 4))
    assert res.stat is not None and res.stat.aversion == 4
    assert t.nodes["/a"].acl == DIGEST_ACL
    assert t.nodes["/a"].mzxid == 2  # setACL does not touch mzxid
    assert t.apply_txn(hdr(4, OpCode.SET_DATA), SetDataTxn("/zz", b"", 1)).err == Err.NONODE
    assert t.apply_txn(hdr(5, OpCode.SET_ACL), SetACLTxn("/zz", DIGEST_ACL, 1)).err == Err.NONODE


def test_reconfig_is_a_set_data_of_the_config_node() -> None:
    t = DataTree()
    res = t.apply_txn(hdr(3, OpCode.RECONFIG), SetDataTxn("/zookeeper/config", b"server.1=x", 2))
    assert res.err == Err.OK and t.nodes["/zookeeper/config"].data == b"server.1=x"


def test_ephemeral_container_and_ttl_nodes() -> None:
    t = DataTree()
    t.apply_txn(hdr(1, OpCode.CREATE, session=SID), create("/e", 1, ephemeral=True))
    t.apply_txn(hdr(2, OpCode.CREATE_CONTAINER), CreateContainerTxn("/c", b"", OPEN_ACL_UNSAFE, 2))
    t.apply_txn(hdr(3, OpCode.CREATE_TTL), CreateTTLTxn("/t", b"", OPEN_ACL_UNSAFE, 3, 5000))
    assert t.ephemerals(SID) == {"/e"}
    assert t.ephemerals(999) == set()
    assert t.containers() == {"/c"}
    assert t.ttl_nodes() == {"/t"}
    assert t.ephemerals_count() == 1
    assert t.nodes["/e"].stat().ephemeral_owner == SID
    assert t.nodes["/c"].ephemeral_owner == CONTAINER_OWNER
    assert t.nodes["/c"].stat().ephemeral_owner == 0
    assert t.nodes["/t"].ephemeral_owner == ttl_owner(5000)
    assert t.nodes["/t"].ephemeral_owner & 0xFFFFFFFFFFFFFFFF == 0xFF00000000000000 | 5000
    assert t.nodes["/t"].stat().ephemeral_owner == 0
    # Copies: the caller cannot corrupt the indexes.
    t.containers().clear()
    assert t.containers() == {"/c"}
    for i, path in enumerate(["/e", "/c", "/t"]):
        t.apply_txn(
            hdr(10 + i, OpCode.DELETE_CONTAINER if path == "/c" else OpCode.DELETE), DeleteTxn(path)
        )
    assert t.ephemerals(SID) == set() and t.containers() == set() and t.ttl_nodes() == set()


def test_negative_session_ids_are_plain_ephemerals() -> None:
    t = DataTree()
    sid = -0x7F00000000000001  # server id 0x80..0xFE make negative session ids
    t.apply_txn(hdr(1, OpCode.CREATE, session=sid), create("/e", 1, ephemeral=True))
    assert t.ephemerals(sid) == {"/e"}
    assert t.nodes["/e"].stat().ephemeral_owner == sid


def test_sessions_and_close_session() -> None:
    t = DataTree()
    t.apply_txn(hdr(1, OpCode.CREATE_SESSION, session=SID), CreateSessionTxn(30000))
    t.apply_txn(hdr(2, OpCode.CREATE_SESSION, session=77), CreateSessionTxn(4000))
    assert t.sessions == {SID: 30000, 77: 4000}
    t.apply_txn(hdr(3, OpCode.CREATE, session=SID), create("/e1", 1, ephemeral=True))
    t.apply_txn(hdr(4, OpCode.CREATE, session=SID), create("/e2", 2, ephemeral=True))
    t.apply_txn(hdr(5, OpCode.CREATE, session=77), create("/o", 3, ephemeral=True))
    # The txn lists /e1 and /o (of another session, deleted anyway as ZooKeeper does);
    # /e2 is not listed but is the session's, so it goes too.
    res = t.apply_txn(hdr(6, OpCode.CLOSE_SESSION, session=SID), CloseSessionTxn(("/e1", "/o")))
    assert res.err == Err.OK
    assert {"/e1", "/e2", "/o"}.isdisjoint(t.nodes)
    assert t.sessions == {77: 4000}
    assert t.ephemerals(SID) == set() and t.ephemerals(77) == set()
    assert t.nodes["/"].pzxid == 6


def test_close_session_without_body_and_replayed() -> None:
    t = DataTree()
    t.apply_txn(hdr(1, OpCode.CREATE_SESSION), CreateSessionTxn(30000))
    t.apply_txn(hdr(2, OpCode.CREATE), create("/e", 1, ephemeral=True))
    t.apply_txn(hdr(3, OpCode.CLOSE_SESSION), None)
    assert "/e" not in t.nodes and t.sessions == {}
    # Replaying the close (fuzzy snapshot) is harmless.
    res = t.apply_txn(hdr(3, OpCode.CLOSE_SESSION), CloseSessionTxn(("/e",)))
    assert res.err == Err.OK


def test_error_and_check_txns_change_nothing() -> None:
    t = DataTree()
    before = {p: n.stat() for p, n in t.nodes.items()}
    res = t.apply_txn(hdr(9, OpCode.ERROR), ErrorTxn(Err.BADVERSION))
    assert res.err == Err.BADVERSION and res.type == OpCode.ERROR
    res = t.apply_txn(hdr(10, OpCode.CHECK), CheckVersionTxn("/zookeeper", 0))
    assert res.err == Err.OK and res.path == "/zookeeper"
    assert {p: n.stat() for p, n in t.nodes.items()} == before
    assert t.last_zxid == 10
    # An error code this version does not know is still a failure.
    assert t.apply_txn(hdr(11, OpCode.ERROR), ErrorTxn(-999)).err == Err.SYSTEMERROR


def test_last_zxid_never_moves_back() -> None:
    t = DataTree()
    t.apply_txn(hdr(10, OpCode.CREATE), create("/a", 1))
    t.apply_txn(hdr(4, OpCode.SET_DATA), SetDataTxn("/a", b"", 1))
    assert t.last_zxid == 10


# --- multi ---


def test_multi_applies_in_order_with_one_zxid() -> None:
    t = DataTree()
    subs = [
        (OpCode.CREATE, create("/m", 1, b"a")),
        (OpCode.CREATE2, create("/m/x", 1)),
        (OpCode.SET_DATA, SetDataTxn("/m", b"bb", 1)),
        (OpCode.CHECK, CheckVersionTxn("/m", 1)),
        (OpCode.DELETE, DeleteTxn("/m/x")),
    ]
    res = t.apply_txn(hdr(20, OpCode.MULTI), encode_sub_txns(subs))
    assert res.err == Err.OK and res.type == OpCode.MULTI
    assert [r.type for r in res.multi] == [t for t, _ in subs]
    assert [r.err for r in res.multi] == [Err.OK] * 5
    assert [r.path for r in res.multi] == ["/m", "/m/x", "/m", "/m", "/m/x"]
    m = t.nodes["/m"]
    assert (m.czxid, m.mzxid, m.pzxid, m.version, m.data) == (20, 20, 20, 1, b"bb")
    assert res.multi[2].stat is not None and res.multi[2].stat.num_children == 1
    assert res.multi[4].stat is None
    assert t.last_zxid == 20


def test_failed_multi_applies_nothing_and_reports_per_op() -> None:
    t = DataTree()
    # As prep writes it: the ops before the failure keep their txns, the failing op is an
    # ErrorTxn with its code, later ones ErrorTxn(RUNTIMEINCONSISTENCY).
    subs = [
        (OpCode.CREATE, create("/m", 1)),
        (OpCode.SET_DATA, SetDataTxn("/m", b"", 1)),
        (OpCode.ERROR, ErrorTxn(Err.NODEEXISTS)),
        (OpCode.ERROR, ErrorTxn(Err.RUNTIMEINCONSISTENCY)),
    ]
    res = t.apply_txn(hdr(3, OpCode.MULTI), encode_sub_txns(subs))
    assert res.err == Err.NODEEXISTS
    assert [r.err for r in res.multi] == [
        Err.OK,
        Err.OK,
        Err.NODEEXISTS,
        Err.RUNTIMEINCONSISTENCY,
    ]
    assert [r.type for r in res.multi] == [OpCode.ERROR] * 4
    assert "/m" not in t.nodes
    assert t.nodes["/"].cversion == 0
    assert t.last_zxid == 3


def test_multi_sub_op_failing_at_apply_does_not_stop_the_rest() -> None:
    # Only a replay can make an op fail at apply time; ZooKeeper goes on with the others.
    t = DataTree()
    t.apply_txn(hdr(1, OpCode.CREATE), create("/a", 1))
    subs = [
        (OpCode.DELETE, DeleteTxn("/gone")),
        (OpCode.SET_DATA, SetDataTxn("/a", b"z", 1)),
    ]
    res = t.apply_txn(hdr(2, OpCode.MULTI), encode_sub_txns(subs))
    assert res.err == Err.NONODE
    assert [r.err for r in res.multi] == [Err.NONODE, Err.OK]
    assert t.nodes["/a"].data == b"z"


def test_multi_with_undecodable_sub_txn_stops_there() -> None:
    t = DataTree()
    multi = MultiTxn(
        (
            Txn(OpCode.CREATE, jute.encode(create("/a", 1))),
            Txn(OpCode.GET_DATA, b""),
            Txn(OpCode.CREATE, jute.encode(create("/b", 2))),
        )
    )
    res = t.apply_txn(hdr(2, OpCode.MULTI), multi)
    assert len(res.multi) == 1 and "/a" in t.nodes and "/b" not in t.nodes


# --- replays over a fuzzy snapshot ---


def test_replayed_create_reports_nodeexists_but_fixes_parent_cversion() -> None:
    t = DataTree()
    t.apply_txn(hdr(1, OpCode.CREATE), create("/a", 1, b"orig"))
    # A node deleted and re-created in the fuzzy window: the snapshot has it, the
    # parent was serialised before, with a lower cversion.
    t.nodes["/"].cversion = 0
    t.nodes["/"].pzxid = 0
    acl = (ACL(1, Id("world", "anyone")),)
    res = t.apply_txn(hdr(8, OpCode.CREATE), CreateTxn("/a", b"new", acl, False, 5))
    assert res.err == Err.NODEEXISTS
    root = t.nodes["/"]
    assert (root.cversion, root.pzxid) == (5, 8)
    a = t.nodes["/a"]
    assert a.data == b"orig" and a.acl == acl  # ZooKeeper takes the txn's ACL
    # A lower cversion never winds back.
    t.apply_txn(hdr(9, OpCode.CREATE), CreateTxn("/a", b"", acl, False, 2))
    assert (root.cversion, root.pzxid) == (5, 8)


def test_replayed_creates_of_every_kind_fix_the_parent() -> None:
    # ZooKeeper fixes the parent only for type CREATE; Corral does it for every create, so a
    # replay over a fuzzy snapshot converges whichever kind of create made the node.
    t = DataTree()
    t.apply_txn(hdr(1, OpCode.CREATE), create("/a", 1))
    res = t.apply_txn(hdr(8, OpCode.CREATE2), create("/a", 5))
    assert res.err == Err.NODEEXISTS
    assert t.nodes["/"].cversion == 5
    res = t.apply_txn(
        hdr(9, OpCode.CREATE_CONTAINER), CreateContainerTxn("/a", b"", OPEN_ACL_UNSAFE, 7)
    )
    assert res.err == Err.NODEEXISTS
    assert t.nodes["/"].cversion == 7 and t.nodes["/"].pzxid == 9


def test_parent_cversion_minus_one_means_one_more() -> None:
    t = DataTree()
    t.apply_txn(hdr(1, OpCode.CREATE), create("/a", -1))
    t.apply_txn(hdr(2, OpCode.CREATE), create("/b", -1))
    assert t.nodes["/"].cversion == 2
    # And a replayed V0 create bumps it once more, as ZooKeeper's setCversionPzxid does.
    t.apply_txn(hdr(3, OpCode.CREATE), create("/b", -1))
    assert t.nodes["/"].cversion == 3 and t.nodes["/"].pzxid == 3


def test_replayed_delete_still_moves_parent_pzxid_forward_only() -> None:
    t = DataTree()
    t.apply_txn(hdr(5, OpCode.CREATE), create("/a", 1))
    res = t.apply_txn(hdr(9, OpCode.DELETE), DeleteTxn("/a/missing"))
    assert res.err == Err.NONODE
    assert t.nodes["/a"].pzxid == 9
    t.apply_txn(hdr(7, OpCode.DELETE), DeleteTxn("/a/missing2"))
    assert t.nodes["/a"].pzxid == 9
    assert t.apply_txn(hdr(10, OpCode.DELETE), DeleteTxn("/x/y")).err == Err.NONODE


def test_deleting_a_node_that_the_parent_does_not_list() -> None:
    # Fuzzy snapshot: the child's entry was serialised, the parent's list was not updated.
    t = DataTree()
    t.apply_txn(hdr(1, OpCode.CREATE), create("/a", 1))
    t.nodes["/"].child_paths = {"/zookeeper"}
    assert t.apply_txn(hdr(2, OpCode.DELETE), DeleteTxn("/a")).err == Err.OK
    assert "/a" not in t.nodes


# --- quotas ---


def _quota_tree() -> DataTree:
    t = DataTree()
    z = 0

    def mk(path: str, data: bytes = b"") -> None:
        nonlocal z
        z += 1
        parent = t.nodes[path.rsplit("/", 1)[0] or "/"]
        assert t.apply_txn(hdr(z, OpCode.CREATE), create(path, parent.cversion + 1, data)).err == 0

    mk("/app")
    mk("/app/x", b"12345")
    mk("/zookeeper/quota/app")
    mk("/zookeeper/quota/app/zookeeper_limits", b"count=10,bytes=100")
    mk("/zookeeper/quota/app/zookeeper_stats", b"count=0,bytes=0")
    return t


def test_quota_stats_are_counted_and_tracked() -> None:
    t = _quota_tree()
    stats = t.nodes["/zookeeper/quota/app/zookeeper_stats"]
    assert stats.data == b"count=2,bytes=5"  # recounted when the stats node appears
    assert t.max_prefix_with_quota("/app/x/y") == "/app"
    assert t.max_prefix_with_quota("/app") == "/app"
    assert t.max_prefix_with_quota("/apple") is None
    assert t.max_prefix_with_quota("/") is None
    mzxid = stats.mzxid
    t.apply_txn(hdr(50, OpCode.CREATE), create("/app/y", 3, b"abc"))
    assert stats.data == b"count=3,bytes=8"
    t.apply_txn(hdr(51, OpCode.SET_DATA), SetDataTxn("/app/y", b"a", 1))
    assert stats.data == b"count=3,bytes=6"
    t.apply_txn(hdr(52, OpCode.DELETE), DeleteTxn("/app/x"))
    assert stats.data == b"count=2,bytes=1"
    assert stats.mzxid == mzxid and stats.version == 0  # rewritten in place, as ZooKeeper
    # Removing the limits node removes the quota.
    t.apply_txn(hdr(53, OpCode.DELETE), DeleteTxn("/zookeeper/quota/app/zookeeper_limits"))
    assert t.max_prefix_with_quota("/app/y") is None
    t.apply_txn(hdr(54, OpCode.DELETE), DeleteTxn("/app/y"))
    assert stats.data == b"count=2,bytes=1"


def test_quota_extra_keys_survive() -> None:
    t = _quota_tree()
    stats = t.nodes["/zookeeper/quota/app/zookeeper_stats"]
    stats.data = b"count=2,bytes=5=;countHardLimit=9;byteHardLimit=-1"
    t.apply_txn(hdr(60, OpCode.CREATE), create("/app/z", 3, b"zz"))
    assert stats.data == b"count=3,bytes=7=;byteHardLimit=-1;countHardLimit=9"


def test_nested_quota_uses_the_deepest() -> None:
    t = _quota_tree()
    z = 100
    for path in [
        "/app/x/deep",
        "/zookeeper/quota/app/x",
        "/zookeeper/quota/app/x/zookeeper_limits",
    ]:
        z += 1
        parent = t.nodes[path.rsplit("/", 1)[0]]
        t.apply_txn(hdr(z, OpCode.CREATE), create(path, parent.cversion + 1))
    t.apply_txn(hdr(200, OpCode.CREATE), create("/zookeeper/quota/app/x/zookeeper_stats", 2))
    assert t.max_prefix_with_quota("/app/x/deep/er") == "/app/x"
    assert t.nodes["/zookeeper/quota/app/x/zookeeper_stats"].data == b"count=2,bytes=5"


# --- snapshots ---


def _sample_tree() -> DataTree:
    t = _quota_tree()
    t.apply_txn(hdr(70, OpCode.CREATE, session=SID), create("/app/e", 3, b"e", ephemeral=True))
    t.apply_txn(hdr(71, OpCode.CREATE_CONTAINER), CreateContainerTxn("/c", None, DIGEST_ACL, 2))
    t.apply_txn(hdr(72, OpCode.CREATE_TTL), CreateTTLTxn("/c/t", b"", OPEN_ACL_UNSAFE, 1, 10))
    return t


def test_iter_preorder_is_parent_first_depth_first() -> None:
    t = _sample_tree()
    order = [p for p, _ in t.iter_preorder()]
    assert order[0] == "/"
    assert sorted(order) == sorted(t.nodes)
    seen: set[str] = set()
    for i, path in enumerate(order):
        if path != "/":
            parent = path.rsplit("/", 1)[0] or "/"
            assert parent in seen
            # Depth first: everything between the parent and this node is under the parent.
            j = order.index(parent)
            assert all(q == parent or q.startswith(parent.rstrip("/") + "/") for q in order[j:i])
        seen.add(path)


def test_snapshot_round_trip_through_load_node() -> None:
    t = _sample_tree()
    t.sessions[SID] = 5000
    snap = [(("" if p == "/" else p), n.copy()) for p, n in t.iter_preorder()]
    u = DataTree.empty_for_load()
    assert u.nodes == {} and u.sessions == {} and u.last_zxid == 0
    for path, node in snap:
        u.load_node(path, node)
    # The usage node is stale in the file; loading recounts it as ZooKeeper does.
    u.nodes["/zookeeper/quota/app/zookeeper_stats"].data = b"count=0,bytes=0"
    u.finish_load()
    assert {p: n.stat() for p, n in u.nodes.items()} == {p: n.stat() for p, n in t.nodes.items()}
    assert {p: (n.data, n.acl, n.children) for p, n in u.nodes.items()} == {
        p: (n.data, n.acl, n.children) for p, n in t.nodes.items()
    }
    assert u.ephemerals(SID) == {"/app/e"}
    assert u.containers() == {"/c"} and u.ttl_nodes() == {"/c/t"}
    assert u.max_prefix_with_quota("/app/e") == "/app"
    assert u.count_nodes() == t.count_nodes()
    assert u.approximate_data_size() == t.approximate_data_size()
    assert sorted(map(repr, u.acl_lists())) == sorted(map(repr, t.acl_lists()))


def test_load_node_needs_the_parent_first() -> None:
    u = DataTree.empty_for_load()
    u.load_node("", ZNode(b"", OPEN_ACL_UNSAFE, 0, 0, 0, 0))
    with pytest.raises(ValueError):
        u.load_node("/a/b", ZNode(b"", OPEN_ACL_UNSAFE, 0, 0, 0, 0))


def test_store_style_keyword_constructor() -> None:
    n = ZNode(
        data=b"x",
        acl=OPEN_ACL_UNSAFE,
        czxid=1,
        mzxid=2,
        ctime=3,
        mtime=4,
        version=5,
        cversion=6,
        aversion=7,
        ephemeral_owner=0,
        pzxid=8,
    )
    assert n.stat() == Stat(1, 2, 3, 4, 5, 12, 7, 0, 1, 0, 8)


def test_iter_preorder_survives_concurrent_changes() -> None:
    t = _sample_tree()
    it = t.iter_preorder()
    next(it)
    t.apply_txn(hdr(90, OpCode.DELETE), DeleteTxn("/c/t"))
    t.apply_txn(hdr(91, OpCode.DELETE), DeleteTxn("/c"))
    t.apply_txn(hdr(92, OpCode.CREATE), create("/new", 9))
    paths = [p for p, _ in it]
    assert "/c" not in paths and "/c/t" not in paths


# --- counts ---


def test_counts_and_data_size() -> None:
    t = DataTree()
    t.apply_txn(hdr(1, OpCode.CREATE), create("/ab", 1, b"xyz"))
    t.apply_txn(hdr(2, OpCode.CREATE), create("/ab/c", 1, None))
    assert t.count_nodes() == 7
    assert t.approximate_data_size() == 44 + 3 + 3 + 5
    t.apply_txn(hdr(3, OpCode.SET_DATA), SetDataTxn("/ab", b"x", 1))
    assert t.approximate_data_size() == 44 + 3 + 1 + 5
    t.apply_txn(hdr(4, OpCode.DELETE), DeleteTxn("/ab/c"))
    assert t.approximate_data_size() == 44 + 3 + 1
    assert t.count_descendants("/") == 4
    assert t.count_descendants("/zookeeper") == 2
    assert t.count_descendants("/ab") == 0
    assert t.count_descendants("/missing") == 0


def test_acl_interning_shares_and_releases() -> None:
    t = DataTree()
    a1 = (ACL(31, Id("digest", "u:1")),)
    a2 = (ACL(31, Id("digest", "u:1")),)  # equal, not identical
    t.apply_txn(hdr(1, OpCode.CREATE), CreateTxn("/a", b"", a1, False, 1))
    t.apply_txn(hdr(2, OpCode.CREATE), CreateTxn("/b", b"", a2, False, 2))
    assert t.nodes["/a"].acl is t.nodes["/b"].acl
    assert len(t.acl_lists()) == 3  # open, read-only, digest
    t.apply_txn(hdr(3, OpCode.DELETE), DeleteTxn("/a"))
    t.apply_txn(hdr(4, OpCode.SET_ACL), SetACLTxn("/b", OPEN_ACL_UNSAFE, 1))
    assert len(t.acl_lists()) == 2


# --- txn helpers ---


def test_txn_class_table() -> None:
    assert txn_class(OpCode.CREATE) is CreateTxn
    assert txn_class(OpCode.CREATE2) is CreateTxn
    assert txn_class(OpCode.DELETE_CONTAINER) is DeleteTxn
    assert txn_class(OpCode.RECONFIG) is SetDataTxn
    assert txn_class(OpCode.CLOSE_SESSION) is CloseSessionTxn
    assert txn_class(OpCode.ERROR) is ErrorTxn
    assert txn_class(OpCode.MULTI) is MultiTxn
    with pytest.raises(TxnTypeError):
        txn_class(OpCode.GET_DATA)


def test_decode_txn_old_formats() -> None:
    v0 = jute.encode(CreateTxnV0("/a", b"x", OPEN_ACL_UNSAFE, True))
    rec, end = decode_txn(OpCode.CREATE, v0)
    assert rec == CreateTxn("/a", b"x", OPEN_ACL_UNSAFE, True, -1) and end == len(v0)
    assert decode_txn(OpCode.CLOSE_SESSION, b"") == (None, 0)
    body = jute.encode(SetDataTxn("/a", b"", 1))
    assert decode_txn(OpCode.SET_DATA, body + b"digest") == (SetDataTxn("/a", b"", 1), len(body))
    with pytest.raises(jute.DecodeError):
        decode_txn(OpCode.SET_DATA, b"\x00")


def test_sub_txns_round_trip() -> None:
    subs = [
        (int(OpCode.CREATE), create("/a", 1)),
        (int(OpCode.DELETE), DeleteTxn("/a")),
        (int(OpCode.ERROR), ErrorTxn(-2)),
    ]
    multi = encode_sub_txns(subs)
    assert decode_sub_txns(multi) == subs
    with pytest.raises(TxnTypeError):
        decode_sub_txns(MultiTxn((Txn(OpCode.MULTI, b""),)))


def test_stats_node_right_under_quota_root_counts_the_whole_tree() -> None:
    # ZooKeeper's quirk: "" names the root there, so the usage covers every node.
    t = DataTree()
    t.apply_txn(hdr(1, OpCode.CREATE), create("/a", 1, b"xyz"))
    t.apply_txn(hdr(2, OpCode.CREATE), create("/zookeeper/quota/zookeeper_stats", 1, b"?"))
    assert t.nodes["/zookeeper/quota/zookeeper_stats"].data == b"count=6,bytes=4"
    t.apply_txn(hdr(3, OpCode.CREATE), create("/zookeeper/quota/zookeeper_limits", 2))
    assert t.max_prefix_with_quota("/a") is None
