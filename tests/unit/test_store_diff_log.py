"""Committed txns read back from the on-disk log for a DIFF (ZKDatabase.getProposalsFromTxnLog),
lazily, with the snapshotSizeFactor rule."""

from __future__ import annotations

import random
import tracemalloc
from pathlib import Path

from store_helpers import TxnStream, config, recover, workload

from corral.proto import jute
from corral.store.database import Database
from corral.store.txnlog import last_txns, log_storage_bytes, proposals_from_log, txns_after

WAIT_S = 10.0


def logged_db(tmp: Path, n: int, **kw: object) -> Database:
    db = Database(config(tmp, **kw), rng=random.Random(4))
    tree = recover(db)
    db.start(lambda z: None)
    for hdr, txn in workload(TxnStream(), n, seed=8):
        db.append(hdr, jute.encode(txn))
        tree.apply_txn(hdr, txn)
        if db.maybe_snapshot(tree):
            assert db._snap_thread is not None
            db._snap_thread.join(WAIT_S)
    assert db.wait_durable(n, WAIT_S)
    return db


def test_txns_after_span_files_and_stop_at_upto(tmp_path: Path) -> None:
    db = logged_db(tmp_path, 100, snap_count=20, snap_size_limit_bytes=0)
    d = tmp_path / "version-2"
    assert [e.hdr.zxid for e in txns_after(d, 37)] == list(range(38, 101))
    assert [e.hdr.zxid for e in txns_after(d, 37, upto=41)] == [38, 39, 40, 41]
    assert [e.hdr.zxid for e in db.txns_after(95)] == [96, 97, 98, 99, 100]
    db.close()


def test_proposals_need_the_start_zxid_in_the_log(tmp_path: Path) -> None:
    db = logged_db(tmp_path, 60, snap_count=20, snap_size_limit_bytes=0)
    d = tmp_path / "version-2"
    got = proposals_from_log(d, 10, 0)
    assert got is not None and [e.hdr.zxid for e in got] == list(range(11, 61))
    assert proposals_from_log(d, 61, 0) is None  # not logged: cannot prove continuity
    assert proposals_from_log(d, 10, -1) is None  # snapshotSizeFactor < 0 disables
    last = proposals_from_log(d, 60, 0)
    assert last is not None and list(last) == []
    db.close()


def test_size_limit_counts_the_files_to_read(tmp_path: Path) -> None:
    db = logged_db(tmp_path, 60, snap_count=20, snap_size_limit_bytes=0)
    d = tmp_path / "version-2"
    size = log_storage_bytes(d, 10)
    assert size > log_storage_bytes(d, 55) > 0
    assert proposals_from_log(d, 10, size) is not None
    assert proposals_from_log(d, 10, size - 1) is None
    # The factor applies to the newest valid snapshot's size.
    limit = db.txn_log_size_limit(0.33)
    assert limit > 0
    assert db.txn_log_size_limit(-1.0) == -1
    big = db.proposals_for_diff(10, 1e9)
    assert big is not None and next(big).hdr.zxid == 11
    snap_bytes = db.txn_log_size_limit(1.0)
    assert db.proposals_for_diff(10, 2 / snap_bytes) is None  # a limit of 2 bytes
    # A limit that rounds to 0 means no limit, as in ZooKeeper.
    assert db.proposals_for_diff(10, 0.1 / snap_bytes) is not None
    db.close()


def test_reading_does_not_load_whole_files(tmp_path: Path) -> None:
    db = Database(config(tmp_path, prealloc_bytes=1 << 20), rng=random.Random(1))
    recover(db)
    db.start(lambda z: None)
    s = TxnStream()
    hdr, txn = s.create_session()
    db.append(hdr, jute.encode(txn))
    for i in range(4000):
        hdr, txn = s.create(f"/n{i}", bytes(2000))
        db.append(hdr, jute.encode(txn))
    assert db.wait_durable(s.zxid, WAIT_S)
    db.close()
    d = tmp_path / "version-2"
    assert log_storage_bytes(d, 1) > 8_000_000
    tracemalloc.start()
    try:
        it = proposals_from_log(d, 1, 0)
        assert it is not None
        count = sum(1 for _ in it)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 4000
    # One entry at a time, plus the 1 MiB chunk that checks the padding after the last one.
    assert peak < 3_000_000


def test_last_txns_for_the_committed_log_window(tmp_path: Path) -> None:
    db = logged_db(tmp_path, 100, snap_count=20, snap_size_limit_bytes=0)
    d = tmp_path / "version-2"
    assert [e.hdr.zxid for e in last_txns(d, 30)] == list(range(71, 101))
    assert [e.hdr.zxid for e in last_txns(d, 30, upto=50)] == list(range(21, 51))
    assert [e.hdr.zxid for e in last_txns(d, 500)] == list(range(1, 101))
    assert last_txns(d, 0) == []
    assert [e.hdr.zxid for e in db.last_txns(3)] == [98, 99, 100]
    assert 0 < db.snapshot_zxid <= 100
    db.close()
