"""The DataTree: every znode by path, the session table, and the one apply_txn.

Semantics are ZooKeeper 3.9's DataTree.processTxn, including its tolerance of txns that a
fuzzy snapshot already reflects (recovery replays them):

- a create of an existing node answers NODEEXISTS, yet replaces that node's ACL with the
  txn's and, for a plain CREATE, still raises the parent's cversion/pzxid to the txn's
  values when they are higher;
- a delete of a missing node answers NONODE, yet still removes the name from the parent
  and raises the parent's pzxid;
- the parent's cversion and pzxid only ever move forward on create.

The notification zxid of every watch event is the txn's zxid (3.9). Events of a multi are
returned together once the whole multi is applied.

Ephemeral owners are decoded with extended types on: 0xFF00000000000000 | ttl is a TTL
node even when the server has TTL nodes disabled (ZooKeeper would then treat it as an
ephemeral of that odd session; it can only arise from a server id of 255, which ZooKeeper
refuses with extended types on).

Snapshot support (store/ uses these; ZooKeeper's order is a pre-order DFS from the root):

- `iter_preorder()` yields `(path, node)`, the root as "/" (ZooKeeper's snapshot writes the
  root's path as ""). It copies each node's child paths before descending, so a tree
  changing meanwhile never breaks it; the result is then fuzzy, as ZooKeeper's is, and
  replaying the log from the snapshot's zxid repairs it.
- `DataTree.empty_for_load()` gives a tree without any node; `load_node(path, node)` adds
  one whose parent is already loaded (the root as "" or "/"), indexing ephemerals,
  containers and TTL nodes (`load_fields(path, data, acl, stat fields)` does the same from
  a snapshot's parsed fields, making the node itself: store/ uses it as its node sink);
  `finish_load()` must follow the last node: it recomputes the quota usage nodes and the
  data size as ZooKeeper does after reading a snapshot.
- `acl_lists()` lists the distinct ACLs in use (for the snapshot's ACL cache section).
"""

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

from corral.proto import jute
from corral.proto.codes import Err, OpCode, Perm
from corral.proto.jute import fast_frozen_init
from corral.proto.records import (
    ACL,
    CheckVersionTxn,
    CloseSessionTxn,
    CreateContainerTxn,
    CreateSessionTxn,
    CreateTTLTxn,
    CreateTxn,
    DeleteTxn,
    ErrorTxn,
    Id,
    MultiTxn,
    SetACLTxn,
    SetDataTxn,
    Stat,
    TxnHeader,
)
from corral.tree import quota
from corral.tree.txn import TxnRecord, TxnTypeError, decode_sub_txn
from corral.tree.watches import WatchEvent, WatchManager
from corral.tree.znode import (
    CONTAINER_OWNER,
    EMPTY_CHILDREN,
    ZNode,
    encode_child_names,
    is_ttl_owner,
    ttl_owner,
)

log = logging.getLogger(__name__)

OPEN_ACL_UNSAFE: tuple[ACL, ...] = (ACL(int(Perm.ALL), Id("world", "anyone")),)
READ_ACL_UNSAFE: tuple[ACL, ...] = (ACL(int(Perm.READ), Id("world", "anyone")),)

# The nodes every tree has, which no client may delete (BADARGUMENTS).
SPECIAL_PATHS = frozenset({"/", quota.PROC_PATH, quota.QUOTA_PATH, quota.CONFIG_PATH})

