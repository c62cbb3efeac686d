"""ZooKeeper's snapshot format (FileSnap, SnapStream, DataTree.serialize), byte for byte.

A snapshot file `snapshot.<zxid hex>` is one Adler32-checked stream:

    FileHeader{magic "ZKSN", version 2, dbid -1}
    int count, then count x (long session id, int timeout ms)
    int count, then count x (long acl id, vector<ACL>)          ReferenceCountedACLCache
    pre-order nodes: (ustring path, DataNode{buffer data, long acl id, StatPersisted})
        the root's path is "" and a lone path "/" ends the list
    seal: long Adler32 of every byte so far, ustring "/"
    3.6+: ZxidDigest{long zxid, int version, long digest}, seal (Adler32 still running)
    3.9+: long lastProcessedZxid, seal

ZooKeeper 3.8 writes the first two sections and reads the second only when present; 3.9 reads
the third only when present; both ignore bytes they do not expect. We write exactly what 3.8
writes (with an empty digest, zxid 0, which 3.8 and 3.9 accept and skip) and read all four
layouts, telling them apart by which seals verify. `.gz` and `.snappy` snapshots are read too.

Writing does not stop service: the caller copies the node table and the session table on the
event loop (a C-speed dict copy), and `write_snapshot` walks that copy in a worker thread,
reading each node's fields while the loop goes on applying txns. The result is fuzzy exactly like
ZooKeeper's (a node may show changes made after the snapshot's zxid); recovery replays every txn
after that zxid and replay is idempotent, so the recovered tree is exact. Nodes are serialised to
an unnamed temporary file first because the ACL table, which precedes them, is only known once
every node has been read (reading ACLs in a separate first pass could disagree with the nodes).
The finished file is written under a temporary name, fsynced and renamed, so a partial snapshot is
never a candidate.
"""

from __future__ import annotations

import gzip
import logging
import mmap
import os
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, TypeVar

from corral.proto import jute
from corral.proto.codes import Perm
from corral.proto.jute import Long, record
from corral.proto.records import ACL, FileHeader, Id, StatPersisted
from corral.store.layout import (
    SNAPSHOT_PREFIX,
    SNAPSHOT_TMP_PREFIX,
    StoreError,
    fsync_path,
    list_files,
    remove_file,
    snapshot_name,
    zxid_from_name,
)
from corral.store.snappy import SnappyError, decompress_stream

log = logging.getLogger(__name__)

SNAP_MAGIC = int.from_bytes(b"ZKSN", "big")
SNAP_VERSION = 2
SNAP_DBID = -1
# DigestCalculator's version in ZooKeeper 3.6+; version < 2 stored the digest as a hex string.
DIGEST_VERSION = 2
# A node whose ACL id is -1 has ZooKeeper's OPEN_ACL_UNSAFE (the tree's own nodes).
OPEN_ACL_ID = -1
OPEN_ACL_UNSAFE = (ACL(int(Perm.ALL), Id("world", "anyone")),)
# Stands in for an ACL id missing from the table (a fuzzy ZooKeeper snapshot can have one until
# the setACL that made it is replayed): it grants nothing, so nothing leaks meanwhile.
MISSING_ACL = (ACL(0, Id("world", "anyone")),)

_SEAL_TAIL = b"\x00\x00\x00\x01/"  # ustring "/"
_SEAL_BYTES = 8 + len(_SEAL_TAIL)
_DIGEST_BYTES = 8 + 4 + 8
_LAST_ZXID_BYTES = 8
_LONG = struct.Struct(">q")
_SESSION = struct.Struct(">qi")
_INT = struct.Struct(">i")
_FLUSH_BYTES = 1 << 20
# A node after its path: DataNode{buffer data, long acl, StatPersisted{czxid, mzxid, ctime,
# mtime, version, cversion, aversion, ephemeralOwner, pzxid}}, the part after the data.
_NODE_TAIL = struct.Struct(">qqqqqiiiqq")
_NULL = b"\xff\xff\xff\xff"

_T = TypeVar("_T")

# Receives one parsed node: path ("/" for the root), data, ACL, and the tuple (acl id,
# czxid, mzxid, ctime, mtime, version, cversion, aversion, ephemeralOwner, pzxid).
NodeSink = Callable[[str, bytes | None, tuple[ACL, ...], tuple[int, ...]], None]


