"""The liveness phase: heal a majority, then require convergence and identical trees.

With reconfig, the servers kept down leave a quorum of every config that may be in force
up (the last committed one, and any proposed after it that a leader may complete); every
other server, member or not, must then follow the one leader, and all must have the
leader's config active, which is the last committed one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from corral.proto.codes import OpCode
from corral.quorum.leader import LeaderPhase
from corral.quorum.verifier import QuorumVerifier
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
    if world.config.reconfig:
        down = _down_under_reconfig(world)
    elif world.config.keep_minority_down and world.rng.random() < 0.3:
        down = set(world.rng.sample(voters, world.rng.randint(0, (len(voters) - 1) // 2)))
    for sid, srv in sorted(world.servers.items()):
        srv.paused_until = min(srv.paused_until, world.now)
        if sid in down:
            world.crash(srv, "kept down", stay_down=True)
        elif not srv.up:
            world.restart(srv)
    world.note(f"healed; kept down: {sorted(down)}")
    return [s for s in sorted(world.servers) if s not in down]


def configs_in_play(world: World) -> list[QuorumVerifier]:
    """The last committed config and any proposed after it (a next leader completes it)."""
    last = world.checker.configs[-1][1]
    configs = [last]
    for srv in world.servers.values():
        seen = srv.last_seen
        if seen is not None and seen.version > last.version and seen not in configs:
            configs.append(seen)
    return configs


def _down_under_reconfig(world: World) -> set[int]:
    rng = world.rng
    if not world.config.keep_minority_down or rng.random() >= 0.3:
        return set()
    configs = configs_in_play(world)
    voters = sorted(configs[0].voters)
    down = set(rng.sample(voters, rng.randint(0, (len(voters) - 1) // 2)))
    up = [s for s in world.servers if s not in down]
    if not all(c.contains_quorum(up) for c in configs):
        return set()
    return down


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
    if not all(v.contains_quorum(synced) for v in (leader.verifier, leader.last_seen)):
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
    leaders = [world.servers[s] for s in members if world.servers[s].leader() is not None]
    if world.config.reconfig and leaders:
        config = leaders[0].config()
        last = world.checker.configs[-1][1]
        if config.version < last.version or not config.same_members(last):
            raise Violation(
                f"leader {leaders[0].sid} has config {config.version:#x} active, not the last "
                f"committed {last.version:#x}"
            )
    for sid in members:
        if sid in world.excused:
            continue
        srv = world.servers[sid]
        if world.config.reconfig and leaders and srv.config() != leaders[0].config():
            raise Violation(
                f"server {sid} has config {srv.config().version:#x} active after convergence, "
                f"the leader {leaders[0].config().version:#x}"
            )
        if srv.applied != world.checker.g:
            raise Violation(f"server {sid}'s history differs from G after convergence")
        if tree_digest(srv.tree) != want:
            raise Violation(f"server {sid}'s tree differs from G's replay after convergence")


def srv_pending(srv: Server) -> bool:
    leader = srv.leader()
    return leader is None or bool(srv.proposed) or leader.last_proposed != leader.committed
