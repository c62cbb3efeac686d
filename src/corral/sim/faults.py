"""Faults for the simulator: the random fault mix of a seed, and the crash sweep's script.

The mix: crashes (any server, or the leader), a crash armed inside a server's next Ready,
restarts, two-way and one-way partitions (a random split, or the leader cut off) that heal
by themselves after a while, heals, connection breaks, slow links, pauses (SIGSTOP, a long
GC) and forward clock jumps. Crashed servers mostly come back by themselves (a supervisor).
With reconfig, half the reconfig proposals are hit while pending: the leader crashes (at
once, or inside its next Ready), is cut off, a voter of the new config crashes, or the
network splits.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from corral.sim.server import Server
    from corral.sim.world import World


def random_fault(world: World) -> None:
    rng = world.rng
    ids = sorted(world.servers)
    r = rng.random()
    up = [s for s in world.servers.values() if s.up]
    down = [s for s in world.servers.values() if not s.up]
    if r < 0.12:
        if up:
            srv = rng.choice(up)
            world.crash(srv, "fault")
    elif r < 0.16:
        leaders = [s for s in up if s.leader() is not None]
        if leaders:
            world.crash(leaders[0], "fault: the leader")
    elif r < 0.22:
        if up:
            # The server's next Ready is cut by a crash at a random point of it.
            rng.choice(up).armed = True
    elif r < 0.32:
        if down:
            world.restart(rng.choice(down))
    elif r < 0.42:
        side = set(rng.sample(ids, rng.randint(1, len(ids) - 1)))
        partition(world, side, one_way=False)
    elif r < 0.50:
        side = set(rng.sample(ids, rng.randint(1, len(ids) - 1)))
        partition(world, side, one_way=True)
    elif r < 0.55:
        leader_ids = [s.sid for s in up if s.leader() is not None]
        if leader_ids:
            partition(world, {leader_ids[0]}, one_way=rng.random() < 0.3)
    elif r < 0.65:
        world.net.blocked.clear()
        world.stats["heals"] += 1
        world.note("heal")
    elif r < 0.73:
        conns = [c for c in world.net.conns.values() if not c.broken]
        if conns:
            world.break_conn(rng.choice(conns), "fault")
    elif r < 0.81:
        a, b = rng.sample(ids, 2)
        extra = rng.randint(100, 1500)
        world.net.slow[(a, b)] = (extra, world.now + rng.randint(300, 3000))
        world.stats["slow_links"] += 1
        world.note(f"slow link {a}->{b} +{extra}ms")
    elif r < 0.90:
        if up:
            srv = rng.choice(up)
            length = rng.choice((rng.randint(50, 600), rng.randint(600, 3000)))
            srv.paused_until = max(srv.paused_until, world.now + length)
            world.stats["pauses"] += 1
            world.note(f"pause {srv.sid} for {length}ms")
    else:
        if up:
            srv = rng.choice(up)
            jump = rng.randint(200, 3000)
            srv.clock_offset += jump
            world.stats["clock_jumps"] += 1
            world.note(f"clock of {srv.sid} jumps {jump}ms")
            world.at(world.now, functools.partial(world.tick_if_up, srv, srv.incarnation), srv.sid)


def during_reconfig(world: World, leader_srv: Server) -> None:
    """The leader just proposed a reconfig: maybe strike while it is pending."""
    rng = world.rng
    if rng.random() >= 0.5:
        return
    kind = rng.random()
    inc = leader_srv.incarnation
    pending = leader_srv.leader()
    new_voters = sorted(pending.last_seen.voters) if pending is not None else []

    def strike() -> None:
        if not world.faults_on:
            return
        world.stats["reconfig_faults"] += 1
        here = leader_srv.up and leader_srv.incarnation == inc
        if kind < 0.3:
            if here:
                world.crash(leader_srv, "fault: the leader, reconfig pending")
        elif kind < 0.45:
            if here:
                leader_srv.armed = True
        elif kind < 0.65:
            partition(world, {leader_srv.sid}, one_way=rng.random() < 0.3)
        elif kind < 0.8:
            victims = [s for s in new_voters if world.servers[s].up and s != leader_srv.sid]
            if victims:
                world.crash(world.servers[rng.choice(victims)], "fault: a new voter")
        else:
            ids = sorted(world.servers)
            partition(world, set(rng.sample(ids, rng.randint(1, len(ids) - 1))), one_way=False)

    world.at(world.now + rng.randint(0, 20), strike)


def partition(world: World, side: set[int], one_way: bool) -> None:
    ids = sorted(world.servers)
    world.net.blocked.clear()
    for a in sorted(side):
        for b in ids:
            if b not in side:
                world.net.blocked.add((a, b))
                if not one_way:
                    world.net.blocked.add((b, a))
    world.stats["partitions_one_way" if one_way else "partitions"] += 1
    world.note(f"partition {sorted(side)}{' one-way out' if one_way else ''}")
    world.partition_gen += 1
    if world.config.script:
        return
    gen = world.partition_gen

    def auto_heal() -> None:
        if gen == world.partition_gen and world.faults_on:
            world.net.blocked.clear()
            world.note("partition heals")

    world.at(world.now + world.rng.randint(200, 4000), auto_heal)


def fault_loop(world: World) -> None:
    if not world.faults_on:
        return
    random_fault(world)
    world.at(
        world.now + world.rng.randint(1, 2 * world.config.fault_gap_ms),
        functools.partial(fault_loop, world),
    )


def script(world: World) -> None:
    """The crash sweep's faults, at fixed times, so that every kind of sync happens:
    a follower down long enough to need a SNAP, an isolated leader that logs txns no
    one else has (TRUNC when it returns), and DIFFs at every election."""
    state: dict[str, int] = {}

    def leader_sid() -> int | None:
        for srv in world.servers.values():
            if srv.up and srv.leader() is not None and srv.serving:
                return srv.sid
        return None

    def crash_follower() -> None:
        lead = leader_sid()
        victims = [s for s in sorted(world.verifier.voters) if s != lead and world.servers[s].up]
        if victims:
            state["down"] = victims[0]
            world.crash(world.servers[victims[0]], "script: a follower falls behind")

    def restart_follower() -> None:
        if "down" in state:
            world.restart(world.servers[state["down"]])

    def isolate_leader() -> None:
        lead = leader_sid()
        if lead is not None:
            partition(world, {lead}, one_way=False)

    def heal() -> None:
        world.net.blocked.clear()
        world.note("script: heal")

    world.at(1_000, crash_follower)
    world.at(2_500, restart_follower)
    world.at(2_800, isolate_leader)
    world.at(3_700, heal)
