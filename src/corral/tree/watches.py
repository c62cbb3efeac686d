"""Watches: who to notify when a znode changes, with ZooKeeper 3.9's rules.

Like ZooKeeper's DataTree we keep two tables, one for data watches (getData, exists and the
data side of persistent watches) and one for child watches (getChildren and the child side
of persistent watches). Each entry is (path, watcher) with a set of modes, as ZooKeeper's
WatchManager/WatchStats keep them:

- STANDARD: one-shot; removed from the entry when it fires.
- PERSISTENT (addWatch mode 0): in both tables; fires like a standard watch but stays.
- PERSISTENT_RECURSIVE (addWatch mode 1): only in the data table; fires for the path and
  for every descendant (the table walks a changed path's ancestors while it holds any
  recursive watch), and never for child-list changes.

Triggers (called by the DataTree when it applies a txn):

- create: data table on the path (NodeCreated), child table on the parent
  (NodeChildrenChanged).
- delete: data table on the path (NodeDeleted), child table on the path (NodeDeleted, but
  not again to a watcher the data table already notified), child table on the parent
  (NodeChildrenChanged).
- setData: data table on the path (NodeDataChanged). setACL fires nothing.

A watcher gets one event per trigger however many of its watches match (dedup). Watchers
are opaque ints (the server uses a connection id). Each event carries the ACL ZooKeeper
checks READ against before delivering it (the changed node's, or the parent's for
NodeChildrenChanged); the server does that check. Events from set_watches carry no ACL and
zxid -1, as in ZooKeeper, which delivers them unfiltered.
"""

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from corral.proto.codes import EventType, WatcherType
from corral.proto.jute import fast_frozen_init
from corral.proto.records import ACL
from corral.tree.znode import ZNode

# Mode bits of a (path, watcher) entry (ZooKeeper's WatchStats flags).
STANDARD = 1
PERSISTENT = 2
RECURSIVE = 4

# The zxid of events not caused by a txn (WatchedEvent.NO_ZXID).
NO_ZXID = -1


class WatchKind(enum.Enum):
    """What a read or addWatch asks to watch."""

    DATA = "data"  # getData
    EXIST = "exist"  # exists
    CHILD = "child"  # getChildren / getChildren2
    PERSISTENT = "persistent"  # addWatch PERSISTENT
    PERSISTENT_RECURSIVE = "persistent_recursive"  # addWatch PERSISTENT_RECURSIVE


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One notification for one watcher.

    `acl` is the ACL the watcher needs READ on to receive it (empty: deliver unfiltered).
    """

    watcher: int
    type: EventType
    path: str
    zxid: int
    acl: tuple[ACL, ...] = ()


@dataclass(frozen=True, slots=True)
class WatchSummary:
    """ZooKeeper's WatchesSummary (wchs): over the data table only, as ZooKeeper counts."""

    connections: int
    paths: int
    watches: int


