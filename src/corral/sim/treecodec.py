"""A tree image for the simulator's SNAP transfers and local snapshots, and a tree digest.

The bytes follow the layout ZooKeeper's leader streams after SNAP (session table, then the
nodes in pre-order with their ACL and persisted stat, ending with "/"), written with the
jute primitives; loading goes through DataTree.empty_for_load / load_node / finish_load,
the store's own loading path. The simulator never touches files, so this stays pure.
"""

from __future__ import annotations

import struct
import zlib

from corral.proto import jute
from corral.proto.records import ACL
from corral.tree.datatree import DataTree
from corral.tree.znode import ZNode

_INT = struct.Struct(">i")
_SESSION = struct.Struct(">qi")
_NODE_TAIL = struct.Struct(">qqqqiiiqq")


def _put_buffer(out: bytearray, data: bytes | None) -> None:
    if data is None:
        out += _INT.pack(-1)
    else:
        out += _INT.pack(len(data))
        out += data


def encode_tree(tree: DataTree) -> bytes:
    """The whole tree (sessions and nodes) as bytes."""
    out = bytearray()
    sessions = tree.sessions
    out += _INT.pack(len(sessions))
    for sid in sorted(sessions):
        out += _SESSION.pack(sid, sessions[sid])
    for path, node in tree.iter_preorder():
        _put_buffer(out, b"" if path == "/" else path.encode())
        _put_buffer(out, node.data)
        out += _INT.pack(len(node.acl))
        for acl in node.acl:
            jute.encode_into(out, acl)
        out += _NODE_TAIL.pack(
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
    _put_buffer(out, b"/")
    out += struct.pack(">q", tree.last_zxid)
    return bytes(out)


def _buffer(data: bytes, pos: int) -> tuple[bytes | None, int]:
    (n,) = _INT.unpack_from(data, pos)
    pos += 4
    if n < 0:
        return None, pos
    return data[pos : pos + n], pos + n


def decode_tree(data: bytes) -> DataTree:
    """A tree from `encode_tree`'s bytes (through the snapshot-loading API)."""
    tree = DataTree.empty_for_load()
    (count,) = _INT.unpack_from(data, 0)
    pos = 4
    for _ in range(count):
        sid, timeout = _SESSION.unpack_from(data, pos)
        pos += _SESSION.size
        tree.sessions[sid] = timeout
    while True:
        raw, pos = _buffer(data, pos)
        path = (raw or b"").decode()
        if path == "/":
            break
        node_data, pos = _buffer(data, pos)
        (n_acl,) = _INT.unpack_from(data, pos)
        pos += 4
        acls: list[ACL] = []
        for _ in range(n_acl):
            acl, pos = jute.decode(ACL, data, pos)
            acls.append(acl)
        fields = _NODE_TAIL.unpack_from(data, pos)
        pos += _NODE_TAIL.size
        czxid, mzxid, ctime, mtime, version, cversion, aversion, owner, pzxid = fields
        node = ZNode(
            node_data, tuple(acls), czxid, mzxid, ctime, mtime, version, cversion, aversion,
            owner, pzxid,
        )  # fmt: skip
        tree.load_node(path or "/", node)
    tree.finish_load()
    (tree.last_zxid,) = struct.unpack_from(">q", data, pos)
    return tree


def tree_digest(tree: DataTree) -> int:
    """A deterministic digest of everything a client can observe in a tree."""
    parts: list[str] = [repr(sorted(tree.sessions.items()))]
    nodes = tree.nodes
    for path in sorted(nodes):
        n = nodes[path]
        parts.append(
            f"{path}|{n.data!r}|{n.acl!r}|{n.czxid}|{n.mzxid}|{n.ctime}|{n.mtime}|{n.version}|"
            f"{n.cversion}|{n.aversion}|{n.ephemeral_owner}|{n.pzxid}|{sorted(n.children)}"
        )
    return zlib.crc32("\n".join(parts).encode())
