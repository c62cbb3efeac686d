"""The liveness phase: heal a majority, then require convergence and identical trees."""

from __future__ import annotations

from typing import TYPE_CHECKING

from corral.proto.codes import OpCode
from corral.quorum.leader import LeaderPhase
from corral.sim.errors import Violation
from corral.sim.server import Server, apply_entry
from corral.sim.treecodec import tree_digest
from corral.tree.datatree import DataTree

if TYPE_CHECKING:
    from corral.sim.world import World


def heal(world: World) -> list[int]:
    """End the faults: heal the network, resume, restart all but maybe a minority."""
    world.faults_on = False
    world.net.blocked.clear()
    world.net.slow.clear()
    voters = sorted(world.verifier.voters)
    down: set[int] = set()
    if world.config.keep_minority_down and world.rng.random() < 0.3:
        down = set(world.rng.sample(voters, world.rng.randint(0, (len(voters) - 1) // 2)))
    for sid, srv in sorted(world.servers.items()):
        srv.paused_until = min(srv.paused_until, world.now)
        if sid in down:
            world.crash(srv, "kept down", stay_down=True)
        elif not srv.up:
            world.restart(srv)
    world.note(f"healed; kept down: {sorted(down)}")
    return [s for s in sorted(world.servers) if s not in down]


def converged(world: World, members: list[int], probe: list[int]) -> bool:
    leaders = [world.servers[s] for s in members if world.servers[s].leader() is not None]
    if len(leaders) != 1:
        return False
    lsrv = leaders[0]
    leader = lsrv.leader()
    assert leader is not None
    if leader.phase is not LeaderPhase.BROADCAST or not lsrv.serving:
        return False
    assert leader.epoch is not None
    # A server that accepted a later epoch from a leader that never got established
    # cannot follow this one (LEADERINFO below its acceptedEpoch), in ZooKeeper too; it
    # rejoins at the next election. It is excused as long as a quorum is synced.
    world.excused = [
        sid
        for sid in members
        if sid != lsrv.sid and world.servers[sid].disk.accepted_epoch > leader.epoch
    ]
    synced = [lsrv.sid]
    for sid in members:
        srv = world.servers[sid]
        if sid == lsrv.sid or sid in world.excused:
            continue
        learner = srv.learner()
        if learner is None or learner.leader_sid != lsrv.sid or not srv.serving or srv.inflight:
            return False
        synced.append(sid)
    if not world.verifier.contains_quorum(synced):
        return False
    if not probe:
        # A write after healing must commit everywhere.
        if world.submit_at_leader(lsrv, 0, 0, int(OpCode.CREATE_SESSION), 30_000):
            probe.append(leader.last_proposed)
        return False
    g = world.checker.g
    if not g or g[-1].zxid < probe[0] or srv_pending(lsrv):
        return False
    return all(world.servers[s].tree.last_zxid == g[-1].zxid for s in synced)


def final_check(world: World, members: list[int]) -> None:
    ref = DataTree()
    for entry in world.checker.g:
        apply_entry(ref, entry)
    want = tree_digest(ref)
    if world.excused:
        world.stats["excused_accepted_epoch"] += len(world.excused)
        world.note(f"excused (acceptedEpoch above the leader's epoch): {world.excused}")
    for sid in members:
        if sid in world.excused:
            continue
        srv = world.servers[sid]
        if srv.applied != world.checker.g:
            raise Violation(f"server {sid}'s history differs from G after convergence")
        if tree_digest(srv.tree) != want:
            raise Violation(f"server {sid}'s tree differs from G's replay after convergence")


def srv_pending(srv: Server) -> bool:
    leader = srv.leader()
    return leader is None or bool(srv.proposed) or leader.last_proposed != leader.committed
