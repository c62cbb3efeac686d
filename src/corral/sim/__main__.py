"""`python -m corral.sim`: run seeds of the deterministic simulator (see corral.sim).

python -m corral.sim --seed 42                 replay one seed (prints its trace hash)
python -m corral.sim --seeds 10000             seeds 0..9999 (--start to shift)
python -m corral.sim --seeds 500 --servers 5 --observer
python -m corral.sim --seeds 2000 --reconfig   with reconfigs, joiners and their faults
python -m corral.sim --sweep [--stride 3]      the crash-point sweep
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace

from corral.sim.run import SimFailure, run_seed, run_world, sweep, sweep_config

FAULTS = (
    "crashes", "restarts", "crash_in_ready", "unsynced_lost", "torn_tails", "partitions",
    "partitions_one_way", "heals", "conn_breaks", "slow_links", "pauses", "clock_jumps",
)  # fmt: skip
WORK = (
    "leaderships", "established", "sync_DIFF", "sync_TRUNC", "sync_SNAP", "trunc_reloads",
    "snapshots", "requests", "forwarded", "proposals", "commits", "acked", "sessions",
    "expiries", "closes", "revalidations", "excused_accepted_epoch",
)  # fmt: skip
RECONFIG = (
    "reconfig_asked_add", "reconfig_asked_remove", "reconfig_asked_role", "reconfig_asked_swap",
    "reconfig_asked_bulk", "reconfigs_proposed", "reconfig_OK", "reconfig_RECONFIGINPROGRESS",
    "reconfig_BADVERSION", "reconfig_NEWCONFIGNOQUORUM", "reconfig_BADARGUMENTS",
    "activations", "config_adopted", "reconfig_faults",
)  # fmt: skip


def _mix(stats: Counter[str], keys: tuple[str, ...]) -> str:
    return ", ".join(f"{k} {stats[k]}" for k in keys)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m corral.sim", description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, help="run (replay) this one seed")
    ap.add_argument("--seeds", type=int, default=100, help="how many seeds to run")
    ap.add_argument("--start", type=int, default=0, help="the first seed")
    ap.add_argument("--servers", type=int, choices=(3, 5), help="voters (default: per seed)")
    obs = ap.add_mutually_exclusive_group()
    obs.add_argument("--observer", action="store_true", default=None, help="add an observer")
    obs.add_argument("--no-observer", dest="observer", action="store_false")
    ap.add_argument("--fault-ms", type=int, help="length of the fault phase (virtual ms)")
    ap.add_argument("--reconfig", action="store_true", help="reconfigs, joiners and their faults")
    ap.add_argument("--keep-going", action="store_true", help="run every seed, list failures")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (implies --keep-going)")
    ap.add_argument("--sweep", action="store_true", help="run the crash-point sweep")
    ap.add_argument("--stride", type=int, default=1, help="sweep every n-th broadcast Ready")
    ap.add_argument("--sweep-case", type=int, nargs=2, metavar=("N", "K"), help="one sweep run")
    args = ap.parse_args(argv)

    logging.disable(logging.CRITICAL)  # the cores log every fault; the summary is enough
    t0 = time.monotonic()
    if args.sweep_case is not None:
        n, k = args.sweep_case
        config = replace(sweep_config(args.servers or 3), crash_plan=(n, k))
        try:
            res = run_world(args.seed or 0, config)
        except SimFailure as exc:
            print(f"FAIL {exc}", file=sys.stderr)
            return 1
        print(f"sweep case ({n}, {k}): {res.crash_phase}, trace hash {res.trace_hash:08x}")
        return 0
    if args.sweep:
        swept = sweep(seed=args.seed or 0, stride=args.stride, voters=args.servers or 3)
        took = time.monotonic() - t0
        print(f"sweep: {swept.runs} crash runs over {swept.readies} Readies in {took:.1f}s")
        for kind, n in sorted(swept.by_kind.items()):
            print(f"  {kind}: {n}")
        for failure in swept.failures:
            print(f"FAIL {failure}", file=sys.stderr)
        print(f"failures: {len(swept.failures) or 'none'}")
        return 1 if swept.failures else 0

    seeds = (
        [args.seed] if args.seed is not None else list(range(args.start, args.start + args.seeds))
    )
    if args.jobs > 1 and len(seeds) > 1:
        # Independent seeds, so any split gives the same results; chunks keep workers busy.
        size = max(1, len(seeds) // (args.jobs * 8))
        chunks = [seeds[i : i + size] for i in range(0, len(seeds), size)]
        tally = _Tally()
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futures = [
                pool.submit(
                    _run_seeds, c, args.servers, args.observer, args.fault_ms, True, args.reconfig
                )
                for c in chunks
            ]
            for future in futures:
                tally.merge(future.result())
    else:
        tally = _run_seeds(
            seeds, args.servers, args.observer, args.fault_ms, args.keep_going, args.reconfig
        )
    for _seed, text in sorted(tally.failures):
        print(f"FAIL {text}", file=sys.stderr)
    if args.seed is not None and not tally.failures:
        print(f"seed {args.seed}: {tally.shape}")
        print(f"  trace hash {tally.trace_hash:08x}, {tally.virtual_ms} virtual ms")
    elapsed = time.monotonic() - t0
    failed = sorted(seed for seed, _ in tally.failures) or "none"
    print(
        f"{tally.seeds} seeds in {elapsed:.1f}s ({tally.virtual_ms / 1000:.0f} virtual s), "
        f"failures: {failed}"
    )
    print(f"faults: {_mix(tally.stats, FAULTS)}")
    print(
        f"work: epochs {tally.epochs}, committed {tally.committed}, acked {tally.acked}; "
        f"{_mix(tally.stats, WORK)}"
    )
    if args.reconfig:
        print(f"reconfig: {_mix(tally.stats, RECONFIG)}")
    return 1 if tally.failures else 0


@dataclass
class _Tally:
    seeds: int = 0
    stats: Counter[str] = field(default_factory=Counter)
    virtual_ms: int = 0
    committed: int = 0
    acked: int = 0
    epochs: int = 0
    failures: list[tuple[int, str]] = field(default_factory=list)
    shape: str = ""
    trace_hash: int = 0

    def merge(self, other: _Tally) -> None:
        self.seeds += other.seeds
        self.stats.update(other.stats)
        self.virtual_ms += other.virtual_ms
        self.committed += other.committed
        self.acked += other.acked
        self.epochs += other.epochs
        self.failures += other.failures


def _run_seeds(
    seeds: list[int],
    servers: int | None,
    observer: bool | None,
    fault_ms: int | None,
    keep_going: bool,
    reconfig: bool = False,
) -> _Tally:
    logging.disable(logging.CRITICAL)
    tally = _Tally()
    for seed in seeds:
        tally.seeds += 1
        try:
            res = run_seed(seed, servers, observer, fault_ms, reconfig)
        except SimFailure as exc:
            tally.failures.append((seed, str(exc)))
            if not keep_going:
                break
            continue
        tally.stats.update(res.stats)
        tally.virtual_ms += res.virtual_ms
        tally.committed += res.committed
        tally.acked += res.acked
        tally.epochs += res.epochs
        tally.shape, tally.trace_hash = res.shape, res.trace_hash
    return tally


if __name__ == "__main__":
    sys.exit(main())