class WatchTable:
    """One of ZooKeeper's two watch managers (data or child)."""

    __slots__ = ("by_path", "by_watcher", "pairs", "recursive")

    def __init__(self) -> None:
        # path -> watcher -> mode bits. Insertion order makes event order deterministic.
        self.by_path: dict[str, dict[int, int]] = {}
        # watcher -> paths it watches. As in ZooKeeper, a watcher whose watches all fired
        # keeps an (empty) entry until it is removed, so wchs still counts it.
        self.by_watcher: dict[int, set[str]] = {}
        # Number of (path, watcher) entries.
        self.pairs = 0
        # Number of entries holding a recursive mode: while 0, triggers skip ancestors.
        self.recursive = 0

    def add(self, path: str, watcher: int, mode: int) -> bool:
        """Add a mode to (path, watcher); True when that changed anything."""
        entry = self.by_path.get(path)
        if entry is None:
            entry = self.by_path[path] = {}
        old = entry.get(watcher, 0)
        if old & mode:
            return False
        if not old:
            self.pairs += 1
            paths = self.by_watcher.get(watcher)
            if paths is None:
                paths = self.by_watcher[watcher] = set()
            paths.add(path)
        entry[watcher] = old | mode
        if mode == RECURSIVE:
            self.recursive += 1
        return True

    def contains(self, path: str, watcher: int, mode: int | None) -> bool:
        """Whether (path, watcher) holds `mode` (any mode when None)."""
        entry = self.by_path.get(path)
        if entry is None:
            return False
        bits = entry.get(watcher, 0)
        return bits != 0 if mode is None else bits & mode != 0

    def _unwatch(self, path: str, watcher: int, entry: dict[int, int]) -> int:
        bits = entry.pop(watcher, 0)
        if not bits:
            return 0
        self.pairs -= 1
        if not entry:
            del self.by_path[path]
        paths = self.by_watcher.get(watcher)
        if paths is not None:
            paths.discard(path)
            if not paths:
                del self.by_watcher[watcher]
        return bits

    def remove(self, path: str, watcher: int, mode: int | None) -> bool:
        """Remove `mode` (every mode when None) from (path, watcher); True if it had it."""
        entry = self.by_path.get(path)
        if entry is None or watcher not in self.by_watcher:
            return False
        old = entry.get(watcher, 0)
        if mode is None:
            new = 0
            self._unwatch(path, watcher, entry)
        else:
            new = old & ~mode
            if new:
                entry[watcher] = new
            elif old:
                self._unwatch(path, watcher, entry)
        if old & RECURSIVE and not new & RECURSIVE:
            self.recursive -= 1
        return old != new

    def remove_watcher(self, watcher: int) -> None:
        """Drop every watch of a watcher (its connection closed)."""
        paths = self.by_watcher.pop(watcher, None)
        if paths is None:
            return
        for path in paths:
            entry = self.by_path.get(path)
            if entry is None:
                continue
            bits = entry.pop(watcher, 0)
            if bits:
                self.pairs -= 1
                if bits & RECURSIVE:
                    self.recursive -= 1
            if not entry:
                del self.by_path[path]

    def trigger(
        self,
        path: str,
        type_: EventType,
        zxid: int,
        acl: tuple[ACL, ...],
        out: list[WatchEvent],
        suppress: dict[int, None] | None = None,
    ) -> dict[int, None]:
        """Fire the watches matching a change of `path`; append the events to `out`.

        Returns every watcher that matched (also those in `suppress`, which get no
        event), in firing order: the path's own watchers, then recursive watchers of the
        nearest ancestors first.
        """
        fired: dict[int, None] = {}
        entry = self.by_path.get(path)
        if entry is not None:
            for watcher, bits in tuple(entry.items()):
                fired[watcher] = None
                if bits & STANDARD:
                    bits &= ~STANDARD
                    if bits:
                        entry[watcher] = bits
                    else:
                        del entry[watcher]
                        self.pairs -= 1
                        self.by_watcher[watcher].discard(path)
            if not entry:
                del self.by_path[path]
        if self.recursive:
            parent = path
            while parent != "/":
                cut = parent.rfind("/")
                parent = parent[:cut] if cut > 0 else "/"
                entry = self.by_path.get(parent)
                if entry is not None:
                    for watcher, bits in entry.items():
                        if bits & RECURSIVE:
                            fired[watcher] = None
        for watcher in fired:
            if suppress is None or watcher not in suppress:
                out.append(WatchEvent(watcher, type_, path, zxid, acl))
        return fired


_WATCHER_TYPE_MODE = {
    WatcherType.DATA: STANDARD,
    WatcherType.CHILDREN: STANDARD,
    WatcherType.PERSISTENT: PERSISTENT,
    WatcherType.PERSISTENT_RECURSIVE: RECURSIVE,
}


