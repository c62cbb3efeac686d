"""Restart end to end: `corral server` started on a big data directory, until a read is served.

    .venv/bin/python bench/micro/restart_e2e.py                       # 1M znodes, 3 rounds
    .venv/bin/python bench/micro/restart_e2e.py --src /tmp/old/src --src src --rounds 3

Uses the data directory bench/micro/restart.py prepares (a snapshot of n - logged znodes of
100 B plus `logged` txns in the log; run that script first with the same sizes). Each round
starts every given source tree in turn (A B A B ..., so load on a shared machine hits all
alike) on a fresh copy of that directory, with bench/servers.py's launcher (zoo.cfg with
forceSync on, pinned with --cpus), and reports the seconds from process start until a
getData is answered (what the benchmark's restart row measures), the server's CPU seconds by
then, and its CPU seconds once the startup snapshot is written (the snapshot file appears).
A source tree is put first on PYTHONPATH, ahead of the installed package.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from servers import CorralServer, Settings, proc_cpu_s  # noqa: E402

SNAPSHOT_WAIT_S = 300.0


class _Server(CorralServer):
    def __init__(self, settings: Settings, workdir: Path, src: Path) -> None:
        super().__init__(settings, workdir)
        self.src = src

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env["PYTHONPATH"] = str(self.src)
        return env


def one_restart(src: Path, data: Path, work: Path, cpus: str | None) -> dict[str, float]:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copytree(data, work / "data", ignore=shutil.ignore_patterns("done"))
    before = {p.name for p in (work / "data" / "version-2").glob("snapshot.*")}
    server = _Server(Settings(cpus=cpus, snap_count=100_000_000), work, src.resolve())
    try:
        seconds = server.start()
        cpu_serving = proc_cpu_s(server.pid)
        # The startup snapshot: written before serving (older trees) or in its thread after.
        deadline = time.monotonic() + SNAPSHOT_WAIT_S
        snap_dir = work / "data" / "version-2"
        while time.monotonic() < deadline:
            now = {p.name for p in snap_dir.glob("snapshot.*")}
            if now - before:
                break
            time.sleep(0.05)
        cpu_snapshot = proc_cpu_s(server.pid)
    finally:
        server.stop()
    shutil.rmtree(work, ignore_errors=True)
    return {
        "serve s": seconds,
        "CPU s at serving": cpu_serving,
        "CPU s after snapshot": cpu_snapshot,
    }


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("-n", type=int, default=1_000_000)
    p.add_argument("--logged", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--src", type=Path, action="append", help="source trees (default: src)")
    p.add_argument("--cpus", default="0", help="taskset CPU list for the server ('' for none)")
    p.add_argument("--dir", type=Path, default=Path("/tmp/corral-restart-bench"))
    args = p.parse_args()
    data = args.dir / f"n{args.n}-l{args.logged}"
    if not (data / "done").exists():
        p.error(f"{data} is not prepared: run bench/micro/restart.py -n {args.n} first")
    srcs = args.src or [REPO / "src"]
    results: dict[Path, list[dict[str, float]]] = {s: [] for s in srcs}
    for r in range(args.rounds):
        for i, src in enumerate(srcs):
            work = args.dir / f"e2e-{os.getpid()}-{i}"
            res = one_restart(src, data, work, args.cpus or None)
            results[src].append(res)
            print(f"round {r + 1} {src}: " + ", ".join(f"{k} {v:.2f}" for k, v in res.items()))
    for src, runs in results.items():
        print(f"== {src}")
        for key in runs[0]:
            vals = [run[key] for run in runs]
            text = " ".join(f"{v:.2f}" for v in vals)
            print(f"  {key:<22} median {statistics.median(vals):7.2f}   runs {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
