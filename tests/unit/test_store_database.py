"""The durable database: recovery, group commit with "durable only after fsync", ZooKeeper's
randomised snapshot point and log rolling, snapshots while txns keep coming, autopurge."""

from __future__ import annotations

import itertools
import os
import random
import threading
from pathlib import Path

import pytest
from store_helpers import Txn2, TxnStream, config, recover, reference_tree, view, workload

from corral.proto import jute
from corral.store.database import Database
from corral.store.layout import StoreError
from corral.store.snapshot import NodeView, newest_valid_snapshots, snapshot_files
from corral.store.txnlog import CorruptLogError, LogFileReader, TxnLogWriter, encode_entry
from corral.tree.datatree import DataTree

WAIT_S = 10.0


def files(d: Path) -> list[str]:
    return sorted(os.listdir(d / "version-2"))


def drive(db: Database, tree: DataTree, txns: list[Txn2]) -> None:
    """What the runner does per txn: append, wait until durable, apply, maybe snapshot."""
    for hdr, txn in txns:
        db.append(hdr, jute.encode(txn))
        assert db.wait_durable(hdr.zxid, WAIT_S)
        tree.apply_txn(hdr, txn)
        if db.maybe_snapshot(tree):
            assert db._snap_thread is not None
            db._snap_thread.join(WAIT_S)


def started(tmp: Path, **kw: object) -> tuple[Database, DataTree, list[int]]:
    db = Database(config(tmp, **kw), rng=random.Random(5))
    tree = recover(db)
    durable: list[int] = []
    db.start(durable.append)
    return db, tree, durable


def test_fresh_directory_gets_snapshot_0_and_separate_log_dir(tmp_path: Path) -> None:
    db = Database(config(tmp_path / "data", data_log_dir=tmp_path / "logs"))
    tree = recover(db)
    assert view(tree) == view(DataTree())
    assert files(tmp_path / "data") == ["snapshot.0"]
    assert files(tmp_path / "logs") == []
    db.start(lambda z: None)
    s = TxnStream()
    drive(db, tree, [s.create_session(), s.create("/a", b"1")])
    db.close()
    assert files(tmp_path / "logs") == ["log.1"]
    assert files(tmp_path / "data") == ["snapshot.0"]


def test_recovery_from_snapshots_and_logs(tmp_path: Path) -> None:
    txns = list(workload(TxnStream(), 300, seed=2))
    db, tree, durable = started(tmp_path, snap_count=40)
    drive(db, tree, txns)
    db.close()
    assert durable == sorted(durable) and durable[-1] == 300
    names = files(tmp_path)
    assert sum(n.startswith("snapshot.") for n in names) > 5
    assert sum(n.startswith("log.") for n in names) > 5
    again = Database(config(tmp_path, snap_count=40))
    recovered = recover(again)
    assert recovered.last_zxid == 300
    assert view(recovered) == view(reference_tree(txns))
    assert recovered.sessions == tree.sessions
    # Recovery replayed the txns after the newest snapshot and then took a snapshot of its own
    # (in the snapshot thread, which close() waits for).
    again.close()
    assert f"snapshot.{300:x}" in files(tmp_path)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_log_rolls_at_zookeepers_random_points(tmp_path: Path, seed: int) -> None:
    snap_count = 20
    rng = random.Random(seed)
    expected_starts = [1]
    while expected_starts[-1] < 200:
        # A roll after txn number half + randrange(half) + 1 since the last one.
        expected_starts.append(expected_starts[-1] + snap_count // 2 + rng.randrange(10) + 1)
    db = Database(
        config(tmp_path, snap_count=snap_count, snap_size_limit_bytes=0), rng=random.Random(seed)
    )
    tree = recover(db)
    db.start(lambda z: None)
    drive(db, tree, list(workload(TxnStream(), 200)))
    db.close()
    starts = sorted(int(n[4:], 16) for n in files(tmp_path) if n.startswith("log."))
    assert starts == [z for z in expected_starts if z <= 200]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(snap_count // 2 + 1 <= g <= snap_count for g in gaps)


def test_durable_is_reported_only_after_fsync_and_batches_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, int]] = []
    real_fdatasync = os.fdatasync
    real_write = TxnLogWriter.write

    def fdatasync(fd: int) -> None:
        real_fdatasync(fd)
        events.append(("fsync", 0))

    def write(self: TxnLogWriter, first_zxid: int, data: bytes) -> None:
        real_write(self, first_zxid, data)
        events.append(("write", first_zxid))

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    monkeypatch.setattr(TxnLogWriter, "write", write)
    db = Database(config(tmp_path))
    recover(db)
    gate = threading.Event()
    in_sync = threading.Event()
    real_sync = db._writer.sync

    def held_sync() -> float:
        in_sync.set()
        assert gate.wait(WAIT_S)
        return real_sync()

    db._writer.sync = held_sync  # type: ignore[method-assign]
    durable: list[int] = []
    db.start(lambda z: (durable.append(z), events.append(("durable", z))))
    s = TxnStream()
    txns = list(workload(s, 100))
    db.append(txns[0][0], jute.encode(txns[0][1]))
    assert in_sync.wait(WAIT_S)  # the first batch is written, its fsync is held
    for hdr, txn in txns[1:]:
        db.append(hdr, jute.encode(txn))
    assert durable == [] and db.durable_zxid == 0  # written is not durable
    gate.set()
    assert db.wait_durable(100, WAIT_S)
    db.close()
    # Everything appended while the first fsync ran went out as one more batch.
    assert durable == [1, 100]
    assert db.stats.batches == 2
    # Every durable report follows an fsync that follows the write of what it reports.
    for i, (kind, zxid) in enumerate(events):
        if kind == "durable":
            before = events[:i]
            last_sync = max(j for j, e in enumerate(before) if e[0] == "fsync")
            writes = [e[1] for e in before[:last_sync] if e[0] == "write"]
            assert writes and max(writes) <= zxid


