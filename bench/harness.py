"""Corral vs Apache ZooKeeper, side by side on this machine (issue 4's benchmark).

    bash bench/setup.sh                      # once: C client library, ZooKeeper, matplotlib
    .venv/bin/python bench/harness.py        # full run (about 20 minutes)
    .venv/bin/python bench/harness.py --smoke --out /tmp/x   # seconds: does it still run?

Both servers run standalone with the same zoo.cfg (forceSync on, tickTime 2000, data under
one work directory), pinned to core 0; the load generator (bench/zkload.c on ZooKeeper's
single-threaded C client) is pinned to core 1. Each workload runs against ZooKeeper and
Corral in alternation (A B A B ...), `--runs` times each; rows report medians and the
Corral/ZooKeeper ratio. Results: a table on stdout, bench/results/<timestamp>.json and
a PNG chart next to it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import loadgen
from servers import REPO, Deployment, Settings, Standalone, unavailable

BENCH = Path(__file__).resolve().parent
KINDS = ("zookeeper", "corral")


@dataclasses.dataclass(frozen=True)
class Workload:
    """One row: a zkload workload with its arguments."""

    name: str
    generator: str
    args: tuple[str, ...] = ()
    kind: str = "throughput"  # throughput | fanout | idle


def workloads(smoke: bool, conns: int, depth: int, warmup: float, seconds: float) -> list[Workload]:
    timing = ("-w", str(warmup), "-t", str(seconds))
    load = ("-c", str(conns), "-d", str(depth), *timing)
    watchers, idle_sessions, rounds = (50, 50, 1) if smoke else (10_000, 10_000, 3)
    return [
        Workload("getData 100B", "get", (*load, "-s", "100")),
        Workload("getData 1KB", "get", (*load, "-s", "1024")),
        Workload("setData 100B", "set", (*load, "-s", "100")),
        Workload("setData 1KB", "set", (*load, "-s", "1024")),
        Workload("create+delete", "createdelete", (*load, "-s", "100")),
        Workload("create eph seq", "ephseq", (*load, "-s", "100")),
        Workload("exists", "exists", load),
        Workload("getChildren 1000", "children", load),
        Workload("mix 90/10 read/write", "mix", (*load, "-s", "100")),
        Workload("multi of 5", "multi", (*load, "-s", "100")),
        # Handshakes in flight; each established session is dropped (see zkload.c).
        Workload("session establish", "session", ("-c", str(conns), "-T", "4000", *timing)),
        Workload(
            f"watch fan-out {watchers}",
            "fanout",
            ("-n", str(watchers), "-r", str(rounds), "-s", "100"),
            "fanout",
        ),
        Workload(
            f"idle {idle_sessions} sessions", "idle", ("-n", str(idle_sessions), *timing), "idle"
        ),
    ]


def normalise(w: Workload, r: dict[str, Any]) -> dict[str, Any]:
    """Give fan-out and idle rows the same columns as the others."""
    if w.kind == "fanout":
        notifications = r["watchers"] * max(1, r.get("rounds", 1))
        r["ops_per_s"] = r["notifications_per_s"]
        r["server_cpu_s_per_1k_ops"] = r["server_cpu_s"] / notifications * 1000
    elif w.kind == "idle":
        r["ops_per_s"] = r["p50_ms"] = r["p99_ms"] = r["p999_ms"] = None
        r["server_cpu_s_per_1k_ops"] = None
    return r


def median(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


FIELDS = (
    "ops_per_s",
    "p50_ms",
    "p99_ms",
    "p999_ms",
    "server_cpu_s_per_1k_ops",
    "server_cpu_share",
    "server_rss_kb",
    "gen_cpu_share",
)


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {f: median([r.get(f) for r in runs]) for f in FIELDS}


def ratio(a: Any, b: Any) -> float | None:
    return a / b if a is not None and b else None


def start_all(kinds: list[str], settings: Settings, workdir: Path) -> dict[str, Deployment]:
    deployments: dict[str, Deployment] = {}
    for kind in kinds:
        d = Standalone(kind, settings, workdir / kind)
        d.start()
        deployments[kind] = d
    return deployments


def run_rows(
    rows: list[Workload],
    deployments: dict[str, Deployment],
    runs: int,
    gen_cpus: str | None,
) -> list[dict[str, Any]]:
    out = []
    for w in rows:
        per_kind: dict[str, list[dict[str, Any]]] = {k: [] for k in deployments}
        for _ in range(runs):
            for kind, d in deployments.items():  # A B A B: alternate within each run
                r = normalise(w, loadgen.run(d, w.generator, list(w.args), gen_cpus))
                per_kind[kind].append(r)
        med = {k: summarise(v) for k, v in per_kind.items()}
        row: dict[str, Any] = {"workload": w.name, "kind": w.kind, "runs": per_kind}
        row["median"] = med
        if "corral" in med and "zookeeper" in med:
            row["ratio_ops"] = ratio(med["corral"]["ops_per_s"], med["zookeeper"]["ops_per_s"])
            row["ratio_p99"] = ratio(med["corral"]["p99_ms"], med["zookeeper"]["p99_ms"])
        print_row(row, deployments)
        out.append(row)
    return out


def prewarm(deployments: dict[str, Deployment], args: argparse.Namespace, gen: str | None) -> None:
    """Let the JVM's JIT compile the hot paths before anything is measured."""
    timing = ["-w", "0", "-t", str(args.prewarm)]
    load = ["-c", str(args.conns), "-d", str(args.depth), *timing]
    for d in deployments.values():
        for generator in ("get", "set", "mix"):
            loadgen.run(d, generator, load, gen)


