"""The snapshot a leader streams after a SNAP packet, and the learner's reader for it.

What follows the SNAP QuorumPacket on the quorum stream (LearnerHandler.syncFollower:
`ZKDatabase.serializeSnapshot(oa)` then `oa.writeString("BenWasHere", "signature")`, read by
Learner.syncWithLeader with `ZKDatabase.deserializeSnapshot(ia)` then `ia.readString`):

    int count, then count x (long session id, int timeout ms)       SerializeUtils
    int count, then count x (long acl id, vector<ACL>)             ReferenceCountedACLCache
    pre-order nodes: (ustring path, DataNode{buffer data, long acl id, StatPersisted})
        the root's path is "", and a lone path "/" ends the list     DataTree.serialize
    ustring "BenWasHere"                                             the signature

It is the body of a snapshot file without the file header, the Adler32 seal and the digest
section; no length prefix frames it, so the reader must parse it to find its end.

- `serialize_snapshot(sessions, nodes)` gives those bytes (without the signature, which
  `quorum.zab_packets.snapshot_trailer` appends). With `java_order=True` sessions, ACL table
  and children come in the order a Java HashMap/HashSet freshly built from them iterates,
  which is the order ZooKeeper's serializeSnapshot writes a tree it just deserialized: then the
  bytes are identical to ZooKeeper's (the interop test checks this with ZooKeeper's own code).
  The default order (sorted) is cheaper and equally valid: ZooKeeper reads any pre-order.
- `SnapshotStreamReader` parses incrementally: `feed(chunk)` any number of times (one byte at a
  time works), `done` once the end marker (and, if asked, the signature) was read; `result()`,
  `unused()` (bytes fed past the end: the packets after the signature) and, with keep=True,
  `stream_bytes()` (the stream without the signature, for Zab's PacketIn.snapshot). It is
  total and bounded: every length is checked against jute.maxbuffer before anything is
  buffered, one record at most is held (unless keep=True), and the only exception it raises is
  SnapshotStreamError (a jute.ProtocolError: close the connection).
- Strings are written as real UTF-8. ZooKeeper's jute writes characters outside the BMP as
  CESU-8 (each surrogate on its own, which its own UTF-8 reader then garbles); for such names
  only, our bytes differ from ZooKeeper's, and ZooKeeper reads ours correctly.
- `write_snapshot_stream(snap_dir, zxid, stream)` writes `snapshot.<zxid>` from such bytes
  (header + stream + seal + empty digest + seal), atomically and durably.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from corral import limits
from corral.proto import jute
from corral.proto.records import ACL, FileHeader, Id, StatPersisted
from corral.store.layout import SNAPSHOT_TMP_PREFIX, fsync_path, snapshot_name
from corral.store.snapshot import (
    DIGEST_VERSION,
    MISSING_ACL,
    NODES_END,
    OPEN_ACL_ID,
    OPEN_ACL_UNSAFE,
    SNAP_DBID,
    SNAP_MAGIC,
    SNAP_VERSION,
    AclNumbering,
    NodeView,
    SnapshotError,
    SnapshotNode,
    compressed_writer,
    encode_acl_table_into,
    encode_node_into,
    encode_sessions_into,
    walk_preorder,
)

SIGNATURE = b"BenWasHere"
_K = TypeVar("_K", int, str)
# A string or buffer longer than this is refused (BinaryInputArchive.checkLength).
_LENGTH_MAX = limits.jute_maxbuffer_bytes + limits.jute_maxbuffer_extrasize_bytes
_INT = struct.Struct(">i")
_LONG = struct.Struct(">q")
_SESSION = struct.Struct(">qi")
_NODE_TAIL = struct.Struct(">qqqqqiiiqq")
_ACL_HEAD = struct.Struct(">qi")
# Keep consumed bytes in the buffer up to this much before compacting it.
_COMPACT_BYTES = 1 << 16


class SnapshotStreamError(jute.ProtocolError, SnapshotError):
    """The bytes after a SNAP packet are not a snapshot ZooKeeper would accept."""


# ---------------------------------------------------------------------------------------------
# Java's HashMap iteration order


def _java_int(value: int) -> int:
    return value & 0xFFFFFFFF


def java_string_hash(s: str) -> int:
    """String.hashCode (over UTF-16 code units), as an unsigned 32-bit value."""
    units = s.encode("utf-16-be", "surrogatepass")
    h = 0
    for i in range(0, len(units), 2):
        h = (31 * h + (units[i] << 8 | units[i + 1])) & 0xFFFFFFFF
    return h


def java_long_hash(value: int) -> int:
    """Long.hashCode: (int)(v ^ (v >>> 32)), as an unsigned 32-bit value."""
    v = value & 0xFFFFFFFFFFFFFFFF
    return _java_int(v ^ (v >> 32))


def _spread(h: int) -> int:
    # HashMap.hash: h ^ (h >>> 16)
    return h ^ (h >> 16)


def _table_size_for(n: int) -> int:
    cap = 1
    while cap < n:
        cap <<= 1
    return cap


def copy_capacity(size: int) -> int:
    """The table size of `new HashMap<>(map)` for a map of `size` entries."""
    return _table_size_for(int(size / 0.75 + 1.0)) if size else 0


def grown_capacity(size: int, initial: int = 16) -> int:
    """The table size of a HashMap/HashSet that grew from `initial` by `size` puts."""
    if size == 0:
        return 0
    cap = initial
    while size > cap * 3 // 4:
        cap <<= 1
    return cap


def java_hash_order(keys: list[_K], capacity: int) -> list[_K]:
    """Keys in the iteration order of a HashMap with this table size into which they were put
    in the given order (bucket by bucket; insertion order within a bucket, which a resize
    keeps). Exact unless eight or more keys share a bucket (Java then makes it a tree)."""
    mask = capacity - 1

    def bucket(key: int | str) -> int:
        h = java_string_hash(key) if isinstance(key, str) else java_long_hash(key)
        return _spread(h) & mask

    # sorted() is stable: within a bucket the given order stays.
    return sorted(keys, key=bucket)


def _java_children(names: list[str]) -> list[str]:
    # DataNode.addChild makes `new HashSet<String>(8)`; the set then only grows.
    names.sort()
    return java_hash_order(names, grown_capacity(len(names), 8))


# ---------------------------------------------------------------------------------------------
# Writing


def serialize_snapshot(
    sessions: Mapping[int, int],
    nodes: Mapping[str, NodeView],
    *,
    java_order: bool = False,
    acl_ids: Mapping[tuple[ACL, ...], int] | None = None,
) -> bytes:
    """ZKDatabase.serializeSnapshot of a tree: sessions, ACL table, nodes, "/".

    `nodes` is the tree's node table (or a copy of it, for a fuzzy snapshot taken while the
    tree changes: see snapshot.walk_preorder). `acl_ids` pins ACL ids (ZooKeeper's, when
    re-serializing a tree read from its snapshot); others are numbered in order of first use.
    """
    numbering = AclNumbering(acl_ids)
    body = bytearray()
    walk = walk_preorder(nodes, _java_children) if java_order else walk_preorder(nodes)
    for path, node in walk:
        encode_node_into(body, path, node, numbering.id_of(node.acl))
    body += NODES_END
    head = bytearray()
    sids = sorted(sessions)
    table = sorted(numbering.table())
    if java_order:
        sids = java_hash_order(sids, copy_capacity(len(sids)))
        by_id = dict(table)
        order = java_hash_order([i for i, _acl in table], copy_capacity(len(table)))
        table = [(i, by_id[i]) for i in order]
    encode_sessions_into(head, sessions, sids)
    encode_acl_table_into(head, table)
    return bytes(head + body)


def write_snapshot_stream(
    snap_dir: Path, zxid: int, stream: bytes, *, fsync: bool = True, compression: str = ""
) -> Path:
    """Write `snapshot.<zxid>` whose body is `stream` (as serialize_snapshot makes it and a
    leader sends it, without the signature); temporary name, fsync, rename, fsync dir.
    `compression` as for snapshot.write_snapshot."""
    head = jute.encode(FileHeader(SNAP_MAGIC, SNAP_VERSION, SNAP_DBID))
    crc = zlib.adler32(stream, zlib.adler32(head))
    seal = _LONG.pack(crc) + _INT.pack(1) + b"/"
    crc = zlib.adler32(seal, crc)
    digest = _LONG.pack(0) + _INT.pack(DIGEST_VERSION) + _LONG.pack(0)
    crc = zlib.adler32(digest, crc)
    final = snap_dir / snapshot_name(zxid, compression)
    tmp = snap_dir / f"{SNAPSHOT_TMP_PREFIX}{zxid:x}"
    with open(tmp, "wb") as f:
        sink = compressed_writer(f, compression)
        for part in (head, stream, seal, digest, _LONG.pack(crc) + _INT.pack(1) + b"/"):
            sink.write(part)
        if sink is not f:
            sink.close()  # the gzip trailer; `f` stays open
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    os.replace(tmp, final)
    if fsync:
        fsync_path(snap_dir)
    return final


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True, slots=True)
class StreamSnapshot:
    """A parsed snapshot stream: what a learner loads as its tree."""

    sessions: dict[int, int]
    acls: dict[int, tuple[ACL, ...]]
    nodes: list[SnapshotNode]
    # Bytes of the stream proper (without the signature): where the signature starts.
    length: int


class _Need(Exception):
    """Not enough bytes buffered yet for the next record."""


_SESSIONS_COUNT, _SESSIONS, _ACL_COUNT, _ACLS, _NODES, _SIGNATURE, _DONE = range(7)


class SnapshotStreamReader:
    """Incremental parser of a snapshot stream (see the module docstring)."""

    def __init__(
        self, *, signature: bool = True, keep: bool = False, length_max: int = _LENGTH_MAX
    ) -> None:
        self._want_signature = signature
        # keep: also hand back the stream's own bytes (what Zab's SaveSnapshot/LoadSnapshot
        # carry), holding them until the end instead of discarding parsed records.
        self._keep = keep
        self._raw: bytes | None = None
        self._length_max = length_max
        self._buf = bytearray()
        self._pos = 0
        self._base = 0  # stream offset of _buf[0]
        self._state = _SESSIONS_COUNT
        self._left = 0
        self._sessions: dict[int, int] = {}
        self._acls: dict[int, tuple[ACL, ...]] = {}
        self._nodes: list[SnapshotNode] = []
        self._known: set[str] = set()
        self._length = 0

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def feed(self, data: bytes | bytearray | memoryview) -> bool:
        """Take more bytes; True once the snapshot (and signature) is complete."""
        if self._state == _DONE:
            self._buf += data
            return True
        self._buf += data
        try:
            while self._state != _DONE:
                self._step()
        except _Need:
            if len(self._buf) - self._pos > 2 * self._length_max + 1024:
                raise SnapshotStreamError("a snapshot record exceeds jute.maxbuffer") from None
        if self._state == _DONE and self._keep and self._raw is None:
            self._raw = bytes(self._buf[: self._length - self._base])
        if (self._pos > _COMPACT_BYTES and not self._keep) or self._state == _DONE:
            del self._buf[: self._pos]
            self._base += self._pos
            self._pos = 0
        return self._state == _DONE

    def result(self) -> StreamSnapshot:
        if self._state != _DONE:
            raise SnapshotStreamError("the snapshot stream is incomplete")
        return StreamSnapshot(self._sessions, self._acls, self._nodes, self._length)

    def stream_bytes(self) -> bytes:
        """The snapshot stream itself, without the signature (needs keep=True)."""
        if self._raw is None:
            raise SnapshotStreamError("the stream is incomplete or was not kept")
        return self._raw

    def unused(self) -> bytes:
        """Bytes fed after the end of the snapshot (and signature): the next packets."""
        if self._state != _DONE:
            return b""
        return bytes(self._buf[self._pos :])

    # -- the records ---------------------------------------------------------------------

    def _int_at(self, off: int) -> int:
        if len(self._buf) - off < 4:
            raise _Need
        return int(_INT.unpack_from(self._buf, off)[0])

    def _count(self, what: str) -> int:
        n = self._int_at(self._pos)
        if n < 0:
            raise SnapshotStreamError(f"negative {what} count {n}")
        self._pos += 4
        return n

    def _bytes_at(self, off: int, what: str) -> tuple[bytes | None, int]:
        """A jute buffer/ustring at `off`: (value or None for -1, end offset)."""
        n = self._int_at(off)
        if n < -1 or n > self._length_max:
            raise SnapshotStreamError(f"unreasonable {what} length {n}")
        if n == -1:
            return None, off + 4
        if len(self._buf) - off - 4 < n:
            raise _Need
        return bytes(self._buf[off + 4 : off + 4 + n]), off + 4 + n

    def _step(self) -> None:
        state = self._state
        if state == _SESSIONS_COUNT:
            self._left = self._count("session")
            self._state = _SESSIONS
        elif state == _SESSIONS:
            while self._left:
                if len(self._buf) - self._pos < _SESSION.size:
                    raise _Need
                sid, timeout = _SESSION.unpack_from(self._buf, self._pos)
                self._pos += _SESSION.size
                self._sessions[sid] = timeout
                self._left -= 1
            self._state = _ACL_COUNT
        elif state == _ACL_COUNT:
            self._left = self._count("ACL table")
            self._state = _ACLS
        elif state == _ACLS:
            while self._left:
                self._acl_entry()
                self._left -= 1
            self._state = _NODES
        elif state == _NODES:
            while self._state == _NODES:
                self._node()
        elif state == _SIGNATURE:
            raw, end = self._bytes_at(self._pos, "signature")
            if raw != SIGNATURE:
                raise SnapshotStreamError(f"missing signature, got {raw!r}")
            self._pos = end
            self._state = _DONE

    def _acl_entry(self) -> None:
        off = self._pos
        if len(self._buf) - off < _ACL_HEAD.size:
            raise _Need
        acl_id, count = _ACL_HEAD.unpack_from(self._buf, off)
        off += _ACL_HEAD.size
        if count < 0 or count > self._length_max // 12:
            raise SnapshotStreamError(f"unreasonable ACL vector length {count}")
        acls: list[ACL] = []
        for _ in range(count):
            perms = self._int_at(off)
            scheme, off = self._bytes_at(off + 4, "ACL scheme")
            ident, off = self._bytes_at(off, "ACL id")
            acls.append(ACL(perms, Id(_text(scheme), _text(ident))))
        self._pos = off
        self._acls[acl_id] = tuple(acls)

    def _node(self) -> None:
        raw, off = self._bytes_at(self._pos, "path")
        path = _text(raw)
        if path == "/":
            self._pos = off
            self._length = self._base + off
            if not self._nodes:
                raise SnapshotStreamError("the snapshot has no root node")
            self._state = _SIGNATURE if self._want_signature else _DONE
            return
        data, off = self._bytes_at(off, "node data")
        if len(self._buf) - off < _NODE_TAIL.size:
            raise _Need
        acl_id, *stat = _NODE_TAIL.unpack_from(self._buf, off)
        off += _NODE_TAIL.size
        if not self._nodes:
            # DataTree.deserialize takes a path without "/" as the root; ZooKeeper writes "".
            if path != "":
                raise SnapshotStreamError(f"the first node is {path!r}, not the root")
            path = "/"
        else:
            cut = path.rfind("/")
            parent = path[:cut] if cut > 0 else "/"
            if cut < 0 or parent not in self._known or path in self._known or path == "/":
                raise SnapshotStreamError(f"node {path!r} out of order or without its parent")
        self._known.add(path)
        acl = self._acls.get(acl_id)
        if acl is None:
            acl = OPEN_ACL_UNSAFE if acl_id == OPEN_ACL_ID else MISSING_ACL
        self._nodes.append(SnapshotNode(path, data, acl, StatPersisted(*stat)))
        self._pos = off


def _text(raw: bytes | None) -> str:
    return "" if raw is None else raw.decode("utf-8", "replace")


def parse_snapshot_stream(data: bytes, *, signature: bool = False) -> StreamSnapshot:
    """Parse a whole stream; SnapshotStreamError if it is incomplete or has bytes after it."""
    reader = SnapshotStreamReader(signature=signature)
    if not reader.feed(data):
        raise SnapshotStreamError("the snapshot stream is incomplete")
    if reader.unused():
        raise SnapshotStreamError(f"{len(reader.unused())} bytes after the snapshot stream")
    return reader.result()
