"""TRUNC: the log is cut exactly after a zxid, durably, newer snapshots go, the writer is
closed around it (ZOOKEEPER-1489), and the tree is rebuilt from what is left."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest
from store_helpers import (
    Crash,
    Txn2,
    TxnStream,
    config,
    crash_at,
    recover,
    reference_tree,
    view,
    workload,
)

from corral.proto import jute
from corral.store.database import Database, NeedsSnapshotError
from corral.store.snapshot import snapshot_files
from corral.store.txnlog import read_log, truncate_log
from corral.tree.datatree import DataTree
from corral.tree.znode import ZNode

WAIT_S = 10.0


def logs(tmp: Path) -> list[int]:
    return sorted(int(n[4:], 16) for n in os.listdir(tmp / "version-2") if n.startswith("log."))


def logged(tmp: Path) -> list[int]:
    return [e.hdr.zxid for e in read_log(tmp / "version-2", 0)]


def run(tmp: Path, txns: list[Txn2], **kw: object) -> Database:
    """A started database that logged `txns` (snapshots and rolls as configured)."""
    db = Database(config(tmp, **kw), rng=random.Random(3))
    tree = recover(db)
    db.start(lambda z: None)
    for hdr, txn in txns:
        db.append(hdr, jute.encode(txn))
        assert db.wait_durable(hdr.zxid, WAIT_S)
        tree.apply_txn(hdr, txn)
        if db.maybe_snapshot(tree):
            assert db._snap_thread is not None
            db._snap_thread.join(WAIT_S)
    return db


def rebuild(db: Database, upto: int) -> DataTree:
    return db.rebuild_tree(
        new_tree=DataTree, empty_for_load=DataTree.empty_for_load, make_node=ZNode, upto=upto
    )


def test_truncate_log_cuts_inside_a_file_and_removes_later_files(tmp_path: Path) -> None:
    txns = list(workload(TxnStream(), 120, seed=4))
    run(tmp_path, txns, snap_count=30, snap_size_limit_bytes=0).close()
    starts = logs(tmp_path)
    assert len(starts) >= 4
    target = starts[1] + 3
    assert truncate_log(tmp_path / "version-2", target) == target
    assert logged(tmp_path) == list(range(1, target + 1))
    assert logs(tmp_path) == starts[:2]
    # The cut file ends right after the entry: nothing torn, no padding.
    assert truncate_log(tmp_path / "version-2", target) == target


def test_truncate_to_a_zxid_that_is_not_logged_keeps_nothing_after_it(tmp_path: Path) -> None:
    s = TxnStream()
    txns = [s.create_session(), s.create("/a")]
    s.zxid = (2 << 32) + 5  # a new epoch; 0x200000006.. logged
    txns += [s.create("/b"), s.create("/c")]
    run(tmp_path, txns).close()
    assert truncate_log(tmp_path / "version-2", (2 << 32) + 1) == 2
    assert logged(tmp_path) == [1, 2]


def test_truncate_below_everything_empties_the_log(tmp_path: Path) -> None:
    s = TxnStream(zxid=10)
    run(tmp_path, [s.create_session(), s.create("/a")]).close()
    assert truncate_log(tmp_path / "version-2", 5) is None
    assert logs(tmp_path) == []


def test_database_truncate_then_append_then_restart(tmp_path: Path) -> None:
    """ZOOKEEPER-1489: appends after a truncation land in the log and survive a restart."""
    txns = list(workload(TxnStream(), 90, seed=5))
    db = run(tmp_path, txns, snap_count=40, snap_size_limit_bytes=0)
    newest = max(z for z, _p in snapshot_files(tmp_path / "version-2"))
    assert newest > 10
    # The snapshot taken after the target could hold the truncated txns: it goes.
    target = newest - 3
    db.truncate(target)
    assert db.last_logged_zxid == target and db.durable_zxid == target
    assert all(z <= target for z, _p in snapshot_files(tmp_path / "version-2"))
    tree = rebuild(db, target)
    assert view(tree) == view(reference_tree(txns[:target]))
    s = TxnStream(zxid=target, session=0x2000)
    more = [s.create_session(), s.create("/after-trunc", b"x")]
    for hdr, txn in more:
        db.append(hdr, jute.encode(txn))
        tree.apply_txn(hdr, txn)
    assert db.wait_durable(more[-1][0].zxid, WAIT_S)
    db.close()
    assert logged(tmp_path) == [*range(1, target + 1), target + 1, target + 2]
    again = Database(config(tmp_path))
    assert view(recover(again)) == view(reference_tree(txns[:target] + more))


def test_truncate_is_ordered_with_queued_appends(tmp_path: Path) -> None:
    s = TxnStream()
    db = run(tmp_path, [s.create_session(), s.create("/a")])
    queued = [s.create("/b"), s.create("/c"), s.create("/d")]
    for hdr, txn in queued:
        db.append(hdr, jute.encode(txn))
    done: list[int] = []
    db.truncate(3, on_done=lambda: done.append(db.durable_zxid))
    hdr, txn = TxnStream(zxid=3).create("/e")
    db.append(hdr, jute.encode(txn))
    assert db.wait_durable(4, WAIT_S)
    db.close()
    assert done == [3]
    assert logged(tmp_path) == [1, 2, 3, 4]


def test_truncate_below_every_snapshot_needs_a_snap_and_changes_nothing(tmp_path: Path) -> None:
    s = TxnStream()
    run(tmp_path, [s.create_session(), s.create("/a"), s.create("/b"), s.create("/c")]).close()
    again = Database(config(tmp_path))
    recover(again)  # replays 1..4 and snapshots at 4
    (tmp_path / "version-2" / "snapshot.0").unlink()  # as if purged
    before = sorted(os.listdir(tmp_path / "version-2"))
    with pytest.raises(NeedsSnapshotError):
        again.truncate(3)
    assert sorted(os.listdir(tmp_path / "version-2")) == before
    with pytest.raises(NeedsSnapshotError):
        rebuild(again, 3)


def test_truncate_skips_a_damaged_snapshot_at_or_below_the_target(tmp_path: Path) -> None:
    txns = list(workload(TxnStream(), 60, seed=6))
    db = run(tmp_path, txns, snap_count=20, snap_size_limit_bytes=0)
    snaps = [z for z, _p in snapshot_files(tmp_path / "version-2")]
    assert len(snaps) >= 3
    below = [z for z in snaps if z <= 50]
    newest_below = max(below)
    (tmp_path / "version-2" / f"snapshot.{newest_below:x}").write_bytes(b"garbage")
    db.truncate(50)
    tree = rebuild(db, 50)
    assert view(tree) == view(reference_tree(txns[:50]))
    db.close()


def test_a_crash_at_any_step_of_a_truncation_leaves_a_recoverable_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    txns = list(workload(TxnStream(), 120, seed=21))
    base = tmp_path / "base"
    run(base, txns, snap_count=24, snap_size_limit_bytes=0).close()
    newest = max(z for z, _p in snapshot_files(base / "version-2"))
    target = newest - 2
    step = 1
    while True:
        work = tmp_path / f"crash{step}"
        shutil.copytree(base, work)
        db = Database(config(work))
        recover(db)  # a restart: it snapshots the replayed tail, above the target
        counter = crash_at(monkeypatch, step)
        try:
            db.truncate(target)
            finished = True
        except Crash:
            finished = False
        monkeypatch.undo()
        again = Database(config(work))
        tree = recover(again)
        k = tree.last_zxid
        assert target <= k <= len(txns), (step, k)
        assert view(tree) == view(reference_tree(txns[:k])), step
        if finished:
            assert k == target
            assert counter[0] >= 2
            break
        step += 1
