"""Seeded random runs of the Zab cores in the in-process harness (see test_zab_harness).

Each seed: 3 or 5 voters (sometimes an observer), hundreds of random steps of message
delivery, Ready processing (with crashes inside Readies: after the sends, between persist
operations, before the acks), proposals, ticks, hand-driven elections, crashes, restarts,
pauses, connection breaks and partitions; safety is checked throughout, then the run heals
and must converge to one committed sequence on every server. A failing seed prints itself
and a trace; rerun one with ZAB_SEED=<n> (ZAB_TRACE=<lines>), run more with ZAB_SEEDS=<n>
and ZAB_STEPS=<n>. Crash-point sweeps and mutation checks (the checks must catch acks sent
before fsync and a DIFF where a TRUNC is due) follow.
"""

from __future__ import annotations

import os

import pytest
from test_zab_harness import Sim

from corral.quorum.ready import ZabConfig

SEEDS = int(os.environ.get("ZAB_SEEDS", "300"))
STEPS = int(os.environ.get("ZAB_STEPS", "600"))
ONLY = os.environ.get("ZAB_SEED")


def run_seed(seed: int, steps: int = STEPS) -> Sim:
    import random

    shape = random.Random(seed)
    voters = shape.choice([3, 3, 5])
    observers = shape.choice([0, 0, 1])
    config = ZabConfig(
        tick_ms=100, init_limit=10, sync_limit=5, commit_log_count=shape.choice([3, 10, 500])
    )
    sim = Sim(voters, observers, seed=seed, config=config, crash_in_ready=0.02)
    try:
        for _ in range(steps):
            sim.random_step()
        sim.converge()
    except AssertionError as exc:
        trace = "\n".join(sim.trace[-int(os.environ.get("ZAB_TRACE", "40")) :])
        raise AssertionError(f"seed {seed} failed: {exc}\n--- trace ---\n{trace}") from exc
    return sim


def _seeds() -> list[int]:
    if ONLY is not None:
        return [int(ONLY)]
    return list(range(SEEDS))


def test_random_schedules_keep_zab_safe_and_converge() -> None:
    totals = {"commits": 0, "DIFF": 0, "TRUNC": 0, "SNAP": 0, "truncations": 0, "crashes": 0}
    for seed in _seeds():
        sim = run_seed(seed)
        totals["commits"] += len(sim.committed)
        totals["truncations"] += sim.truncations
        totals["crashes"] += sum(n.crashes for n in sim.nodes.values())
        for k, v in sim.syncs.items():
            totals[k] += v
    print(f"zab sim: {len(_seeds())} seeds x {STEPS} steps: {totals}")
    if ONLY is None and SEEDS >= 100:
        # The schedules must actually exercise the paths they claim to.
        assert totals["commits"] > SEEDS
        assert totals["SNAP"] > 0 and totals["TRUNC"] > 0 and totals["DIFF"] > 0
        assert totals["crashes"] > SEEDS


@pytest.mark.parametrize("seed", [7, 1234])
def test_a_seed_replays_identically(seed: int) -> None:
    a = run_seed(seed, 300)
    b = run_seed(seed, 300)
    assert a.trace == b.trace and a.committed == b.committed


def test_the_checks_catch_a_runner_that_acks_before_fsync() -> None:
    """Mutation check: with acks sent before persist (ZOOKEEPER-3911's bug), crashes
    inside Readies must lead to a reported loss of a committed txn in some seed."""
    import random

    from test_zab_harness import Violation

    for seed in range(400):
        shape = random.Random(seed)
        sim = Sim(
            shape.choice([3, 5]),
            seed=seed,
            config=ZabConfig(tick_ms=100, commit_log_count=10),
            crash_in_ready=0.1,
            buggy_runner_acks_early=True,
        )
        try:
            for _ in range(STEPS):
                sim.random_step()
            sim.converge()
        except Violation as exc:
            print(f"seed {seed} caught the early ack: {exc}")
            return
        except AssertionError:
            continue
    raise AssertionError("acks before fsync went unnoticed in 400 seeds")