class SnapshotError(StoreError):
    """A snapshot file that is incomplete, damaged or not a snapshot."""


@record
@dataclass(frozen=True, slots=True)
class _AclEntry:
    id: Long
    acls: tuple[ACL, ...]


class NodeView(Protocol):
    """What the snapshot writer reads from a tree node (tree.znode.ZNode has these)."""

    @property
    def data(self) -> bytes | None: ...
    @property
    def acl(self) -> tuple[ACL, ...]: ...
    @property
    def czxid(self) -> int: ...
    @property
    def mzxid(self) -> int: ...
    @property
    def ctime(self) -> int: ...
    @property
    def mtime(self) -> int: ...
    @property
    def version(self) -> int: ...
    @property
    def cversion(self) -> int: ...
    @property
    def aversion(self) -> int: ...
    @property
    def ephemeral_owner(self) -> int: ...
    @property
    def pzxid(self) -> int: ...
    @property
    def child_paths(self) -> AbstractSet[str]: ...


@dataclass(frozen=True, slots=True)
class SnapshotNode:
    """One node read from a snapshot; `path` is "/" for the root."""

    path: str
    data: bytes | None
    acl: tuple[ACL, ...]
    stat: StatPersisted


@dataclass(frozen=True, slots=True)
class SnapshotDigest:
    zxid: int
    version: int
    digest: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A whole snapshot file, checked."""

    zxid: int
    path: Path
    sessions: dict[int, int]
    nodes: list[SnapshotNode]
    digest: SnapshotDigest | None
    last_processed_zxid: int | None


# ---------------------------------------------------------------------------------------------
# Writing


def walk_preorder(
    nodes: Mapping[str, NodeView],
    order: Callable[[list[str]], list[str]] = sorted,
) -> Iterator[tuple[str, NodeView]]:
    """Nodes from "/" in pre-order (a parent before its children), as ZooKeeper writes them.

    Children are written in `order`, a function of their names (by default ascending: a
    stable, readable file). Safe to run in a thread while the tree changes: `nodes` is a
    private copy of the table and `list(set)` copies a child set atomically under the GIL.
    Children created after the copy are skipped (replay creates them); ones deleted since may
    still be written (replay deletes them).
    """
    by_name = order is sorted
    stack = ["/"]
    while stack:
        path = stack.pop()
        node = nodes.get(path)
        if node is None:
            continue
        # list() copies the set at once (atomic under the GIL); most nodes are leaves.
        kids = list(node.child_paths)
        yield path, node
        if kids:
            if by_name:
                # Siblings share their parent's prefix: full paths sort as their names do.
                kids.sort(reverse=True)
            else:
                cut = 1 if path == "/" else len(path) + 1
                prefix = path[:cut] if path == "/" else path + "/"
                kids = [prefix + name for name in reversed(order([k[cut:] for k in kids]))]
            stack.extend(kids)


class AclNumbering:
    """Numbers distinct ACLs as ZooKeeper's ReferenceCountedACLCache does (1, 2, ... in order
    of first use; OPEN_ACL_UNSAFE is -1 and needs no entry), unless ids are given."""

    def __init__(self, preset: Mapping[tuple[ACL, ...], int] | None = None) -> None:
        self._ids: dict[tuple[ACL, ...], int] = {}
        self._preset = preset or {}
        self._next = max(self._preset.values(), default=0) + 1
        # Trees share ACL tuples between nodes; look them up by identity first (the tuple is
        # kept alive in `_seen`, so its id cannot be reused meanwhile).
        self._seen: dict[int, tuple[tuple[ACL, ...], int]] = {}

    def id_of(self, acl: tuple[ACL, ...]) -> int:
        hit = self._seen.get(id(acl))
        if hit is not None and hit[0] is acl:
            return hit[1]
        acl_id = self._ids.get(acl)
        if acl_id is None:
            if acl in self._preset:
                acl_id = self._preset[acl]
            elif acl == OPEN_ACL_UNSAFE:
                # ZooKeeper reads -1 as exactly this ACL.
                acl_id = OPEN_ACL_ID
            else:
                acl_id = self._next
                self._next += 1
            if acl_id != OPEN_ACL_ID:
                self._ids[acl] = acl_id
        self._seen[id(acl)] = (acl, acl_id)
        return acl_id

    def table(self) -> list[tuple[int, tuple[ACL, ...]]]:
        """(id, ACL) of every ACL used, in order of first use."""
        return [(acl_id, acl) for acl, acl_id in self._ids.items()]


def encode_sessions_into(buf: bytearray, sessions: Mapping[int, int], order: list[int]) -> None:
    """SerializeUtils.serializeSnapshot's session table: int count, (long id, int timeout)*."""
    buf += _INT.pack(len(order))
    for sid in order:
        buf += _SESSION.pack(sid, sessions[sid])