def memory_rows(
    kinds: list[str], settings: Settings, workdir: Path, znodes: int, gen_cpus: str | None
) -> list[dict[str, Any]]:
    """RSS with `znodes` znodes of 100 B, then the time to restart and serve a read."""
    rows = []
    for kind in kinds:
        d = Standalone(kind, settings, workdir / f"{kind}-mem")
        d.start()
        try:
            base, base_heap = d.rss_kb(), d.server.live_heap_kb()
            gen = loadgen.run(d, "populate", ["-c", "8", "-d", "64", "-n", str(znodes)], gen_cpus)
            full, full_heap = d.rss_kb(), d.server.live_heap_kb()
            restart_s = d.restart()
            after_restart = d.rss_kb()
        finally:
            d.stop()
        count = max(1, gen["ops"])
        # Per znode: the live Java heap's growth where there is one, else the RSS growth.
        grown_kb = full - base
        if base_heap is not None and full_heap is not None:
            grown_kb = full_heap - base_heap
        rows.append(
            {
                "server": kind,
                "znodes": gen["ops"],
                "rss_empty_kb": base,
                "rss_full_kb": full,
                "heap_empty_kb": base_heap,
                "heap_full_kb": full_heap,
                "bytes_per_znode": grown_kb * 1024 / count,
                "create_ops_per_s": gen["ops_per_s"],
                "restart_serve_s": restart_s,
                "rss_after_restart_kb": after_restart,
            }
        )
    return rows


def fmt(v: Any, spec: str = ".0f") -> str:
    """Format a number, or a dash as wide as the number would be."""
    width = int(spec.split(".")[0] or 0)
    return f"{'-':>{width}}" if v is None else format(v, spec)


HEADER = (
    f"{'workload':<22} {'server':<9} {'ops/s':>9} {'p50ms':>8} {'p99ms':>8} {'p99.9ms':>8} "
    f"{'cpu s/1k':>8} {'srvCPU':>6} {'RSS MB':>7} {'genCPU':>6} {'C/ZK ops':>8} {'C/ZK p99':>8}"
)


def print_row(row: dict[str, Any], deployments: dict[str, Deployment]) -> None:
    for kind in deployments:
        m = row["median"][kind]
        last = kind == list(deployments)[-1]
        ratios = ""
        if last and "ratio_ops" in row:
            ratios = f" {fmt(row['ratio_ops'], '8.2f')} {fmt(row['ratio_p99'], '8.2f')}"
        print(
            f"{row['workload'] if kind == next(iter(deployments)) else '':<22} {kind:<9} "
            f"{fmt(m['ops_per_s'], '9.0f')} {fmt(m['p50_ms'], '8.2f')} {fmt(m['p99_ms'], '8.2f')} "
            f"{fmt(m['p999_ms'], '8.2f')} {fmt(m['server_cpu_s_per_1k_ops'], '8.3f')} "
            f"{fmt(m['server_cpu_share'] and m['server_cpu_share'] * 100, '5.0f')}% "
            f"{fmt(m['server_rss_kb'] and m['server_rss_kb'] / 1024, '7.0f')} "
            f"{fmt(m['gen_cpu_share'] and m['gen_cpu_share'] * 100, '5.0f')}%{ratios}",
            flush=True,
        )


