"""The benchmark's big-tree rows (issue 4): memory per znode, restart, and snapshots.

For each server kind, standalone, on one data directory, in this order:

1. Memory: populate `sizes` (default 100k, then up to 1M) znodes of 100 B with snapshots
   out of the way (snapCount 100M); after each size, RSS and, for ZooKeeper, the live Java
   heap after a full GC (`jcmd GC.run`; its RSS is mostly the fixed 2 GiB heap).
2. Restart with every znode in the txn log only (informative: no snapshot yet).
3. Snapshot under a light load: restarted with a small snapCount (default 4,000, so the
   first snapshot comes after 2,001-4,000 txns), a paced getData/setData 50/50 load
   (`zkload mix -W 50 -R rate`, 4 sessions x 4 in flight) runs while a thread watches the
   snapshot directory with inotify: a snapshot starts when its file is created (ZooKeeper's
   periodic snapshot writes `snapshot.<zxid>` in place, without fsync; Corral writes
   `.corral-tmp-snapshot.<zxid>`) and ends when `snapshot.<zxid>` is closed after writing
   (ZooKeeper) or renamed into place (Corral). Corral encodes the body into an unnamed
   temporary file first, so its start is taken from its own log line ("wrote snapshot.<zxid>
   ... in X s": the end minus X) where that is earlier. ZooKeeper's own figure (mntr's
   zk_max_snapshottime) is recorded next to it. Three seconds (`quiet_after_s`) after the
   first snapshot ends the load is stopped (SIGUSR1). Every request's start and latency
   (`zkload -L`) are then split into those that overlapped a snapshot and those at least a
   second away from any ("baseline"): p50/p99/max of each show the spike.
   Corral copies its tree's tables on the event loop before the temporary file exists; a
   request stalled by that copy overlaps the snapshot's start and counts as during it.
4. Restart from a snapshot plus logged txns: restarted with snapCount 100M (both servers
   snapshot the recovered tree at startup), `log_txns` (default 100k) setData are logged,
   then the time from a restart until a read is served.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import re
import select
import signal
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import loadgen
from servers import Settings, Standalone, four_letter

NO_SNAPSHOTS = 100_000_000  # snapCount that keeps snapshots out of a phase
# inotify(7)
IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE = 0x8, 0x80, 0x100
EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name
CORRAL_WROTE = re.compile(r"wrote (snapshot\.[0-9a-f]+) \(\d+ nodes\) in ([0-9.]+)s")
OVERLAP_MARGIN_S = 0.05  # a request this close to a snapshot counts as during it
BASELINE_GAP_S = 1.0  # baseline requests are at least this far from any snapshot
POPULATE = ["-c", "8", "-d", "64", "-s", "100"]


@dataclasses.dataclass(frozen=True)
class TreeOptions:
    sizes: tuple[int, ...] = (100_000, 1_000_000)
    log_txns: int = 100_000
    snap_count: int = 4_000
    snap_rate: float = 1_000.0  # requests/s of the light load, half of them writes
    snap_max_s: float = 120.0  # longest the light load waits for a snapshot
    quiet_after_s: float = 3.0  # light load kept after the first snapshot, for a baseline


def is_snapshot_tmp(name: str) -> bool:
    return name.startswith(".corral-tmp-snapshot.") or (
        name.startswith("snapshot.") and name.endswith(".tmp")
    )


def is_snapshot(name: str) -> bool:
    return name.startswith("snapshot.") and not name.endswith(".tmp")


class SnapshotWatcher(threading.Thread):
    """Watches a snapshot directory; `intervals` are (start, end, snapshot file name) on
    time.monotonic()."""

    def __init__(self, snap_dir: Path, quiet_after_s: float) -> None:
        super().__init__(name="snapshot-watcher", daemon=True)
        self.quiet_after_s = quiet_after_s
        self.intervals: list[tuple[float, float, str]] = []
        self.done = threading.Event()
        self.generator: subprocess.Popen[str] | None = None
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        mask = IN_CREATE | IN_CLOSE_WRITE | IN_MOVED_TO
        if libc.inotify_add_watch(self.fd, os.fsencode(snap_dir), mask) < 0:
            os.close(self.fd)
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {snap_dir}")

    def events(self) -> list[tuple[int, str]]:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        out, at = [], 0
        while at + EVENT.size <= len(data):
            _, mask, _, length = EVENT.unpack_from(data, at)
            name = data[at + EVENT.size : at + EVENT.size + length].rstrip(b"\0")
            out.append((mask, name.decode(errors="replace")))
            at += EVENT.size + length
        return out

    def run(self) -> None:
        began: float | None = None
        stop_sent = False
        try:
            while not self.done.is_set():
                ready, _, _ = select.select([self.fd], [], [], 0.05)
                now = time.monotonic()
                for mask, name in self.events() if ready else []:
                    if mask & IN_CREATE and (is_snapshot(name) or is_snapshot_tmp(name)):
                        began = now if began is None else began
                    elif mask & (IN_CLOSE_WRITE | IN_MOVED_TO) and is_snapshot(name):
                        self.intervals.append((now if began is None else began, now, name))
                        began = None
                gen = self.generator
                if (
                    self.intervals
                    and not stop_sent
                    and now - self.intervals[0][1] > self.quiet_after_s
                ):
                    if gen is not None and gen.poll() is None:
                        gen.send_signal(signal.SIGUSR1)  # zkload ends its window
                    stop_sent = True
        finally:
            os.close(self.fd)


def percentiles(latencies_s: list[float]) -> dict[str, Any]:
    if not latencies_s:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(latencies_s)

    def at(p: float) -> float:
        return ordered[int(p * (len(ordered) - 1) + 0.5)] * 1000

    return {"n": len(ordered), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": ordered[-1] * 1000}


def split_latencies(
    samples: list[tuple[float, float]], intervals: list[tuple[float, float]]
) -> tuple[list[float], list[float]]:
    """(during a snapshot, baseline) latencies of (start, latency) samples, in seconds."""
    during, baseline = [], []
    for start, lat in samples:
        end = start + lat
        if any(start < e + OVERLAP_MARGIN_S and end > s - OVERLAP_MARGIN_S for s, e in intervals):
            during.append(lat)
        elif all(end < s - BASELINE_GAP_S or start > e + BASELINE_GAP_S for s, e in intervals):
            baseline.append(lat)
    return during, baseline


def snapshot_under_load(
    d: Standalone, opts: TreeOptions, gen_cpus: str | None, znodes: int
) -> dict[str, Any]:
    watcher = SnapshotWatcher(d.server.snap_dir, opts.quiet_after_s)

    def started(proc: subprocess.Popen[str]) -> None:
        watcher.generator = proc

    with tempfile.TemporaryDirectory(prefix="bench-snap-") as tmp:
        log = Path(tmp) / "latencies.txt"
        args = ["-W", "50", "-R", str(opts.snap_rate), "-c", "4", "-d", "4", "-s", "100"]
        # No warm-up: a snapshot may come early, and the SIGUSR1 that follows it must find
        # the window open (every request of the run is measured).
        args += ["-w", "0", "-t", str(opts.snap_max_s), "-L", str(log)]
        watcher.start()
        try:
            gen = loadgen.run(d, "mix", args, gen_cpus, started=started)
        finally:
            watcher.done.set()
            watcher.join()
        samples = []
        for line in log.read_text().splitlines():
            start, lat_us = line.split()
            samples.append((float(start), int(lat_us) / 1e6))
    reported = reported_snapshot_s(d)
    intervals = [(min(s, e - reported.get(name, 0.0)), e) for s, e, name in watcher.intervals]
    during, baseline = split_latencies(samples, intervals)
    first = intervals[0] if intervals else None
    mntr = four_letter(d.server.port, "mntr")
    zk_max = re.search(r"^zk_max_snapshottime\s+(\d+)", mntr, re.M)
    return {
        "server": d.kind,
        "znodes": znodes,
        "snap_count": opts.snap_count,
        "offered_ops_per_s": opts.snap_rate,
        "ops_per_s": gen["ops_per_s"],
        "errors": gen["errors"],
        "snapshots": len(intervals),
        "snapshot_s": first[1] - first[0] if first else None,
        "seen_by_inotify_s": [e - s for s, e, _ in watcher.intervals],
        "server_reported_s": [reported.get(name) for _, _, name in watcher.intervals],
        "server_max_snapshot_ms": int(zk_max.group(1)) if zk_max else None,
        "during": percentiles(during),
        "baseline": percentiles(baseline),
        "window_s": gen["seconds"],
    }


def reported_snapshot_s(d: Standalone) -> dict[str, float]:
    """Seconds per snapshot file from the server's log, where it says (Corral does)."""
    try:
        text = (d.server.workdir / "server.log").read_text(errors="replace")
    except OSError:
        return {}
    return {m.group(1): float(m.group(2)) for m in CORRAL_WROTE.finditer(text)}