def encode_acl_table_into(buf: bytearray, table: list[tuple[int, tuple[ACL, ...]]]) -> None:
    """ReferenceCountedACLCache.serialize: int count, (long id, vector<ACL>)*."""
    buf += _INT.pack(len(table))
    for acl_id, acls in table:
        jute.encode_into(buf, _AclEntry(acl_id, acls))


def encode_node_into(buf: bytearray, path: str, node: NodeView, acl_id: int) -> None:
    """DataTree.serializeNodeData: ustring path ("" for the root), DataNode; by hand, since
    this loop is a snapshot's whole cost."""
    name = b"" if path == "/" else path.encode("utf-8", "surrogatepass")
    buf += _INT.pack(len(name))
    buf += name
    data = node.data
    if data is None:
        buf += _NULL
    else:
        buf += _INT.pack(len(data))
        buf += data
    buf += _NODE_TAIL.pack(
        acl_id,
        node.czxid,
        node.mzxid,
        node.ctime,
        node.mtime,
        node.version,
        node.cversion,
        node.aversion,
        node.ephemeral_owner,
        node.pzxid,
    )


# The end of the node list: a lone path "/".
NODES_END = _INT.pack(1) + b"/"


class _CheckedWriter:
    """A file writer that keeps ZooKeeper's running Adler32 of every byte written."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.crc = zlib.adler32(b"")

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.crc = zlib.adler32(data, self.crc)
        self.f.write(data)

    def seal(self) -> None:
        self.write(_LONG.pack(self.crc) + _SEAL_TAIL)


def write_snapshot(
    snap_dir: Path,
    zxid: int,
    sessions: Mapping[int, int],
    nodes: Iterator[tuple[str, NodeView]],
    *,
    fsync: bool = True,
    compression: str = "",
) -> Path:
    """Write `snapshot.<zxid>` from pre-ordered nodes; returns its path.

    Written under a temporary name, fsynced (unless `fsync` is off) and renamed, so a crash
    leaves either no snapshot or a whole one. `compression` "gz": `snapshot.<zxid>.gz`, the
    same stream gzipped (ZooKeeper's snapshot.compression.method=gz; the checksum covers the
    uncompressed bytes, as ZooKeeper's).
    """
    numbering = AclNumbering()
    final = snap_dir / snapshot_name(zxid, compression)
    tmp = snap_dir / f"{SNAPSHOT_TMP_PREFIX}{zxid:x}"
    with tempfile.TemporaryFile(dir=snap_dir) as body:
        buf = bytearray()
        for path, node in nodes:
            encode_node_into(buf, path, node, numbering.id_of(node.acl))
            if len(buf) >= _FLUSH_BYTES:
                body.write(buf)
                buf.clear()
        buf += NODES_END
        body.write(buf)
        body.seek(0)
        with open(tmp, "wb") as raw:
            sink = compressed_writer(raw, compression)
            out = _CheckedWriter(sink)
            head = bytearray(jute.encode(FileHeader(SNAP_MAGIC, SNAP_VERSION, SNAP_DBID)))
            encode_sessions_into(head, sessions, sorted(sessions))
            encode_acl_table_into(head, numbering.table())
            out.write(head)
            while chunk := body.read(_FLUSH_BYTES):
                out.write(chunk)
            out.seal()
            # An empty digest (zxid 0): ZooKeeper reads it and skips the comparison.
            out.write(_LONG.pack(0) + _INT.pack(DIGEST_VERSION) + _LONG.pack(0))
            out.seal()
            if sink is not raw:
                sink.close()  # the gzip trailer; `raw` stays open
            raw.flush()
            if fsync:
                os.fsync(raw.fileno())
    os.replace(tmp, final)
    if fsync:
        fsync_path(snap_dir)
    return final


def take_snapshot(
    snap_dir: Path,
    zxid: int,
    sessions: Mapping[int, int],
    nodes: Mapping[str, NodeView],
    *,
    fsync: bool = True,
    compression: str = "",
) -> Path:
    """Write a snapshot from copies of a tree's tables (see the module docstring)."""
    return write_snapshot(
        snap_dir, zxid, sessions, walk_preorder(nodes), fsync=fsync, compression=compression
    )


def compressed_writer(raw: BinaryIO, compression: str) -> BinaryIO:
    """What a snapshot file is written through: `raw` itself, or for "gz" a gzip stream into
    it (level 6, as Java's GZIPOutputStream), which the caller closes (its trailer) before
    syncing `raw`."""
    if compression == "gz":
        return gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0)  # type: ignore[return-value]
    if compression:
        raise ValueError(f"cannot write {compression!r} snapshots")
    return raw