def test_force_sync_off_never_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(os, "fdatasync", calls.append)
    db, tree, durable = started(tmp_path, force_sync=False)
    drive(db, tree, list(workload(TxnStream(), 20)))
    db.close()
    assert calls == [] and durable[-1] == 20


def test_failed_fsync_is_fatal_and_nothing_more_is_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(config(tmp_path))
    recover(db)
    fatal: list[BaseException] = []
    durable: list[int] = []
    failed = threading.Event()

    def on_fatal(exc: BaseException) -> None:
        fatal.append(exc)
        failed.set()

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", broken)
    db.start(durable.append, on_fatal)
    s = TxnStream()
    hdr, txn = s.create_session()
    db.append(hdr, jute.encode(txn))
    assert failed.wait(WAIT_S)
    assert not db.wait_durable(1, 0.01)
    hdr, txn = s.create("/a")
    with pytest.raises(StoreError, match="failed earlier"):
        db.append(hdr, jute.encode(txn))
    db.close()
    assert durable == [] and len(fatal) == 1 and isinstance(fatal[0], OSError)


def test_append_rejects_zxids_that_do_not_increase(tmp_path: Path) -> None:
    db, tree, _ = started(tmp_path)
    s = TxnStream()
    drive(db, tree, [s.create_session()])
    s.zxid = 0
    hdr, txn = s.create("/a")
    with pytest.raises(StoreError, match="does not follow"):
        db.append(hdr, jute.encode(txn))
    db.close()


def test_torn_tail_is_truncated_and_recovery_continues(tmp_path: Path) -> None:
    txns = list(workload(TxnStream(), 30))
    db, tree, _ = started(tmp_path)
    drive(db, tree, txns)
    db.close()
    [log] = [tmp_path / "version-2" / n for n in files(tmp_path) if n.startswith("log.")]
    reader = LogFileReader(log)
    last = [e.offset for e in reader][-1]
    with open(log, "r+b") as f:  # the last entry half on disk
        f.truncate(last + 17)
    db2 = Database(config(tmp_path))
    tree2 = recover(db2)
    assert tree2.last_zxid == 29
    assert view(tree2) == view(reference_tree(txns[:29]))
    db2.start(lambda z: None)
    s = TxnStream(zxid=29)
    more = [s.create("/again", b"x")]
    drive(db2, tree2, more)
    db2.close()
    tree3 = recover(Database(config(tmp_path)))
    assert view(tree3) == view(reference_tree(txns[:29] + more))


