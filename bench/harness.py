"""Corral vs Apache ZooKeeper, side by side on this machine (issue 4's benchmark).

    bash bench/setup.sh                      # once: C client library, ZooKeeper, matplotlib
    .venv/bin/python bench/harness.py        # standalone: rows, generator check, big trees
    .venv/bin/python bench/harness.py --ensemble --znodes 0 --no-generator-check
    .venv/bin/python bench/harness.py --deploy standalone,ensemble    # everything
    .venv/bin/python bench/harness.py --smoke --out /tmp/x   # seconds: does it still run?

Deployments (--deploy): `standalone` is one server of each kind; `ensemble` is three of each
kind on loopback (tickTime 2000, initLimit 10, syncLimit 5), the generator's sessions spread
evenly over the members (session i connects to member i mod 3). Both kinds get the same
zoo.cfg (forceSync on, same tickTime, data under one work directory on one disk).

Cores (the machine has 2): every server process is pinned to core 0 (--server-cpus), so a
3-member ensemble shares that one core just as a standalone server has it alone; the load
generator (bench/zkload.c on ZooKeeper's single-threaded C client) is pinned to core 1
(--gen-cpus). The other deployment kind idles on core 0 meanwhile. Server CPU and RSS are
summed over a deployment's processes; the generator's own CPU share is reported per row.

Each workload runs against ZooKeeper and Corral in alternation (A B A B ...), `--runs` times
each; rows report medians and the Corral/ZooKeeper ratio. Then:
- the generator check (standalone ZooKeeper, getData and setData with 1 and 2 generator
  processes sharing the generator's core and the same sessions): same rate either way and a
  generator CPU share below its core say the generator is not the bottleneck;
- the big-tree rows (bench/bigtree.py, standalone): RSS (and ZooKeeper's live heap) with
  100k and 1M znodes of 100 B, restart with 1M znodes (snapshot + 100k logged txns), and a
  snapshot of 1M znodes under a light paced load (its duration and the latency spike).
Results: a table on stdout, bench/results/<timestamp>.json and a PNG chart next to it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import bigtree
import loadgen
from servers import REPO, Deployment, Settings, Standalone, deployment, unavailable

BENCH = Path(__file__).resolve().parent
KINDS = ("zookeeper", "corral")
SHAPES = ("standalone", "ensemble")


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
        # The same offered load for both servers, below either one's capacity (standalone
        # and ensemble): p99 compared at equal throughput, not at saturation.
        Workload("getData 100B paced 10k/s", "get", (*load, "-s", "100", "-R", "10000")),
        Workload("setData 100B paced 3k/s", "set", (*load, "-s", "100", "-R", "3000")),
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


def start_all(
    shape: str, kinds: list[str], settings: Settings, workdir: Path
) -> dict[str, Deployment]:
    deployments: dict[str, Deployment] = {}
    try:
        for kind in kinds:
            d = deployment(shape, kind, settings, workdir / shape / kind)
            d.start()
            deployments[kind] = d
    except BaseException:
        for d in deployments.values():
            d.stop()
        raise
    return deployments


def run_rows(
    shape: str,
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
        row: dict[str, Any] = {"deploy": shape, "workload": w.name, "kind": w.kind}
        row["runs"] = per_kind
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


GEN_CHECK = (("getData 100B", "get"), ("setData 100B", "set"))


def generator_check(
    settings: Settings, workdir: Path, args: argparse.Namespace, gen_cpus: str | None
) -> list[dict[str, Any]]:
    """getData and setData against standalone ZooKeeper with 1, then 2, generator processes
    on the generator's cores, the sessions split between them: the generator is not the
    bottleneck when the rate stays the same and its CPU share stays below its cores'."""
    procs_list = [int(n) for n in args.gen_check_procs.split(",")]
    d = Standalone("zookeeper", settings, workdir / "generator-check")
    d.start()
    out = []
    try:
        if args.prewarm > 0:
            timing = ["-w", "0", "-t", str(args.prewarm)]
            for _, gen in GEN_CHECK:
                loadgen.run(
                    d, gen, ["-c", str(args.conns), "-d", str(args.depth), *timing], gen_cpus
                )
        for name, gen in GEN_CHECK:
            row: dict[str, Any] = {"workload": name, "runs": {}, "median": {}}
            for _ in range(args.runs):
                for procs in procs_list:  # alternate, as the main rows do
                    conns = max(1, args.conns // procs)
                    load = ["-c", str(conns), "-d", str(args.depth), "-s", "100"]
                    load += ["-w", str(args.warmup), "-t", str(args.seconds)]
                    r = loadgen.run(d, gen, load, gen_cpus, procs=procs)
                    row["runs"].setdefault(str(procs), []).append(r)
            for procs, runs in row["runs"].items():
                med = summarise(runs)
                med["core_busy"] = [
                    median(list(c)) for c in zip(*(r["core_busy"] for r in runs), strict=True)
                ]
                row["median"][procs] = med
            base = row["median"][str(procs_list[0])]["ops_per_s"]
            row["rate_vs_first"] = {
                p: ratio(m["ops_per_s"], base) for p, m in row["median"].items()
            }
            print_generator_row(row)
            out.append(row)
    finally:
        d.stop()
    return out


def print_generator_row(row: dict[str, Any]) -> None:
    for procs, m in row["median"].items():
        cores = " ".join(f"{c * 100:3.0f}%" for c in m["core_busy"])
        print(
            f"{row['workload']:<14} {procs:>5} {fmt(m['ops_per_s'], '9.0f')} "
            f"{fmt(m['p99_ms'], '8.2f')} {m['gen_cpu_share'] * 100:6.0f}% "
            f"{m['server_cpu_share'] * 100:6.0f}% {fmt(row['rate_vs_first'][procs], '8.2f')}"
            f"   {cores}",
            flush=True,
        )


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
        "deploy": args.deploy,
        "generator_cpus": args.gen_cpus,
        "pinning": (
            f"servers (every member) on cpus {args.server_cpus or 'any'}, "
            f"generator on cpus {args.gen_cpus or 'any'}"
        ),
        "runs": args.runs,
        "connections": args.conns,
        "depth": args.depth,
        "warmup_s": args.warmup,
        "seconds": args.seconds,
        "command": " ".join(sys.argv),
        # Other work on this machine skews every figure: the load average says how much.
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def cpu_list(spec: str) -> set[int]:
    """taskset's list syntax: "1", "0-1", "1,3"."""
    cpus: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny run (seconds), for the smoke test")
    p.add_argument("--runs", type=int, default=3, help="runs per server per workload")
    p.add_argument("--conns", type=int, default=16, help="sessions per throughput workload")
    p.add_argument("--depth", type=int, default=16, help="requests in flight per session")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    p.add_argument("--seconds", type=float, default=5.0, help="measured seconds per run")
    p.add_argument("--servers", default="zookeeper,corral", help="comma-separated")
    p.add_argument("--deploy", default="standalone", help="standalone,ensemble (either or both)")
    p.add_argument("--ensemble", action="store_true", help="same as --deploy ensemble")
    p.add_argument("--only", default="", help="comma-separated substrings of workload names")
    p.add_argument("--no-rows", action="store_true", help="skip the workload rows")
    p.add_argument(
        "--generator-check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ZooKeeper with 1 and 2 generator processes (default on)",
    )
    p.add_argument("--gen-check-procs", default="1,2", help="generator processes to compare")
    p.add_argument(
        "--znodes",
        default="100000,1000000",
        help="big-tree sizes, comma-separated (memory rows; the largest is restarted and "
        "snapshotted); 0 skips the big-tree rows",
    )
    p.add_argument("--log-txns", type=int, default=100_000, help="txns logged before restart")
    p.add_argument("--snap-count", type=int, default=4_000, help="snapCount of the snapshot row")
    p.add_argument("--snap-rate", type=float, default=1000.0, help="light load, requests/s")
    p.add_argument("--server-cpus", default="0", help="taskset list for servers ('' unpinned)")
    p.add_argument("--gen-cpus", default="1", help="taskset list for the generator")
    p.add_argument("--prewarm", type=float, default=5.0, help="unmeasured seconds per server")
    p.add_argument("--out", type=Path, default=BENCH / "results", help="results directory")
    p.add_argument("--no-chart", action="store_true")
    args = p.parse_args(argv)
    if args.ensemble:
        args.deploy = "ensemble"
    args.sizes = tuple(int(n) for n in args.znodes.split(",") if int(n) > 0)
    if args.smoke:
        args.runs, args.conns, args.depth = 1, 2, 4
        args.warmup, args.seconds, args.prewarm = 0.1, 0.3, 0.0
        args.sizes = (300, 1000) if args.sizes else ()
        args.log_txns, args.snap_count, args.snap_rate = 200, 100, 400.0
    bad = [s for s in args.deploy.split(",") if s not in SHAPES]
    if bad:
        p.error(f"--deploy: unknown {bad}; choose from {SHAPES}")
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
    if gen_cpus is not None:
        # The harness samples /proc and watches snapshots: keep it off the servers' core.
        os.sched_setaffinity(0, cpu_list(gen_cpus))
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = args.out / f"work-{stamp}"
    rows = workloads(args.smoke, args.conns, args.depth, args.warmup, args.seconds)
    if args.only:
        wanted = [s.strip().lower() for s in args.only.split(",")]
        rows = [w for w in rows if any(s in w.name.lower() for s in wanted)]

    results: dict[str, Any] = {
        "meta": meta(args, settings),
        "rows": [],
        "generator_check": [],
        "memory": [],
        "restart": [],
        "snapshot": [],
    }
    started = time.monotonic()
    parts: dict[str, float] = {}  # seconds per part of the run
    for shape in args.deploy.split(",") if rows and not args.no_rows else []:
        # One deployment shape at a time: the other's processes would share core 0.
        print(f"\n== {shape} ==\n{HEADER}", flush=True)
        deployments = start_all(shape, kinds, settings, workdir)
        try:
            if args.prewarm > 0:
                prewarm(deployments, args, gen_cpus)
            results["rows"] += run_rows(shape, rows, deployments, args.runs, gen_cpus)
        finally:
            for d in deployments.values():
                d.stop()
        parts[f"rows {shape}"] = time.monotonic() - started - sum(parts.values())
    if args.generator_check and "zookeeper" in kinds:
        print(
            f"\n== generator check: standalone ZooKeeper, generators on cpus {args.gen_cpus} ==\n"
            f"{'workload':<14} {'procs':>5} {'ops/s':>9} {'p99ms':>8} {'genCPU':>7} "
            f"{'srvCPU':>7} {'vs 1st':>8}   cores busy",
            flush=True,
        )
        results["generator_check"] = generator_check(settings, workdir, args, gen_cpus)
        parts["generator check"] = time.monotonic() - started - sum(parts.values())
    if args.sizes:
        opts = bigtree.TreeOptions(
            sizes=args.sizes,
            log_txns=args.log_txns,
            snap_count=args.snap_count,
            snap_rate=args.snap_rate,
            snap_max_s=15.0 if args.smoke else 120.0,
            quiet_after_s=1.5 if args.smoke else 3.0,
        )
        results.update(bigtree.run(kinds, settings, workdir, opts, gen_cpus))
        bigtree.print_rows(results)
        parts["big trees"] = time.monotonic() - started - sum(parts.values())
    results["meta"]["elapsed_s"] = time.monotonic() - started
    results["meta"]["elapsed_parts_s"] = parts
    results["meta"]["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]

    path = args.out / f"{stamp}.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nresults: {path}")
    if not args.no_chart and results["rows"]:
        import chart

        print(f"chart: {chart.draw(results, path.with_suffix('.png'))}")
    # The data directories are big and only useful while debugging a run.
    subprocess.run(["rm", "-rf", str(workdir)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
