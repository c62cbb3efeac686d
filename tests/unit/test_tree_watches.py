"""Watch triggering through DataTree.apply_txn: ZooKeeper 3.9's one-shot, persistent and
recursive rules, dedup, removal, and the SetWatches reconnect rules."""

from corral.proto.codes import Err, EventType, OpCode, WatcherType
from corral.proto.records import (
    ACL,
    CloseSessionTxn,
    CreateTxn,
    DeleteTxn,
    ErrorTxn,
    Id,
    SetACLTxn,
    SetDataTxn,
    TxnHeader,
)
from corral.tree.datatree import OPEN_ACL_UNSAFE, ApplyResult, DataTree
from corral.tree.txn import encode_sub_txns
from corral.tree.watches import NO_ZXID, WatchKind

CREATED = EventType.NODE_CREATED
DELETED = EventType.NODE_DELETED
CHANGED = EventType.NODE_DATA_CHANGED
CHILDREN = EventType.NODE_CHILDREN_CHANGED

A, B, C = 101, 102, 103  # watchers (connection ids)


class Tree:
    """A DataTree plus a zxid counter and txn shorthands."""

    def __init__(self) -> None:
        self.t = DataTree()
        self.zxid = 0

    def hdr(self, type_: int, session: int = 0x55) -> TxnHeader:
        self.zxid += 1
        return TxnHeader(session, 1, self.zxid, 1_000_000 + self.zxid, type_)

    def create(
        self, path: str, data: bytes = b"", session: int = 0, acl: tuple[ACL, ...] = OPEN_ACL_UNSAFE
    ) -> ApplyResult:
        parent = self.t.nodes.get(path.rsplit("/", 1)[0] or "/")
        pcv = parent.cversion + 1 if parent else 1
        return self.t.apply_txn(
            self.hdr(OpCode.CREATE, session or 0x55),
            CreateTxn(path, data, acl, session != 0, pcv),
        )

    def delete(self, path: str) -> ApplyResult:
        return self.t.apply_txn(self.hdr(OpCode.DELETE), DeleteTxn(path))

    def set(self, path: str, data: bytes) -> ApplyResult:
        node = self.t.nodes[path]
        return self.t.apply_txn(self.hdr(OpCode.SET_DATA), SetDataTxn(path, data, node.version + 1))

    def watch(self, path: str, watcher: int, kind: WatchKind) -> bool:
        return self.t.watches.add(path, watcher, kind)


def evs(res: ApplyResult) -> list[tuple[int, EventType, str]]:
    return [(e.watcher, e.type, e.path) for e in res.events]


def test_create_fires_exist_watch_and_parent_child_watch() -> None:
    z = Tree()
    z.create("/p")
    z.watch("/p/c", A, WatchKind.EXIST)
    z.watch("/p", B, WatchKind.CHILD)
    z.watch("/p", C, WatchKind.DATA)  # data watch on the parent: not fired by a child create
    res = z.create("/p/c")
    assert evs(res) == [(A, CREATED, "/p/c"), (B, CHILDREN, "/p")]
    assert all(e.zxid == z.zxid for e in res.events)
    # One-shot: a second change fires nothing for A and B.
    assert evs(z.create("/p/d")) == []
    assert evs(z.set("/p", b"x")) == [(C, CHANGED, "/p")]


def test_child_watch_on_root() -> None:
    z = Tree()
    z.watch("/", A, WatchKind.CHILD)
    assert evs(z.create("/x")) == [(A, CHILDREN, "/")]
    z.watch("/", A, WatchKind.CHILD)
    assert evs(z.delete("/x")) == [(A, CHILDREN, "/")]


def test_delete_fires_data_and_child_watches_once_per_watcher() -> None:
    z = Tree()
    z.create("/p")
    z.create("/p/c")
    z.watch("/p/c", A, WatchKind.DATA)
    z.watch("/p/c", A, WatchKind.CHILD)  # same watcher: one NodeDeleted
    z.watch("/p/c", B, WatchKind.CHILD)
    z.watch("/p", C, WatchKind.CHILD)
    res = z.delete("/p/c")
    assert evs(res) == [(A, DELETED, "/p/c"), (B, DELETED, "/p/c"), (C, CHILDREN, "/p")]
    # Both of A's one-shot watches were consumed, not only the one that delivered.
    assert not z.t.watches.has("/p/c", A, WatcherType.CHILDREN)
    assert not z.t.watches.has("/p/c", A, WatcherType.DATA)
    assert z.t.watches.watch_count() == 0