def test_logs_without_a_snapshot_are_refused(tmp_path: Path) -> None:
    txns = list(workload(TxnStream(), 10))
    db, tree, _ = started(tmp_path)
    drive(db, tree, txns)
    db.close()
    (tmp_path / "version-2" / "snapshot.0").unlink()
    with pytest.raises(StoreError, match="refusing to start empty"):
        recover(Database(config(tmp_path)))
    tree2 = recover(Database(config(tmp_path, trust_empty_snapshot=True)))
    assert view(tree2) == view(reference_tree(txns))


def test_only_invalid_snapshots_are_refused(tmp_path: Path) -> None:
    db, _tree, _ = started(tmp_path)
    db.close()
    snap0 = tmp_path / "version-2" / "snapshot.0"
    snap0.write_bytes(snap0.read_bytes()[:-1])
    with pytest.raises(StoreError, match="none of them valid"):
        recover(Database(config(tmp_path)))


def test_a_hole_in_the_log_is_refused(tmp_path: Path) -> None:
    db, _tree, _ = started(tmp_path)
    db.close()
    s = TxnStream()
    txns = list(workload(s, 10))
    writer = TxnLogWriter(tmp_path / "version-2", prealloc_bytes=0, force_sync=False)
    for hdr, txn in txns[:4] + txns[5:]:  # txn 5 missing
        writer.write(hdr.zxid, encode_entry(hdr, jute.encode(txn)))
    writer.close()
    with pytest.raises(CorruptLogError, match="missing"):
        recover(Database(config(tmp_path)))


def test_snapshot_in_a_thread_while_txns_go_on(tmp_path: Path) -> None:
    """The snapshot worker is held mid-walk while the loop keeps appending and applying;
    recovery from that fuzzy snapshot plus the log is exact."""
    txns = list(workload(TxnStream(), 400, seed=9))
    db, tree, _ = started(tmp_path)
    drive(db, tree, txns[:200])
    from corral.store import snapshot as snap_module

    real_walk = snap_module.walk_preorder
    walking = threading.Event()
    proceed = threading.Event()

    def slow_walk(nodes: dict[str, NodeView]):  # type: ignore[no-untyped-def]
        for i, item in enumerate(real_walk(nodes)):
            if i == 50:
                walking.set()
                assert proceed.wait(WAIT_S)
            yield item

    snap_module.walk_preorder = slow_walk  # type: ignore[assignment]
    try:
        thread = db.start_snapshot(tree)
        assert walking.wait(WAIT_S)
        drive(db, tree, txns[200:])  # the service goes on meanwhile
        assert db.snapshot_in_progress
        proceed.set()
        thread.join(WAIT_S)
    finally:
        snap_module.walk_preorder = real_walk
    db.close()
    assert f"snapshot.{200:x}" in files(tmp_path)
    (tmp_path / "version-2" / f"snapshot.{400:x}").unlink(missing_ok=True)
    recovered = recover(Database(config(tmp_path)))
    assert view(recovered) == view(reference_tree(txns))


def test_purge_keeps_newest_valid_snapshots_and_the_logs_they_need(tmp_path: Path) -> None:
    txns = list(workload(TxnStream(), 300, seed=4))
    db, tree, _ = started(tmp_path, snap_count=30)
    drive(db, tree, txns)
    db.close()
    d = tmp_path / "version-2"
    snaps = snapshot_files(d)
    assert len(snaps) > 6
    newest = snaps[0][1]
    newest.write_bytes(newest.read_bytes()[:-3])  # invalid: must not count (ZOOKEEPER-3231)
    deleted = Database(config(tmp_path)).purge()
    assert deleted
    kept = newest_valid_snapshots(d, 10)
    assert [z for z, _p in kept] == [z for z, _p in snaps[1:4]]
    oldest_kept = kept[-1][0]
    logs = sorted(int(n[4:], 16) for n in files(tmp_path) if n.startswith("log."))
    # The newest log starting at or before the oldest kept snapshot survives, none older.
    assert logs[0] <= oldest_kept and (len(logs) == 1 or logs[1] > oldest_kept)
    assert newest.exists()
    recovered = recover(Database(config(tmp_path)))
    assert view(recovered) == view(reference_tree(txns))


