"""Txn types: which record each txn type carries, and (de)coding of txn bodies.

A txn is `(TxnHeader, record)`. `hdr.type` selects the record class as ZooKeeper's
SerializeUtils.deserializeTxn does; a MultiTxn carries its sub-txns as `Txn(type, bytes)`,
decoded with the same table (only the types a multi may hold).
"""

from collections.abc import Callable, Iterable
from typing import TypeAlias, cast

from corral.proto import jute
from corral.proto.codes import OpCode
from corral.proto.records import (
    CheckVersionTxn,
    CloseSessionTxn,
    CreateContainerTxn,
    CreateSessionTxn,
    CreateTTLTxn,
    CreateTxn,
    CreateTxnV0,
    DeleteTxn,
    ErrorTxn,
    MultiTxn,
    SetACLTxn,
    SetDataTxn,
    Txn,
)

TxnRecord: TypeAlias = (
    CreateTxn
    | CreateContainerTxn
    | CreateTTLTxn
    | DeleteTxn
    | SetDataTxn
    | SetACLTxn
    | CheckVersionTxn
    | CreateSessionTxn
    | CloseSessionTxn
    | ErrorTxn
    | MultiTxn
)
# What a MultiTxn may contain.
SubTxnRecord: TypeAlias = (
    CreateTxn
    | CreateContainerTxn
    | CreateTTLTxn
    | DeleteTxn
    | SetDataTxn
    | CheckVersionTxn
    | ErrorTxn
)

_CLASSES: dict[int, type[TxnRecord]] = {
    OpCode.CREATE: CreateTxn,
    OpCode.CREATE2: CreateTxn,
    OpCode.CREATE_CONTAINER: CreateContainerTxn,
    OpCode.CREATE_TTL: CreateTTLTxn,
    OpCode.DELETE: DeleteTxn,
    OpCode.DELETE_CONTAINER: DeleteTxn,
    OpCode.SET_DATA: SetDataTxn,
    # A reconfig is logged as a setData of /zookeeper/config.
    OpCode.RECONFIG: SetDataTxn,
    OpCode.SET_ACL: SetACLTxn,
    OpCode.CHECK: CheckVersionTxn,
    OpCode.MULTI: MultiTxn,
    OpCode.CREATE_SESSION: CreateSessionTxn,
    OpCode.CLOSE_SESSION: CloseSessionTxn,
    OpCode.ERROR: ErrorTxn,
}

_SUB_TYPES = frozenset(
    {
        OpCode.CREATE,
        OpCode.CREATE2,
        OpCode.CREATE_CONTAINER,
        OpCode.CREATE_TTL,
        OpCode.DELETE,
        OpCode.DELETE_CONTAINER,
        OpCode.SET_DATA,
        OpCode.CHECK,
        OpCode.ERROR,
    }
)


# The compiled decoders of the sub-txn types (jute.decode's checks, without its wrapper).
_SUB_DECODERS: dict[int, Callable[[bytes, int], tuple[object, int]]] = {
    t: jute.raw_decoder(_CLASSES[t]) for t in _SUB_TYPES
}


class TxnTypeError(ValueError):
    """A txn type no record class belongs to (ZooKeeper: "Unsupported Txn with type")."""


def txn_class(type_: int) -> type[TxnRecord]:
    """The record class of a txn of this type; TxnTypeError for an unknown type."""
    try:
        return _CLASSES[type_]
    except KeyError:
        raise TxnTypeError(f"unsupported txn type {type_}") from None


def decode_txn(type_: int, data: bytes, pos: int = 0) -> tuple[TxnRecord | None, int]:
    """Decode the body of a logged txn of `type_` at `pos`; return it and its end offset.

    Follows ZooKeeper's reader for old logs: a create that does not decode as CreateTxn is
    read as CreateTxnV0 and given parent_cversion -1 (apply then derives it), and a
    closeSession without a body (before CloseSessionTxn existed) decodes as None. Anything
    else undecodable raises jute.DecodeError. Bytes after the record (a TxnDigest) are left.
    """
    cls = txn_class(type_)
    try:
        return jute.decode(cls, data, pos)
    except jute.DecodeError:
        if type_ == OpCode.CREATE:
            v0, end = jute.decode(CreateTxnV0, data, pos)
            return CreateTxn(v0.path, v0.data, v0.acl, v0.ephemeral, -1), end
        if type_ == OpCode.CLOSE_SESSION:
            return None, pos
        raise


def decode_sub_txn(type_: int, data: bytes | None) -> SubTxnRecord:
    """The record of one sub-txn of a MultiTxn (trailing bytes ignored, as ZooKeeper does).

    Raises TxnTypeError for a type a multi cannot hold and jute.DecodeError for bad bytes.
    """
    decode = _SUB_DECODERS.get(type_)
    if decode is None:
        raise TxnTypeError(f"invalid type of op in multi: {type_}")
    try:
        rec, _ = decode(data or b"", 0)
    except jute.DecodeError:
        raise
    except jute.DECODER_ERRORS as exc:
        raise jute.DecodeError(f"truncated or malformed sub-txn of type {type_}: {exc}") from None
    return cast(SubTxnRecord, rec)


def decode_sub_txns(multi: MultiTxn) -> list[tuple[int, SubTxnRecord]]:
    """The (type, record) of each sub-txn of a MultiTxn, in order."""
    return [(sub.type, decode_sub_txn(sub.type, sub.data)) for sub in multi.txns]


def encode_sub_txns(subs: Iterable[tuple[int, object]]) -> MultiTxn:
    """A MultiTxn holding these (type, record) sub-txns."""
    return MultiTxn(tuple(Txn(int(t), jute.encode(rec)) for t, rec in subs))