# ---------------------------------------------------------------------------------------------
# Reading


def _file_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    mode = path.name.split(".")[-1] if path.name.count(".") >= 2 else ""
    if mode.lower() == "gz":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise SnapshotError(f"{path}: bad gzip stream: {exc}") from exc
    if mode.lower() == "snappy":
        try:
            return decompress_stream(raw)
        except SnappyError as exc:
            raise SnapshotError(f"{path}: bad snappy stream: {exc}") from exc
    return raw


class _Parser:
    def __init__(self, data: bytes, path: Path) -> None:
        self.data = data
        self.pos = 0
        self.path = path

    def need(self, n: int) -> None:
        if n < 0 or self.pos + n > len(self.data):
            raise SnapshotError(f"{self.path}: truncated at offset {self.pos}")

    def long(self) -> int:
        self.need(8)
        (value,) = _LONG.unpack_from(self.data, self.pos)
        self.pos += 8
        return int(value)

    def int(self) -> int:
        self.need(4)
        (value,) = _INT.unpack_from(self.data, self.pos)
        self.pos += 4
        return int(value)

    def record(self, cls: type[_T]) -> _T:
        try:
            rec, self.pos = jute.decode(cls, self.data, self.pos)
        except jute.DecodeError as exc:
            raise SnapshotError(f"{self.path}: bad {cls.__name__} at {self.pos}: {exc}") from exc
        return rec

    def buffer(self) -> bytes | None:
        n = self.int()
        if n == -1:
            return None
        if n < -1:
            raise SnapshotError(f"{self.path}: bad length {n} at offset {self.pos - 4}")
        self.need(n)
        value = self.data[self.pos : self.pos + n]
        self.pos += n
        return bytes(value)

    def ustring(self) -> str:
        raw = self.buffer()
        return "" if raw is None else str(raw, "utf-8", "replace")

    def seal_ok(self) -> bool:
        """Read a seal; True when its checksum covers every byte before it."""
        start = self.pos
        if start + _SEAL_BYTES > len(self.data):
            return False
        (crc,) = _LONG.unpack_from(self.data, start)
        if self.data[start + 8 : start + _SEAL_BYTES] != _SEAL_TAIL:
            return False
        if crc != zlib.adler32(memoryview(self.data)[:start]):
            return False
        self.pos = start + _SEAL_BYTES
        return True


def read_snapshot(path: Path, on_node: NodeSink | None = None) -> Snapshot:
    """Read and check one snapshot file. Raises SnapshotError if it is not whole and valid.

    With `on_node`, the nodes are handed to it as they are parsed (Snapshot.nodes is then
    empty): recovery builds the tree from them without a list of a million SnapshotNodes
    first. The file may still turn out invalid after its last node: the caller must then
    drop what it built."""
    zxid = zxid_from_name(path.name, SNAPSHOT_PREFIX)
    if zxid is None:
        raise SnapshotError(f"{path}: not a snapshot file name")
    try:
        data = _file_bytes(path)
    except OSError as exc:
        raise SnapshotError(f"{path}: {exc}") from exc
    p = _Parser(data, path)
    header = p.record(FileHeader)
    if header.magic != SNAP_MAGIC:
        raise SnapshotError(f"{path}: bad magic {header.magic:#x}")
    count = p.int()
    p.need(count * _SESSION.size)
    sessions: dict[int, int] = {}
    for _ in range(count):
        sid, timeout = _SESSION.unpack_from(data, p.pos)
        p.pos += _SESSION.size
        sessions[sid] = timeout
    count = p.int()
    p.need(count * 12)
    acls: dict[int, tuple[ACL, ...]] = {}
    for _ in range(count):
        entry = p.record(_AclEntry)
        acls[entry.id] = entry.acls
    nodes = _read_nodes(p, acls, on_node)
    if not p.seal_ok():
        raise SnapshotError(f"{path}: checksum seal missing or wrong after the nodes")
    digest, last_zxid = _read_trailers(p)
    return Snapshot(zxid, path, sessions, nodes, digest, last_zxid)


