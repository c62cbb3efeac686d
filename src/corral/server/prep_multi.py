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

from collections.abc import Sequence

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
    MultiHeader,
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


def decode_multi_request(data: bytes, pos: int = 0) -> list[MultiOp]:
    """The (op, request record) pairs of a MultiOperationRecord body (multi and multiRead).

    Raises jute.DecodeError for truncated bytes and for an op a multi cannot carry. No other
    validation: `normalize_multi` applies ZooKeeper's rules for a multi (op 14).
    """
    ops: list[MultiOp] = []
    hdr, pos = jute.decode(MultiHeader, data, pos)
    while not hdr.done:
        cls = _REQUEST_CLASSES.get(hdr.type)
        if cls is None:
            raise jute.DecodeError(f"invalid type of op in multi: {hdr.type}")
        rec: MultiRecord
        rec, pos = jute.decode(cls, data, pos)
        ops.append((hdr.type, rec))
        hdr, pos = jute.decode(MultiHeader, data, pos)
    return ops


def normalize_multi(ops: Sequence[tuple[int, object]]) -> list[MultiOp]:
    """The sub-ops of a multi as ZooKeeper's MultiOperationRecord sees them after decoding.

    A create whose flags say CONTAINER becomes a createContainer; a createTTL whose flags are
    not a TTL mode becomes a plain create (its ttl dropped). Raises MarshallingError where
    ZooKeeper's decoding fails: invalid create flags, a TTL flag on a create, a read op
    (multi is for writes only), or a record of the wrong class.
    """
    out: list[MultiOp] = []
    for op, rec in ops:
        if op in (OpCode.CREATE, OpCode.CREATE2, OpCode.CREATE_CONTAINER):
            if type(rec) is not CreateRequest:
                raise MarshallingError(f"bad record for op {op}")
            try:
                mode = CreateMode(rec.flags)
            except ValueError:
                raise MarshallingError(f"invalid flag {rec.flags} for create mode") from None
            if mode.ttl:
                raise MarshallingError("a TTL create mode needs createTTL")
            out.append((OpCode.CREATE_CONTAINER if mode == CreateMode.CONTAINER else op, rec))
        elif op == OpCode.CREATE_TTL:
            if type(rec) is not CreateTTLRequest:
                raise MarshallingError(f"bad record for op {op}")
            try:
                mode = CreateMode(rec.flags)
            except ValueError:
                mode = CreateMode.PERSISTENT
            if mode.ttl:
                out.append((op, rec))
            else:
                plain = CreateRequest(rec.path, rec.data, rec.acl, rec.flags)
                new_op = OpCode.CREATE_CONTAINER if mode == CreateMode.CONTAINER else OpCode.CREATE
                out.append((new_op, plain))
        elif op in (OpCode.DELETE, OpCode.SET_DATA, OpCode.CHECK):
            if type(rec) is not _REQUEST_CLASSES[op]:
                raise MarshallingError(f"bad record for op {op}")
            out.append((op, rec))  # type: ignore[arg-type]
        elif op in _READS:
            raise MarshallingError("read operations in a multi")
        else:
            raise MarshallingError(f"invalid type of op in multi: {op}")
    return out


def _prep_sub(ctx: OpContext, op: int, rec: MultiRecord) -> tuple[int, object]:
    if op == OpCode.SET_DATA:
        return prep_set_data(ctx, rec)  # type: ignore[arg-type]
    if op == OpCode.DELETE:
        return prep_delete(ctx, rec)  # type: ignore[arg-type]
    if op == OpCode.CHECK:
        return prep_check(ctx, rec)  # type: ignore[arg-type]
    return prep_create(ctx, op, rec)  # type: ignore[arg-type]


def prep_multi(ctx: OpContext, ops: list[MultiOp]) -> tuple[MultiTxn, bool]:
    """Prep normalized sub-ops into a MultiTxn; True when every sub-op succeeded.

    The sub-ops' change records are in ctx.view; the caller commits them only on success.
    """
    txns: list[Txn] = []
    failed = False
    encode = jute.encode
    for op, rec in ops:
        if failed:
            txns.append(Txn(int(OpCode.ERROR), _RUNTIME_INCONSISTENCY))
            continue
        try:
            txn_type, txn = _prep_sub(ctx, op, rec)
        except PrepError as e:
            failed = True
            txns.append(Txn(int(OpCode.ERROR), encode(ErrorTxn(int(e.err)))))
        else:
            txns.append(Txn(txn_type, encode(txn)))
    return MultiTxn(tuple(txns)), not failed
