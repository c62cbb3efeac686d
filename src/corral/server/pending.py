"""Outstanding changes: what the tree will look like once the prepped txns are applied.

ZooKeeper's PrepRequestProcessor keeps a ChangeRecord per write it has turned into a txn but
the tree has not applied yet (the txn is waiting for its fsync, or for a quorum); the next
request is checked against the newest record for each path, or the tree when there is none.
`PendingChanges` is that list. `PrepView` is the view one request is prepped against: it
buffers the request's own records (a multi's sub-ops see each other's effects) and hands
them to `PendingChanges` only when the whole request succeeded, which is ZooKeeper's
rollbackPendingChanges without the rollback.

Records carry only what prep decides on: existence, data (quota), ACL, the versions, the
stored cversion, the raw ephemeral owner and the number of children.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, TypeAlias

from corral.proto.records import ACL

if TYPE_CHECKING:
    from corral.tree.datatree import DataTree
    from corral.tree.znode import ZNode

__all__ = ["ChangeRecord", "NodeLike", "PendingChanges", "PrepView", "child_count"]


class ChangeRecord:
    """A node as it will be after the txn with `zxid` is applied (`exists` False: deleted)."""

    __slots__ = (
        "acl",
        "aversion",
        "child_count",
        "cversion",
        "data",
        "ephemeral_owner",
        "exists",
        "path",
        "version",
        "zxid",
    )

    def __init__(
        self,
        zxid: int,
        path: str,
        exists: bool,
        data: bytes | None = None,
        acl: tuple[ACL, ...] = (),
        version: int = 0,
        cversion: int = 0,
        aversion: int = 0,
        ephemeral_owner: int = 0,
        child_count: int = 0,
    ) -> None:
        self.zxid = zxid
        self.path = path
        self.exists = exists
        self.data = data
        self.acl = acl
        self.version = version
        self.cversion = cversion
        self.aversion = aversion
        self.ephemeral_owner = ephemeral_owner
        self.child_count = child_count

    @classmethod
    def copy_of(cls, node: NodeLike, path: str, zxid: int) -> ChangeRecord:
        """A record for `path` at `zxid` starting from `node`'s current state."""
        return cls(
            zxid,
            path,
            True,
            node.data,
            node.acl,
            node.version,
            node.cversion,
            node.aversion,
            node.ephemeral_owner,
            child_count(node),
        )

    def __repr__(self) -> str:
        return (
            f"ChangeRecord(zxid={self.zxid:#x}, path={self.path!r}, exists={self.exists},"
            f" version={self.version}, cversion={self.cversion}, aversion={self.aversion},"
            f" owner={self.ephemeral_owner:#x}, children={self.child_count})"
        )


NodeLike: TypeAlias = "ZNode | ChangeRecord"


def child_count(node: NodeLike) -> int:
    if type(node) is ChangeRecord:
        return node.child_count
    return len(node.child_paths)  # type: ignore[union-attr]


class PendingChanges:
    """The change records of prepped, not yet applied txns, oldest first (outstandingChanges)."""

    __slots__ = ("_by_path", "_queue")

    def __init__(self) -> None:
        self._queue: deque[ChangeRecord] = deque()
        # The newest record per path (outstandingChangesForPath).
        self._by_path: dict[str, ChangeRecord] = {}

    def __len__(self) -> int:
        return len(self._queue)

    def latest(self, path: str) -> ChangeRecord | None:
        """The newest pending record for `path` (a deleted-node record included), or None."""
        return self._by_path.get(path)

    def records(self) -> tuple[ChangeRecord, ...]:
        """Every pending record, oldest first."""
        return tuple(self._queue)

    def extend(self, records: list[ChangeRecord]) -> None:
        """Add the records of one prepped txn (all with that txn's zxid)."""
        queue = self._queue
        by_path = self._by_path
        for rec in records:
            assert not queue or queue[-1].zxid <= rec.zxid, "change records out of zxid order"
            queue.append(rec)
            by_path[rec.path] = rec

    def applied(self, zxid: int) -> None:
        """The tree has applied every txn up to `zxid`: drop their records."""
        queue = self._queue
        by_path = self._by_path
        while queue and queue[0].zxid <= zxid:
            rec = queue.popleft()
            if by_path.get(rec.path) is rec:
                del by_path[rec.path]

    def clear(self) -> None:
        """Forget everything (the prepped txns will never be applied)."""
        self._queue.clear()
        self._by_path.clear()


class PrepView:
    """The tree plus pending changes plus this request's own changes so far."""

    __slots__ = ("_by_path", "_local", "_nodes", "added", "tree")

    def __init__(self, tree: DataTree, pending: PendingChanges) -> None:
        self.tree = tree
        self._nodes = tree.nodes
        self._by_path = pending._by_path
        self._local: dict[str, ChangeRecord] = {}
        self.added: list[ChangeRecord] = []

    def lookup(self, path: str) -> NodeLike | None:
        """The node at `path` as it will be, or None when it does not (or will not) exist."""
        rec = self._local.get(path) if self._local else None
        if rec is None:
            rec = self._by_path.get(path)
            if rec is None:
                return self._nodes.get(path)
        return rec if rec.exists else None

    def add(self, rec: ChangeRecord) -> None:
        self._local[rec.path] = rec
        self.added.append(rec)

    def commit(self, pending: PendingChanges) -> None:
        """The request succeeded: its records become pending changes."""
        if self.added:
            pending.extend(self.added)
