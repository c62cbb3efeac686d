"""server/prep.py: write requests -> txns, in ZooKeeper 3.9's check order, with pending changes.

Most tests run each txn through DataTree.apply_txn right away; the pipelined ones leave txns
unapplied (waiting for their "fsync") to check that later requests see their effects.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.proto import jute
from corral.proto.codes import CreateMode, Err, OpCode, Perm
from corral.proto.records import (
    ACL,
    CheckVersionRequest,
    CheckVersionTxn,
    CloseSessionTxn,
    CreateContainerTxn,
    CreateRequest,
    CreateSessionTxn,
    CreateTTLRequest,
    CreateTTLTxn,
    CreateTxn,
    DeleteRequest,
    DeleteTxn,
    ErrorTxn,
    GetDataRequest,
    Id,
    MultiHeader,
    MultiTxn,
    ReconfigRequest,
    SetACLRequest,
    SetACLTxn,
    SetDataRequest,
    SetDataTxn,
    Txn,
    TxnHeader,
)
from corral.server.acl import CREATOR_ALL_ACL, OPEN_ACL_UNSAFE, AuthIds, digest_id
from corral.server.prep import (
    PendingChanges,
    PrepConfig,
    decode_multi_request,
    prep_write,
)
from corral.tree.datatree import ApplyResult, DataTree
from corral.tree.znode import CONTAINER_OWNER, ttl_owner

S1 = 0x100
S2 = 0x200
IP = AuthIds.of((Id("ip", "127.0.0.1"),))
ALICE_ID = Id("digest", digest_id("alice:pw"))
ALICE = AuthIds.of((Id("ip", "127.0.0.1"), ALICE_ID))
BOB = AuthIds.of((Id("ip", "127.0.0.1"), Id("digest", digest_id("bob:pw"))))
OPEN = OPEN_ACL_UNSAFE
Prepped = tuple[TxnHeader, object]


@dataclass
class Harness:
    config: PrepConfig = field(default_factory=PrepConfig)
    pipelined: bool = False
    tree: DataTree = field(default_factory=DataTree)
    pending: PendingChanges = field(default_factory=PendingChanges)
    zxid: int = 0
    unapplied: list[Prepped] = field(default_factory=list)
    results: list[ApplyResult] = field(default_factory=list)

    def prep(
        self,
        op: int,
        request: object,
        *,
        session: int = S1,
        auth: AuthIds = IP,
        **kw: Any,
    ) -> Prepped:
        self.zxid += 1
        hdr, txn = prep_write(
            self.tree,
            self.pending,
            op,
            request,  # type: ignore[arg-type]
            session_id=session,
            cxid=7,
            zxid=self.zxid,
            time_ms=1_000 + self.zxid,
            auth=auth,
            config=self.config,
            **kw,
        )
        assert hdr.zxid == self.zxid and hdr.client_id == session and hdr.cxid == 7
        self.unapplied.append((hdr, txn))
        if not self.pipelined:
            self.apply_all()
        return hdr, txn

    def apply_some(self, n: int) -> None:
        for hdr, txn in self.unapplied[:n]:
            self.results.append(self.tree.apply_txn(hdr, txn))  # type: ignore[arg-type]
            self.pending.applied(hdr.zxid)
        del self.unapplied[:n]

    def apply_all(self) -> None:
        self.apply_some(len(self.unapplied))

    def err(self, op: int, request: object, **kw: Any) -> Err:
        hdr, txn = self.prep(op, request, **kw)
        if hdr.type == OpCode.ERROR:
            assert isinstance(txn, ErrorTxn)
            return Err(txn.err)
        return Err.OK

    def create(
        self,
        path: str,
        data: bytes = b"",
        mode: CreateMode = CreateMode.PERSISTENT,
        acl: tuple[ACL, ...] = OPEN,
        **kw: Any,
    ) -> Prepped:
        return self.prep(OpCode.CREATE, CreateRequest(path, data, acl, int(mode)), **kw)

    def create_err(self, path: str, mode: CreateMode = CreateMode.PERSISTENT, **kw: Any) -> Err:
        acl = kw.pop("acl", OPEN)
        return self.err(OpCode.CREATE, CreateRequest(path, b"", acl, int(mode)), **kw)


def error_of(prepped: Prepped) -> Err | None:
    hdr, txn = prepped
    if hdr.type != OpCode.ERROR:
        return None
    assert isinstance(txn, ErrorTxn)
    return Err(txn.err)


# --- create ---


def test_create_txn_and_header() -> None:
    h = Harness()
    hdr, txn = h.create("/a", b"x")
    assert hdr == TxnHeader(S1, 7, 1, 1001, int(OpCode.CREATE))
    assert txn == CreateTxn("/a", b"x", OPEN, False, 1)
    assert h.tree.nodes["/a"].data == b"x"
    # The parent's new stored cversion goes into the txn.
    _, txn = h.create("/b")
    assert txn == CreateTxn("/b", b"", OPEN, False, 2)
    _, txn = h.create("/a/c", mode=CreateMode.EPHEMERAL)
    assert txn == CreateTxn("/a/c", b"", OPEN, True, 1)
    assert h.tree.nodes["/a/c"].ephemeral_owner == S1


def test_create2_is_logged_as_zookeeper_logs_it() -> None:
    h = Harness()
    hdr, txn = h.prep(OpCode.CREATE2, CreateRequest("/a", None, OPEN, 0))
    assert hdr.type == OpCode.CREATE2
    assert txn == CreateTxn("/a", None, OPEN, False, 1)


def test_sequential_suffix_counts_child_creations() -> None:
    h = Harness()
    h.create("/p")
    names = []
    for _ in range(3):
        _, txn = h.create("/p/n-", mode=CreateMode.PERSISTENT_SEQUENTIAL)
        assert isinstance(txn, CreateTxn)
        names.append(txn.path)
        h.prep(OpCode.DELETE, DeleteRequest(txn.path, -1))
    assert names == ["/p/n-0000000000", "/p/n-0000000001", "/p/n-0000000002"]
    # Any child creation counts, sequential or not.
    h.create("/p/plain")
    _, txn = h.create("/p/", mode=CreateMode.EPHEMERAL_SEQUENTIAL)
    assert isinstance(txn, CreateTxn) and txn.path == "/p/0000000004" and txn.ephemeral


def test_sequential_suffix_of_a_negative_cversion() -> None:
    h = Harness()
    h.create("/p")
    h.tree.nodes["/p"].cversion = 2**31 - 1
    _, txn = h.create("/p/s", mode=CreateMode.PERSISTENT_SEQUENTIAL)
    assert isinstance(txn, CreateTxn)
    assert txn.path == "/p/s2147483647" and txn.parent_cversion == -(2**31)
    # The tree does not lower the stored cversion, so the same name comes again (ZooKeeper too).
    assert h.tree.nodes["/p"].cversion == 2**31 - 1
    assert h.create_err("/p/s", CreateMode.PERSISTENT_SEQUENTIAL) == Err.NODEEXISTS
    h.tree.nodes["/p"].cversion = -5
    _, txn = h.create("/p/s", mode=CreateMode.PERSISTENT_SEQUENTIAL)
    assert isinstance(txn, CreateTxn) and txn.path == "/p/s-000000005"


def test_sequential_nodeexists_is_checked_after_suffixing() -> None:
    h = Harness()
    h.create("/p")
    h.create("/p/x0000000002")
    assert error_of(h.create("/p/x", mode=CreateMode.PERSISTENT_SEQUENTIAL)) is None
    assert h.create_err("/p/x", CreateMode.PERSISTENT_SEQUENTIAL) == Err.NODEEXISTS


def test_create_error_order() -> None:
    h = Harness()
    h.create("/a")
    h.create("/locked", acl=(ACL(int(Perm.READ), Id("world", "anyone")),))
    h.create("/eph", mode=CreateMode.EPHEMERAL)
    assert h.create_err("/x", 7) == Err.BADARGUMENTS  # type: ignore[arg-type]
    assert h.create_err("noslash") == Err.BADARGUMENTS
    assert h.create_err("/a\0b") == Err.BADARGUMENTS
    # The ACL is checked before the parent is looked up ...
    assert h.create_err("/missing/x", acl=()) == Err.INVALIDACL
    assert h.create_err("/missing/x") == Err.NONODE
    # ... the parent's CREATE permission before the path's validity and existence ...
    assert h.create_err("/locked/x") == Err.NOAUTH
    assert h.create_err("/locked/") == Err.NOAUTH
    # ... and the full path is validated only then.
    assert h.create_err("//x") == Err.BADARGUMENTS
    assert h.create_err("/a/") == Err.BADARGUMENTS
    assert h.create_err("/a/./b") == Err.NONODE
    assert h.create_err("/a/.") == Err.BADARGUMENTS
    assert h.create_err("/a") == Err.NODEEXISTS
    assert h.create_err("/eph/x") == Err.NOCHILDRENFOREPHEMERALS
    assert h.create_err("/eph") == Err.NODEEXISTS  # existence before the ephemeral parent
    assert h.create_err("/zookeeper/x") == Err.OK


def test_auth_acl_needs_an_authenticated_id() -> None:
    h = Harness()
    assert h.create_err("/a", acl=CREATOR_ALL_ACL) == Err.INVALIDACL
    _, txn = h.create("/a", acl=CREATOR_ALL_ACL, auth=ALICE)
    assert isinstance(txn, CreateTxn) and txn.acl == (ACL(31, ALICE_ID),)
    assert h.create_err("/a/b", auth=BOB) == Err.NOAUTH
    assert h.create_err("/a/b", auth=ALICE) == Err.OK
    # skipACL ignores the node's ACL, not fixupACL.
    skip = Harness(PrepConfig(skip_acl=True), tree=h.tree)
    assert skip.create_err("/a/c", auth=BOB) == Err.OK
    assert skip.create_err("/a/d", auth=BOB, acl=()) == Err.INVALIDACL


def test_session_checks() -> None:
    h = Harness()
    assert h.create_err(
        "/e", CreateMode.EPHEMERAL, session_ephemeral_error=Err.EPHEMERALONLOCALSESSION
    ) == (Err.EPHEMERALONLOCALSESSION)
    assert h.create_err("/p", session_ephemeral_error=Err.EPHEMERALONLOCALSESSION) == Err.OK
    # Another server's local session, seen by the leader: ZooKeeper's checkGlobalSession.
    assert h.create_err("/e", CreateMode.EPHEMERAL, session_ephemeral_error=Err.SESSIONEXPIRED) == (
        Err.SESSIONEXPIRED
    )
    assert h.create_err("/q", session_error=Err.SESSIONEXPIRED) == Err.SESSIONEXPIRED
    # The session is checked after the create mode and TTL, before the path.
    assert h.create_err("", 9, session_error=Err.SESSIONMOVED) == Err.BADARGUMENTS  # type: ignore[arg-type]
    assert h.create_err("", session_error=Err.SESSIONMOVED) == Err.SESSIONMOVED
    assert (
        h.err(OpCode.SET_DATA, SetDataRequest("/p", b"", -1), session_error=Err.SESSIONEXPIRED)
        == Err.SESSIONEXPIRED
    )
    assert h.err(OpCode.DELETE, DeleteRequest("/", -1), session_error=Err.SESSIONEXPIRED) == (
        Err.SESSIONEXPIRED
    )


def test_containers() -> None:
    h = Harness()
    hdr, txn = h.prep(OpCode.CREATE_CONTAINER, CreateRequest("/c", b"", OPEN, 4))
    assert hdr.type == OpCode.CREATE_CONTAINER
    assert txn == CreateContainerTxn("/c", b"", OPEN, 1)
    assert h.tree.nodes["/c"].ephemeral_owner == CONTAINER_OWNER
    # A container may have children; the CONTAINER flag on a plain create is a persistent node.
    assert h.create_err("/c/x") == Err.OK
    _, txn = h.create("/notc", mode=CreateMode.CONTAINER)
    assert txn == CreateTxn("/notc", b"", OPEN, False, 2)


def test_ttl_nodes() -> None:
    ttl = CreateTTLRequest("/t", b"", OPEN, int(CreateMode.PERSISTENT_WITH_TTL), 5000)
    off = Harness()
    assert off.err(OpCode.CREATE_TTL, ttl) == Err.UNIMPLEMENTED
    assert off.create_err("/t", CreateMode.PERSISTENT_WITH_TTL) == Err.UNIMPLEMENTED
    h = Harness(PrepConfig(extended_types_enabled=True))
    assert h.create_err("/t", CreateMode.PERSISTENT_WITH_TTL) == Err.BADARGUMENTS
    for bad in (0, -1, 2**40):
        assert h.err(OpCode.CREATE_TTL, CreateTTLRequest("/t", b"", OPEN, 5, bad)) == (
            Err.BADARGUMENTS
        )
    # A non-TTL mode with a ttl is refused (and without one: ZooKeeper would log a broken txn).
    assert h.err(OpCode.CREATE_TTL, CreateTTLRequest("/t", b"", OPEN, 0, 10)) == Err.BADARGUMENTS
    assert h.err(OpCode.CREATE_TTL, CreateTTLRequest("/t", b"", OPEN, 0, -1)) == Err.BADARGUMENTS
    hdr, txn = h.prep(OpCode.CREATE_TTL, ttl)
    assert hdr.type == OpCode.CREATE_TTL
    assert txn == CreateTTLTxn("/t", b"", OPEN, 1, 5000)
    assert h.tree.nodes["/t"].ephemeral_owner == ttl_owner(5000)
    # A TTL node is not an ephemeral parent when extended types are on.
    assert h.create_err("/t/x") == Err.OK
    _, txn = h.prep(OpCode.CREATE_TTL, CreateTTLRequest("/t/s", b"", OPEN, 6, 1))
    assert isinstance(txn, CreateTTLTxn) and txn.path == "/t/s0000000001"


# --- delete ---


def test_delete() -> None:
    h = Harness()
    h.create("/a")
    h.create("/a/b")
    h.create("/locked", acl=(ACL(int(Perm.ALL & ~Perm.DELETE), Id("world", "anyone")),))
    h.create("/locked/x")
    for special in ("/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config", "", "a", "/a\0"):
        assert h.err(OpCode.DELETE, DeleteRequest(special, -1)) == Err.BADARGUMENTS, special
    assert h.err(OpCode.DELETE, DeleteRequest("/missing/x", -1)) == Err.NONODE
    assert h.err(OpCode.DELETE, DeleteRequest("/locked/nothing", -1)) == Err.NOAUTH
    assert h.err(OpCode.DELETE, DeleteRequest("/a/", -1)) == Err.NONODE
    assert h.err(OpCode.DELETE, DeleteRequest("/a/b", 3)) == Err.BADVERSION
    assert h.err(OpCode.DELETE, DeleteRequest("/a", 5)) == Err.BADVERSION  # before NOTEMPTY
    assert h.err(OpCode.DELETE, DeleteRequest("/a", 0)) == Err.NOTEMPTY
    hdr, txn = h.prep(OpCode.DELETE, DeleteRequest("/a/b", 0))
    assert hdr.type == OpCode.DELETE and txn == DeleteTxn("/a/b")
    assert h.err(OpCode.DELETE, DeleteRequest("/a", -1)) == Err.OK
    assert "/a" not in h.tree.nodes


def test_delete_container() -> None:
    h = Harness()
    h.prep(OpCode.CREATE_CONTAINER, CreateRequest("/c", b"", OPEN, 4))
    h.create("/c/x")
    h.create("/e", mode=CreateMode.EPHEMERAL)
    assert h.err(OpCode.DELETE_CONTAINER, "/c") == Err.NOTEMPTY
    assert h.err(OpCode.DELETE_CONTAINER, "/e") == Err.BADVERSION
    assert h.err(OpCode.DELETE_CONTAINER, "/zookeeper") == Err.BADARGUMENTS
    assert h.err(OpCode.DELETE_CONTAINER, "/nope") == Err.NONODE
    h.prep(OpCode.DELETE, DeleteRequest("/c/x", -1))
    # No session, no ACL check: the reaper runs on behalf of no one.
    hdr, txn = h.prep(OpCode.DELETE_CONTAINER, "/c", session=0, auth=AuthIds())
    assert hdr.type == OpCode.DELETE_CONTAINER and txn == DeleteTxn("/c")
    assert "/c" not in h.tree.nodes


# --- setData, setACL ---


def test_set_data() -> None:
    h = Harness()
    h.create("/a")
    h.create("/ro", acl=(ACL(int(Perm.READ), Id("world", "anyone")),))
    assert h.err(OpCode.SET_DATA, SetDataRequest("/a/", b"", -1)) == Err.BADARGUMENTS
    assert h.err(OpCode.SET_DATA, SetDataRequest("/nope", b"", -1)) == Err.NONODE
    assert h.err(OpCode.SET_DATA, SetDataRequest("/ro", b"", 5)) == Err.NOAUTH
    assert h.err(OpCode.SET_DATA, SetDataRequest("/a", b"", 1)) == Err.BADVERSION
    hdr, txn = h.prep(OpCode.SET_DATA, SetDataRequest("/a", b"v1", 0))
    assert hdr.type == OpCode.SET_DATA and txn == SetDataTxn("/a", b"v1", 1)
    _, txn = h.prep(OpCode.SET_DATA, SetDataRequest("/a", None, -1))
    assert txn == SetDataTxn("/a", None, 2)


def test_data_version_wraps_as_a_java_int() -> None:
    h = Harness()
    h.create("/a")
    h.tree.nodes["/a"].version = 2**31 - 1
    _, txn = h.prep(OpCode.SET_DATA, SetDataRequest("/a", b"", 2**31 - 1))
    assert txn == SetDataTxn("/a", b"", -(2**31))
    # 3.9 lets it reach -1 (3.10 skips it, ZOOKEEPER-4743).
    h.tree.nodes["/a"].version = -2
    _, txn = h.prep(OpCode.SET_DATA, SetDataRequest("/a", b"", -1))
    assert txn == SetDataTxn("/a", b"", -1)


def test_set_acl() -> None:
    h = Harness()
    admin_only = (ACL(int(Perm.ADMIN), ALICE_ID),)
    h.create("/a", acl=admin_only, auth=ALICE)
    assert h.err(OpCode.SET_ACL, SetACLRequest("/a/", OPEN, -1)) == Err.BADARGUMENTS
    assert h.err(OpCode.SET_ACL, SetACLRequest("/nope", (), -1)) == Err.INVALIDACL
    assert h.err(OpCode.SET_ACL, SetACLRequest("/nope", OPEN, -1)) == Err.NONODE
    assert h.err(OpCode.SET_ACL, SetACLRequest("/a", OPEN, -1), auth=BOB) == Err.NOAUTH
    assert h.err(OpCode.SET_ACL, SetACLRequest("/a", OPEN, 1), auth=ALICE) == Err.BADVERSION
    hdr, txn = h.prep(OpCode.SET_ACL, SetACLRequest("/a", CREATOR_ALL_ACL, 0), auth=ALICE)
    assert hdr.type == OpCode.SET_ACL
    assert txn == SetACLTxn("/a", (ACL(31, ALICE_ID),), 1)
    # /zookeeper/config is read-only for everyone.
    assert h.err(OpCode.SET_ACL, SetACLRequest("/zookeeper/config", OPEN, -1)) == Err.NOAUTH


# --- multi ---


def multi_bytes(*ops: tuple[int, object]) -> bytes:
    out = bytearray()
    for op, rec in ops:
        out += jute.encode(MultiHeader(op, False, -1)) + jute.encode(rec)
    out += jute.encode(MultiHeader(-1, True, -1))
    return bytes(out)


def test_multi_success_shares_the_zxid_and_sees_earlier_ops() -> None:
    h = Harness()
    ops = [
        (OpCode.CREATE, CreateRequest("/m", b"", OPEN, 0)),
        (OpCode.CREATE2, CreateRequest("/m/s", b"", OPEN, 2)),
        (OpCode.CREATE, CreateRequest("/m/s", b"", OPEN, 2)),
        (OpCode.SET_DATA, SetDataRequest("/m", b"d", 0)),
        (OpCode.CHECK, CheckVersionRequest("/m", 1)),
        (OpCode.DELETE, DeleteRequest("/m/s0000000000", 0)),
    ]
    hdr, txn = h.prep(OpCode.MULTI, ops)
    assert hdr == TxnHeader(S1, 7, 1, 1001, int(OpCode.MULTI))
    assert txn == MultiTxn(
        (
            Txn(int(OpCode.CREATE), jute.encode(CreateTxn("/m", b"", OPEN, False, 1))),
            Txn(int(OpCode.CREATE2), jute.encode(CreateTxn("/m/s0000000000", b"", OPEN, False, 1))),
            Txn(int(OpCode.CREATE), jute.encode(CreateTxn("/m/s0000000001", b"", OPEN, False, 2))),
            Txn(int(OpCode.SET_DATA), jute.encode(SetDataTxn("/m", b"d", 1))),
            Txn(int(OpCode.CHECK), jute.encode(CheckVersionTxn("/m", 2))),
            Txn(int(OpCode.DELETE), jute.encode(DeleteTxn("/m/s0000000000"))),
        )
    )
    assert h.results[-1].err == Err.OK
    assert set(h.tree.nodes["/m"].children) == {"s0000000001"}
    # The same request as bytes decodes to the same ops.
    assert decode_multi_request(multi_bytes(*ops)) == ops


def test_failed_multi_encoding_and_no_effect() -> None:
    h = Harness(pipelined=True)
    ops = [
        (OpCode.CREATE, CreateRequest("/x", b"", OPEN, 0)),
        (OpCode.SET_DATA, SetDataRequest("/x", b"", 4)),
        (OpCode.DELETE, DeleteRequest("/x", -1)),
    ]
    hdr, txn = h.prep(OpCode.MULTI, ops)
    assert hdr.type == OpCode.MULTI
    # ZooKeeper's layout: the ops before the failure keep their txns.
    assert txn == MultiTxn(
        (
            Txn(int(OpCode.CREATE), jute.encode(CreateTxn("/x", b"", OPEN, False, 1))),
            Txn(int(OpCode.ERROR), jute.encode(ErrorTxn(int(Err.BADVERSION)))),
            Txn(int(OpCode.ERROR), jute.encode(ErrorTxn(int(Err.RUNTIMEINCONSISTENCY)))),
        )
    )
    assert len(h.pending) == 0
    # A later request does not see the failed multi's create.
    assert error_of(h.create("/x")) is None
    h.apply_all()
    res = h.results[0]
    assert res.err == Err.BADVERSION
    assert [r.err for r in res.multi] == [Err.OK, Err.BADVERSION, Err.RUNTIMEINCONSISTENCY]
    assert h.tree.nodes["/"].cversion == 1


def test_multi_marshalling_errors_fail_the_whole_request() -> None:
    h = Harness()
    create = (OpCode.CREATE, CreateRequest("/y", b"", OPEN, 0))
    bad = [
        [create, (OpCode.GET_DATA, GetDataRequest("/y", False))],
        [(OpCode.CREATE, CreateRequest("/y", b"", OPEN, 9))],
        [(OpCode.CREATE, CreateRequest("/y", b"", OPEN, 5))],
        [create, (OpCode.SET_ACL, SetACLRequest("/y", OPEN, -1))],
    ]
    for ops in bad:
        hdr, txn = h.prep(OpCode.MULTI, ops)
        assert hdr.type == OpCode.ERROR and txn == ErrorTxn(int(Err.MARSHALLINGERROR)), ops
    for data in (b"", b"\x00\x00\x00\x01", multi_bytes(create)[:-1], multi_bytes((99, create[1]))):
        hdr, txn = h.prep(OpCode.MULTI, data)
        assert hdr.type == OpCode.ERROR and txn == ErrorTxn(int(Err.MARSHALLINGERROR))
    assert "/y" not in h.tree.nodes


def test_multi_create_flags_pick_the_op() -> None:
    h = Harness(PrepConfig(extended_types_enabled=True))
    ops = [
        (OpCode.CREATE, CreateRequest("/c", b"", OPEN, 4)),
        (OpCode.CREATE_TTL, CreateTTLRequest("/p", b"", OPEN, 0, 77)),
        (OpCode.CREATE_TTL, CreateTTLRequest("/t", b"", OPEN, 5, 77)),
        (OpCode.CREATE_TTL, CreateTTLRequest("/z", b"", OPEN, 99, 77)),
    ]
    _, txn = h.prep(OpCode.MULTI, ops)
    assert isinstance(txn, MultiTxn)
    assert [t.type for t in txn.txns] == [
        OpCode.CREATE_CONTAINER,
        OpCode.CREATE,
        OpCode.CREATE_TTL,
        OpCode.ERROR,
    ]
    assert jute.decode_exact(ErrorTxn, txn.txns[3].data or b"") == ErrorTxn(int(Err.BADARGUMENTS))


def test_empty_multi() -> None:
    h = Harness()
    hdr, txn = h.prep(OpCode.MULTI, [])
    assert hdr.type == OpCode.MULTI and txn == MultiTxn(())
    hdr, txn = h.prep(OpCode.MULTI, multi_bytes())
    assert hdr.type == OpCode.MULTI and txn == MultiTxn(())


def test_multi_check_needs_read() -> None:
    h = Harness()
    h.create("/w", acl=(ACL(int(Perm.WRITE), Id("world", "anyone")),))
    _, txn = h.prep(OpCode.MULTI, [(OpCode.CHECK, CheckVersionRequest("/w", -1))])
    assert txn == MultiTxn((Txn(-1, jute.encode(ErrorTxn(int(Err.NOAUTH)))),))


# --- sessions, reconfig, misc ---


def test_create_and_close_session() -> None:
    h = Harness()
    hdr, txn = h.prep(OpCode.CREATE_SESSION, CreateSessionTxn(30_000), session=S2)
    assert hdr.type == OpCode.CREATE_SESSION and txn == CreateSessionTxn(30_000)
    assert h.tree.sessions[S2] == 30_000
    h.prep(OpCode.CREATE_SESSION, 10_000, session=S1)
    h.create("/p")
    h.create("/p/e2", mode=CreateMode.EPHEMERAL, session=S2)
    h.create("/e1", mode=CreateMode.EPHEMERAL, session=S2)
    h.create("/mine", mode=CreateMode.EPHEMERAL, session=S1)
    hdr, txn = h.prep(OpCode.CLOSE_SESSION, None, session=S2)
    assert hdr.type == OpCode.CLOSE_SESSION
    assert txn == CloseSessionTxn(("/e1", "/p/e2"))
    assert "/e1" not in h.tree.nodes and "/mine" in h.tree.nodes
    assert S2 not in h.tree.sessions


def test_close_session_sees_pending_creates_and_deletes() -> None:
    h = Harness(pipelined=True)
    h.create("/p")
    h.create("/p/a", mode=CreateMode.EPHEMERAL)
    h.create("/p/b", mode=CreateMode.EPHEMERAL)
    h.apply_all()
    h.create("/p/c", mode=CreateMode.EPHEMERAL)
    h.prep(OpCode.DELETE, DeleteRequest("/p/a", -1))
    _, txn = h.prep(OpCode.CLOSE_SESSION, None)
    assert txn == CloseSessionTxn(("/p/b", "/p/c"))
    # Once the close is prepped, its deletions are visible: /p is empty.
    assert h.err(OpCode.DELETE, DeleteRequest("/p", -1)) == Err.OK
    h.apply_all()
    assert "/p" not in h.tree.nodes
    assert all(r.err == Err.OK for r in h.results)


def test_reconfig_in_standalone() -> None:
    req = ReconfigRequest("", "", "server.1=x", -1)
    assert Harness().err(OpCode.RECONFIG, req) == Err.RECONFIGDISABLED
    on = Harness(PrepConfig(reconfig_enabled=True))
    assert on.err(OpCode.RECONFIG, req) == Err.UNIMPLEMENTED
    assert on.err(OpCode.RECONFIG, req, session_error=Err.SESSIONEXPIRED) == Err.SESSIONEXPIRED


def test_not_prep_requests() -> None:
    h = Harness()
    with pytest.raises(ValueError):
        h.prep(OpCode.CHECK, CheckVersionRequest("/", -1))
    with pytest.raises(ValueError):
        h.prep(OpCode.GET_DATA, GetDataRequest("/", False))
    with pytest.raises(ValueError):
        h.prep(OpCode.SET_DATA, DeleteRequest("/", -1))


def test_txn_size_bound() -> None:
    h = Harness(PrepConfig(txn_bytes_max=200))
    assert h.create_err("/small") == Err.OK
    assert h.err(OpCode.CREATE, CreateRequest("/big", b"x" * 200, OPEN, 0)) == Err.BADARGUMENTS
    assert h.err(OpCode.SET_DATA, SetDataRequest("/small", b"x" * 200, -1)) == Err.BADARGUMENTS
    ops = [(OpCode.CREATE, CreateRequest(f"/m{i}", b"", OPEN, 0)) for i in range(5)]
    assert h.err(OpCode.MULTI, ops) == Err.BADARGUMENTS
    assert "/m0" not in h.tree.nodes and len(h.pending) == 0


def test_hard_quota() -> None:
    h = Harness(PrepConfig(enforce_quota=True))
    h.create("/q")
    h.create("/zookeeper/quota/q")
    h.create(
        "/zookeeper/quota/q/zookeeper_limits",
        b"count=-1,bytes=-1=;byteHardLimit=10;countHardLimit=3",
    )
    h.create("/zookeeper/quota/q/zookeeper_stats", b"count=1,bytes=0")
    assert h.create_err("/q/a") == Err.OK
    assert h.create_err("/q/b") == Err.OK
    assert h.create_err("/q/c") == Err.QUOTAEXCEEDED
    assert h.err(OpCode.SET_DATA, SetDataRequest("/q/a", b"x" * 10, -1)) == Err.OK
    assert h.err(OpCode.SET_DATA, SetDataRequest("/q/b", b"x", -1)) == Err.QUOTAEXCEEDED
    assert h.create_err("/other") == Err.OK
    off = Harness(tree=h.tree)
    assert off.create_err("/q/c") == Err.OK


# --- pending changes ---


def test_pipelined_requests_see_pending_changes() -> None:
    h = Harness(pipelined=True)
    h.create("/a")
    _, txn = h.prep(OpCode.SET_DATA, SetDataRequest("/a", b"1", 0))
    assert txn == SetDataTxn("/a", b"1", 1)
    _, txn = h.prep(OpCode.SET_DATA, SetDataRequest("/a", b"2", 1))
    assert txn == SetDataTxn("/a", b"2", 2)
    assert h.create_err("/a") == Err.NODEEXISTS
    h.create("/a/s", mode=CreateMode.PERSISTENT_SEQUENTIAL)
    _, txn = h.create("/a/s", mode=CreateMode.PERSISTENT_SEQUENTIAL)
    assert isinstance(txn, CreateTxn) and txn.path == "/a/s0000000001"
    assert h.err(OpCode.DELETE, DeleteRequest("/a", -1)) == Err.NOTEMPTY
    h.prep(OpCode.SET_ACL, SetACLRequest("/a", (ACL(int(Perm.READ), Id("world", "anyone")),), -1))
    assert h.create_err("/a/x") == Err.NOAUTH
    assert len(h.pending) > 0
    h.apply_some(2)
    assert h.err(OpCode.SET_DATA, SetDataRequest("/a", b"3", 2)) == Err.NOAUTH
    h.apply_all()
    assert len(h.pending) == 0
    assert all(r.err == Err.OK for r in h.results if r.type != OpCode.ERROR)


_PATHS = ["/a", "/a/b", "/a/b/c", "/d", "/a/e"]
_op = st.one_of(
    st.tuples(st.just("create"), st.sampled_from(_PATHS), st.sampled_from(list(CreateMode)[:5])),
    st.tuples(st.just("delete"), st.sampled_from(_PATHS), st.integers(-1, 2)),
    st.tuples(st.just("set"), st.sampled_from(_PATHS), st.integers(-1, 2)),
    st.tuples(st.just("acl"), st.sampled_from(_PATHS), st.integers(-1, 1)),
    st.tuples(st.just("multi"), st.sampled_from(_PATHS), st.integers(-1, 2)),
    st.tuples(st.just("close"), st.just(""), st.just(0)),
)


def _run(ops: list[tuple[str, str, int]], pipelined: bool, seed: int) -> list[Prepped]:
    h = Harness(PrepConfig(extended_types_enabled=True), pipelined=pipelined)
    rnd = random.Random(seed)
    out = []
    for i, (kind, path, arg) in enumerate(ops):
        session = S1 if i % 2 else S2
        if kind == "create":
            out.append(h.create(path, mode=CreateMode(arg), session=session))
        elif kind == "delete":
            out.append(h.prep(OpCode.DELETE, DeleteRequest(path, arg)))
        elif kind == "set":
            out.append(h.prep(OpCode.SET_DATA, SetDataRequest(path, b"v", arg)))
        elif kind == "acl":
            out.append(h.prep(OpCode.SET_ACL, SetACLRequest(path, OPEN, arg)))
        elif kind == "multi":
            ops_ = [
                (OpCode.CREATE, CreateRequest(path + "/m", b"", OPEN, 2)),
                (OpCode.CHECK, CheckVersionRequest(path, arg)),
                (OpCode.DELETE, DeleteRequest(path, -1)),
            ]
            out.append(h.prep(OpCode.MULTI, ops_))
        else:
            out.append(h.prep(OpCode.CLOSE_SESSION, None, session=session))
        if pipelined and h.unapplied and rnd.random() < 0.3:
            h.apply_some(rnd.randint(1, len(h.unapplied)))
    h.apply_all()
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(_op, max_size=30), st.integers(0, 2**32))
def test_pending_changes_make_pipelining_invisible(
    ops: list[tuple[str, str, int]], seed: int
) -> None:
    """Prepping while earlier txns are unapplied gives exactly the txns of prepping each
    request after the previous one applied."""
    assert _run(ops, True, seed) == _run(ops, False, seed)
