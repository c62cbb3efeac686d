"""The write-path fast paths give exactly what the plain code gives."""

from __future__ import annotations

import dataclasses

import pytest

from corral.proto import jute
from corral.proto.codes import Err, OpCode
from corral.proto.records import (
    ACL,
    CreateRequest,
    CreateTxn,
    DeleteTxn,
    GetChildrenResponse,
    Id,
    Stat,
    TxnHeader,
)
from corral.tree.datatree import ApplyResult, DataTree
from corral.tree.watches import WatchEvent

OPEN = (ACL(31, Id("world", "anyone")),)


def test_fast_init_records_stay_frozen_dataclasses() -> None:
    s = Stat(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
    assert type(s) is Stat
    assert s == Stat(**{f.name: i + 1 for i, f in enumerate(dataclasses.fields(Stat))})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.czxid = 5  # type: ignore[misc]
    assert dataclasses.replace(s, pzxid=0).pzxid == 0
    assert hash(s) == hash(Stat(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11))
    assert ApplyResult(Err.OK).type == OpCode.ERROR  # defaults kept
    assert WatchEvent(1, 2, "/", 3).acl == ()  # type: ignore[arg-type]
    assert type(TxnHeader(1, 2, 3, 4, 5)) is TxnHeader


def test_fast_init_leaves_subclasses_alone() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Sub(TxnHeader):
        extra: int = 0

    s = Sub(1, 2, 3, 4, 5, 6)
    assert type(s) is Sub and s.extra == 6 and s.zxid == 3


def test_children_bytes_follow_adds_and_removes() -> None:
    tree = DataTree()
    zxid = 0

    def create(path: str) -> None:
        nonlocal zxid
        zxid += 1
        tree.apply_txn(
            TxnHeader(1, 1, zxid, 0, OpCode.CREATE), CreateTxn(path, b"", OPEN, False, -1)
        )

    def expected(path: str) -> bytes:
        node = tree.nodes[path]
        names = tuple(p.rsplit("/", 1)[1] for p in node.child_paths)  # the set's order
        return jute.encode(GetChildrenResponse(names))

    def body(path: str) -> bytes:
        return tree.children_bytes(path, tree.nodes[path])

    create("/k")
    assert body("/k") == expected("/k")  # empty
    for i in range(5):
        create(f"/k/c{i}")
        assert body("/k") == expected("/k")
    zxid += 1
    tree.apply_txn(TxnHeader(1, 1, zxid, 0, OpCode.DELETE), DeleteTxn("/k/c3"))
    assert body("/k") == expected("/k")
    assert sorted(tree.nodes["/k"].children) == ["c0", "c1", "c2", "c4"]
    node = tree.nodes["/k"]
    node.child_paths = {"/k/x", "/k/\u00e9"}  # a replaced set is noticed too
    assert body("/k") == expected("/k")
    # The root's children, under both of its names.
    assert body("/") == expected("/") == tree.children_bytes("", tree.nodes["/"])
    for gone in ("/k/c0", "/k/c1", "/k/c2", "/k/c4"):
        zxid += 1
        tree.apply_txn(TxnHeader(1, 1, zxid, 0, OpCode.DELETE), DeleteTxn(gone))
    zxid += 1
    tree.apply_txn(TxnHeader(1, 1, zxid, 0, OpCode.DELETE), DeleteTxn("/k"))
    create("/k")  # a new node at a cached path starts empty
    assert body("/k") == expected("/k") == b"\x00\x00\x00\x00"


def test_acl_vector_memo_is_exact_and_bounded() -> None:
    reqs = [
        CreateRequest(f"/n{i}", b"", (ACL(i % 32, Id("digest", f"u{i}:h")),), 0) for i in range(200)
    ]
    for req in reqs + reqs:
        data = jute.encode(req)
        assert jute.decode_exact(CreateRequest, data) == req
    big = tuple(ACL(1, Id("ip", f"10.0.{i}.0/24")) for i in range(100))
    req = CreateRequest("/big", None, big, 0)
    assert jute.decode_exact(CreateRequest, jute.encode(req)) == req
    # A list (mutable) is never remembered by identity.
    acl_list = [ACL(1, Id("world", "anyone"))]
    first = jute.encode(CreateRequest("/l", None, acl_list, 0))  # type: ignore[arg-type]
    acl_list[0] = ACL(31, Id("world", "anyone"))
    second = jute.encode(CreateRequest("/l", None, acl_list, 0))  # type: ignore[arg-type]
    assert first != second
    assert second == jute.encode(CreateRequest("/l", None, tuple(acl_list), 0))
    # Truncated vectors still fail as before.
    data = jute.encode(CreateRequest("/x", None, OPEN, 0))
    for cut in range(len(data)):
        with pytest.raises(jute.DecodeError):
            jute.decode_exact(CreateRequest, data[:cut])