def test_set_data_fires_data_watch_once_and_dedups_exist_plus_data() -> None:
    z = Tree()
    z.create("/n")
    assert z.watch("/n", A, WatchKind.DATA)
    assert not z.watch("/n", A, WatchKind.EXIST)  # same table, same mode: not new
    z.watch("/n", B, WatchKind.CHILD)  # child watches ignore data changes
    assert evs(z.set("/n", b"1")) == [(A, CHANGED, "/n")]
    assert evs(z.set("/n", b"2")) == []


def test_set_acl_fires_nothing() -> None:
    z = Tree()
    z.create("/n")
    z.watch("/n", A, WatchKind.DATA)
    acl = (ACL(1, Id("world", "anyone")),)
    res = z.t.apply_txn(z.hdr(OpCode.SET_ACL), SetACLTxn("/n", acl, 1))
    assert res.err == Err.OK and res.events == ()
    assert z.t.watches.has("/n", A, WatcherType.DATA)


def test_events_carry_the_acl_to_check() -> None:
    z = Tree()
    parent_acl = (ACL(31, Id("digest", "u:x")),)
    child_acl = (ACL(1, Id("ip", "10.0.0.1")),)
    z.create("/p", acl=parent_acl)
    z.watch("/p/c", A, WatchKind.EXIST)
    z.watch("/p", B, WatchKind.CHILD)
    res = z.create("/p/c", acl=child_acl)
    assert [e.acl for e in res.events] == [child_acl, parent_acl]
    z.watch("/p/c", A, WatchKind.DATA)
    z.watch("/p", B, WatchKind.CHILD)
    res = z.delete("/p/c")
    assert [e.acl for e in res.events] == [child_acl, parent_acl]


def test_persistent_watch_fires_repeatedly_for_node_and_children_list() -> None:
    z = Tree()
    z.create("/p")
    z.watch("/p", A, WatchKind.PERSISTENT)
    assert evs(z.set("/p", b"1")) == [(A, CHANGED, "/p")]
    assert evs(z.set("/p", b"2")) == [(A, CHANGED, "/p")]
    assert evs(z.create("/p/c")) == [(A, CHILDREN, "/p")]
    # Not for grandchildren or for the child's own data.
    assert evs(z.create("/p/c/g")) == []
    assert evs(z.set("/p/c", b"x")) == []
    assert evs(z.delete("/p/c/g")) == []
    assert evs(z.delete("/p/c")) == [(A, CHILDREN, "/p")]
    assert evs(z.delete("/p")) == [(A, DELETED, "/p")]
    assert evs(z.create("/p")) == [(A, CREATED, "/p")]
    assert z.t.watches.has("/p", A, WatcherType.PERSISTENT)


def test_recursive_watch_fires_for_descendants_but_never_children_changed() -> None:
    z = Tree()
    z.create("/r")
    z.watch("/r", A, WatchKind.PERSISTENT_RECURSIVE)
    assert evs(z.create("/r/a")) == [(A, CREATED, "/r/a")]
    assert evs(z.create("/r/a/b")) == [(A, CREATED, "/r/a/b")]
    assert evs(z.set("/r/a/b", b"x")) == [(A, CHANGED, "/r/a/b")]
    assert evs(z.set("/r", b"x")) == [(A, CHANGED, "/r")]
    assert evs(z.delete("/r/a/b")) == [(A, DELETED, "/r/a/b")]
    assert evs(z.create("/rr")) == []  # a sibling sharing the prefix is not a descendant
    assert evs(z.create("/other")) == []
    assert evs(z.delete("/r/a")) == [(A, DELETED, "/r/a")]
    assert evs(z.delete("/r")) == [(A, DELETED, "/r")]


def test_recursive_on_root_and_nested_dedup() -> None:
    z = Tree()
    z.watch("/", A, WatchKind.PERSISTENT_RECURSIVE)
    z.watch("/x", A, WatchKind.PERSISTENT_RECURSIVE)
    z.watch("/x", B, WatchKind.PERSISTENT_RECURSIVE)
    assert evs(z.create("/x")) == [(A, CREATED, "/x"), (B, CREATED, "/x")]
    assert evs(z.create("/x/y")) == [(A, CREATED, "/x/y"), (B, CREATED, "/x/y")]
    # The nearest ancestor's watchers come first.
    z.watch("/x/y", C, WatchKind.PERSISTENT_RECURSIVE)
    assert evs(z.set("/x/y", b"1")) == [
        (C, CHANGED, "/x/y"),
        (A, CHANGED, "/x/y"),
        (B, CHANGED, "/x/y"),
    ]