def test_autopurge_runs_when_started(tmp_path: Path) -> None:
    txns = list(workload(TxnStream(), 200, seed=4))
    db, tree, _ = started(tmp_path, snap_count=20)
    drive(db, tree, txns)
    db.close()
    before = len(snapshot_files(tmp_path / "version-2"))
    assert before > 5
    db2 = Database(config(tmp_path, purge_interval_hours=1, snap_retain_count=3))
    recover(db2)
    db2.start(lambda z: None)
    db2.close()  # the purge thread ran once at start and is stopped by close
    assert len(snapshot_files(tmp_path / "version-2")) == 3


def test_a_failing_durable_callback_is_not_an_io_failure(tmp_path: Path) -> None:
    db = Database(config(tmp_path))
    tree = recover(db)
    fatal: list[BaseException] = []

    def closed_loop(zxid: int) -> None:
        raise RuntimeError("Event loop is closed")

    db.start(closed_loop, fatal.append)
    drive(db, tree, list(workload(TxnStream(), 5)))
    db.close()
    assert fatal == [] and db.durable_zxid == 5


def test_autopurge_interval_in_ms_wins(tmp_path: Path) -> None:
    txns = list(workload(TxnStream(), 100, seed=4))
    db, tree, _ = started(tmp_path, snap_count=20)
    drive(db, tree, txns)
    db.close()
    db2 = Database(config(tmp_path, purge_interval_ms=60_000))
    recover(db2)
    db2.start(lambda z: None)
    db2.close()
    assert len(snapshot_files(tmp_path / "version-2")) == 3


@pytest.mark.parametrize("seed", range(8))
def test_crash_loses_only_unacknowledged_txns(tmp_path: Path, seed: int) -> None:
    """Crash with a batch written but not fsynced: the disk keeps what was synced plus some
    random part of the rest (lazyfs-style). Every txn reported durable survives recovery,
    and the recovered tree is exactly the reference tree up to the recovered zxid."""
    rng = random.Random(seed)
    txns = list(workload(TxnStream(), 120, seed=seed))
    data = tmp_path / "live"
    db = Database(config(data, snap_count=1000))
    recover(db)
    synced: dict[Path, int] = {}
    real_sync = db._writer.sync
    allowed = rng.randrange(1, 6)
    gate = threading.Event()
    blocked = threading.Event()

    def sync() -> float:
        if len(synced_calls) >= allowed:
            blocked.set()
            assert gate.wait(WAIT_S)
        synced_calls.append(1)
        seconds = real_sync()
        assert db._writer.path is not None
        synced[db._writer.path] = db._writer.position
        return seconds

    synced_calls: list[int] = []
    db._writer.sync = sync  # type: ignore[method-assign]
    acked: list[int] = []
    db.start(acked.append)
    for hdr, txn in txns:
        db.append(hdr, jute.encode(txn))
        if rng.random() < 0.1 and not blocked.is_set():
            db.wait_durable(hdr.zxid, 0.2)  # let a few batches form
    assert blocked.wait(WAIT_S)
    top = max(acked, default=0)  # acknowledged before the crash
    assert top < len(txns)  # the crash does catch txns in flight
    # The crash: copy the directory as the disk would have it.
    crashed = tmp_path / "crashed" / "version-2"
    crashed.mkdir(parents=True)
    for src in (data / "version-2").iterdir():
        raw = src.read_bytes()
        if src.name.startswith("log."):
            keep = synced.get(src, 16)
            unsynced = raw[keep:].rstrip(b"\0")
            torn = unsynced[: rng.randrange(len(unsynced) + 1)]
            raw = raw[:keep] + torn + bytes(rng.randrange(0, 64))
        (crashed / src.name).write_bytes(raw)
    gate.set()
    db.close()
    recovered = recover(Database(config(tmp_path / "crashed")))
    assert recovered.last_zxid >= top
    assert view(recovered) == view(reference_tree(txns[: recovered.last_zxid]))
