"""The per-operation half of prep: one write request (or multi sub-op) -> one txn record.

Each function mirrors a branch of ZooKeeper 3.9's PrepRequestProcessor.pRequest2Txn and
performs its checks in the same order, because the order decides which error a client gets
when several apply (a create with a bad ACL under a missing parent is INVALIDACL, not NONODE).
A failed check raises `PrepError(err)`; conditions ZooKeeper meets with an unchecked Java
exception (the request then fails as a whole with MARSHALLINGERROR) raise `MarshallingError`.
Successful ops record their effect in the `PrepView` so later requests see it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from corral import limits
from corral.proto.codes import CreateMode, Err, OpCode, Perm
from corral.proto.records import (
    ACL,
    CheckVersionRequest,
    CheckVersionTxn,
    CreateContainerTxn,
    CreateRequest,
    CreateTTLRequest,
    CreateTTLTxn,
    CreateTxn,
    DeleteRequest,
    DeleteTxn,
    ReconfigRequest,
    SetACLRequest,
    SetACLTxn,
    SetDataRequest,
    SetDataTxn,
)
from corral.server import acl as aclmod
from corral.server.acl import AuthIds, AuthProviders, InvalidACL
from corral.server.pending import ChangeRecord, NodeLike, PrepView, child_count
from corral.tree import quota
from corral.tree.paths import InvalidPath, validate_path
from corral.tree.znode import CONTAINER_OWNER, TTL_MAX_MS, ttl_owner

__all__ = [
    "CREATE2_TXN_TYPE",
    "SPECIAL_PATHS",
    "MarshallingError",
    "OpContext",
    "PrepConfig",
    "PrepError",
    "prep_check",
    "prep_create",
    "prep_delete",
    "prep_delete_container",
    "prep_set_acl",
    "prep_set_data",
]

# The txn type a create2 is logged with: 15, as ZooKeeper logs it, so our logs match its own.
CREATE2_TXN_TYPE = OpCode.CREATE2

# Nodes that can never be deleted (DataTree.isSpecialPath).
SPECIAL_PATHS = frozenset({"/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"})

# Create flags -> (ephemeral, sequential, ttl), to avoid enum work on the hot path.
_CREATE_FLAGS: dict[int, tuple[bool, bool, bool]] = {
    int(m): (m.ephemeral, m.sequential, m.ttl) for m in CreateMode
}
_CREATE = int(OpCode.CREATE)
_CREATE2 = int(OpCode.CREATE2)
_CREATE2_TXN = int(CREATE2_TXN_TYPE)
_CREATE_CONTAINER = int(OpCode.CREATE_CONTAINER)
_CREATE_TTL = int(OpCode.CREATE_TTL)
_SET_DATA = int(OpCode.SET_DATA)
_DELETE = int(OpCode.DELETE)
_DELETE_CONTAINER = int(OpCode.DELETE_CONTAINER)
_SET_ACL = int(OpCode.SET_ACL)
_CHECK = int(OpCode.CHECK)
# Perm bits as plain ints (an IntFlag costs a class attribute lookup and an int() each use).
_PERM_READ = int(Perm.READ)
_PERM_WRITE = int(Perm.WRITE)
_PERM_CREATE = int(Perm.CREATE)
_PERM_DELETE = int(Perm.DELETE)
_PERM_ADMIN = int(Perm.ADMIN)

_EXTENDED_MASK = 0xFF00000000000000
_RESERVED_BITS_MASK = 0x00FFFF0000000000


@dataclass(frozen=True, slots=True)
class PrepConfig:
    """The settings prep depends on (ZooKeeper system properties in brackets).

    skip_acl: [zookeeper.skipACL=yes] no ACL checks.
    extended_types_enabled: [zookeeper.extendedTypesEnabled] TTL nodes allowed.
    reconfig_enabled: [reconfigEnabled] reconfig answers UNIMPLEMENTED in standalone instead of
        RECONFIGDISABLED.
    enforce_quota: [zookeeper.enforceQuota] hard quotas reject creates/setData.
    txn_bytes_max: the largest txn (TxnHeader + record, as logged) prep lets through; beyond it
        the request fails with BADARGUMENTS. ZooKeeper's readers refuse log entries and quorum
        packets over jute.maxbuffer + jute.maxbuffer.extrasize (ZOOKEEPER-3496), so a txn that
        large would make the log unreadable.
    providers: the auth providers ACLs are checked and validated with.
    reconfig: an established leader's reconfig planner (server/prep_reconfig.py): the request
        and its zxid -> (error code, the new config's text); None where reconfig cannot run
        (standalone, which answers UNIMPLEMENTED).
    """

    skip_acl: bool = False
    extended_types_enabled: bool = False
    reconfig_enabled: bool = False
    enforce_quota: bool = False
    txn_bytes_max: int = limits.jute_maxbuffer_bytes + limits.jute_maxbuffer_extrasize_bytes
    providers: AuthProviders = aclmod.DEFAULT_PROVIDERS
    reconfig: Callable[[ReconfigRequest, int], tuple[int, bytes]] | None = None


class PrepError(Exception):
    """A request ZooKeeper rejects with a KeeperException: it becomes ErrorTxn(err)."""

    def __init__(self, err: Err) -> None:
        super().__init__(err.name)
        self.err = err


class MarshallingError(Exception):
    """A request ZooKeeper fails as a whole with MARSHALLINGERROR (even inside a multi)."""


@dataclass(slots=True)
class OpContext:
    """One request's prep inputs; `zxid` and `time_ms` are its TxnHeader's."""

    view: PrepView
    session_id: int
    zxid: int
    time_ms: int
    auth: AuthIds
    config: PrepConfig
    session_error: Err = Err.OK
    session_ephemeral_error: Err = Err.OK

    def check_session(self) -> None:
        """SessionTracker.checkSession: SESSIONEXPIRED / SESSIONMOVED as the core found it."""
        if self.session_error:
            raise PrepError(self.session_error)

    def require(self, node_acl: tuple[ACL, ...], perm: Perm | int) -> None:
        cfg = self.config
        if not aclmod.check(node_acl, perm, self.auth, cfg.skip_acl, cfg.providers):
            raise PrepError(Err.NOAUTH)

    def get(self, path: str) -> NodeLike:
        node = self.view.lookup(path)
        if node is None:
            raise PrepError(Err.NONODE)
        return node

    def fix_acl(self, acl: tuple[ACL, ...]) -> tuple[ACL, ...]:
        try:
            return aclmod.fix_acl(acl, self.auth, self.config.providers)
        except InvalidACL:
            raise PrepError(Err.INVALIDACL) from None


def _int32(v: int) -> int:
    return ((v + 0x80000000) & 0xFFFFFFFF) - 0x80000000


def _next_version(current: int, expected: int) -> int:
    """checkAndIncVersion (3.9): -1 matches anything; the new version wraps as a Java int."""
    if expected != -1 and expected != current:
        raise PrepError(Err.BADVERSION)
    return _int32(current + 1)


def _is_normal_ephemeral(owner: int, extended: bool) -> bool:
    """EphemeralType.get(owner) == NORMAL (a session-owned ephemeral)."""
    if owner == 0 or owner == CONTAINER_OWNER:
        return False
    if extended and owner & _EXTENDED_MASK == _EXTENDED_MASK:
        if owner & _RESERVED_BITS_MASK:
            # ZooKeeper throws IllegalArgumentException("Invalid ephemeralOwner").
            raise MarshallingError(f"invalid ephemeral owner {owner:#x}")
        return False  # a TTL node
    return True


def _validate(path: str) -> None:
    try:
        validate_path(path)
    except InvalidPath:
        raise PrepError(Err.BADARGUMENTS) from None


def _parent_for_delete(path: str) -> str:
    """getParentPathAndValidate: the parent's path; special nodes cannot be deleted."""
    cut = path.rfind("/")
    if cut == -1 or "\0" in path or path in SPECIAL_PATHS:
        raise PrepError(Err.BADARGUMENTS)
    # ZooKeeper's parent of "/a" is "", which its node table maps to the root.
    return path[:cut] or "/"


def _check_quota(ctx: OpContext, path: str, bytes_diff: int, count_diff: int) -> None:
    """ZooKeeperServer.checkQuota: only hard limits reject (QUOTAEXCEEDED); soft limits are
    merely logged by ZooKeeper. Usage is read from the applied tree, as ZooKeeper does."""
    if not ctx.config.enforce_quota:
        return
    tree = ctx.view.tree
    prefix = tree.max_prefix_with_quota(path)
    if prefix is None:
        return
    limit_node = tree.nodes.get(quota.limit_path(prefix))
    if limit_node is None:
        return
    limits = quota.parse_stats(limit_node.data)
    count_hard = limits.get("countHardLimit", -1)
    bytes_hard = limits.get("byteHardLimit", -1)
    check_count = count_diff != 0 and count_hard > -1
    check_bytes = bytes_diff != 0 and bytes_hard > -1
    if not (check_count or check_bytes):
        return
    stat_node = tree.nodes.get(quota.stat_path(prefix))
    if stat_node is None:
        return
    usage = quota.parse_stats(stat_node.data)
    if check_count and usage.get("count", -1) + count_diff > count_hard:
        raise PrepError(Err.QUOTAEXCEEDED)
    if check_bytes and usage.get("bytes", -1) + bytes_diff > bytes_hard:
        raise PrepError(Err.QUOTAEXCEEDED)


def prep_create(
    ctx: OpContext, op: int, req: CreateRequest | CreateTTLRequest
) -> tuple[int, CreateTxn | CreateContainerTxn | CreateTTLTxn]:
    """create / create2 / createContainer / createTTL (pRequest2TxnCreate)."""
    flags = _CREATE_FLAGS.get(req.flags)
    if flags is None:
        raise PrepError(Err.BADARGUMENTS)
    ephemeral, sequential, is_ttl = flags
    ttl = req.ttl if type(req) is CreateTTLRequest else -1
    # validateCreateRequest
    if is_ttl:
        if not ctx.config.extended_types_enabled:
            raise PrepError(Err.UNIMPLEMENTED)
        if not 0 < ttl <= TTL_MAX_MS:
            raise PrepError(Err.BADARGUMENTS)
    elif ttl >= 0 or op == _CREATE_TTL:
        # ZooKeeper lets a createTTL with a non-TTL mode and a negative ttl through, and the
        # CreateTTLTxn it logs then fails to apply; we refuse it here instead.
        raise PrepError(Err.BADARGUMENTS)
    if ephemeral and ctx.session_ephemeral_error != Err.OK:
        raise PrepError(ctx.session_ephemeral_error)
    ctx.check_session()
    # validatePathForCreate: only the cheap checks before the parent is looked up.
    path = req.path
    cut = path.rfind("/")
    if cut == -1 or "\0" in path:
        raise PrepError(Err.BADARGUMENTS)
    parent_path = path[:cut] or "/"
    acl = ctx.fix_acl(req.acl)
    parent = ctx.get(parent_path)
    ctx.require(parent.acl, _PERM_CREATE)
    parent_cversion = parent.cversion
    if sequential:
        # The suffix is the parent's stored cversion: children ever created under it.
        path = f"{path}{parent_cversion:010d}"
    _validate(path)
    view = ctx.view
    if view.lookup(path) is not None:
        raise PrepError(Err.NODEEXISTS)
    if _is_normal_ephemeral(parent.ephemeral_owner, ctx.config.extended_types_enabled):
        raise PrepError(Err.NOCHILDRENFOREPHEMERALS)
    data = req.data
    _check_quota(ctx, path, 0 if data is None else len(data), 1)
    new_cversion = _int32(parent_cversion + 1)
    txn: CreateTxn | CreateContainerTxn | CreateTTLTxn
    if op == _CREATE_CONTAINER:
        txn = CreateContainerTxn(path, data, acl, new_cversion)
        txn_type = _CREATE_CONTAINER
        owner = CONTAINER_OWNER
    elif op == _CREATE_TTL:
        txn = CreateTTLTxn(path, data, acl, new_cversion, ttl)
        txn_type = _CREATE_TTL
        owner = ttl_owner(ttl)
    else:
        # A CONTAINER flag on a plain create yields a persistent node, as the tree applies it.
        txn = CreateTxn(path, data, acl, ephemeral, new_cversion)
        txn_type = _CREATE2_TXN if op == _CREATE2 else _CREATE
        owner = ctx.session_id if ephemeral else 0
    zxid = ctx.zxid
    parent_rec = ChangeRecord.copy_of(parent, parent_path, zxid)
    parent_rec.child_count += 1
    # The tree only ever raises a cversion (DataTree.createNode), so after the Java int wraps
    # it stays put and the next sequential name collides, in ZooKeeper as here.
    if new_cversion > parent_cversion:
        parent_rec.cversion = new_cversion
    view.add(parent_rec)
    view.add(ChangeRecord(zxid, path, True, data, acl, 0, 0, 0, owner, 0))
    return txn_type, txn


def prep_delete(ctx: OpContext, req: DeleteRequest) -> tuple[int, DeleteTxn]:
    """delete: DELETE permission on the parent; version; no children."""
    ctx.check_session()
    path = req.path
    parent_path = _parent_for_delete(path)
    parent = ctx.get(parent_path)
    ctx.require(parent.acl, _PERM_DELETE)
    node = ctx.get(path)
    _next_version(node.version, req.version)
    if child_count(node) > 0:
        raise PrepError(Err.NOTEMPTY)
    _record_delete(ctx, path, parent_path, parent)
    return _DELETE, DeleteTxn(path)


def prep_delete_container(ctx: OpContext, path: str) -> tuple[int, DeleteTxn]:
    """deleteContainer (the reaper's delete of an empty container or expired TTL node).

    No session or ACL check; a session-owned ephemeral is refused with BADVERSION as ZooKeeper
    does. Logged as ZooKeeper logs it: type 20 with a DeleteTxn.
    """
    parent_path = _parent_for_delete(path)
    node = ctx.get(path)
    if child_count(node) > 0:
        raise PrepError(Err.NOTEMPTY)
    if _is_normal_ephemeral(node.ephemeral_owner, ctx.config.extended_types_enabled):
        raise PrepError(Err.BADVERSION)
    parent = ctx.get(parent_path)
    _record_delete(ctx, path, parent_path, parent)
    return _DELETE_CONTAINER, DeleteTxn(path)


def _record_delete(ctx: OpContext, path: str, parent_path: str, parent: NodeLike) -> None:
    zxid = ctx.zxid
    parent_rec = ChangeRecord.copy_of(parent, parent_path, zxid)
    parent_rec.child_count -= 1
    ctx.view.add(parent_rec)
    ctx.view.add(ChangeRecord(zxid, path, False))


def prep_set_data(ctx: OpContext, req: SetDataRequest) -> tuple[int, SetDataTxn]:
    """setData: WRITE on the node; version; the new version wraps as a Java int."""
    ctx.check_session()
    path = req.path
    _validate(path)
    node = ctx.get(path)
    ctx.require(node.acl, _PERM_WRITE)
    data = req.data
    if ctx.config.enforce_quota:
        old = node.data
        _check_quota(
            ctx, path, (0 if data is None else len(data)) - (0 if old is None else len(old)), 0
        )
    version = _next_version(node.version, req.version)
    rec = ChangeRecord.copy_of(node, path, ctx.zxid)
    rec.version = version
    rec.data = data
    ctx.view.add(rec)
    return _SET_DATA, SetDataTxn(path, data, version)


def prep_set_acl(ctx: OpContext, req: SetACLRequest) -> tuple[int, SetACLTxn]:
    """setACL: the new ACL is fixed up first, then ADMIN on the node and the aversion."""
    ctx.check_session()
    path = req.path
    _validate(path)
    acl = ctx.fix_acl(req.acl)
    node = ctx.get(path)
    ctx.require(node.acl, _PERM_ADMIN)
    aversion = _next_version(node.aversion, req.version)
    rec = ChangeRecord.copy_of(node, path, ctx.zxid)
    rec.aversion = aversion
    # ZooKeeper's record keeps the old ACL until the txn applies; later requests should
    # already be checked against the new one.
    rec.acl = acl
    ctx.view.add(rec)
    return _SET_ACL, SetACLTxn(path, acl, aversion)


def prep_check(ctx: OpContext, req: CheckVersionRequest) -> tuple[int, CheckVersionTxn]:
    """check (inside a multi): READ on the node and its data version.

    The txn carries the version plus one, as ZooKeeper logs it; nothing changes.
    """
    ctx.check_session()
    path = req.path
    _validate(path)
    node = ctx.get(path)
    ctx.require(node.acl, _PERM_READ)
    return _CHECK, CheckVersionTxn(path, _next_version(node.version, req.version))