def test_standard_and_persistent_on_same_path_give_one_event() -> None:
    z = Tree()
    z.create("/n")
    z.watch("/n", A, WatchKind.DATA)
    z.watch("/n", A, WatchKind.PERSISTENT)
    z.watch("/n", A, WatchKind.PERSISTENT_RECURSIVE)
    assert evs(z.set("/n", b"1")) == [(A, CHANGED, "/n")]
    # The one-shot part is consumed, the persistent ones stay.
    assert not z.t.watches.has("/n", A, WatcherType.DATA)
    assert z.t.watches.has("/n", A, WatcherType.PERSISTENT)
    assert z.t.watches.has("/n", A, WatcherType.PERSISTENT_RECURSIVE)
    assert evs(z.set("/n", b"2")) == [(A, CHANGED, "/n")]


def test_child_watch_and_persistent_dedup_on_children_changed() -> None:
    z = Tree()
    z.create("/p")
    z.watch("/p", A, WatchKind.CHILD)
    z.watch("/p", A, WatchKind.PERSISTENT)
    assert evs(z.create("/p/a")) == [(A, CHILDREN, "/p")]
    assert not z.t.watches.has("/p", A, WatcherType.CHILDREN)
    assert evs(z.create("/p/b")) == [(A, CHILDREN, "/p")]


def test_remove_and_has_per_watcher_type() -> None:
    z = Tree()
    w = z.t.watches
    z.create("/n")
    w.add("/n", A, WatchKind.DATA)
    w.add("/n", A, WatchKind.CHILD)
    w.add("/n", A, WatchKind.PERSISTENT)
    w.add("/n", A, WatchKind.PERSISTENT_RECURSIVE)
    assert w.has("/n", A, WatcherType.ANY)
    assert not w.has("/n", B, WatcherType.ANY)
    assert w.remove("/n", A, WatcherType.DATA)
    assert not w.remove("/n", A, WatcherType.DATA)
    assert not w.has("/n", A, WatcherType.DATA)
    assert w.has("/n", A, WatcherType.CHILDREN)
    assert w.remove("/n", A, WatcherType.PERSISTENT)
    assert not w.has("/n", A, WatcherType.PERSISTENT)
    assert w.has("/n", A, WatcherType.PERSISTENT_RECURSIVE)
    assert w.remove("/n", A, WatcherType.PERSISTENT_RECURSIVE)
    # Removing the recursive watch stops descendant events.
    assert evs(z.create("/n/c")) == [(A, CHILDREN, "/n")]
    assert not w.has("/n", A, WatcherType.ANY)
    assert w.watch_count() == 0
    w.add("/n", A, WatchKind.DATA)
    w.add("/n", A, WatchKind.CHILD)
    assert w.remove("/n", A, WatcherType.ANY)
    assert not w.remove("/n", A, WatcherType.ANY)
    assert w.watch_count() == 0


def test_remove_watcher_drops_everything() -> None:
    z = Tree()
    w = z.t.watches
    for kind in WatchKind:
        w.add("/a", A, kind)
        w.add("/a", B, kind)
    assert w.watch_count() == 4  # (path, watcher) entries: two per table
    w.remove_watcher(A)
    assert w.watcher_count(A) == 0
    assert w.watcher_count(B) == 2
    assert evs(z.create("/a")) == [(B, CREATED, "/a")]
    assert evs(z.create("/a/b")) == [(B, CREATED, "/a/b"), (B, CHILDREN, "/a")]


def test_watch_counts_and_summary() -> None:
    z = Tree()
    w = z.t.watches
    z.create("/a")
    w.add("/a", A, WatchKind.DATA)
    w.add("/b", A, WatchKind.EXIST)
    w.add("/a", B, WatchKind.DATA)
    w.add("/a", C, WatchKind.CHILD)
    assert w.watch_count() == 4
    s = w.summary()  # ZooKeeper reports the data table only
    assert (s.connections, s.paths, s.watches) == (2, 2, 3)
    assert w.paths_by_watcher() == {A: ["/a", "/b"], B: ["/a"]}
    assert w.watchers_by_path() == {"/a": [A, B], "/b": [A]}
    z.set("/a", b"x")
    # As in ZooKeeper, B stays listed as a connection after its only watch fired.
    s = w.summary()
    assert (s.connections, s.paths, s.watches) == (2, 1, 1)
    assert w.watch_count() == 2