def print_memory(rows: list[dict[str, Any]]) -> None:
    print(
        f"\n{'server':<10} {'znodes':>8} {'RSS empty MB':>12} {'RSS full MB':>11} "
        f"{'heap full MB':>12} {'B/znode':>8} {'restart+serve s':>15}"
    )
    for r in rows:
        print(
            f"{r['server']:<10} {r['znodes']:>8} {r['rss_empty_kb'] / 1024:>12.0f} "
            f"{r['rss_full_kb'] / 1024:>11.0f} "
            f"{fmt(r['heap_full_kb'] and r['heap_full_kb'] / 1024, '12.0f')} "
            f"{r['bytes_per_znode']:>8.0f} "
            f"{r['restart_serve_s']:>15.2f}"
        )


def meta(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "machine": {
            "cpus": len(loadgen.cores_busy()),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
        "settings": dataclasses.asdict(settings),
        "generator_cpus": args.gen_cpus,
        "runs": args.runs,
        "connections": args.conns,
        "depth": args.depth,
        "warmup_s": args.warmup,
        "seconds": args.seconds,
        "command": " ".join(sys.argv),
        # Other work on this machine skews every figure: the load average says how much.
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny run (seconds), for the smoke test")
    p.add_argument("--runs", type=int, default=3, help="runs per server per workload")
    p.add_argument("--conns", type=int, default=16, help="sessions per throughput workload")
    p.add_argument("--depth", type=int, default=16, help="requests in flight per session")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    p.add_argument("--seconds", type=float, default=5.0, help="measured seconds per run")
    p.add_argument("--servers", default="zookeeper,corral", help="comma-separated")
    p.add_argument("--only", default="", help="comma-separated substrings of workload names")
    p.add_argument("--znodes", type=int, default=100_000, help="memory row size; 0 skips it")
    p.add_argument("--server-cpus", default="0", help="taskset list for servers ('' unpinned)")
    p.add_argument("--gen-cpus", default="1", help="taskset list for the generator")
    p.add_argument("--prewarm", type=float, default=5.0, help="unmeasured seconds per server")
    p.add_argument("--out", type=Path, default=BENCH / "results", help="results directory")
    p.add_argument("--no-chart", action="store_true")
    args = p.parse_args(argv)
    if args.smoke:
        args.runs, args.conns, args.depth = 1, 2, 4
        args.warmup, args.seconds, args.znodes, args.prewarm = 0.1, 0.3, 500, 0.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    kinds = [k for k in args.servers.split(",") if k]
    for kind in kinds:
        why = unavailable(kind)
        if why:
            print(f"cannot run {kind}: {why}", file=sys.stderr)
            return 2
    why = loadgen.unavailable()
    if why:
        print(f"cannot build the load generator: {why}", file=sys.stderr)
        return 2
    loadgen.build()
    # Thousands of sessions: every process (servers inherit it) may open that many sockets.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    settings = Settings(cpus=args.server_cpus or None)
    gen_cpus = args.gen_cpus or None
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = args.out / f"work-{stamp}"
    rows = workloads(args.smoke, args.conns, args.depth, args.warmup, args.seconds)
    if args.only:
        wanted = [s.strip().lower() for s in args.only.split(",")]
        rows = [w for w in rows if any(s in w.name.lower() for s in wanted)]

    results: dict[str, Any] = {"meta": meta(args, settings), "rows": [], "memory": []}
    started = time.monotonic()
    print(HEADER, flush=True)
    deployments = start_all(kinds, settings, workdir)
    try:
        if args.prewarm > 0 and rows:
            prewarm(deployments, args, gen_cpus)
        results["rows"] = run_rows(rows, deployments, args.runs, gen_cpus)
    finally:
        for d in deployments.values():
            d.stop()
    if args.znodes > 0:
        results["memory"] = memory_rows(kinds, settings, workdir, args.znodes, gen_cpus)
        print_memory(results["memory"])
    results["meta"]["elapsed_s"] = time.monotonic() - started
    results["meta"]["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]

    path = args.out / f"{stamp}.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nresults: {path}")
    if not args.no_chart:
        import chart

        print(f"chart: {chart.draw(results, path.with_suffix('.png'))}")
    # The data directories are big and only useful while debugging a run.
    subprocess.run(["rm", "-rf", str(workdir)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
