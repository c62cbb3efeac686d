"""One znode: data, ACL, its children and the stat fields as ZooKeeper stores them.

ZooKeeper keeps a StatPersisted per node and derives the client's Stat on every read
(DataNode.copyStat). We do the same, so the stored fields are what snapshots hold:

- `cversion` is the stored count of child *creations*; clients see `2 * cversion -
  numChildren` (creations plus deletions), wrapped to a Java int.
- `ephemeral_owner` is raw: a session id for ephemerals, 0 for persistent nodes,
  0x8000000000000000 for containers, 0xFF00000000000000 | ttl for TTL nodes. Clients see 0
  for containers and TTL nodes.

A node holds its children as their full paths, the very str objects that key DataTree.nodes:
a separate name string per child would cost 50-60 bytes per znode (an eighth of a small
znode). `children` gives the names when they are needed (tests, dumps); the hot paths use
`child_paths` and `encode_child_names`.

Only the DataTree mutates a ZNode (and only from apply_txn or snapshot loading); everyone
else reads it.
"""

import struct
from collections.abc import Set

from corral.proto.records import ACL, Stat

# Raw ephemeral_owner encodings (ZooKeeper's EphemeralType).
CONTAINER_OWNER = -0x8000000000000000  # Long.MIN_VALUE, 0x8000000000000000 as a signed long
_EXTENDED_MASK = -0x0100000000000000  # 0xFF00000000000000 as a signed long
_RESERVED_BITS_MASK = 0x00FFFF0000000000
_EXTENDED_VALUE_MASK = 0x000000FFFFFFFFFF  # the TTL in ms (at most 2^40 - 1)
TTL_MAX_MS = _EXTENDED_VALUE_MASK

# The childless nodes (most of them) share this instead of an empty set each: an empty
# set costs 216 bytes, which matters at a million znodes.
EMPTY_CHILDREN: frozenset[str] = frozenset()
_EMPTY_VECTOR = b"\x00\x00\x00\x00"

# The client-visible Stat as jute bytes (czxid, mzxid, ctime, mtime, version, cversion,
# aversion, ephemeralOwner, dataLength, numChildren, pzxid).
_STAT = struct.Struct(">qqqqiiiqiiq")
_INT = struct.Struct(">i")


def ttl_owner(ttl_ms: int) -> int:
    """The raw ephemeral_owner of a TTL node (EphemeralType.TTL.toEphemeralOwner)."""
    if not 0 < ttl_ms <= TTL_MAX_MS:
        raise ValueError(f"ttl must be positive and at most {TTL_MAX_MS}: {ttl_ms}")
    return _EXTENDED_MASK | ttl_ms


def is_container_owner(owner: int) -> bool:
    return owner == CONTAINER_OWNER


def is_ttl_owner(owner: int) -> bool:
    """True for the TTL encoding: top byte 0xFF, the two reserved bytes zero.

    ZooKeeper only decodes this with extended types enabled (and refuses to start a server
    whose id would make such session ids); we always decode it, see DataTree's docstring.
    """
    return owner & _EXTENDED_MASK == _EXTENDED_MASK and owner & _RESERVED_BITS_MASK == 0


def ttl_of(owner: int) -> int:
    """The TTL in ms of a TTL node's raw owner (0 for other nodes)."""
    return owner & _EXTENDED_VALUE_MASK if is_ttl_owner(owner) else 0


def session_owner(owner: int) -> int:
    """The owning session of a raw owner, or 0 (persistent, container and TTL nodes)."""
    if owner >= 0:
        return owner
    if owner == CONTAINER_OWNER or is_ttl_owner(owner):
        return 0
    return owner


def _java_int(v: int) -> int:
    return ((v + 0x80000000) & 0xFFFFFFFF) - 0x80000000


