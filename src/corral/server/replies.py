"""Request classification, request-body decoding and reply-frame encoding.

Replies are built as complete frames (4-byte length + ReplyHeader + body) so the runner can
write them as they are. The hot replies (getData, exists, setData, ping) are packed with one
`struct` call plus the node's pre-encoded Stat.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from corral.proto import jute
from corral.proto.codes import OpCode
from corral.proto.jute import DecodeError
from corral.proto.records import (
    CheckVersionRequest,
    Create2Response,
    CreateRequest,
    CreateResponse,
    CreateTTLRequest,
    DeleteRequest,
    ErrorResponse,
    GetChildrenRequest,
    GetDataRequest,
    MultiHeader,
    SetDataRequest,
    SetDataResponse,
    WatcherEvent,
)

if TYPE_CHECKING:
    from corral.tree.datatree import ApplyResult

_HDR = struct.Struct(">iqi")  # xid, zxid, err
_FRAME_HDR = struct.Struct(">iiqi")  # length, xid, zxid, err
_FRAME_HDR_BUF = struct.Struct(">iiqii")  # ... + a buffer/string length
_INT = struct.Struct(">i")
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
    return record_frame(-1, zxid, 0, WatcherEvent(event_type, state, path))


def multi_header(out: bytearray, type_: int, done: bool, err: int) -> None:
    jute.encode_into(out, MultiHeader(type_, done, err))


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


def multi_response_body(res: ApplyResult, sub_ops: tuple[int, ...]) -> bytearray:
    """A MultiResponse: per sub-op a MultiHeader and its result, then the done marker.

    The shape follows the applied sub-txn's type, except that a create2 (logged as a create)
    answers as create2 (ZooKeeper 3.9, ZOOKEEPER-4026).
    """
    body = bytearray()
    for i, sub in enumerate(res.multi):
        rtype = _MULTI_RESULT_TYPE.get(sub.type, OpCode.ERROR)
        if rtype == OpCode.CREATE and i < len(sub_ops) and sub_ops[i] == OpCode.CREATE2:
            rtype = OpCode.CREATE2
        if rtype == OpCode.ERROR:
            multi_header(body, -1, False, int(sub.err))
            jute.encode_into(body, ErrorResponse(int(sub.err)))
            continue
        multi_header(body, int(rtype), False, 0)
        if rtype == OpCode.CREATE:
            jute.encode_into(body, CreateResponse(sub.path))
        elif rtype == OpCode.CREATE2:
            assert sub.stat is not None
            jute.encode_into(body, Create2Response(sub.path, sub.stat))
        elif rtype == OpCode.SET_DATA:
            assert sub.stat is not None
            jute.encode_into(body, SetDataResponse(sub.stat))
    multi_header(body, -1, True, -1)
    return body