def newest_snapshot_bytes(snap_dir: Path) -> int | None:
    snaps = [p for p in snap_dir.glob("snapshot.*") if is_snapshot(p.name)]
    if not snaps:
        return None
    return max(snaps, key=lambda p: int(p.name.split(".")[1], 16)).stat().st_size


def one_server(
    kind: str, settings: Settings, workdir: Path, opts: TreeOptions, gen_cpus: str | None
) -> dict[str, Any]:
    quiet = dataclasses.replace(settings, snap_count=NO_SNAPSHOTS)
    d = Standalone(kind, quiet, workdir / f"{kind}-tree")
    out: dict[str, Any] = {"memory": [], "restart": None, "snapshot": None}
    d.start()
    try:
        empty_rss, empty_heap = d.rss_kb(), d.live_heap_kb()
        have = 0
        for i, size in enumerate(opts.sizes):
            args = [*POPULATE, "-n", str(size - have), "-P", f"s{i}_"]
            gen = loadgen.run(d, "populate", args, gen_cpus)
            have += gen["ops"] - gen["errors"]
            rss, heap = d.rss_kb(), d.live_heap_kb()
            # Per znode: the live Java heap's growth where there is one, else the RSS growth.
            grown_kb = rss - empty_rss
            if heap is not None and empty_heap is not None:
                grown_kb = heap - empty_heap
            out["memory"].append(
                {
                    "server": kind,
                    "znodes": have,
                    "rss_empty_kb": empty_rss,
                    "rss_full_kb": rss,
                    "heap_empty_kb": empty_heap,
                    "heap_full_kb": heap,
                    "bytes_per_znode": grown_kb * 1024 / max(1, have),
                    "rss_bytes_per_znode": (rss - empty_rss) * 1024 / max(1, have),
                    "create_ops_per_s": gen["ops_per_s"],
                    "create_errors": gen["errors"],
                }
            )
        d.reconfigure(dataclasses.replace(settings, snap_count=opts.snap_count))
        log_only_s = d.restart()
        out["snapshot"] = snapshot_under_load(d, opts, gen_cpus, have)
        d.reconfigure(quiet)
        d.restart()  # both servers snapshot the tree they recovered before they serve
        logged = loadgen.run(d, "set", [*POPULATE, "-n", str(opts.log_txns)], gen_cpus)
        snapshot_bytes = newest_snapshot_bytes(d.server.snap_dir)
        restart_s = d.restart()
        out["restart"] = {
            "server": kind,
            "znodes": have,
            "logged_txns": logged["ops"],
            "restart_serve_s": restart_s,
            "restart_log_only_s": log_only_s,
            "rss_after_restart_kb": d.rss_kb(),
            "snapshot_bytes": snapshot_bytes,
        }
    finally:
        d.stop()
    return out


