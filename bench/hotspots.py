"""Where Corral's time goes under one workload: py-spy samples the server while zkload drives it.

    .venv/bin/pip install py-spy==0.4.3        # a profiling tool, not a project dependency
    .venv/bin/python bench/hotspots.py get --gen-args '-s 100'
    .venv/bin/python bench/hotspots.py set --seconds 15 --gen-args '-s 1024'
    .venv/bin/python bench/hotspots.py set --deploy ensemble --member follower

With `--deploy ensemble` one member is sampled (the leader, or a follower with `--member`)
while the generator's sessions spread over all three. Samples are of wall time: the members
share one core, so a member waiting for it shows where it lost the CPU (waking its log
writer, `threading.notify`, took 20% of the leader's samples in a setData run, yet running
that thread under SCHED_BATCH, which stops it preempting, changed nothing measurable).

First prints each server thread's on-CPU time per operation (from /proc: the loop thread
and the txn log writer of every member), then the functions with the most samples, by own
time (the function itself running) and by inclusive time (it or anything it called), and
keeps the collapsed stacks (bench/results/profile-<workload>-<timestamp>.txt, flamegraph.pl
or speedscope read them).
"""

from __future__ import annotations

import argparse
import collections
import datetime
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import loadgen
from servers import (
    Deployment,
    Ensemble,
    ServerProcess,
    Settings,
    Standalone,
    four_letter,
    thread_cpu_s,
)

BENCH = Path(__file__).resolve().parent
# Every stack of the event loop's thread passes through asyncio.Runner.run; py-spy names it
# "Runner.run (" or, in other versions, "run (.../asyncio/runners.py".
LOOP_FRAMES = ("Runner.run (", "asyncio/runners.py")
IDLE_FRAMES = ("epoll_wait (", "epoll_pwait (")  # the loop waiting for IO (--native only)


def top_of(stacks: Path, limit: int) -> str:
    """Tables of own and inclusive sample counts per function from collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    idle = 0
    for line in stacks.read_text().splitlines():
        frames, _, count_text = line.rpartition(" ")
        # Only the event loop's thread: the fsync thread mostly waits on its condition.
        if not frames or not any(f in frames for f in LOOP_FRAMES):
            continue
        if any(f in frames for f in IDLE_FRAMES):
            idle += int(count_text)
            continue
        count = int(count_text)
        total += count
        # "func (path:line)" -> "func (path)": a function's lines are counted together.
        names = [f.rsplit(":", 1)[0] + ")" if f.endswith(")") else f for f in frames.split(";")]
        own[names[-1]] += count
        for name in set(names):
            inclusive[name] += count
    share = 100 * idle / max(1, idle + total)
    out = [f"event loop thread: {idle + total} samples, {share:.1f}% idle in epoll_wait"]
    out.append(f"busy samples ({total}) below, as % of busy time")
    for title, counter in (("own", own), ("inclusive", inclusive)):
        out.append(f"\ntop {limit} by {title} time:")
        for name, n in counter.most_common(limit):
            out.append(f"{100 * n / max(1, total):6.1f}%  {name}")
    return "\n".join(out)


def _role(m: ServerProcess) -> str:
    found = re.search(r"^Mode: (\w+)", four_letter(m.port, "srvr"), re.M)
    return found.group(1) if found else "?"


def _cpu_per_op(
    roles: dict[int, str],
    before: dict[int, dict[str, float]],
    after: dict[int, dict[str, float]],
    ops: float,
) -> str:
    """On-CPU time per operation of every thread of every server (what py-spy's wall-time
    samples cannot tell apart from waiting for the shared core)."""
    out = ["CPU per op, by thread (all servers):"]
    total = 0.0
    for pid, threads in after.items():
        for name, cpu in sorted(threads.items()):
            used = cpu - before[pid].get(name, 0.0)
            if used > 0:
                total += used
                out.append(f"  {roles[pid]:<10} {name:<24} {1e6 * used / max(ops, 1):8.1f} us")
    out.append(f"  {'total':<35} {1e6 * total / max(ops, 1):8.1f} us")
    return "\n".join(out)


def _member(d: Deployment, role: str) -> ServerProcess:
    """The standalone server, or the first ensemble member whose `srvr` reports `role`."""
    if isinstance(d, Standalone):
        return d.server
    for m in d.processes:
        if f"Mode: {role}" in four_letter(m.port, "srvr"):
            return m
    raise RuntimeError(f"no ensemble member is a {role}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("workload", help="a zkload workload: get, set, mix, createdelete, ...")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--limit", type=int, default=25)
    p.add_argument("--native", action="store_true", help="also sample C frames (uvloop, ...)")
    p.add_argument("--gen-args", default="", help="extra zkload flags, e.g. '-s 1024 -c 16'")
    p.add_argument("--deploy", choices=("standalone", "ensemble"), default="standalone")
    p.add_argument(
        "--member",
        choices=("leader", "follower"),
        default="leader",
        help="the ensemble member to sample (clients connect to every member)",
    )
    args = p.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        print("py-spy is not installed: .venv/bin/pip install py-spy==0.4.3", file=sys.stderr)
        return 2
    loadgen.build()
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = BENCH / "results" / f"profile-{args.workload}-{stamp}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        d: Deployment
        if args.deploy == "ensemble":
            d = Ensemble("corral", Settings(), Path(work))
        else:
            d = Standalone("corral", Settings(), Path(work))
        d.start()
        try:
            sampled = _member(d, args.member)
            # Sample a little longer than the load runs, so the whole window is covered.
            spy = [py_spy, "record", "--pid", str(sampled.pid), "--format", "raw"]
            spy += ["--rate", "250", "--duration", str(int(args.seconds) + 2)]
            # Native stacks need the process paused per sample; Python-only ones do not.
            spy.append("--native" if args.native else "--nonblocking")
            record = subprocess.Popen(
                [*spy, "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            roles = {m.pid: _role(m) for m in d.processes}
            before = {m.pid: thread_cpu_s(m.pid) for m in d.processes}
            result = loadgen.run(
                d, args.workload, ["-t", str(args.seconds), *shlex.split(args.gen_args)], "1"
            )
            after = {m.pid: thread_cpu_s(m.pid) for m in d.processes}
            _, spy_err = record.communicate(timeout=args.seconds + 60)
        finally:
            d.stop()
    if not out.is_file():
        print(f"py-spy wrote nothing: {spy_err.decode(errors='replace')}", file=sys.stderr)
        return 1
    print(
        f"{args.workload} ({args.deploy}"
        + (f", sampled: {args.member}): " if args.deploy == "ensemble" else "): ")
        + f"{result['ops_per_s']:.0f} ops/s, p99 {result['p99_ms']} ms, "
        f"server CPU {100 * result['server_cpu_share']:.0f}%, "
        f"generator CPU {100 * result['gen_cpu_share']:.0f}% (of one core each)"
    )
    print(_cpu_per_op(roles, before, after, result["ops_per_s"] * args.seconds))
    print(top_of(out, args.limit))
    print(f"\nstacks: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
