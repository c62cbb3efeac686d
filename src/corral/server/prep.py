"""Prep: a write request -> the txn that will be logged and applied (PrepRequestProcessor).

`prep_write` turns one write request into `(TxnHeader, txn record)` with the zxid it is given.
Every write consumes that zxid, failing ones too: a rejected request becomes
`ErrorTxn(err)` with `hdr.type = OpCode.ERROR`, a multi whose sub-op fails a `MultiTxn`
carrying the error (see prep_multi). Checks run in ZooKeeper 3.9's order (prep_ops).

The tree is never changed here. `PendingChanges` remembers what each successfully prepped
txn will do, so a request prepped while earlier txns wait for their fsync sees their effects;
the caller calls `pending.applied(zxid)` once the tree has applied the txns up to `zxid`.

Requests are the decoded records of proto.records. A multi is passed as its ops, a sequence of
(op, record) pairs (`decode_multi_request` makes them from the body's bytes), or as the raw
body; undecodable bytes fail the request as ZooKeeper does (MARSHALLINGERROR, zxid consumed).
A top-level `check` is not a valid request (ZooKeeper answers UNIMPLEMENTED before prep) and
reads are not prep's job: both raise ValueError.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from corral.proto import jute
from corral.proto.codes import Err, OpCode
from corral.proto.records import (
    CloseSessionTxn,
    CreateRequest,
    CreateSessionTxn,
    CreateTTLRequest,
    CreateTxn,
    DeleteRequest,
    ErrorTxn,
    ReconfigRequest,
    SetACLRequest,
    SetDataRequest,
    SetDataTxn,
    TxnHeader,
)
from corral.server.acl import AuthIds
from corral.server.pending import ChangeRecord, PendingChanges, PrepView
from corral.server.prep_multi import (
    MultiOp,
    decode_multi_request,
    normalize_multi,
    prep_multi,
)
from corral.server.prep_ops import (
    MarshallingError,
    OpContext,
    PrepConfig,
    PrepError,
    prep_create,
    prep_delete,
    prep_delete_container,
    prep_set_acl,
    prep_set_data,
)
from corral.server.prep_reconfig import prep_reconfig

if TYPE_CHECKING:
    from corral.tree.datatree import DataTree
    from corral.tree.txn import TxnRecord

__all__ = [
    "ChangeRecord",
    "PendingChanges",
    "PrepConfig",
    "decode_multi_request",
    "prep_close_session",
    "prep_create_session",
    "prep_write",
]

log = logging.getLogger(__name__)

_NO_AUTH = AuthIds()
# Plain ints: comparing with an OpCode member costs a class attribute lookup each time.
_CLOSE_SESSION = int(OpCode.CLOSE_SESSION)
_CREATE_SESSION = int(OpCode.CREATE_SESSION)
_MULTI = int(OpCode.MULTI)
# TxnHeader: client_id long, cxid int, zxid long, time long, type int.
_TXN_HEADER_BYTES = 32
# A generous bound on what a create/setData/setACL txn adds to its variable-length parts
# (length prefixes, flags, versions, the ACL entries' fixed parts).
_TXN_FIXED_BYTES = 64

Request = (
    CreateRequest
    | CreateTTLRequest
    | DeleteRequest
    | SetDataRequest
    | SetACLRequest
    | ReconfigRequest
    | CreateSessionTxn
    | Sequence[tuple[int, object]]
    | bytes
    | str
    | int
    | None
)


def prep_write(
    tree: DataTree,
    pending: PendingChanges,
    op: OpCode | int,
    request: Request,
    *,
    session_id: int,
    cxid: int,
    zxid: int,
    time_ms: int,
    auth: AuthIds = _NO_AUTH,
    config: PrepConfig,
    session_ephemeral_error: Err = Err.OK,
    session_error: Err = Err.OK,
) -> tuple[TxnHeader, TxnRecord]:
    """The txn for write request `request` of type `op`, with this zxid and time.

    op/request: CREATE, CREATE2, CREATE_CONTAINER (CreateRequest); CREATE_TTL
    (CreateTTLRequest); DELETE (DeleteRequest); DELETE_CONTAINER (the path, a str: the
    reaper's internal request); SET_DATA (SetDataRequest); SET_ACL (SetACLRequest); MULTI
    (ops or body bytes); RECONFIG (ReconfigRequest); CREATE_SESSION (CreateSessionTxn or the
    timeout in ms); CLOSE_SESSION (None).
    session_error: the session check's outcome as the core found it (SESSIONEXPIRED when the
    session is unknown or closing, SESSIONMOVED); ZooKeeper reports it at the point of its
    checkSession call in each op, so it may lose to earlier checks.
    session_ephemeral_error: what an ephemeral create of this session fails with (OK: it may
    own ephemerals): EPHEMERALONLOCALSESSION for a local session of ours, SESSIONEXPIRED for
    another server's (ZooKeeper's checkGlobalSession).
    """
    if op == _CLOSE_SESSION:
        return prep_close_session(
            tree, pending, session_id=session_id, cxid=cxid, zxid=zxid, time_ms=time_ms
        )
    if op == _CREATE_SESSION:
        timeout = request.timeout if isinstance(request, CreateSessionTxn) else request
        if not isinstance(timeout, int):
            raise TypeError(f"createSession needs a timeout, got {request!r}")
        return prep_create_session(session_id, timeout, cxid=cxid, zxid=zxid, time_ms=time_ms)
    ctx = OpContext(
        PrepView(tree, pending),
        session_id,
        zxid,
        time_ms,
        auth,
        config,
        session_error,
        session_ephemeral_error,
    )
    try:
        if op == _MULTI:
            return _multi(ctx, pending, request, cxid)
        txn_type, txn = _single(ctx, op, request)
        if _too_big(config, txn):
            log.warning("txn for op %d on session %#x exceeds the txn size bound", op, session_id)
            raise PrepError(Err.BADARGUMENTS)
    except PrepError as e:
        return _error(session_id, cxid, zxid, time_ms, e.err)
    except MarshallingError as e:
        log.warning("request op %d from session %#x failed to marshal: %s", op, session_id, e)
        return _error(session_id, cxid, zxid, time_ms, Err.MARSHALLINGERROR)
    ctx.view.commit(pending)
    return TxnHeader(session_id, cxid, zxid, time_ms, txn_type), txn


def _single(ctx: OpContext, op: int, request: Request) -> tuple[int, TxnRecord]:
    entry = _SINGLE_OPS.get(op)
    t = type(request)
    if entry is not None and t is entry[0]:
        if entry[1] is None:  # reconfig (its checks: server/prep_reconfig.py)
            return prep_reconfig(ctx, request)  # type: ignore[arg-type]
        return entry[1](ctx, op, request)
    raise ValueError(f"prep_write cannot prep op {op} with {t.__name__}")


# op -> (the request's class, its prep function as (ctx, op, request) -> (type, txn));
# one dict lookup instead of a chain of OpCode comparisons. None: reconfig.
_SINGLE_OPS: dict[
    int, tuple[type, Callable[[OpContext, int, Any], tuple[int, TxnRecord]] | None]
] = {
    OpCode.SET_DATA: (SetDataRequest, lambda ctx, op, req: prep_set_data(ctx, req)),
    OpCode.CREATE: (CreateRequest, prep_create),
    OpCode.CREATE2: (CreateRequest, prep_create),
    OpCode.CREATE_CONTAINER: (CreateRequest, prep_create),
    OpCode.CREATE_TTL: (CreateTTLRequest, prep_create),
    OpCode.DELETE: (DeleteRequest, lambda ctx, op, req: prep_delete(ctx, req)),
    OpCode.SET_ACL: (SetACLRequest, lambda ctx, op, req: prep_set_acl(ctx, req)),
    OpCode.DELETE_CONTAINER: (str, lambda ctx, op, req: prep_delete_container(ctx, req)),
    OpCode.RECONFIG: (ReconfigRequest, None),
}


def _multi(
    ctx: OpContext, pending: PendingChanges, request: Request, cxid: int
) -> tuple[TxnHeader, TxnRecord]:
    raw: Sequence[tuple[int, object]]
    if isinstance(request, bytes | bytearray | memoryview):
        try:
            raw = decode_multi_request(bytes(request))
        except jute.ProtocolError as e:
            raise MarshallingError(str(e)) from None
    elif isinstance(request, list | tuple):
        raw = request
    else:
        raise ValueError(f"multi needs its ops, got {type(request).__name__}")
    ops: list[MultiOp] = normalize_multi(raw)
    multi, ok = prep_multi(ctx, ops)
    size = _TXN_HEADER_BYTES + 4 + sum(8 + len(t.data or b"") for t in multi.txns)
    if size > ctx.config.txn_bytes_max:
        log.warning("multi txn of %d bytes exceeds the txn size bound", size)
        raise PrepError(Err.BADARGUMENTS)
    if ok:
        ctx.view.commit(pending)
    return TxnHeader(ctx.session_id, cxid, ctx.zxid, ctx.time_ms, int(OpCode.MULTI)), multi


def _too_big(config: PrepConfig, txn: TxnRecord) -> bool:
    """Whether the txn exceeds config.txn_bytes_max; exact encoding only when it might."""
    bound = _TXN_HEADER_BYTES + _TXN_FIXED_BYTES
    t = type(txn)
    if t is SetDataTxn or t is CreateTxn:
        data = txn.data  # type: ignore[union-attr]
        bound += 3 * len(txn.path) + (0 if data is None else len(data))  # type: ignore[union-attr]
        if t is SetDataTxn and bound <= config.txn_bytes_max:
            return False
    else:
        data = getattr(txn, "data", None)
        bound += 3 * len(getattr(txn, "path", "")) + (0 if data is None else len(data))
    for entry in getattr(txn, "acl", ()):
        bound += 16 + 3 * (len(entry.id.scheme) + len(entry.id.id))
    if bound <= config.txn_bytes_max:
        return False
    return _TXN_HEADER_BYTES + len(jute.encode(txn)) > config.txn_bytes_max


def _error(
    session_id: int, cxid: int, zxid: int, time_ms: int, err: Err
) -> tuple[TxnHeader, ErrorTxn]:
    return TxnHeader(session_id, cxid, zxid, time_ms, int(OpCode.ERROR)), ErrorTxn(int(err))


def prep_create_session(
    session_id: int, timeout_ms: int, *, cxid: int = 0, zxid: int, time_ms: int
) -> tuple[TxnHeader, CreateSessionTxn]:
    """The createSession txn of a new global session (its negotiated timeout)."""
    return (
        TxnHeader(session_id, cxid, zxid, time_ms, int(OpCode.CREATE_SESSION)),
        CreateSessionTxn(timeout_ms),
    )


def prep_close_session(
    tree: DataTree,
    pending: PendingChanges,
    *,
    session_id: int,
    cxid: int = 0,
    zxid: int,
    time_ms: int,
) -> tuple[TxnHeader, CloseSessionTxn]:
    """The closeSession txn: it lists every ephemeral the session will own once the pending
    txns are applied (the tree's, plus pending creates, minus pending deletes).

    No session check (the expiry path closes sessions it does not own). The paths are sorted
    so the txn does not depend on set order (ZooKeeper lists them in HashSet order).
    """
    doomed = set(tree.ephemerals(session_id))
    for rec in pending.records():
        if not rec.exists:
            doomed.discard(rec.path)
        elif rec.ephemeral_owner == session_id:
            doomed.add(rec.path)
    paths = tuple(sorted(doomed))
    view = PrepView(tree, pending)
    for path in paths:
        cut = path.rfind("/")
        parent_path = path[:cut] or "/"
        parent = view.lookup(parent_path)
        if parent is not None:
            # ZooKeeper leaves the parent's child count alone here, so deleting the parent
            # before this txn applies fails with NOTEMPTY there; we count the removal.
            rec = ChangeRecord.copy_of(parent, parent_path, zxid)
            rec.child_count -= 1
            view.add(rec)
        view.add(ChangeRecord(zxid, path, False))
    view.commit(pending)
    return (
        TxnHeader(session_id, cxid, zxid, time_ms, int(OpCode.CLOSE_SESSION)),
        CloseSessionTxn(paths),
    )