def test_the_checks_catch_a_diff_where_a_trunc_is_due(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutation check: ZOOKEEPER-1154's bug (DIFF instead of TRUNC leaves an uncommitted
    txn on one server only) must be reported."""
    from test_zab_harness import Violation

    import corral.quorum.leader as leader_mod

    real = leader_mod.plan_sync

    def diff_instead_of_trunc(committed: list[int], base: int, peer: int) -> leader_mod.SyncPlan:
        plan = real(committed, base, peer)
        if plan.kind is leader_mod.PacketType.TRUNC:
            return leader_mod.SyncPlan(leader_mod.PacketType.DIFF, peer)
        return plan

    monkeypatch.setattr(leader_mod, "plan_sync", diff_instead_of_trunc)
    for seed in range(300):
        try:
            run_seed(seed)
        except AssertionError as exc:
            if isinstance(exc.__cause__, Violation):
                return
    raise AssertionError("DIFF instead of TRUNC went unnoticed in 300 seeds")


def sweep_crash_points(seed: int, steps: int, stride: int) -> int:
    """Crash a server at every crash point (after its sends, after each persist operation,
    after its acks, after its applies) of every `stride`-th Ready of one fault-free
    schedule, then heal and require convergence; safety is checked all along."""
    config = ZabConfig(tick_ms=100, commit_log_count=5)
    base = Sim(3, seed=seed, config=config)
    for _ in range(steps):
        base.random_step(faults=False)
    runs = 0
    for n in range(1, base.flushes + 1, stride):
        k = 0
        while True:
            sim = Sim(3, seed=seed, config=config, crash_plan=(n, k))
            try:
                for _ in range(steps):
                    sim.random_step(faults=False)
                sim.converge()
            except AssertionError as exc:
                raise AssertionError(f"seed {seed} crash plan {(n, k)}: {exc}") from exc
            runs += 1
            k += 1
            if k > sim.crash_points:
                break
    return runs


def test_crash_at_every_persist_and_send_point() -> None:
    runs = sum(sweep_crash_points(seed, 150, 2) for seed in (1, 2, 3))
    print(f"crash-point sweep: {runs} runs")
    assert runs > 200


def scripted_sync_story(sim: Sim) -> None:
    """Behind (SNAP), ahead (TRUNC) and a leader change, written to survive a crash anywhere."""
    if sim.nodes[1].alive and sim.nodes[1].role is None:
        sim.elect(1, [2, 3])
    sim.stabilize()
    for _ in range(3):
        sim.propose()
    sim.stabilize()
    sim.crash(3)
    for _ in range(4):
        sim.propose()
        sim.stabilize()
    sim.partition(1, 2)
    sim.propose()
    sim.propose()
    sim.stabilize()
    sim.crash(1)
    sim.heal()
    sim.restart(3)
    sim.try_elect()
    sim.stabilize()
    sim.propose()
    sim.propose()
    sim.stabilize()
    sim.restart(1)
    leader = sim.established_leader()
    if leader is not None:
        sim.follow(1, leader.my_sid)
    sim.stabilize()
    sim.converge()


def test_crash_at_every_point_of_diff_trunc_and_snap_syncs() -> None:
    config = ZabConfig(tick_ms=100, commit_log_count=2)
    base = Sim(3, seed=0, config=config)
    scripted_sync_story(base)
    assert base.syncs["SNAP"] and base.syncs["TRUNC"] and base.syncs["DIFF"], base.syncs
    runs = 0
    for n in range(1, base.flushes + 1):
        k = 0
        while True:
            sim = Sim(3, seed=0, config=config, crash_plan=(n, k))
            try:
                scripted_sync_story(sim)
            except AssertionError as exc:
                raise AssertionError(f"crash plan {(n, k)}: {exc}") from exc
            runs += 1
            k += 1
            if k > sim.crash_points:
                break
    print(f"sync crash-point sweep: {runs} runs over {base.flushes} Readies")
    assert runs > 100