def _read_nodes(
    p: _Parser, acls: dict[int, tuple[ACL, ...]], on_node: NodeSink | None
) -> list[SnapshotNode]:
    """The node list, parsed inline (it is nearly all of a snapshot's bytes and time); with
    `on_node`, each node goes to it instead and the list stays empty."""
    nodes: list[SnapshotNode] = []
    count = 0
    # Without a sink, the order is checked here; a sink (a tree loading the nodes) checks it
    # itself, raising ValueError, without a second table of every path.
    known: set[str] | None = set() if on_node is None else None
    missing: set[int] = set()
    data, pos, size = p.data, p.pos, len(p.data)
    int_at, tail_at, tail_size = _INT.unpack_from, _NODE_TAIL.unpack_from, _NODE_TAIL.size
    acl_id_last = OPEN_ACL_ID
    acl_last: tuple[ACL, ...] = OPEN_ACL_UNSAFE
    try:
        while True:
            (n,) = int_at(data, pos)
            pos += 4
            if n > 0:
                end = pos + n
                if end > size:
                    raise SnapshotError(f"{p.path}: bad path length {n} at offset {pos - 4}")
                path = str(data[pos:end], "utf-8", "replace")
                pos = end
                if path == "/":
                    break
            elif n >= -1 and not count:
                path = ""  # the root
            else:
                raise SnapshotError(f"{p.path}: bad path length {n} at offset {pos - 4}")
            (n,) = int_at(data, pos)
            pos += 4
            if n >= 0:
                end = pos + n
                if end > size:
                    raise SnapshotError(f"{p.path}: bad data length {n} at offset {pos - 4}")
                value: bytes | None = data[pos:end]
                pos = end
            elif n == -1:
                value = None
            else:
                raise SnapshotError(f"{p.path}: bad data length {n} at offset {pos - 4}")
            tail = tail_at(data, pos)
            pos += tail_size
            if not count:
                if path != "":
                    raise SnapshotError(f"{p.path}: first node is {path!r}, not the root")
                path = "/"
            elif known is not None:
                cut = path.rfind("/")
                parent = path[:cut] if cut > 0 else "/"
                if cut < 0 or parent not in known or path in known:
                    raise SnapshotError(f"{p.path}: node {path!r} out of order or without parent")
            count += 1
            acl_id = tail[0]
            if acl_id == acl_id_last:
                acl = acl_last
            else:
                found = acls.get(acl_id)
                if found is None:
                    if acl_id == OPEN_ACL_ID:
                        found = OPEN_ACL_UNSAFE
                    else:
                        missing.add(acl_id)
                        found = MISSING_ACL
                acl_id_last, acl_last = acl_id, found
                acl = found
            if known is None:
                on_node(path, value, acl, tail)  # type: ignore[misc]
            else:
                known.add(path)
                nodes.append(SnapshotNode(path, value, acl, StatPersisted(*tail[1:])))
    except struct.error as exc:
        raise SnapshotError(f"{p.path}: truncated in the node list") from exc
    except ValueError as exc:
        raise SnapshotError(f"{p.path}: {exc}") from exc
    p.pos = pos
    if not count:
        raise SnapshotError(f"{p.path}: no root node")
    if missing:
        log.warning("%s: ACL ids %s are not in the ACL table", p.path, sorted(missing))
    return nodes


def _read_trailers(p: _Parser) -> tuple[SnapshotDigest | None, int | None]:
    """The optional digest and lastProcessedZxid sections, each followed by its own seal."""
    digest: SnapshotDigest | None = None
    last_zxid: int | None = None
    start = p.pos
    if p.pos < len(p.data):
        try:
            zxid, version = p.long(), p.int()
            value = p.long() if version >= 2 else int(p.ustring() or "0", 16)
            if p.seal_ok():
                digest = SnapshotDigest(zxid, version, value)
            else:
                p.pos = start
        except (SnapshotError, ValueError):
            p.pos = start
    if p.pos < len(p.data):
        start = p.pos
        try:
            value = p.long()
            if p.seal_ok():
                last_zxid = value
            else:
                p.pos = start
        except SnapshotError:
            p.pos = start
    if p.pos < len(p.data):
        raise SnapshotError(f"{p.path}: {len(p.data) - p.pos} unreadable bytes after the seal")
    return digest, last_zxid