class WatchManager:
    """Both watch tables of a DataTree, and ZooKeeper's rules for adding and removing."""

    __slots__ = ("child", "data", "nodes")

    def __init__(self, nodes: Mapping[str, ZNode]) -> None:
        self.nodes = nodes
        self.data = WatchTable()
        self.child = WatchTable()

    # --- adding and removing ---

    def add(self, path: str, watcher: int, kind: WatchKind) -> bool:
        """Set a watch; True when it is new (False when it was already there)."""
        if kind is WatchKind.DATA or kind is WatchKind.EXIST:
            return self.data.add(path, watcher, STANDARD)
        if kind is WatchKind.CHILD:
            return self.child.add(path, watcher, STANDARD)
        if kind is WatchKind.PERSISTENT:
            added = self.data.add(path, watcher, PERSISTENT)
            return self.child.add(path, watcher, PERSISTENT) or added
        return self.data.add(path, watcher, RECURSIVE)

    def remove_watcher(self, watcher: int) -> None:
        """Drop all watches of a watcher (its connection closed)."""
        self.data.remove_watcher(watcher)
        self.child.remove_watcher(watcher)

    def remove(self, path: str, watcher: int, type_: WatcherType) -> bool:
        """removeWatches: drop one kind of watch; True if something was removed."""
        if type_ == WatcherType.CHILDREN:
            return self.child.remove(path, watcher, STANDARD)
        if type_ == WatcherType.DATA:
            return self.data.remove(path, watcher, STANDARD)
        if type_ == WatcherType.PERSISTENT:
            removed = self.child.remove(path, watcher, PERSISTENT)
            return self.data.remove(path, watcher, PERSISTENT) or removed
        if type_ == WatcherType.PERSISTENT_RECURSIVE:
            return self.data.remove(path, watcher, RECURSIVE)
        removed = self.child.remove(path, watcher, None)
        return self.data.remove(path, watcher, None) or removed

    def has(self, path: str, watcher: int, type_: WatcherType) -> bool:
        """checkWatches: whether the watcher holds this kind of watch on the path."""
        if type_ == WatcherType.CHILDREN:
            return self.child.contains(path, watcher, STANDARD)
        if type_ == WatcherType.ANY:
            return self.child.contains(path, watcher, None) or self.data.contains(
                path, watcher, None
            )
        return self.data.contains(path, watcher, _WATCHER_TYPE_MODE[type_])

    def set_watches(
        self,
        watcher: int,
        relative_zxid: int,
        data: Iterable[str],
        exist: Iterable[str],
        child: Iterable[str],
        persistent: Iterable[str] = (),
        recursive: Iterable[str] = (),
    ) -> list[WatchEvent]:
        """Re-arm a reconnecting client's watches (SetWatches/SetWatches2).

        A watch whose condition already happened since `relative_zxid` (the client's last
        seen zxid) fires at once instead; persistent watches are simply re-armed (missed
        events are not replayed). Returns the events to deliver now, in ZooKeeper's order.
        """
        nodes = self.nodes
        out: list[WatchEvent] = []
        for path in data:
            node = nodes.get(path)
            if node is None:
                out.append(WatchEvent(watcher, EventType.NODE_DELETED, path, NO_ZXID))
            elif node.mzxid > relative_zxid:
                out.append(WatchEvent(watcher, EventType.NODE_DATA_CHANGED, path, NO_ZXID))
            else:
                self.data.add(path, watcher, STANDARD)
        for path in exist:
            if path in nodes:
                out.append(WatchEvent(watcher, EventType.NODE_CREATED, path, NO_ZXID))
            else:
                self.data.add(path, watcher, STANDARD)
        for path in child:
            node = nodes.get(path)
            if node is None:
                out.append(WatchEvent(watcher, EventType.NODE_DELETED, path, NO_ZXID))
            elif node.pzxid > relative_zxid:
                out.append(WatchEvent(watcher, EventType.NODE_CHILDREN_CHANGED, path, NO_ZXID))
            else:
                self.child.add(path, watcher, STANDARD)
        for path in persistent:
            self.child.add(path, watcher, PERSISTENT)
            self.data.add(path, watcher, PERSISTENT)
        for path in recursive:
            self.data.add(path, watcher, RECURSIVE)
        return out

    # --- triggering (the DataTree calls these while applying a txn) ---

    def created(
        self,
        path: str,
        parent: str,
        zxid: int,
        acl: tuple[ACL, ...],
        parent_acl: tuple[ACL, ...],
        out: list[WatchEvent],
    ) -> None:
        data = self.data
        if data.recursive or path in data.by_path:
            data.trigger(path, EventType.NODE_CREATED, zxid, acl, out)
        child = self.child
        if child.recursive or parent in child.by_path:
            child.trigger(parent, EventType.NODE_CHILDREN_CHANGED, zxid, parent_acl, out)

    def deleted(
        self,
        path: str,
        parent: str,
        zxid: int,
        acl: tuple[ACL, ...],
        parent_acl: tuple[ACL, ...],
        out: list[WatchEvent],
    ) -> None:
        child = self.child
        fired = self.data.trigger(path, EventType.NODE_DELETED, zxid, acl, out)
        if child.recursive or path in child.by_path:
            child.trigger(path, EventType.NODE_DELETED, zxid, acl, out, fired)
        if child.recursive or parent in child.by_path:
            child.trigger(parent, EventType.NODE_CHILDREN_CHANGED, zxid, parent_acl, out)

    def data_changed(
        self, path: str, zxid: int, acl: tuple[ACL, ...], out: list[WatchEvent]
    ) -> None:
        # Inline fast exit: most setData calls hit an unwatched path.
        data = self.data
        if data.recursive or path in data.by_path:
            data.trigger(path, EventType.NODE_DATA_CHANGED, zxid, acl, out)

    # --- counts and reports (mntr, wchs, wchc, wchp) ---

    def watch_count(self) -> int:
        """mntr's zk_watch_count: entries in both tables."""
        return self.data.pairs + self.child.pairs

    def watcher_count(self, watcher: int) -> int:
        """Watches one watcher holds in both tables (for a per-session limit)."""
        d = self.data.by_watcher.get(watcher)
        c = self.child.by_watcher.get(watcher)
        return (len(d) if d else 0) + (len(c) if c else 0)

    def summary(self) -> WatchSummary:
        """wchs: connections, paths and watches of the data table (as ZooKeeper reports)."""
        data = self.data
        return WatchSummary(len(data.by_watcher), len(data.by_path), data.pairs)

    def paths_by_watcher(self) -> dict[int, list[str]]:
        """wchc: each watcher's watched paths (data table, as ZooKeeper dumps it)."""
        return {w: sorted(paths) for w, paths in self.data.by_watcher.items()}

    def watchers_by_path(self) -> dict[str, list[int]]:
        """wchp: each watched path's watchers (data table, as ZooKeeper dumps it)."""
        return {p: list(entry) for p, entry in self.data.by_path.items()}
