"""server/reaper.py: which containers and TTL nodes are due, by ZooKeeper 3.9.5's
ContainerManager.getCandidates rules (read from the source):

- a container is due once it is childless and its stored cversion is > 0 (it has had a
  child); a never-used one only with maxNeverUsedIntervalMs set and exceeded;
- a TTL node is due once childless and `now - mtime > ttl` (strictly), so a setData, which
  moves mtime, postpones it.
"""

from corral.proto.codes import OpCode
from corral.proto.records import (
    CreateContainerTxn,
    CreateTTLTxn,
    CreateTxn,
    DeleteTxn,
    SetDataTxn,
    TxnHeader,
)
from corral.server.reaper import reap_candidates
from corral.tree.datatree import OPEN_ACL_UNSAFE, DataTree

T0 = 1_000_000  # the wall-clock ms the txns below carry


class Tree:
    """A DataTree fed txns with explicit times; zxids count up."""

    def __init__(self) -> None:
        self.t = DataTree()
        self.zxid = 0

    def apply(self, type_: int, txn: object, time: int = T0) -> None:
        self.zxid += 1
        self.t.apply_txn(TxnHeader(0x55, 1, self.zxid, time, type_), txn)

    def cversion(self, path: str) -> int:
        parent = path.rsplit("/", 1)[0] or "/"
        return self.t.nodes[parent].cversion + 1

    def container(self, path: str) -> None:
        self.apply(
            OpCode.CREATE_CONTAINER,
            CreateContainerTxn(path, b"", OPEN_ACL_UNSAFE, self.cversion(path)),
        )

    def ttl(self, path: str, ttl: int, time: int = T0) -> None:
        txn = CreateTTLTxn(path, b"", OPEN_ACL_UNSAFE, self.cversion(path), ttl)
        self.apply(OpCode.CREATE_TTL, txn, time)

    def child(self, path: str) -> None:
        self.apply(OpCode.CREATE, CreateTxn(path, b"", OPEN_ACL_UNSAFE, False, self.cversion(path)))

    def delete(self, path: str) -> None:
        self.apply(OpCode.DELETE, DeleteTxn(path))


def test_containers_need_to_have_had_a_child() -> None:
    z = Tree()
    z.container("/unused")
    z.container("/used")
    z.container("/busy")
    z.child("/used/k")
    z.child("/busy/k")
    assert reap_candidates(z.t, T0 + 10**9) == []  # /used still has its child
    z.delete("/used/k")
    assert reap_candidates(z.t, T0) == ["/used"]  # at once: no age needed
    # A never-used container goes only with maxNeverUsedIntervalMs, once older than it.
    assert reap_candidates(z.t, T0 + 5000, max_never_used_ms=5000) == ["/used"]
    assert reap_candidates(z.t, T0 + 5001, max_never_used_ms=5000) == ["/unused", "/used"]


def test_ttl_nodes_go_when_childless_and_unchanged_for_longer_than_their_ttl() -> None:
    z = Tree()
    z.ttl("/t", 1000)
    z.ttl("/parent", 1000)
    z.child("/parent/k")
    assert reap_candidates(z.t, T0 + 1000) == []  # not strictly older yet
    assert reap_candidates(z.t, T0 + 1001) == ["/t"]  # /parent has a child
    # setData moves mtime, and with it the deadline.
    z.apply(OpCode.SET_DATA, SetDataTxn("/t", b"x", 1), time=T0 + 900)
    assert reap_candidates(z.t, T0 + 1001) == []
    assert reap_candidates(z.t, T0 + 1901) == ["/t"]
    # A child's create does not move the parent's mtime: childless again, it is overdue.
    z.delete("/parent/k")
    assert reap_candidates(z.t, T0 + 1901) == ["/parent", "/t"]


def test_containers_come_first_each_group_sorted() -> None:
    z = Tree()
    for path in ("/tb", "/ta"):
        z.ttl(path, 1)
    for path in ("/cb", "/ca"):
        z.container(path)
        z.child(f"{path}/k")
        z.delete(f"{path}/k")
    assert reap_candidates(z.t, T0 + 10) == ["/ca", "/cb", "/ta", "/tb"]
