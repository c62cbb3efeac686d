"""multi: decoding the request and prepping it into one MultiTxn.

ZooKeeper decodes the whole MultiOperationRecord first; any problem there (an unknown op,
an invalid create flag, a TTL flag on a plain create, reads mixed with writes) fails the
request as a whole with MARSHALLINGERROR. Then it preps the sub-ops in order, each against
the tree plus the effects of the sub-ops before it. At the first failure the remaining
sub-ops are not tried; the MultiTxn keeps the txns of the sub-ops that succeeded, then
ErrorTxn(code) for the failing one and ErrorTxn(RUNTIMEINCONSISTENCY) for the rest. Applying
such a MultiTxn changes nothing: DataTree turns the successful ones into ErrorTxn(0) (before
the failure) when it sees any error among them. That byte layout is ZooKeeper's log format.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

from corral.proto import jute
from corral.proto.codes import CreateMode, Err, OpCode
from corral.proto.records import (
    CheckVersionRequest,
    CreateRequest,
    CreateTTLRequest,
    DeleteRequest,
    ErrorTxn,
    GetChildrenRequest,
    GetDataRequest,
    MultiTxn,
    SetDataRequest,
    Txn,
)
from corral.server.prep_ops import (
    MarshallingError,
    OpContext,
    PrepError,
    prep_check,
    prep_create,
    prep_delete,
    prep_set_data,
)

__all__ = ["MultiOp", "MultiRecord", "decode_multi_request", "normalize_multi", "prep_multi"]

MultiRecord = (
    CreateRequest
    | CreateTTLRequest
    | DeleteRequest
    | SetDataRequest
    | CheckVersionRequest
    | GetDataRequest
    | GetChildrenRequest
)
MultiOp = tuple[int, MultiRecord]

_REQUEST_CLASSES: dict[int, type[MultiRecord]] = {
    OpCode.CREATE: CreateRequest,
    OpCode.CREATE2: CreateRequest,
    OpCode.CREATE_CONTAINER: CreateRequest,
    OpCode.CREATE_TTL: CreateTTLRequest,
    OpCode.DELETE: DeleteRequest,
    OpCode.SET_DATA: SetDataRequest,
    OpCode.CHECK: CheckVersionRequest,
    OpCode.GET_CHILDREN: GetChildrenRequest,
    OpCode.GET_DATA: GetDataRequest,
}
_READS = frozenset({OpCode.GET_CHILDREN, OpCode.GET_DATA})

_RUNTIME_INCONSISTENCY = jute.encode(ErrorTxn(int(Err.RUNTIMEINCONSISTENCY)))


# MultiHeader (type int, done boolean, err int), read without building the record.
_MULTI_HEADER = struct.Struct(">i?i")
_DECODERS: dict[int, Callable[[bytes, int], tuple[MultiRecord, int]]] = {
    op: jute.raw_decoder(cls) for op, cls in _REQUEST_CLASSES.items()
}


def decode_multi_request(data: bytes, pos: int = 0) -> list[MultiOp]:
    """The (op, request record) pairs of a MultiOperationRecord body (multi and multiRead).

    Raises jute.DecodeError for truncated bytes and for an op a multi cannot carry. No other
    validation: `normalize_multi` applies ZooKeeper's rules for a multi (op 14).
    """
    ops: list[MultiOp] = []
    decoders = _DECODERS
    header = _MULTI_HEADER.unpack_from
    try:
        while True:
            op, done, _ = header(data, pos)
            pos += 9
            if done:
                return ops
            decode = decoders.get(op)
            if decode is None:
                raise jute.DecodeError(f"invalid type of op in multi: {op}")
            rec, pos = decode(data, pos)
            ops.append((op, rec))
    except jute.DecodeError:
        raise
    except jute.DECODER_ERRORS as exc:
        raise jute.DecodeError(f"truncated or malformed multi request: {exc}") from None


# Create flags -> their CreateMode (CreateMode(flags) costs an enum lookup per sub-op).
_MODES: dict[int, CreateMode] = {int(m): m for m in CreateMode}
_TTL_MODES = frozenset(m for m in CreateMode if m.ttl)
_CREATES = frozenset({OpCode.CREATE, OpCode.CREATE2, OpCode.CREATE_CONTAINER})
_PLAIN = frozenset({OpCode.DELETE, OpCode.SET_DATA, OpCode.CHECK})


def normalize_multi(ops: Sequence[tuple[int, object]]) -> list[MultiOp]:
    """The sub-ops of a multi as ZooKeeper's MultiOperationRecord sees them after decoding.

    A create whose flags say CONTAINER becomes a createContainer; a createTTL whose flags are
    not a TTL mode becomes a plain create (its ttl dropped). Raises MarshallingError where
    ZooKeeper's decoding fails: invalid create flags, a TTL flag on a create, a read op
    (multi is for writes only), or a record of the wrong class.
    """
    out: list[MultiOp] = []
    for op, rec in ops:
        if op in _CREATES:
            if type(rec) is not CreateRequest:
                raise MarshallingError(f"bad record for op {op}")
            mode = _MODES.get(rec.flags)
            if mode is None:
                raise MarshallingError(f"invalid flag {rec.flags} for create mode")
            if mode in _TTL_MODES:
                raise MarshallingError("a TTL create mode needs createTTL")
            out.append((OpCode.CREATE_CONTAINER if mode == CreateMode.CONTAINER else op, rec))
        elif op == OpCode.CREATE_TTL:
            if type(rec) is not CreateTTLRequest:
                raise MarshallingError(f"bad record for op {op}")
            mode = _MODES.get(rec.flags, CreateMode.PERSISTENT)
            if mode in _TTL_MODES:
                out.append((op, rec))
            else:
                plain = CreateRequest(rec.path, rec.data, rec.acl, rec.flags)
                new_op = OpCode.CREATE_CONTAINER if mode == CreateMode.CONTAINER else OpCode.CREATE
                out.append((new_op, plain))
        elif op in _PLAIN:
            if type(rec) is not _REQUEST_CLASSES[op]:
                raise MarshallingError(f"bad record for op {op}")
            out.append((op, rec))  # type: ignore[arg-type]
        elif op in _READS:
            raise MarshallingError("read operations in a multi")
        else:
            raise MarshallingError(f"invalid type of op in multi: {op}")
    return out


# Sub-op -> its prep function as (ctx, op, request) -> (type, txn); creates otherwise.
_SUB_PREP: dict[int, Callable[[OpContext, int, Any], tuple[int, object]]] = {
    OpCode.SET_DATA: lambda ctx, op, rec: prep_set_data(ctx, rec),
    OpCode.DELETE: lambda ctx, op, rec: prep_delete(ctx, rec),
    OpCode.CHECK: lambda ctx, op, rec: prep_check(ctx, rec),
}
_ERROR = int(OpCode.ERROR)


def _prep_sub(ctx: OpContext, op: int, rec: MultiRecord) -> tuple[int, object]:
    return _SUB_PREP.get(op, prep_create)(ctx, op, rec)


def prep_multi(ctx: OpContext, ops: list[MultiOp]) -> tuple[MultiTxn, bool]:
    """Prep normalized sub-ops into a MultiTxn; True when every sub-op succeeded.

    The sub-ops' change records are in ctx.view; the caller commits them only on success.
    """
    txns: list[Txn] = []
    failed = False
    encode = jute.encode
    sub_prep = _SUB_PREP
    for op, rec in ops:
        if failed:
            txns.append(Txn(_ERROR, _RUNTIME_INCONSISTENCY))
            continue
        try:
            txn_type, txn = sub_prep.get(op, prep_create)(ctx, op, rec)
        except PrepError as e:
            failed = True
            txns.append(Txn(_ERROR, encode(ErrorTxn(int(e.err)))))
        else:
            txns.append(Txn(txn_type, encode(txn)))
    return MultiTxn(tuple(txns)), not failed
