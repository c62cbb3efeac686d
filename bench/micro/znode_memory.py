"""Memory per znode of the data tree, as the 1M-znode benchmark row builds it.

    .venv/bin/python bench/micro/znode_memory.py               # 1,000,000 znodes
    .venv/bin/python bench/micro/znode_memory.py -n 200000 --snapshot

Creates `n` znodes of 100 B under /bench/mem with zkload's populate names, through
DataTree.apply_txn (what a live server does), and reports the bytes per znode that
tracemalloc sees allocated by the tree and the growth of the process's RSS. With
--snapshot it also writes the tree to a snapshot file and loads it back (what a restart
holds), reporting the same for the loaded tree and the load time.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, os.environ.get("CORRAL_SRC") or str(Path(__file__).resolve().parents[2] / "src"))

from corral.proto.codes import OpCode
from corral.proto.records import ACL, CreateTxn, Id, TxnHeader
from corral.tree.datatree import DataTree

OPEN = (ACL(31, Id("world", "anyone")),)


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def build(n: int) -> DataTree:
    tree = DataTree()
    zxid = 0
    wall = 1_764_000_000_000
    for path in ("/bench", "/bench/mem"):
        zxid += 1
        tree.apply_txn(
            TxnHeader(1, zxid, zxid, wall, int(OpCode.CREATE)),
            CreateTxn(path, b"", OPEN, False, -1),
        )
    payload = b"x" * 100
    for i in range(n):
        zxid += 1
        if i % 64 == 0:
            wall += 1  # a new ms every few txns, as under load
        # zkload's populate: /bench/mem/m<conn>-<slot>-<seq>, 8 conns x 64 in flight.
        path = f"/bench/mem/m{i % 8}-{(i // 8) % 64}-{i // 512}"
        # A fresh bytes object per node, as decoding each request gives (bytes(payload)
        # would return payload itself).
        data = payload[:50] + payload[50:]
        tree.apply_txn(
            TxnHeader(0x100000000 + i % 8, i, zxid, wall, int(OpCode.CREATE)),
            CreateTxn(path, data, OPEN, False, i + 1),
        )
    return tree


def measure(label: str, n: int, make, traced: bool) -> object:  # type: ignore[no-untyped-def]
    """Build with `make`; print the bytes per znode (tracemalloc's count, or the RSS growth:
    not both at once, since tracemalloc's own tables would count in the RSS)."""
    gc.collect()
    r0 = rss_kb()
    if traced:
        tracemalloc.start()
    t0 = time.process_time()
    obj = make()
    cpu = time.process_time() - t0
    gc.collect()
    if traced:
        size, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"{label:<8} {n:>9} znodes: tracemalloc {size / n:7.1f} B/znode")
    else:
        grown = (rss_kb() - r0) * 1024
        print(f"{label:<8} {n:>9} znodes: RSS +{grown / n:7.1f} B/znode, build {cpu:6.2f} s CPU")
    return obj


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("-n", type=int, default=1_000_000)
    p.add_argument("--traced", action="store_true", help="count with tracemalloc, not RSS")
    p.add_argument("--snapshot", action="store_true", help="also save and reload a snapshot")
    args = p.parse_args()
    tree = measure("live", args.n, lambda: build(args.n), args.traced)
    if args.snapshot:
        from corral.store import database, snapshot
        from corral.tree.znode import ZNode

        with tempfile.TemporaryDirectory() as d:
            nodes = dict(tree.nodes)
            path = snapshot.take_snapshot(Path(d), tree.last_zxid, {}, nodes, fsync=False)
            del nodes
            del tree
            gc.collect()

            def load() -> DataTree:
                s = snapshot.read_snapshot(path)
                return database.build_tree(
                    s.zxid, s.sessions, s.nodes, DataTree.empty_for_load, ZNode
                )

            measure("loaded", args.n, load, args.traced)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
