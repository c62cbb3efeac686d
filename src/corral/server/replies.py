"""Request classification, request-body decoding and reply-frame encoding.

Replies are built as complete frames (4-byte length + ReplyHeader + body) so the runner can
write them as they are. The hot replies (getData, exists, setData, setACL, create, create2,
multi, ping, notifications) are packed with `struct` directly (plus the node's pre-encoded
Stat for reads): the records' generic encoders cost several times as much per reply.
Golden tests hold them to the records' encodings.
"""

from __future__ import annotations

import operator
import struct
from typing import TYPE_CHECKING

from corral.proto import jute
from corral.proto.codes import OpCode
from corral.proto.jute import DecodeError
from corral.proto.records import (
    CheckVersionRequest,
    CreateRequest,
    CreateTTLRequest,
    DeleteRequest,
    GetChildrenRequest,
    GetDataRequest,
    MultiHeader,
    SetDataRequest,
)

if TYPE_CHECKING:
    from corral.proto.records import Stat
    from corral.tree.datatree import ApplyResult

_HDR = struct.Struct(">iqi")  # xid, zxid, err
_FRAME_HDR = struct.Struct(">iiqi")  # length, xid, zxid, err
_FRAME_HDR_BUF = struct.Struct(">iiqii")  # ... + a buffer/string length
_INT = struct.Struct(">i")
# Stat: czxid, mzxid, ctime, mtime, version, cversion, aversion, ephemeralOwner, dataLength,
# numChildren, pzxid.
_STAT = struct.Struct(">qqqqiiiqiiq")
_FRAME_STAT = struct.Struct(">iiqi" + "qqqqiiiqiiq")  # a frame header + one Stat
# A Stat's fields in wire order, as one tuple built in C (cheaper than 11 attribute loads).
_stat_fields = operator.attrgetter(
    "czxid", "mzxid", "ctime", "mtime", "version", "cversion", "aversion",
    "ephemeral_owner", "data_length", "num_children", "pzxid",
)  # fmt: skip
_MULTI_HDR = struct.Struct(">i?i")  # MultiHeader{type, done, err}
_MULTI_ERR = struct.Struct(">i?ii")  # MultiHeader + ErrorResponse{err}
_NOTIFICATION = struct.Struct(">iiqiiii")  # a frame header + WatcherEvent{type, state, len}
REPLY_HEADER_BYTES = _HDR.size  # 16

# The ops that change the tree: prepped into a txn and answered after it is applied.
WRITE_OPS = frozenset(
    {
        OpCode.CREATE,
        OpCode.CREATE2,
        OpCode.CREATE_CONTAINER,
        OpCode.CREATE_TTL,
        OpCode.DELETE,
        OpCode.SET_DATA,
        OpCode.SET_ACL,
        OpCode.MULTI,
        OpCode.RECONFIG,
        OpCode.CLOSE_SESSION,
    }
)
# Answered from the tree, in order with the connection's earlier requests.
READ_OPS = frozenset(
    {
        OpCode.EXISTS,
        OpCode.GET_DATA,
        OpCode.GET_ACL,
        OpCode.GET_CHILDREN,
        OpCode.GET_CHILDREN2,
        OpCode.SYNC,
        OpCode.PING,
        OpCode.CHECK_WATCHES,
        OpCode.REMOVE_WATCHES,
        OpCode.MULTI_READ,
        OpCode.SET_WATCHES,
        OpCode.SET_WATCHES2,
        OpCode.GET_EPHEMERALS,
        OpCode.GET_ALL_CHILDREN_NUMBER,
        OpCode.ADD_WATCH,
        OpCode.WHO_AM_I,
    }
)

# Sub-ops a multi (14) may hold, and those a multiRead (22) may hold (MultiOperationRecord).
_MULTI_WRITE_SUBOPS: dict[int, type] = {
    OpCode.CREATE: CreateRequest,
    OpCode.CREATE2: CreateRequest,
    OpCode.CREATE_CONTAINER: CreateRequest,
    OpCode.CREATE_TTL: CreateTTLRequest,
    OpCode.DELETE: DeleteRequest,
    OpCode.SET_DATA: SetDataRequest,
    OpCode.CHECK: CheckVersionRequest,
}
_MULTI_READ_SUBOPS: dict[int, type] = {
    OpCode.GET_CHILDREN: GetChildrenRequest,
    OpCode.GET_DATA: GetDataRequest,
}
# CreateMode.fromFlag accepts these; anything else inside a multi is a marshalling error.
_VALID_CREATE_FLAGS = frozenset(range(7))

SubOp = tuple[int, object]


def decode_multi(body: bytes, pos: int, read: bool) -> list[SubOp]:
    """Decode a MultiOperationRecord: (sub-op type, request record) pairs, in order.

    Raises DecodeError where ZooKeeper's deserializer throws: an op type that is not allowed,
    a mix of read and write ops, or a create with a flag CreateMode does not know.
    """
    allowed = _MULTI_READ_SUBOPS if read else _MULTI_WRITE_SUBOPS
    ops: list[SubOp] = []
    while True:
        mh, pos = jute.decode(MultiHeader, body, pos)
        if mh.done:
            return ops
        cls = allowed.get(mh.type)
        if cls is None:
            raise DecodeError(f"invalid type of op {mh.type} in a multi")
        rec: object
        rec, pos = jute.decode(cls, body, pos)
        if type(rec) is CreateRequest and rec.flags not in _VALID_CREATE_FLAGS:
            raise DecodeError(f"invalid flag {rec.flags} for create mode")
        ops.append((mh.type, rec))