class ZNode:
    """A znode as stored. Mutable, slotted; one per path in DataTree.nodes."""

    __slots__ = (
        "acl",
        "aversion",
        "child_paths",
        "ctime",
        "cversion",
        "czxid",
        "data",
        "ephemeral_owner",
        "mtime",
        "mzxid",
        "pzxid",
        "version",
    )

    data: bytes | None
    acl: tuple[ACL, ...]
    # The children's full paths (the str objects that key DataTree.nodes, shared). Read-only
    # outside the DataTree; a shared empty frozenset while the node has none.
    child_paths: Set[str]
    czxid: int
    mzxid: int
    ctime: int
    mtime: int
    version: int
    cversion: int
    aversion: int
    ephemeral_owner: int
    pzxid: int

    def __init__(
        self,
        data: bytes | None,
        acl: tuple[ACL, ...],
        czxid: int,
        mzxid: int,
        ctime: int,
        mtime: int,
        version: int = 0,
        cversion: int = 0,
        aversion: int = 0,
        ephemeral_owner: int = 0,
        pzxid: int | None = None,
    ) -> None:
        self.data = data
        self.acl = acl
        self.child_paths = EMPTY_CHILDREN
        self.czxid = czxid
        self.mzxid = mzxid
        self.ctime = ctime
        self.mtime = mtime
        self.version = version
        self.cversion = cversion
        self.aversion = aversion
        self.ephemeral_owner = ephemeral_owner
        self.pzxid = czxid if pzxid is None else pzxid

    @property
    def children(self) -> frozenset[str]:
        """The children's names: a new set per call, O(children) (hot paths use
        child_paths)."""
        return frozenset([p[p.rfind("/") + 1 :] for p in self.child_paths])

    def client_owner(self) -> int:
        """ephemeralOwner as clients see it: the session of an ephemeral, else 0."""
        owner = self.ephemeral_owner
        if owner >= 0:
            return owner
        return session_owner(owner)

    def stat(self) -> Stat:
        """The client-facing Stat (DataNode.copyStat)."""
        data = self.data
        n = len(self.child_paths)
        return Stat(
            self.czxid,
            self.mzxid,
            self.ctime,
            self.mtime,
            self.version,
            _java_int(self.cversion * 2 - n),
            self.aversion,
            self.client_owner(),
            0 if data is None else len(data),
            n,
            self.pzxid,
        )

    def stat_bytes(self) -> bytes:
        """The jute encoding of stat(), without building a Stat (the read hot path)."""
        data = self.data
        n = len(self.child_paths)
        owner = self.ephemeral_owner
        return _STAT.pack(
            self.czxid,
            self.mzxid,
            self.ctime,
            self.mtime,
            self.version,
            _java_int(self.cversion * 2 - n),
            self.aversion,
            owner if owner >= 0 else session_owner(owner),
            0 if data is None else len(data),
            n,
            self.pzxid,
        )

    def copy(self) -> "ZNode":
        """A detached copy (same data/ACL objects, a copy of the children's paths)."""
        c = ZNode(
            self.data,
            self.acl,
            self.czxid,
            self.mzxid,
            self.ctime,
            self.mtime,
            self.version,
            self.cversion,
            self.aversion,
            self.ephemeral_owner,
            self.pzxid,
        )
        if self.child_paths:
            c.child_paths = set(self.child_paths)
        return c

    def __repr__(self) -> str:
        return (
            f"ZNode(data={self.data!r}, czxid={self.czxid:#x}, mzxid={self.mzxid:#x},"
            f" pzxid={self.pzxid:#x}, version={self.version}, cversion={self.cversion},"
            f" aversion={self.aversion}, owner={self.ephemeral_owner:#x},"
            f" children={sorted(self.children)})"
        )


def encode_child_names(path: str, child_paths: Set[str]) -> bytes:
    """getChildren's reply body: the jute vector<ustring> of the names of the children of
    the node at `path`, in the set's iteration order."""
    if not child_paths:
        return _EMPTY_VECTOR
    cut = 1 if path == "/" else len(path) + 1
    pack = _INT.pack
    parts = [pack(len(child_paths))]
    for child in child_paths:
        raw = child[cut:].encode("utf-8", "surrogatepass")
        parts.append(pack(len(raw)))
        parts.append(raw)
    return b"".join(parts)
