"""Restart time with a large tree: snapshot load + log replay (+ the startup snapshot).

    .venv/bin/python bench/micro/restart.py                 # 1M znodes: 900k in the snapshot
    .venv/bin/python bench/micro/restart.py -n 200000 --logged 20000 --profile

The data directory (built once and kept under /tmp, keyed by the sizes) holds a snapshot
of `n - logged` znodes of 100 B under /bench/mem and `logged` create txns after it in the
log, like the benchmark's populate row. Each repeat recovers it in a fresh Database (what
`corral server` does at startup, without the sockets) and reports CPU seconds per phase:
reading the snapshot, building the tree, replaying the log, and writing the startup
snapshot (fsync off, so the disk does not dominate); then "to serving": the CPU of the
thread that called recover() and the wall time until it returned (when a server starts
serving), and "total CPU" until the startup snapshot is written too (close() waits for it:
it runs in the snapshot thread since recovery stopped waiting for it). Medians over
--repeats. Since recovery loads the snapshot's nodes straight into the tree, "read snapshot"
includes building it and "build tree" shows only for an older source tree (CORRAL_SRC).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, os.environ.get("CORRAL_SRC") or str(Path(__file__).resolve().parents[2] / "src"))

from corral.proto import jute
from corral.proto.codes import OpCode
from corral.proto.records import ACL, CreateTxn, Id, TxnHeader
from corral.store import database as dbm
from corral.store import snapshot as snap
from corral.store.database import Database, StoreConfig
from corral.tree.datatree import DataTree
from corral.tree.znode import ZNode

OPEN = (ACL(31, Id("world", "anyone")),)


def _path(i: int) -> str:
    return f"/bench/mem/m{i % 8}-{(i // 8) % 64}-{i // 512}"


def prepare(where: Path, n: int, logged: int) -> None:
    if (where / "done").exists():
        return
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    db = Database(StoreConfig(data_dir=where, force_sync=False, snap_count=10**9))
    tree = db.recover(new_tree=DataTree, empty_for_load=DataTree.empty_for_load, make_node=ZNode)
    db.start(on_durable=lambda z: None)
    wall = 1_764_000_000_000
    zxid = tree.last_zxid
    paths = ["/bench", "/bench/mem"] + [_path(i) for i in range(n)]
    payload = b"x" * 100
    for i, path in enumerate(paths):
        zxid += 1
        hdr = TxnHeader(0x100000000 + i % 8, i, zxid, wall + i // 64, int(OpCode.CREATE))
        txn = CreateTxn(path, b"" if i < 2 else payload, OPEN, False, -1)
        tree.apply_txn(hdr, txn)
        db.append(hdr, jute.encode(txn))
        if i == len(paths) - logged - 1:
            # As at a snapshot point: the log rolls, so the txns after the snapshot start
            # a new file (recovery reads only that one).
            with db._work:
                db._queue.append(dbm._ROLL)
            db.wait_durable(zxid, 600)
            db.start_snapshot(tree).join()
    db.wait_durable(zxid, 600)
    db.close()
    (where / "done").write_text("ok")


def recover_once(where: Path, profile: bool) -> dict[str, float]:
    times: dict[str, float] = {}
    orig_read, orig_build, orig_replay = snap.read_snapshot, dbm.build_tree, Database._replay
    orig_write = Database._snapshot_worker

    def timed(name, fn):  # type: ignore[no-untyped-def]
        # thread_time: the startup snapshot may run in its own thread.
        def wrapper(*a, **k):  # type: ignore[no-untyped-def]
            t0 = time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                times[name] = times.get(name, 0.0) + time.thread_time() - t0

        return wrapper

    snap.read_snapshot = timed("read snapshot", orig_read)
    dbm.build_tree = timed("build tree", orig_build)
    Database._replay = timed("replay log", orig_replay)  # type: ignore[method-assign]
    Database._snapshot_worker = timed("write snapshot", orig_write)  # type: ignore[method-assign]
    work = where.parent / (where.name + "-run")
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(where, work)
    (work / "done").unlink()
    prof = cProfile.Profile() if profile else None
    try:
        t0 = time.process_time()
        c0 = time.thread_time()
        w0 = time.perf_counter()
        if prof:
            prof.enable()
        db = Database(StoreConfig(data_dir=work, force_sync=False, snap_count=10**9))
        tree = db.recover(
            new_tree=DataTree, empty_for_load=DataTree.empty_for_load, make_node=ZNode
        )
        times["to serving CPU"] = time.thread_time() - c0
        times["to serving wall"] = time.perf_counter() - w0
        db.close()
        if prof:
            prof.disable()
        times["total CPU"] = time.process_time() - t0
        times["total wall"] = time.perf_counter() - w0
        times["znodes"] = len(tree.nodes)
    finally:
        snap.read_snapshot, dbm.build_tree = orig_read, orig_build
        Database._replay = orig_replay  # type: ignore[method-assign]
        Database._snapshot_worker = orig_write  # type: ignore[method-assign]
        shutil.rmtree(work, ignore_errors=True)
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    return times


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("-n", type=int, default=1_000_000)
    p.add_argument("--logged", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--dir", type=Path, default=Path("/tmp/corral-restart-bench"))
    args = p.parse_args()
    where = args.dir / f"n{args.n}-l{args.logged}"
    t0 = time.perf_counter()
    prepare(where, args.n, args.logged)
    print(f"data dir {where} ready in {time.perf_counter() - t0:.1f} s")
    runs = [recover_once(where, args.profile) for _ in range(args.repeats)]
    for key in runs[0]:
        vals = [r[key] for r in runs]
        runs_text = " ".join(f"{v:.2f}" for v in vals)
        print(f"{key:<16} median {statistics.median(vals):8.2f}   runs {runs_text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