_OK = Err.OK
# Plain ints: comparing with an IntEnum member costs a class attribute lookup per test.
_CHECK = int(OpCode.CHECK)
_CLOSE_SESSION = int(OpCode.CLOSE_SESSION)
_CREATE = int(OpCode.CREATE)
_CREATE2 = int(OpCode.CREATE2)
_CREATE_CONTAINER = int(OpCode.CREATE_CONTAINER)
_CREATE_SESSION = int(OpCode.CREATE_SESSION)
_CREATE_TTL = int(OpCode.CREATE_TTL)
_DELETE = int(OpCode.DELETE)
_DELETE_CONTAINER = int(OpCode.DELETE_CONTAINER)
_ERROR = int(OpCode.ERROR)
_RECONFIG = int(OpCode.RECONFIG)
_SET_ACL = int(OpCode.SET_ACL)
_SET_DATA = int(OpCode.SET_DATA)
_MULTI = int(OpCode.MULTI)
_NONODE = Err.NONODE
# Entries of the ACL identity memo (DataTree._acl_memo) before it starts over.
_ACL_MEMO_MAX = 256
# Encoded getChildren replies kept (DataTree.children_bytes) before the cache starts over.
_CHILDREN_CACHE_MAX = 1024
# Distinct times interned while loading a snapshot before the table starts over.
_LOAD_TIMES_MAX = 1 << 16
_NODEEXISTS = Err.NODEEXISTS


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What applying one txn did (ZooKeeper's ProcessTxnResult).

    `type` is the op as applied: the txn's type, or ERROR for a sub-op of a failed multi
    (whose `err` is then OK for ops before the failing one, the failure, and
    RUNTIMEINCONSISTENCY after it). `err` of a multi is its first non-OK sub-result.
    `stat` is the node's Stat after a successful create, setData or setACL. `events` is
    filled on the top-level result only.
    """

    err: Err
    path: str = ""
    stat: Stat | None = None
    multi: tuple["ApplyResult", ...] = ()
    events: tuple[WatchEvent, ...] = ()
    type: int = OpCode.ERROR


def _java_int(v: int) -> int:
    return ((v + 0x80000000) & 0xFFFFFFFF) - 0x80000000


def _err(code: int) -> Err:
    try:
        return Err(code)
    except ValueError:
        # A code this version does not know (a newer peer's log): still a failure.
        log.warning("unknown error code %d in an ErrorTxn", code)
        return Err.SYSTEMERROR


def _split(path: str) -> tuple[str, str]:
    cut = path.rfind("/")
    return (path[:cut] if cut > 0 else "/"), path[cut + 1 :]


class DataTree:
    """The znode tree. `apply_txn` is its only mutator (besides snapshot loading)."""

    def __init__(self) -> None:
        # Every znode by full path. Read freely; never mutate from outside.
        self.nodes: dict[str, ZNode] = {}
        # The durable session table: session id -> timeout in ms.
        self.sessions: dict[int, int] = {}
        # The highest zxid applied.
        self.last_zxid = 0
        self.watches = WatchManager(self.nodes)
        self._ephemerals: dict[int, set[str]] = {}
        self._containers: set[str] = set()
        self._ttls: set[str] = set()
        # ACL interning: nodes share one tuple per distinct ACL, counted so unused ones go.
        # The counts are keyed by the shared tuple's id (it stays alive in _acls while
        # counted): hashing an ACL tuple runs two dataclass __hash__ calls per entry, which
        # made interning a tenth of loading a snapshot.
        self._acls: dict[tuple[ACL, ...], tuple[ACL, ...]] = {}
        self._acl_uses: dict[int, int] = {}
        # id(a tuple given to _ref_acl) -> (that tuple, its shared equal): requests and
        # snapshots hand the same tuple objects over and over (the decoder memoises them).
        # Holding both keeps their ids from being reused while the entry lives.
        self._acl_memo: dict[int, tuple[tuple[ACL, ...], tuple[ACL, ...]]] = {}
        # Paths with a quota (a zookeeper_limits node): ZooKeeper's PathTrie.
        self._quotas: set[str] = set()
        # ZooKeeper's cached approximate data size (mntr), kept the way ZooKeeper keeps it.
        self._data_size = 0
        # getChildren's reply bodies by parent path: (the child_paths object encoded, the
        # bytes). An entry goes when that parent gains or loses a child or is deleted; the
        # identity check covers a replaced node. Kept here, not on every node, to save a
        # slot per znode.
        self._children_jute: dict[str, tuple[object, bytes]] = {}
        # load_fields' last (given ACL, shared ACL): snapshot nodes come with few ACLs.
        self._load_acl: tuple[tuple[ACL, ...], tuple[ACL, ...]] | None = None
        self._load_times: dict[int, int] = {}  # load_fields' interned times
        self._add_special_nodes()

    # --- construction and snapshot loading ---

    def _add_special_nodes(self) -> None:
        def special(acl: tuple[ACL, ...]) -> ZNode:
            return ZNode(b"", self._ref_acl(acl), 0, 0, 0, 0)

        root = special(OPEN_ACL_UNSAFE)
        proc = special(OPEN_ACL_UNSAFE)
        root.child_paths = {quota.PROC_PATH}
        proc.child_paths = {quota.QUOTA_PATH}
        self.nodes["/"] = root
        self.nodes[quota.PROC_PATH] = proc
        self.nodes[quota.QUOTA_PATH] = special(OPEN_ACL_UNSAFE)
        self.ensure_config_node()
        self._data_size = self._compute_data_size()

    def ensure_config_node(self) -> None:
        """Add /zookeeper/config if missing (ZooKeeper's addConfigNode).

        As in ZooKeeper it is read-only for everyone and its aversion is -1.
        """
        proc = self.nodes.get(quota.PROC_PATH)
        if proc is None or quota.CONFIG_PATH in self.nodes:
            return
        self._add_child(quota.PROC_PATH, proc, quota.CONFIG_PATH)
        node = ZNode(b"", self._ref_acl(READ_ACL_UNSAFE), 0, 0, 0, 0, aversion=-1)
        self.nodes[quota.CONFIG_PATH] = node

    def init_config(self, data: bytes, version: int, time_ms: int) -> None:
        """ZKDatabase.initConfigInZKDatabase: put an ensemble's active membership text in
        /zookeeper/config outside any txn (at start, and when a learner adopts its leader's
        config), with data version -1 and mzxid = the config version, as ZooKeeper does."""
        self.ensure_config_node()
        node = self.nodes[quota.CONFIG_PATH]
        last = node.data
        self._data_size += len(data) - (len(last) if last else 0)
        node.data = data
        node.version = -1
        node.mzxid = version
        node.mtime = time_ms

    @classmethod
    def empty_for_load(cls) -> "DataTree":
        """A tree without any node, to load a snapshot (which holds the root) into."""
        tree = cls()
        tree.nodes.clear()
        tree._acls.clear()
        tree._acl_uses.clear()
        tree._acl_memo.clear()
        tree._data_size = 0
        return tree

    def load_node(self, path: str, node: ZNode) -> None:
        """Add a node read from a snapshot; its parent must be loaded already.

        The root may be given as "" (ZooKeeper's snapshot spelling) or "/". The node's
        children are rebuilt from the paths that follow. Raises ValueError for an orphan.
        """
        node.child_paths = EMPTY_CHILDREN
        node.acl = self._ref_acl(node.acl)
        if path in ("", "/"):
            self.nodes["/"] = node
            return
        cut = path.rfind("/")
        parent_path = path[:cut] if cut > 0 else "/"
        parent = self.nodes.get(parent_path) if cut >= 0 else None
        if parent is None:
            raise ValueError(f"invalid snapshot: no parent for {path!r}")
        if path in self.nodes:
            raise ValueError(f"invalid snapshot: {path!r} twice")
        self._add_child(parent_path, parent, path)
        self.nodes[path] = node
        if node.ephemeral_owner:
            self._index_owner(path, node.ephemeral_owner)

    def load_fields(
        self, path: str, data: bytes | None, acl: tuple[ACL, ...], tail: tuple[int, ...]
    ) -> None:
        """load_node for a snapshot node's parsed fields, in one call (the hot loop of a
        restart): `tail` is (acl id, czxid, mzxid, ctime, mtime, version, cversion, aversion,
        ephemeralOwner, pzxid), store.snapshot's NodeSink. Same checks as load_node."""
        _acl_id, czxid, mzxid, ctime, mtime, version, cversion, aversion, owner, pzxid = tail
        # Equal stat values share one int object, as a live tree's do (a create sets czxid,
        # mzxid and pzxid from one zxid, ctime and mtime from one time): 32 bytes saved per
        # shared value, about 100 per node for the usual never-changed leaf.
        if mzxid == czxid:
            mzxid = czxid
        if pzxid == czxid:
            pzxid = czxid
        elif pzxid == mzxid:
            pzxid = mzxid
        if mtime == ctime:
            mtime = ctime
        # Nodes created in the same millisecond (many, under load) share one time object
        # too, as they do in a live tree: interned while loading, in a bounded table.
        times = self._load_times
        shared_time = times.get(ctime)
        if shared_time is None:
            if len(times) >= _LOAD_TIMES_MAX:
                times.clear()
            times[ctime] = ctime
        else:
            if mtime == ctime:
                mtime = shared_time
            ctime = shared_time
        # A snapshot hands the same ACL tuple for every node with the same ACL id.
        last = self._load_acl
        uses = self._acl_uses
        if last is not None and last[0] is acl and id(last[1]) in uses:
            shared = last[1]
            uses[id(shared)] += 1
        else:
            shared = self._ref_acl(acl)
            self._load_acl = (acl, shared)
        node = ZNode(
            data, shared, czxid, mzxid, ctime, mtime, version, cversion, aversion, owner, pzxid
        )
        nodes = self.nodes
        if path == "" or path == "/":
            nodes["/"] = node
            return
        cut = path.rfind("/")
        parent_path = path[:cut] if cut > 0 else "/"
        parent = nodes.get(parent_path) if cut >= 0 else None
        if parent is None:
            raise ValueError(f"invalid snapshot: no parent for {path!r}")
        if path in nodes:
            raise ValueError(f"invalid snapshot: {path!r} twice")
        kids = parent.child_paths
        if type(kids) is set:
            kids.add(path)
        else:
            parent.child_paths = {path}
        nodes[path] = node
        if owner:
            self._index_owner(path, owner)

    def finish_load(self) -> None:
        """Complete a snapshot load: quota usage and the data size, as ZooKeeper does."""
        self._load_acl = None
        self._load_times = {}
        self._data_size = self._compute_data_size()
        self._quotas.clear()
        if quota.QUOTA_PATH not in self.nodes:
            return
        end = "/" + quota.LIMIT_NODE
        for path, node in self.iter_preorder(quota.QUOTA_PATH):
            if not node.child_paths and path.endswith(end):
                real = path[len(quota.QUOTA_PATH) : path.index(end)]
                if real:
                    self._recount_quota(real)
                    self._quotas.add(real)

    def iter_preorder(self, top: str = "/") -> Iterator[tuple[str, ZNode]]:
        """Every node under `top` (itself first) in pre-order, as ZooKeeper serialises."""
        nodes = self.nodes
        stack = [top]
        while stack:
            path = stack.pop()
            node = nodes.get(path)
            if node is None:
                continue
            # The children are taken with the node, as ZooKeeper copies both under the
            # node's lock: a consumer that copies the node when it gets it sees one state.
            kids = list(node.child_paths) if node.child_paths else None
            yield path, node
            if kids:
                kids.reverse()
                stack.extend(kids)

    def acl_lists(self) -> list[tuple[ACL, ...]]:
        """The distinct ACLs nodes use."""
        return list(self._acls)

    # --- reads ---

    def get(self, path: str) -> ZNode | None:
        return self.nodes.get(path)

    def children_bytes(self, path: str, node: ZNode) -> bytes:
        """getChildren's reply body for `node` (at `path`): the jute vector<ustring> of its
        children's names in their set's order, cached until they change."""
        if path == "":
            path = "/"  # the root's other name (reads of "" answer for "/")
        kids = node.child_paths
        cache = self._children_jute
        hit = cache.get(path)
        if hit is not None and hit[0] is kids:
            return hit[1]
        encoded = encode_child_names(path, kids)
        if len(cache) >= _CHILDREN_CACHE_MAX:
            cache.clear()
        cache[path] = (kids, encoded)
        return encoded

    def ephemerals(self, session_id: int) -> set[str]:
        """A copy of the paths of the session's ephemeral nodes."""
        paths = self._ephemerals.get(session_id)
        return set(paths) if paths else set()

    def ephemerals_by_session(self) -> dict[int, set[str]]:
        """A copy of every session's ephemeral paths (dump)."""
        return {sid: set(paths) for sid, paths in self._ephemerals.items()}

    def ephemerals_count(self) -> int:
        """mntr's zk_ephemerals_count."""
        return sum(len(paths) for paths in self._ephemerals.values())

    def containers(self) -> set[str]:
        """A copy of the container nodes' paths (for the container reaper)."""
        return set(self._containers)

    def ttl_nodes(self) -> set[str]:
        """A copy of the TTL nodes' paths (for the reaper)."""
        return set(self._ttls)

    def count_nodes(self) -> int:
        """mntr's zk_znode_count. ZooKeeper's node map holds the root twice ("" and "/")."""
        return len(self.nodes) + 1

    def approximate_data_size(self) -> int:
        """mntr's zk_approximate_data_size: ZooKeeper's cached sum of path and data lengths.

        Like ZooKeeper's it counts the root twice, is recomputed only at startup and
        snapshot load, and ignores the tree's own rewrites of quota usage nodes.
        """
        return self._data_size

    def count_descendants(self, path: str) -> int:
        """getAllChildrenNumber: the number of nodes below `path` (0 if it is missing)."""
        if path == "/":
            return len(self.nodes) - 1
        count = -1
        for _ in self.iter_preorder(path):
            count += 1
        return max(count, 0)

    def max_prefix_with_quota(self, path: str) -> str | None:
        """The deepest path at or above `path` that has a quota, or None (never "/")."""
        quotas = self._quotas
        if not quotas:
            return None
        p = path
        while p != "/" and p:
            if p in quotas:
                return p
            cut = p.rfind("/")
            p = p[:cut] if cut > 0 else "/"
        return None

    # --- apply ---

    def apply_txn(self, hdr: TxnHeader, txn: TxnRecord | None) -> ApplyResult:
        """Apply one logged txn; the only way the tree changes.

        Never raises for what a txn asks (errors are in the result, as ZooKeeper's
        processTxn reports them); `txn` is None only for an old bodiless closeSession.
        """
        events: list[WatchEvent] = []
        zxid = hdr.zxid
        if hdr.type == _MULTI:
            res = self._apply_multi(hdr, cast(MultiTxn, txn), events)
        else:
            res = self._apply_one(hdr.client_id, zxid, hdr.time, hdr.type, txn, events)
        if zxid > self.last_zxid:
            self.last_zxid = zxid
        if events:
            return ApplyResult(res.err, res.path, res.stat, res.multi, tuple(events), res.type)
        return res

    def _apply_one(
        self,
        client_id: int,
        zxid: int,
        time: int,
        type_: int,
        txn: TxnRecord | None,
        events: list[WatchEvent],
    ) -> ApplyResult:
        if type_ in (_SET_DATA, _RECONFIG):
            sd = cast(SetDataTxn, txn)
            node = self.nodes.get(sd.path)
            if node is None:
                return ApplyResult(_NONODE, sd.path, None, (), (), type_)
            return ApplyResult(
                _OK, sd.path, self._set_data(sd.path, node, sd, zxid, time, events), (), (), type_
            )
        if type_ in (_CREATE, _CREATE2):
            ct = cast(CreateTxn, txn)
            owner = client_id if ct.ephemeral else 0
            return self._create(
                ct.path, ct.data, ct.acl, owner, ct.parent_cversion, zxid, time, type_, events
            )
        if type_ in (_DELETE, _DELETE_CONTAINER):
            path = cast(DeleteTxn, txn).path
            return ApplyResult(self._delete(path, zxid, events), path, None, (), (), type_)
        if type_ == _CREATE_CONTAINER:
            cc = cast(CreateContainerTxn, txn)
            return self._create(
                cc.path,
                cc.data,
                cc.acl,
                CONTAINER_OWNER,
                cc.parent_cversion,
                zxid,
                time,
                type_,
                events,
            )
        if type_ == _CREATE_TTL:
            tt = cast(CreateTTLTxn, txn)
            return self._create(
                tt.path,
                tt.data,
                tt.acl,
                ttl_owner(tt.ttl),
                tt.parent_cversion,
                zxid,
                time,
                type_,
                events,
            )
        if type_ == _SET_ACL:
            sa = cast(SetACLTxn, txn)
            node = self.nodes.get(sa.path)
            if node is None:
                return ApplyResult(_NONODE, sa.path, None, (), (), type_)
            self._unref_acl(node.acl)
            node.acl = self._ref_acl(sa.acl)
            node.aversion = sa.version
            return ApplyResult(_OK, sa.path, node.stat(), (), (), type_)
        if type_ == _ERROR:
            return ApplyResult(_err(cast(ErrorTxn, txn).err), "", None, (), (), type_)
        if type_ == _CHECK:
            return ApplyResult(_OK, cast(CheckVersionTxn, txn).path, None, (), (), type_)
        if type_ == _CREATE_SESSION:
            self.sessions[client_id] = cast(CreateSessionTxn, txn).timeout
            return ApplyResult(_OK, "", None, (), (), type_)
        if type_ == _CLOSE_SESSION:
            self._close_session(client_id, zxid, cast(CloseSessionTxn | None, txn), events)
            return ApplyResult(_OK, "", None, (), (), type_)
        # ZooKeeper ignores txn types it has no case for.
        log.warning("ignoring txn of unknown type %d at zxid %#x", type_, zxid)
        return ApplyResult(_OK, "", None, (), (), type_)

    def _apply_multi(
        self, hdr: TxnHeader, multi: MultiTxn, events: list[WatchEvent]
    ) -> ApplyResult:
        # A multi holding an ErrorTxn failed in prep: nothing applies; the ops before the
        # failing one report OK, those after it RUNTIMEINCONSISTENCY (ZooKeeper's rule).
        failed = False
        for sub in multi.txns:
            if sub.type == _ERROR:
                failed = True
                break
        post_failed = False
        results: list[ApplyResult] = []
        err = _OK
        for sub in multi.txns:
            type_ = sub.type
            rec: TxnRecord
            if type_ == _ERROR:
                post_failed = True
            if failed and type_ != _ERROR:
                rec = ErrorTxn(Err.RUNTIMEINCONSISTENCY if post_failed else _OK)
                type_ = OpCode.ERROR
            else:
                try:
                    rec = decode_sub_txn(sub.type, sub.data)
                except (TxnTypeError, jute.DecodeError) as exc:
                    # ZooKeeper stops at such an op too (its IOException ends processTxn).
                    log.error("bad sub-txn in multi at zxid %#x: %s", hdr.zxid, exc)
                    break
            res = self._apply_one(hdr.client_id, hdr.zxid, hdr.time, type_, rec, events)
            results.append(res)
            if res.err != _OK and err == _OK:
                err = res.err
        return ApplyResult(err, "", None, tuple(results), (), OpCode.MULTI)

    # --- the operations ---

    def _create(
        self,
        path: str,
        data: bytes | None,
        acl: tuple[ACL, ...],
        owner: int,
        parent_cversion: int,
        zxid: int,
        time: int,
        type_: int,
        events: list[WatchEvent],
    ) -> ApplyResult:
        parent_path, name = _split(path)
        nodes = self.nodes
        parent = nodes.get(parent_path)
        if parent is None:
            return ApplyResult(_NONODE, path, None, (), (), type_)
        existing = nodes.get(path)
        if existing is not None and path not in parent.child_paths:
            # An orphan: replaying a delete over a fuzzy snapshot can remove a parent whose
            # snapshot copy already had this child. ZooKeeper decides existence by the
            # parent's child list, so the create goes ahead and replaces the orphan.
            self._drop_orphan(path, existing)
            existing = None
        if existing is not None:
            # A replayed create: ZooKeeper still takes the txn's ACL, and moves the parent's
            # cversion/pzxid up. ZooKeeper does the latter only for type CREATE; we do it for
            # every kind of create, so that a replay over a fuzzy snapshot (which may hold the
            # child but not the parent's new cversion) converges whatever created the node.
            self._unref_acl(existing.acl)
            existing.acl = self._ref_acl(acl)
            self._raise_cversion(parent, parent_cversion, zxid)
            return ApplyResult(_NODEEXISTS, path, None, (), (), type_)
        self._raise_cversion(parent, parent_cversion, zxid)
        node = ZNode(data, self._ref_acl(acl), zxid, zxid, time, time, 0, 0, 0, owner, zxid)
        # The same str object keys the table and sits in the parent's set (one string).
        self._add_child(parent_path, parent, path)
        nodes[path] = node
        self._data_size += len(path) + (len(data) if data else 0)
        if owner:
            self._index_owner(path, owner)
        if self._quotas or parent_path.startswith(quota.QUOTA_PATH):
            self._quota_created(path, parent_path, name, data)
        self.watches.created(path, parent_path, zxid, node.acl, parent.acl, events)
        return ApplyResult(_OK, path, node.stat(), (), (), type_)

    @staticmethod
    def _raise_cversion(parent: ZNode, parent_cversion: int, zxid: int) -> None:
        # -1 (old logs) means "one more than now"; either way only move forward, so a
        # replayed create never winds a newer snapshot's value back.
        if parent_cversion == -1:
            parent_cversion = _java_int(parent.cversion + 1)
        if parent_cversion > parent.cversion:
            parent.cversion = parent_cversion
            parent.pzxid = zxid

    def _drop_orphan(self, path: str, node: ZNode) -> None:
        del self.nodes[path]
        self._unref_acl(node.acl)
        data = node.data
        self._data_size -= len(path) + (len(data) if data else 0)
        if node.ephemeral_owner:
            self._unindex_owner(path, node.ephemeral_owner)

    def _delete(self, path: str, zxid: int, events: list[WatchEvent]) -> Err:
        parent_path, name = _split(path)
        nodes = self.nodes
        parent = nodes.get(parent_path)
        if parent is None:
            return _NONODE
        # The parent is updated even when the child is already gone (a replay over a
        # fuzzy snapshot); its pzxid only moves forward.
        self._remove_child(parent_path, parent, path)
        if zxid > parent.pzxid:
            parent.pzxid = zxid
        node = nodes.pop(path, None)
        if node is None:
            return _NONODE
        if self._children_jute:
            self._children_jute.pop(path, None)
        self._unref_acl(node.acl)
        data = node.data
        self._data_size -= len(path) + (len(data) if data else 0)
        if node.ephemeral_owner:
            self._unindex_owner(path, node.ephemeral_owner)
        if self._quotas:
            if name == quota.LIMIT_NODE and parent_path.startswith(quota.QUOTA_PATH + "/"):
                self._quotas.discard(parent_path[len(quota.QUOTA_PATH) :])
            prefix = self.max_prefix_with_quota(path)
            if prefix is not None:
                self._add_quota_usage(prefix, -1, -(len(data) if data else 0))
        self.watches.deleted(path, parent_path, zxid, node.acl, parent.acl, events)
        return _OK

    def _set_data(
        self,
        path: str,
        node: ZNode,
        txn: SetDataTxn,
        zxid: int,
        time: int,
        events: list[WatchEvent],
    ) -> Stat:
        last = node.data
        data = txn.data
        node.data = data
        node.mtime = time
        node.mzxid = zxid
        node.version = txn.version
        diff = (len(data) if data else 0) - (len(last) if last else 0)
        self._data_size += diff
        if self._quotas:
            prefix = self.max_prefix_with_quota(path)
            if prefix is not None:
                self._add_quota_usage(prefix, 0, diff)
        self.watches.data_changed(path, zxid, node.acl, events)
        return node.stat()

    def _close_session(
        self,
        session_id: int,
        zxid: int,
        txn: CloseSessionTxn | None,
        events: list[WatchEvent],
    ) -> None:
        self.sessions.pop(session_id, None)
        # Taken out first, as ZooKeeper does, so the deletes below do not edit it.
        local = self._ephemerals.pop(session_id, None)
        listed = txn.paths_to_delete if txn is not None else ()
        for path in listed:
            # Deleted whoever owns them now (the txn is the truth), NONODE ignored.
            if self._delete(path, zxid, events) != _OK:
                log.debug("closeSession %#x: %s already gone", session_id, path)
        if not local:
            return
        extra = local.difference(listed)
        if extra and txn is not None:
            log.warning(
                "closeSession %#x at zxid %#x: ephemerals not in the txn: %s",
                session_id,
                zxid,
                sorted(extra),
            )
        for path in sorted(extra):  # sorted: a deterministic event order
            self._delete(path, zxid, events)

    # --- indexes ---

    def _add_child(self, parent_path: str, parent: ZNode, path: str) -> None:
        kids = parent.child_paths
        if self._children_jute:
            self._children_jute.pop(parent_path, None)
        if type(kids) is set:
            kids.add(path)
        else:
            parent.child_paths = {path}

    def _remove_child(self, parent_path: str, parent: ZNode, path: str) -> None:
        kids = parent.child_paths
        if path in kids:
            if self._children_jute:
                self._children_jute.pop(parent_path, None)
            if len(kids) == 1:
                parent.child_paths = EMPTY_CHILDREN
            else:
                cast(set[str], kids).discard(path)

    def _index_owner(self, path: str, owner: int) -> None:
        if owner == 0:
            return
        if owner == CONTAINER_OWNER:
            self._containers.add(path)
        elif owner < 0 and is_ttl_owner(owner):
            self._ttls.add(path)
        else:
            paths = self._ephemerals.get(owner)
            if paths is None:
                paths = self._ephemerals[owner] = set()
            paths.add(path)

    def _unindex_owner(self, path: str, owner: int) -> None:
        if owner == CONTAINER_OWNER:
            self._containers.discard(path)
        elif owner < 0 and is_ttl_owner(owner):
            self._ttls.discard(path)
        else:
            paths = self._ephemerals.get(owner)
            if paths is not None:
                paths.discard(path)
                if not paths:
                    del self._ephemerals[owner]

    def _ref_acl(self, acl: tuple[ACL, ...]) -> tuple[ACL, ...]:
        uses = self._acl_uses
        hit = self._acl_memo.get(id(acl))
        if hit is not None and hit[0] is acl:
            shared = hit[1]
            count = uses.get(id(shared))
            if count is not None:
                uses[id(shared)] = count + 1
                return shared
        found = self._acls.get(acl)
        if found is None:
            shared = self._acls[acl] = acl
            uses[id(acl)] = 1
        else:
            shared = found
            uses[id(shared)] += 1
        memo = self._acl_memo
        if len(memo) >= _ACL_MEMO_MAX:
            memo.clear()
        memo[id(acl)] = (acl, shared)
        return shared

    def _unref_acl(self, acl: tuple[ACL, ...]) -> None:
        uses = self._acl_uses
        count = uses.get(id(acl))
        if count is None:
            # Not the shared tuple itself (a node given an equal copy): find it by value.
            found = self._acls.get(acl)
            if found is None:
                return
            acl = found
            count = uses[id(acl)]
        if count <= 1:
            del uses[id(acl)]
            del self._acls[acl]
        else:
            uses[id(acl)] = count - 1

    # --- quotas ---

    def _quota_created(self, path: str, parent_path: str, name: str, data: bytes | None) -> None:
        if parent_path == quota.QUOTA_PATH or parent_path.startswith(quota.QUOTA_PATH + "/"):
            real = parent_path[len(quota.QUOTA_PATH) :]
            if name == quota.LIMIT_NODE:
                # (ZooKeeper fails the whole apply for /zookeeper/quota/zookeeper_limits.)
                if real:
                    self._quotas.add(real)
            elif name == quota.STAT_NODE:
                self._recount_quota(real)
        prefix = self.max_prefix_with_quota(path)
        if prefix is not None:
            self._add_quota_usage(prefix, 1, len(data) if data else 0)

    def _add_quota_usage(self, prefix: str, count_diff: int, bytes_diff: int) -> None:
        # ZooKeeper rewrites the usage node's data in place: no version, mzxid or event.
        node = self.nodes.get(quota.stat_path(prefix))
        if node is None:
            log.error("missing quota stat node for %s", prefix)
            return
        node.data = quota.add_usage(node.data, count_diff, bytes_diff)

    def _recount_quota(self, path: str) -> None:
        # "" (a stats node right under /zookeeper/quota) counts the whole tree, as in
        # ZooKeeper, where "" names the root.
        count = 0
        size = 0
        for _, node in self.iter_preorder(path or "/"):
            count += 1
            size += len(node.data) if node.data else 0
        stat_node = self.nodes.get(quota.stat_path(path))
        if stat_node is None:
            log.warning("missing quota stat node for %s", path)
            return
        stat_node.data = quota.format_stats({"count": count, "bytes": size})

    def _compute_data_size(self) -> int:
        # ZooKeeper also has the root under "", so its data counts twice.
        total = 0
        for path, node in self.nodes.items():
            total += len(path) + (len(node.data) if node.data else 0)
        root = self.nodes.get("/")
        if root is not None and root.data:
            total += len(root.data)
        return total