def test_set_watches_reconnect_rules() -> None:
    z = Tree()
    z.create("/old")  # zxid 1
    z.create("/changed")  # zxid 2
    z.create("/parent")  # zxid 3
    relative = z.zxid
    z.set("/changed", b"x")  # zxid 4
    z.create("/parent/kid")  # zxid 5: pzxid of /parent moves
    z.create("/born")  # zxid 6
    w = z.t.watches
    out = w.set_watches(
        A,
        relative,
        data=["/old", "/changed", "/gone"],
        exist=["/born", "/unborn"],
        child=["/old", "/parent", "/gone"],
        persistent=["/p"],
        recursive=["/r"],
    )
    assert [(e.watcher, e.type, e.path, e.zxid, e.acl) for e in out] == [
        (A, CHANGED, "/changed", NO_ZXID, ()),
        (A, DELETED, "/gone", NO_ZXID, ()),
        (A, CREATED, "/born", NO_ZXID, ()),
        (A, CHILDREN, "/parent", NO_ZXID, ()),
        (A, DELETED, "/gone", NO_ZXID, ()),
    ]
    assert w.has("/old", A, WatcherType.DATA)
    assert w.has("/unborn", A, WatcherType.DATA)
    assert w.has("/old", A, WatcherType.CHILDREN)
    assert not w.has("/changed", A, WatcherType.DATA)
    assert w.has("/p", A, WatcherType.PERSISTENT)
    assert w.has("/r", A, WatcherType.PERSISTENT_RECURSIVE)
    assert evs(z.create("/unborn")) == [(A, CREATED, "/unborn")]
    assert evs(z.create("/r")) == [(A, CREATED, "/r")]
    assert evs(z.create("/r/x")) == [(A, CREATED, "/r/x")]


def test_close_session_fires_deletes_of_its_ephemerals() -> None:
    z = Tree()
    z.create("/p")
    z.create("/p/e1", session=7)
    z.create("/p/e2", session=7)
    z.watch("/p/e1", A, WatchKind.DATA)
    z.watch("/p", B, WatchKind.PERSISTENT)
    res = z.t.apply_txn(z.hdr(OpCode.CLOSE_SESSION, 7), CloseSessionTxn(("/p/e2", "/p/e1")))
    assert evs(res) == [(B, CHILDREN, "/p"), (A, DELETED, "/p/e1"), (B, CHILDREN, "/p")]


def test_multi_events_in_op_order_with_one_zxid_and_none_for_failed_multi() -> None:
    z = Tree()
    z.create("/m")
    z.watch("/m", A, WatchKind.PERSISTENT_RECURSIVE)
    z.watch("/m", B, WatchKind.CHILD)
    subs = [
        (OpCode.CREATE, CreateTxn("/m/a", b"", OPEN_ACL_UNSAFE, False, 1)),
        (OpCode.SET_DATA, SetDataTxn("/m/a", b"x", 1)),
        (OpCode.DELETE, DeleteTxn("/m/a")),
    ]
    res = z.t.apply_txn(z.hdr(OpCode.MULTI), encode_sub_txns(subs))
    assert res.err == Err.OK
    assert evs(res) == [
        (A, CREATED, "/m/a"),
        (B, CHILDREN, "/m"),
        (A, CHANGED, "/m/a"),
        (A, DELETED, "/m/a"),
    ]
    assert {e.zxid for e in res.events} == {z.zxid}
    assert all(sub.events == () for sub in res.multi)
    failed = [
        (OpCode.CREATE, CreateTxn("/m/b", b"", OPEN_ACL_UNSAFE, False, 2)),
        (OpCode.ERROR, ErrorTxn(Err.NONODE)),
    ]
    res = z.t.apply_txn(z.hdr(OpCode.MULTI), encode_sub_txns(failed))
    assert res.err == Err.NONODE and res.events == ()
    assert "/m/b" not in z.t.nodes


def test_watchers_on_a_different_path_are_not_touched() -> None:
    z = Tree()
    z.create("/a")
    z.create("/b")
    z.watch("/a", A, WatchKind.DATA)
    assert evs(z.set("/b", b"1")) == []
    assert z.t.watches.has("/a", A, WatcherType.DATA)
