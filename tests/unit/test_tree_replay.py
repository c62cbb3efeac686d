"""Recovery over a fuzzy snapshot: a snapshot taken while txns keep being applied, loaded and
replayed from its starting zxid, must give the same tree as applying every txn once.

This is ZooKeeper's own scheme (serializeNode copies each node as it goes; restore replays
the log from the snapshot's zxid and relies on processTxn tolerating txns the snapshot
already reflects).
"""

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from corral.proto.codes import Err, OpCode
from corral.proto.records import (
    ACL,
    CloseSessionTxn,
    CreateContainerTxn,
    CreateSessionTxn,
    CreateTTLTxn,
    CreateTxn,
    DeleteTxn,
    ErrorTxn,
    Id,
    SetACLTxn,
    SetDataTxn,
    TxnHeader,
)
from corral.tree.datatree import OPEN_ACL_UNSAFE, SPECIAL_PATHS, DataTree
from corral.tree.txn import encode_sub_txns

NAMES = ["a", "b", "c"]
SESSIONS = [0x100, 0x200]
ACLS = [OPEN_ACL_UNSAFE, (ACL(1, Id("world", "anyone")),)]

Txn = tuple[TxnHeader, Any]


def parent_of(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def prep(tree: DataTree, data: st.DataObject, zxid: int) -> Txn:
    """A txn as prep would make it for a random request against `tree` (successful ones)."""
    nodes = sorted(set(tree.nodes) - SPECIAL_PATHS)
    session = data.draw(st.sampled_from(SESSIONS))
    time = 1000 + zxid

    def hdr(type_: int) -> TxnHeader:
        return TxnHeader(session, 0, zxid, time, type_)

    def create_sub() -> tuple[int, Any] | None:
        parent = data.draw(st.sampled_from(["/", *nodes]))
        pnode = tree.nodes[parent]
        if pnode.ephemeral_owner > 0:
            return None
        path = ("" if parent == "/" else parent) + "/" + data.draw(st.sampled_from(NAMES))
        if data.draw(st.booleans()):
            path += f"{pnode.cversion:010d}"
        if path in tree.nodes:
            return None
        pcv = pnode.cversion + 1
        payload = data.draw(st.binary(max_size=3))
        kind = data.draw(st.sampled_from(["plain", "ephemeral", "container", "ttl"]))
        if kind == "container":
            return OpCode.CREATE_CONTAINER, CreateContainerTxn(path, payload, OPEN_ACL_UNSAFE, pcv)
        if kind == "ttl":
            return OpCode.CREATE_TTL, CreateTTLTxn(path, payload, OPEN_ACL_UNSAFE, pcv, 100)
        return OpCode.CREATE, CreateTxn(path, payload, OPEN_ACL_UNSAFE, kind == "ephemeral", pcv)

    op = data.draw(
        st.sampled_from(["create", "create", "delete", "set", "acl", "session", "multi"])
    )
    if op == "create" or not nodes:
        sub = create_sub()
        if sub is None:
            return hdr(OpCode.ERROR), ErrorTxn(Err.NODEEXISTS)
        return hdr(sub[0]), sub[1]
    path = data.draw(st.sampled_from(nodes))
    node = tree.nodes[path]
    if op == "delete":
        if node.children:
            return hdr(OpCode.ERROR), ErrorTxn(Err.NOTEMPTY)
        return hdr(OpCode.DELETE), DeleteTxn(path)
    if op == "set":
        return hdr(OpCode.SET_DATA), SetDataTxn(
            path, data.draw(st.binary(max_size=3)), node.version + 1
        )
    if op == "acl":
        return hdr(OpCode.SET_ACL), SetACLTxn(
            path, data.draw(st.sampled_from(ACLS)), node.aversion + 1
        )
    if op == "session":
        if data.draw(st.booleans()):
            return hdr(OpCode.CREATE_SESSION), CreateSessionTxn(5000)
        return hdr(OpCode.CLOSE_SESSION), CloseSessionTxn(tuple(sorted(tree.ephemerals(session))))
    # A multi: a create and a setData of the same new node (one zxid for both).
    sub = create_sub()
    if sub is None:
        return hdr(OpCode.ERROR), ErrorTxn(Err.NODEEXISTS)
    new_path = sub[1].path
    subs = [sub, (OpCode.SET_DATA, SetDataTxn(new_path, b"m", 1))]
    return hdr(OpCode.MULTI), encode_sub_txns(subs)


def state(tree: DataTree) -> dict[str, Any]:
    return {
        "nodes": {
            p: (n.stat(), n.data, n.acl, n.ephemeral_owner, frozenset(n.children))
            for p, n in tree.nodes.items()
        },
        "ephemerals": {s: tree.ephemerals(s) for s in SESSIONS},
        "containers": tree.containers(),
        "ttls": tree.ttl_nodes(),
        "sessions": tree.sessions,
        "last_zxid": tree.last_zxid,
        "count": tree.count_nodes(),
    }


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_fuzzy_snapshot_plus_replay_equals_the_live_tree(data: st.DataObject) -> None:
    live = DataTree()
    txns: list[Txn] = []
    n_before = data.draw(st.integers(0, 15))
    n_during = data.draw(st.integers(0, 15))
    n_after = data.draw(st.integers(0, 5))
    for _ in range(n_before):
        txns.append(prep(live, data, len(txns) + 1))
        live.apply_txn(*txns[-1])
    snap_zxid = live.last_zxid
    sessions = dict(live.sessions)
    # Walk the live tree while more txns are applied between nodes (ZooKeeper's fuzzy
    # snapshot): each node is copied when reached.
    copies = []
    walk = live.iter_preorder()
    pending = n_during
    for path, node in walk:
        copies.append(("" if path == "/" else path, node.copy()))
        while pending and data.draw(st.booleans()):
            pending -= 1
            txns.append(prep(live, data, len(txns) + 1))
            live.apply_txn(*txns[-1])
    for _ in range(pending + n_after):
        txns.append(prep(live, data, len(txns) + 1))
        live.apply_txn(*txns[-1])

    restored = DataTree.empty_for_load()
    for path, node in copies:
        restored.load_node(path, node)
    restored.finish_load()
    restored.sessions.update(sessions)
    restored.last_zxid = snap_zxid
    for hdr, txn in txns:
        if hdr.zxid > snap_zxid:
            restored.apply_txn(hdr, txn)
    assert state(restored) == state(live)
