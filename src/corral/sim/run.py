"""Running seeds: the shape of a seed's ensemble, one run, many runs, and the crash sweep.

`run_seed(seed)` builds the World a seed describes (3 or 5 voters, an observer in some
runs, Zab timings and the DIFF window drawn from the seed; with `reconfig`, 1 or 2 more
servers outside the config and reconfig requests in the traffic), runs the fault phase with
client traffic, heals a majority and requires convergence, then compares every live
server's tree with a replay of the committed sequence. A failure raises SimFailure with
the seed, the shape and the last lines of the trace; the same seed replays exactly.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field, replace

from corral.quorum.ready import ZabConfig
from corral.sim import liveness
from corral.sim.errors import Violation
from corral.sim.world import SimConfig, World

TRACE_LINES = 40


class SimFailure(AssertionError):
    """A seed broke an invariant; the message has the seed, the shape and a trace."""


@dataclass
class RunResult:
    seed: int
    shape: str
    stats: Counter[str]
    committed: int
    acked: int
    epochs: int
    virtual_ms: int
    trace_hash: int
    crash_points: int = 0
    crash_phase: str = ""
    ready_kinds: list[str] = field(default_factory=list)


def shape_of(
    seed: int, voters: int | None = None, observer: bool | None = None, reconfig: bool = False
) -> SimConfig:
    rng = random.Random(seed ^ 0x5EED)
    # Drawn even when given, so that a seed's other choices do not depend on them (the
    # replay line names the shape, and must reproduce the run that chose it).
    n, obs = rng.choice((3, 3, 5)), rng.random() < 0.3
    n = voters if voters is not None else n
    obs = observer if observer is not None else obs
    zab = ZabConfig(
        tick_ms=100,
        init_limit=10,
        sync_limit=5,
        commit_log_count=rng.choice((5, 20, 500)),
        reconfig_enabled=reconfig,
    )
    config = SimConfig(
        voters=n,
        observers=1 if obs else 0,
        zab=zab,
        snap_count=rng.choice((10, 40, 1000)),
        fault_gap_ms=rng.choice((400, 800, 1500)),
    )
    if reconfig:
        config = replace(config, reconfig=True, pool=rng.choice((1, 2)))
    return config


def describe(config: SimConfig) -> str:
    pool = f", reconfig with {config.pool} joiners" if config.reconfig else ""
    return (
        f"{config.voters} voters{' + 1 observer' if config.observers else ''}{pool}, "
        f"commitLogCount {config.zab.commit_log_count}, snapCount {config.snap_count}, "
        f"fault gap {config.fault_gap_ms}ms"
    )


def run_world(seed: int, config: SimConfig, record_readies: bool = False) -> RunResult:
    world = World(seed, config)
    if record_readies:
        world.ready_log = []
    try:
        world.start()
        world.run_until(config.fault_ms)
        members = liveness.heal(world)
        world.traffic_on = False
        probe: list[int] = []
        healed = world.now
        if not world.run_until(
            healed + config.liveness_ms, lambda: liveness.converged(world, members, probe)
        ):
            states = ", ".join(f"{s.sid}:{s.state()}" for s in world.servers.values())
            raise Violation(f"no convergence {config.liveness_ms}ms after healing ({states})")
        liveness.final_check(world, members)
    except AssertionError as exc:
        trace = "\n".join(list(world.trace)[-TRACE_LINES:])
        plan = f", crash plan {config.crash_plan}" if config.crash_plan else ""
        if config.crash_plan is not None:
            n, k = config.crash_plan
            replay = f"--sweep-case {n} {k} --seed {seed} --servers {config.voters}"
        else:
            obs = "--observer" if config.observers else "--no-observer"
            replay = f"--seed {seed} --servers {config.voters} {obs}"
            if config.reconfig:
                replay += " --reconfig"
            if config.fault_ms != SimConfig.fault_ms:
                replay += f" --fault-ms {config.fault_ms}"
        raise SimFailure(
            f"seed {seed} failed at t={world.now}ms ({describe(config)}{plan}): {exc}\n"
            f"--- last {TRACE_LINES} trace lines ---\n{trace}\n"
            f"replay: python -m corral.sim {replay}"
        ) from exc
    return RunResult(
        seed=seed,
        shape=describe(config),
        stats=world.stats,
        committed=len(world.checker.g),
        acked=len(world.checker.acked),
        epochs=len(world.checker.established),
        virtual_ms=world.now,
        trace_hash=world.trace_hash,
        crash_points=world.crash_points,
        crash_phase=world.crash_plan_phase,
        ready_kinds=world.ready_log or [],
    )


def run_seed(
    seed: int,
    voters: int | None = None,
    observer: bool | None = None,
    fault_ms: int | None = None,
    reconfig: bool = False,
) -> RunResult:
    config = shape_of(seed, voters, observer, reconfig)
    if fault_ms is not None:
        config = replace(config, fault_ms=fault_ms)
    return run_world(seed, config)


# -- the crash-point sweep ----------------------------------------------------------------


def sweep_config(voters: int = 3) -> SimConfig:
    """A fault-free schedule with a small DIFF window and the scripted faults of
    `sweep_script`, so that discovery, DIFF, TRUNC, SNAP and broadcast all happen."""
    return SimConfig(
        voters=voters,
        fault_ms=5_000,
        faults=False,
        script=True,
        keep_minority_down=False,
        crash_in_ready=0.0,
        zab=ZabConfig(tick_ms=100, init_limit=10, sync_limit=5, commit_log_count=20),
        op_gap_ms=30,
        snap_count=15,
    )


@dataclass
class SweepResult:
    runs: int
    readies: int
    by_kind: Counter[str]
    failures: list[str] = field(default_factory=list)


def sweep(seed: int = 0, stride: int = 1, voters: int = 3, limit: int | None = None) -> SweepResult:
    """Crash the server performing each Ready of the base schedule at each of its crash
    points (after its sends, after each persist operation became durable, after its acks,
    after its applies, after advance); every run must stay safe and converge.

    Readies of discovery and sync (and those sending DIFF/TRUNC/SNAP) are all swept;
    broadcast Readies every `stride`-th."""
    base_cfg = sweep_config(voters)
    base = run_world(seed, base_cfg, record_readies=True)
    by_kind: Counter[str] = Counter()
    failures: list[str] = []
    runs = 0
    broadcast_seen = 0
    for n, kind in enumerate(base.ready_kinds, start=1):
        if "broadcast" in kind and ":" not in kind.split("broadcast", 1)[1]:
            broadcast_seen += 1
            if broadcast_seen % stride:
                continue
        k = 0
        while True:
            cfg = replace(base_cfg, crash_plan=(n, k))
            runs += 1
            try:
                res = run_world(seed, cfg)
            except SimFailure as exc:
                failures.append(str(exc))
                by_kind[kind + " FAILED"] += 1
                break
            by_kind[res.crash_phase or kind] += 1
            k += 1
            if k >= max(res.crash_points, 1) or (limit is not None and runs >= limit):
                break
        if limit is not None and runs >= limit:
            break
    return SweepResult(runs, len(base.ready_kinds), by_kind, failures)