def run(
    kinds: list[str], settings: Settings, workdir: Path, opts: TreeOptions, gen_cpus: str | None
) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {"memory": [], "restart": [], "snapshot": []}
    for kind in kinds:
        one = one_server(kind, settings, workdir, opts, gen_cpus)
        results["memory"] += one["memory"]
        results["restart"].append(one["restart"])
        results["snapshot"].append(one["snapshot"])
    return results


def fmt(v: Any, spec: str) -> str:
    width = int(spec.split(".")[0] or 0)
    return f"{'-':>{width}}" if v is None else format(v, spec)


def print_rows(results: dict[str, list[dict[str, Any]]]) -> None:
    print(
        f"\n{'server':<10} {'znodes':>8} {'RSS empty MB':>12} {'RSS full MB':>11} "
        f"{'heap full MB':>12} {'B/znode':>8} {'RSS B/znode':>11} {'creates/s':>9}"
    )
    for r in results["memory"]:
        print(
            f"{r['server']:<10} {r['znodes']:>8} {r['rss_empty_kb'] / 1024:>12.0f} "
            f"{r['rss_full_kb'] / 1024:>11.0f} "
            f"{fmt(r['heap_full_kb'] and r['heap_full_kb'] / 1024, '12.0f')} "
            f"{r['bytes_per_znode']:>8.0f} {r['rss_bytes_per_znode']:>11.0f} "
            f"{r['create_ops_per_s']:>9.0f}"
        )
    print(
        f"\n{'server':<10} {'znodes':>8} {'logged':>7} {'restart+serve s':>15} "
        f"{'(log only) s':>12} {'snapshot MB':>11}"
    )
    for r in results["restart"]:
        print(
            f"{r['server']:<10} {r['znodes']:>8} {r['logged_txns']:>7} "
            f"{r['restart_serve_s']:>15.2f} {r['restart_log_only_s']:>12.2f} "
            f"{fmt(r['snapshot_bytes'] and r['snapshot_bytes'] / 2**20, '11.1f')}"
        )
    print(
        f"\n{'server':<10} {'znodes':>8} {'snap s':>7} {'ops/s':>6} "
        f"{'base p50/p99/max ms':>22} {'during p50/p99/max ms':>24}"
    )
    for r in results["snapshot"]:
        b, s = r["baseline"], r["during"]
        print(
            f"{r['server']:<10} {r['znodes']:>8} {fmt(r['snapshot_s'], '7.2f')} "
            f"{r['ops_per_s']:>6.0f} "
            f"{fmt(b['p50_ms'], '6.1f')}/{fmt(b['p99_ms'], '6.1f')}/{fmt(b['max_ms'], '7.1f')} "
            f"  {fmt(s['p50_ms'], '6.1f')}/{fmt(s['p99_ms'], '6.1f')}/{fmt(s['max_ms'], '7.1f')}"
        )