def verify_snapshot_file(path: Path) -> bool:
    """A fast full check (checksums only, C speed): is this a whole, intact snapshot?

    The seals sit at fixed distances from the end for each of the four layouts, so the body's
    end is found without parsing it.
    """
    if zxid_from_name(path.name, SNAPSHOT_PREFIX) is None:
        return False
    try:
        if path.name.split(".")[-1].lower() in ("gz", "snappy") and path.name.count(".") >= 2:
            return _verify_bytes(_file_bytes(path))
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size < 16 + _SEAL_BYTES:
                return False
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                return _verify_bytes(m)
    except (OSError, SnapshotError, ValueError):
        return False


def _verify_bytes(data: bytes | mmap.mmap) -> bool:
    view = memoryview(data)
    try:
        if len(view) < 16 + _SEAL_BYTES or _INT.unpack_from(view, 0)[0] != SNAP_MAGIC:
            return False
        for extras in (
            (_DIGEST_BYTES, _LAST_ZXID_BYTES),
            (_DIGEST_BYTES,),
            (_LAST_ZXID_BYTES,),
            (),
        ):
            body_end = len(view) - _SEAL_BYTES - sum(n + _SEAL_BYTES for n in extras)
            if body_end < 16 + 5 or view[body_end - 5 : body_end] != _SEAL_TAIL:
                continue
            if _seals_verify(view, body_end, extras):
                return True
        return False
    finally:
        view.release()


def _seals_verify(view: memoryview, body_end: int, extras: tuple[int, ...]) -> bool:
    crc = zlib.adler32(view[:body_end])
    pos = body_end
    for section in (0, *extras):
        pos += section
        if section:
            crc = zlib.adler32(view[pos - section : pos], crc)
        if view[pos + 8 : pos + _SEAL_BYTES] != _SEAL_TAIL:
            return False
        if _LONG.unpack_from(view, pos)[0] != crc:
            return False
        crc = zlib.adler32(view[pos : pos + _SEAL_BYTES], crc)
        pos += _SEAL_BYTES
    return pos == len(view)


def snapshot_files(snap_dir: Path) -> list[tuple[int, Path]]:
    """Every file named like a snapshot, newest first (valid or not)."""
    return list(reversed(list_files(snap_dir, SNAPSHOT_PREFIX)))


def newest_valid_snapshots(snap_dir: Path, n: int) -> list[tuple[int, Path]]:
    """Up to n snapshots that pass verify_snapshot_file, newest first (what purge keeps)."""
    found: list[tuple[int, Path]] = []
    for zxid, path in snapshot_files(snap_dir):
        if verify_snapshot_file(path):
            found.append((zxid, path))
            if len(found) == n:
                break
        else:
            log.warning("%s is not a valid snapshot", path)
    return found


def load_newest_snapshot(
    snap_dir: Path, new_sink: Callable[[], NodeSink] | None = None
) -> Snapshot | None:
    """The newest snapshot that reads back whole, skipping damaged ones with a warning (as
    ZooKeeper does). None when there is no snapshot file at all; SnapshotError when there are
    snapshot files but none is valid (starting empty would silently lose the data).

    With `new_sink`, each file tried gets a fresh sink from it for its nodes (see
    read_snapshot); the last sink made is the valid snapshot's."""
    files = snapshot_files(snap_dir)
    for _zxid, path in files:
        try:
            snap = read_snapshot(path, None if new_sink is None else new_sink())
        except SnapshotError as exc:
            log.warning("skipping snapshot %s: %s", path.name, exc)
            continue
        return snap
    if files:
        raise SnapshotError(f"{snap_dir}: {len(files)} snapshot files, none of them valid")
    return None


def remove_tmp_files(snap_dir: Path) -> None:
    """Delete snapshots a crash left half-written (they never had their final name)."""
    for name in os.listdir(snap_dir):
        if name.startswith(SNAPSHOT_TMP_PREFIX):
            log.info("removing unfinished snapshot %s", name)
            remove_file(snap_dir / name)
