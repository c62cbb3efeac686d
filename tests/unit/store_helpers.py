"""Shared helpers of the store tests: txn streams, databases on temp dirs, tree views."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.proto import jute
from corral.proto.codes import OpCode
from corral.proto.records import (
    ACL,
    CloseSessionTxn,
    CreateSessionTxn,
    CreateTxn,
    DeleteTxn,
    ErrorTxn,
    Id,
    MultiTxn,
    SetACLTxn,
    SetDataTxn,
    Stat,
    Txn,
    TxnHeader,
)
from corral.store.database import Database, StoreConfig
from corral.tree.datatree import DataTree
from corral.tree.txn import TxnRecord
from corral.tree.znode import ZNode

OPEN = (ACL(31, Id("world", "anyone")),)
READ_ONLY = (ACL(1, Id("world", "anyone")),)
DIGEST = (
    ACL(31, Id("digest", "alice:Sl7hHrwjFGq3fDELkeq8Z5KPBz4=")),
    ACL(1, Id("world", "anyone")),
)

Txn2 = tuple[TxnHeader, TxnRecord]


class TxnStream:
    """Makes valid txns with consecutive zxids, as a core would."""

    def __init__(self, zxid: int = 0, session: int = 0x1000) -> None:
        self.zxid = zxid
        self.session = session
        self.cxid = 0

    def _hdr(self, op: int, session: int | None = None) -> TxnHeader:
        self.zxid += 1
        self.cxid += 1
        sid = self.session if session is None else session
        return TxnHeader(sid, self.cxid, self.zxid, 1_700_000_000_000 + self.zxid, op)

    def create_session(self, timeout_ms: int = 30_000) -> Txn2:
        return self._hdr(OpCode.CREATE_SESSION), CreateSessionTxn(timeout_ms)

    def close_session(self, paths: tuple[str, ...] = ()) -> Txn2:
        return self._hdr(OpCode.CLOSE_SESSION), CloseSessionTxn(paths)

    def create(
        self,
        path: str,
        data: bytes | None = b"",
        acl: tuple[ACL, ...] = OPEN,
        ephemeral: bool = False,
        parent_cversion: int = 1,
    ) -> Txn2:
        return self._hdr(OpCode.CREATE), CreateTxn(path, data, acl, ephemeral, parent_cversion)

    def set_data(self, path: str, data: bytes, version: int) -> Txn2:
        return self._hdr(OpCode.SET_DATA), SetDataTxn(path, data, version)

    def set_acl(self, path: str, acl: tuple[ACL, ...], version: int) -> Txn2:
        return self._hdr(OpCode.SET_ACL), SetACLTxn(path, acl, version)

    def delete(self, path: str) -> Txn2:
        return self._hdr(OpCode.DELETE), DeleteTxn(path)

    def error(self, err: int = -101) -> Txn2:
        return self._hdr(OpCode.ERROR), ErrorTxn(err)

    def multi(self, *subs: tuple[int, object]) -> Txn2:
        txns = tuple(Txn(int(op), jute.encode(rec)) for op, rec in subs)
        return self._hdr(OpCode.MULTI), MultiTxn(txns)


def workload(stream: TxnStream, n: int, seed: int = 1) -> Iterator[Txn2]:
    """n varied txns as prep would make them for a fresh tree (creates, sets, ACLs, deletes of
    childless nodes, errors)."""
    rng = random.Random(seed)
    live: list[str] = []  # persistent nodes, oldest first
    kids: dict[str, set[str]] = {"/": set()}
    versions: dict[str, int] = {}
    created: dict[str, int] = {"/": 1}  # parent -> children ever created (cversion)
    yield stream.create_session()
    made = 1
    while made < n:
        made += 1
        kind = rng.random()
        if kind < 0.45 or not live:
            parent = rng.choice(["/", *live[-5:]]) if live else "/"
            path = (parent.rstrip("/") or "") + f"/n{stream.zxid + 1}"
            created[parent] = created.get(parent, 0) + 1
            data = None if rng.random() < 0.1 else rng.randbytes(rng.randrange(0, 40))
            acl = rng.choice([OPEN, READ_ONLY, DIGEST])
            eph = rng.random() < 0.1
            yield stream.create(path, data, acl, eph, created[parent])
            kids[parent].add(path)
            kids[path] = set()
            if not eph:
                live.append(path)
            versions[path] = 0
        elif kind < 0.75:
            path = rng.choice(live)
            yield stream.set_data(path, rng.randbytes(8), versions[path] + 1)
            versions[path] += 1
        elif kind < 0.85:
            path = rng.choice(live)
            yield stream.set_acl(path, rng.choice([OPEN, DIGEST]), 1)
        elif kind < 0.92:
            yield stream.error()
        else:
            leaves = [p for p in live if not kids[p]]
            if not leaves:
                yield stream.error()
                continue
            leaf = rng.choice(leaves)
            live.remove(leaf)
            del kids[leaf]
            kids[leaf.rsplit("/", 1)[0] or "/"].discard(leaf)
            yield stream.delete(leaf)


def config(tmp: Path, **kw: object) -> StoreConfig:
    kw.setdefault("prealloc_bytes", 64 * 1024)
    return StoreConfig(data_dir=tmp, **kw)  # type: ignore[arg-type]


def recover(db: Database) -> DataTree:
    """Recover, then wait for the startup snapshot (written in the snapshot thread), so that
    the tests see the files as they are once it is written."""
    tree = db.recover(new_tree=DataTree, empty_for_load=DataTree.empty_for_load, make_node=ZNode)
    assert db.wait_for_snapshot(60), "the startup snapshot did not finish"
    return tree


def view(tree: DataTree) -> dict[str, tuple[bytes | None, tuple[ACL, ...], Stat]]:
    """Everything a client can see of a tree, by path."""
    return {path: (n.data, n.acl, n.stat()) for path, n in tree.nodes.items()}


def reference_tree(txns: list[Txn2]) -> DataTree:
    """The tree a fresh server has after applying txns (what recovery must rebuild)."""
    tree = DataTree()
    for hdr, txn in txns:
        tree.apply_txn(hdr, txn)
    return tree


class Crash(Exception):
    pass


def crash_at(monkeypatch: pytest.MonkeyPatch, step: int) -> list[int]:
    """Make the step-th file-system mutation (unlink, ftruncate, rename) fail, as a crash there
    would leave the directory; returns the counter (its value: mutations seen)."""
    seen = [0]
    real_unlink, real_ftruncate, real_replace = Path.unlink, os.ftruncate, os.replace

    def tick() -> None:
        seen[0] += 1
        if seen[0] == step:
            raise Crash(f"crash at mutation {step}")

    def unlink(self: Path, missing_ok: bool = False) -> None:
        tick()
        real_unlink(self, missing_ok)

    def ftruncate(fd: int, length: int) -> None:
        tick()
        real_ftruncate(fd, length)

    def replace(src: str | Path, dst: str | Path) -> None:
        tick()
        real_replace(src, dst)

    monkeypatch.setattr(Path, "unlink", unlink)
    monkeypatch.setattr(os, "ftruncate", ftruncate)
    monkeypatch.setattr(os, "replace", replace)
    return seen