def header_frame(xid: int, zxid: int, err: int) -> bytes:
    """A reply with no body."""
    return _FRAME_HDR.pack(16, xid, zxid, err)


def record_frame(xid: int, zxid: int, err: int, rec: object) -> bytes:
    """A reply whose body is one jute record."""
    out = bytearray(_FRAME_HDR.pack(0, xid, zxid, err))
    jute.encode_into(out, rec)
    _INT.pack_into(out, 0, len(out) - 4)
    return bytes(out)


def raw_frame(xid: int, zxid: int, err: int, body: bytes | bytearray) -> bytes:
    """A reply whose body is already encoded."""
    return _FRAME_HDR.pack(16 + len(body), xid, zxid, err) + body


def data_stat_frame(xid: int, zxid: int, data: bytes | None, stat: bytes) -> bytes:
    """A GetDataResponse reply (buffer + Stat), packed directly (the read hot path)."""
    if data is None:
        return _FRAME_HDR_BUF.pack(20 + len(stat), xid, zxid, 0, -1) + stat
    return _FRAME_HDR_BUF.pack(20 + len(data) + len(stat), xid, zxid, 0, len(data)) + data + stat


def notification_frame(zxid: int, event_type: int, state: int, path: str) -> bytes:
    """A watch notification (xid -1); since 3.9 its zxid is the triggering txn's."""
    raw = path.encode("utf-8", "surrogatepass")
    return _NOTIFICATION.pack(28 + len(raw), -1, zxid, 0, event_type, state, len(raw)) + raw


def multi_header(out: bytearray, type_: int, done: bool, err: int) -> None:
    out += _MULTI_HDR.pack(type_, done, err)


def stat_frame(xid: int, zxid: int, stat: Stat) -> bytes:
    """A reply whose body is one Stat (setData, setACL), packed with one struct call."""
    return _FRAME_STAT.pack(84, xid, zxid, 0, *_stat_fields(stat))  # 16 header + 68 Stat


def create_frame(xid: int, zxid: int, path: str) -> bytes:
    """A CreateResponse reply (the path)."""
    raw = path.encode("utf-8", "surrogatepass")
    return _FRAME_HDR_BUF.pack(20 + len(raw), xid, zxid, 0, len(raw)) + raw


def create2_frame(xid: int, zxid: int, path: str, stat: Stat) -> bytes:
    """A Create2Response reply (the path, then the Stat)."""
    raw = path.encode("utf-8", "surrogatepass")
    return _FRAME_HDR_BUF.pack(88 + len(raw), xid, zxid, 0, len(raw)) + raw + _stat_bytes(stat)


def _stat_bytes(stat: Stat) -> bytes:
    return _STAT.pack(*_stat_fields(stat))


_MULTI_RESULT_TYPE: dict[int, int] = {
    OpCode.CREATE: OpCode.CREATE,
    OpCode.CREATE2: OpCode.CREATE2,
    OpCode.CREATE_CONTAINER: OpCode.CREATE2,
    OpCode.CREATE_TTL: OpCode.CREATE2,
    OpCode.DELETE: OpCode.DELETE,
    OpCode.DELETE_CONTAINER: OpCode.DELETE,
    OpCode.SET_DATA: OpCode.SET_DATA,
    OpCode.CHECK: OpCode.CHECK,
}
_R_CREATE = int(OpCode.CREATE)
_R_CREATE2 = int(OpCode.CREATE2)
_R_SET_DATA = int(OpCode.SET_DATA)
_R_ERROR = int(OpCode.ERROR)
# MultiHeader{type, done=false, err=0} of each result type, and the done marker.
_OK_HEADERS = {t: _MULTI_HDR.pack(t, False, 0) for t in set(_MULTI_RESULT_TYPE.values())}
_DONE = _MULTI_HDR.pack(-1, True, -1)


def multi_response_body(res: ApplyResult, sub_ops: tuple[int, ...]) -> bytes:
    """A MultiResponse: per sub-op a MultiHeader and its result, then the done marker.

    The shape follows the applied sub-txn's type, except that a create2 (logged as a create)
    answers as create2 (ZooKeeper 3.9, ZOOKEEPER-4026). Packed with struct directly (the
    records' generic encoders cost 9x as much here).
    """
    parts: list[bytes] = []
    append = parts.append
    n_sub = len(sub_ops)
    for i, sub in enumerate(res.multi):
        rtype = _MULTI_RESULT_TYPE.get(sub.type, _R_ERROR)
        if rtype == _R_CREATE and i < n_sub and sub_ops[i] == _R_CREATE2:
            rtype = _R_CREATE2
        if rtype == _R_ERROR:
            err = int(sub.err)
            append(_MULTI_ERR.pack(-1, False, err, err))  # MultiHeader + ErrorResponse
            continue
        append(_OK_HEADERS[rtype])
        if rtype in (_R_CREATE, _R_CREATE2):
            raw = sub.path.encode("utf-8", "surrogatepass")
            append(_INT.pack(len(raw)))
            append(raw)
            if rtype == _R_CREATE2:
                assert sub.stat is not None
                append(_stat_bytes(sub.stat))
        elif rtype == _R_SET_DATA:
            assert sub.stat is not None
            append(_stat_bytes(sub.stat))
    append(_DONE)
    return b"".join(parts)
