"""Hand-made Zab scenarios in the harness: learners behind, ahead and diverged, observers,
timeouts, leader changes, and the durability rules the Ready enforces."""

from __future__ import annotations

import pytest
from test_zab_harness import Sim, Violation

from corral.proto import jute
from corral.proto.codes import OpCode
from corral.proto.records import SetDataTxn, TxnHeader
from corral.quorum import zab_packets as zp
from corral.quorum.follower import Learner, LearnerPhase
from corral.quorum.leader import Leader, LeaderPhase, NotLeading, ZxidRollover, plan_sync
from corral.quorum.ready import AppendTxn, SetCurrentEpoch, ZabConfig
from corral.quorum.zab_packets import PacketType


def commit(sim: Sim, n: int) -> None:
    for _ in range(n):
        assert sim.propose()
    sim.stabilize()


def started(sim: Sim, leader: int, followers: list[int]) -> None:
    sim.elect(leader, followers)
    sim.stabilize()
    assert sim.established_leader() is not None


def zxids(sim: Sim, sid: int) -> list[int]:
    return [e.zxid for e in sim.nodes[sid].disk.log]


def test_plan_sync_decisions() -> None:
    e1 = [zp.make_zxid(1, c) for c in range(1, 6)]
    e2 = [zp.make_zxid(2, c) for c in range(1, 3)]
    hist = e1 + e2
    plan = plan_sync(hist, 0, e1[2])
    assert plan.kind is PacketType.DIFF and plan.zxid == e1[2]
    assert plan_sync(hist, 0, 0).kind is PacketType.DIFF
    # Ahead in an old epoch: truncate to our last txn of that epoch.
    trunc = plan_sync(hist, 0, zp.make_zxid(1, 9))
    assert (trunc.kind, trunc.zxid) == (PacketType.TRUNC, e1[-1])
    # Txns of an epoch we never saw: its txns before that epoch are ours; cut there.
    across = plan_sync(e1, 0, zp.make_zxid(2, 4))
    assert (across.kind, across.zxid) == (PacketType.TRUNC, e1[-1])
    assert plan_sync([], 0, zp.make_zxid(1, 2)) == plan_sync([], 0, zp.make_zxid(1, 2))
    assert plan_sync([], 0, zp.make_zxid(1, 2)).zxid == 0
    # Behind our window.
    assert plan_sync(hist[3:], hist[2], e1[0]).kind is PacketType.SNAP
    assert plan_sync(hist[3:], hist[2], -1).kind is PacketType.SNAP
    assert plan_sync(hist[3:], hist[2], hist[2]).kind is PacketType.DIFF
    # In the leader's own epoch, ahead of its commits: truncate to its last commit below.
    own = plan_sync(hist, 0, zp.make_zxid(3, 2))
    assert (own.kind, own.zxid) == (PacketType.TRUNC, e2[-1])
    own2 = plan_sync(hist, 0, zp.make_zxid(2, 5))
    assert (own2.kind, own2.zxid) == (PacketType.TRUNC, e2[-1])


def test_follower_behind_catches_up_by_diff() -> None:
    sim = Sim(3, seed=1)
    started(sim, 1, [2, 3])
    commit(sim, 4)
    sim.crash(3)
    commit(sim, 5)
    sim.restart(3)
    diffs = sim.syncs["DIFF"]
    sim.follow(3, 1)
    sim.stabilize()
    assert sim.syncs["DIFF"] == diffs + 1
    assert sim.nodes[3].tree == sim.committed and len(sim.committed) == 9


def test_follower_far_behind_gets_a_snapshot() -> None:
    sim = Sim(3, seed=2, config=ZabConfig(tick_ms=100, commit_log_count=3))
    started(sim, 1, [2, 3])
    commit(sim, 2)
    sim.crash(3)
    commit(sim, 10)
    sim.restart(3)
    sim.follow(3, 1)
    sim.stabilize()
    assert sim.syncs["SNAP"] == 1
    node = sim.nodes[3]
    assert node.tree == sim.committed
    assert node.disk.snap_zxid == sim.committed[-1][0]
    # New txns after the snapshot are logged on top of it.
    commit(sim, 2)
    assert node.tree == sim.committed and zxids(sim, 3) == [z for z, _ in sim.committed[-2:]]


def test_old_leader_with_an_uncommitted_tail_is_truncated_exactly() -> None:
    sim = Sim(3, seed=3)
    started(sim, 1, [2, 3])
    commit(sim, 3)
    # Cut the leader off; it still proposes two txns only it logs.
    sim.partition(1, 2)
    sim.partition(1, 3)
    assert sim.propose() and sim.propose()
    sim.stabilize()
    tail = zxids(sim, 1)[-2:]
    assert tail == [zp.make_zxid(1, 4), zp.make_zxid(1, 5)]
    assert [z for z, _ in sim.committed] == [zp.make_zxid(1, c) for c in (1, 2, 3)]
    sim.crash(1)
    started(sim, 2, [3])
    commit(sim, 2)
    sim.heal()
    sim.restart(1)
    before = sim.truncations
    sim.follow(1, 2)
    sim.stabilize()
    assert sim.truncations == before + 1  # checked by the harness: only the tail went
    assert zxids(sim, 1) == [z for z, _ in sim.committed]
    assert sim.nodes[1].tree == sim.committed


def test_old_leader_ahead_in_an_epoch_the_new_leader_lacks_is_truncated_to_that_epoch() -> None:
    sim = Sim(3, seed=4)
    started(sim, 1, [2, 3])
    commit(sim, 3)
    # Node 1 leads a second epoch; cut off, it logs txns of epoch 2 nobody else has.
    sim.crash(1)
    sim.restart(1)
    for sid in (2, 3):
        sim.crash(sid)
        sim.restart(sid)
    started(sim, 1, [2, 3])
    sim.partition(1, 2)
    sim.partition(1, 3)
    assert sim.propose() and sim.propose()
    sim.stabilize()
    assert zp.epoch_of(zxids(sim, 1)[-1]) == 2
    sim.crash(1)
    started(sim, 2, [3])
    sim.heal()
    sim.restart(1)
    truncs = sim.truncations
    sim.follow(1, 2)
    sim.stabilize()
    assert sim.truncations == truncs + 1
    assert sim.nodes[1].tree == sim.committed
    assert all(zp.epoch_of(z) != 2 for z in zxids(sim, 1))


def pump(sim: Sim, skip: int, rounds: int = 6) -> None:
    """Run every server but `skip` (whose Ready is held by the test); deliver everything."""
    for _ in range(rounds):
        for n in sim.pending():
            if n.sid != skip:
                sim.flush(n)
        while sim.deliverable():
            for cid, to_leader in sim.deliverable():
                sim.deliver(cid, to_leader)


def test_reconnecting_follower_re_acks_resent_proposals() -> None:
    """A follower that acked a txn and then re-syncs is truncated to the last commit and
    gets the outstanding proposal again: its old ack must not count any more, since the
    TRUNC takes the txn off its disk until it is appended again."""
    sim = Sim(5, seed=5)
    started(sim, 1, [2, 3, 4, 5])
    commit(sim, 1)
    leader = sim.established_leader()
    assert leader is not None
    for sid in (3, 4, 5):
        sim.partition(1, sid)
    assert sim.propose()
    sim.stabilize()
    prop = next(iter(leader._outstanding.values()))
    assert prop.acks == {1, 2}  # not a quorum of 5
    conn2 = sim.nodes[2].conn
    assert conn2 is not None
    sim.break_conn(conn2)
    sim.stabilize()
    sim.follow(2, 1)
    while leader.learners().get(2) != "SYNC":
        for n in sim.pending():
            sim.flush(n)
        cid, to_leader = sim.deliverable()[0]
        sim.deliver(cid, to_leader)
    assert prop.acks == {1}  # 2's old ack is void: the TRUNC on its way removes the txn
    sim.stabilize()
    assert prop.acks == {1, 2} and leader.committed < prop.entry.zxid
    sim.heal()
    sim.follow(3, 1)
    sim.stabilize()
    assert leader.committed == prop.entry.zxid
    for sid in (1, 2, 3):
        assert sim.nodes[sid].tree == sim.committed


def test_observer_learns_commits_by_inform_and_never_votes() -> None:
    sim = Sim(3, observers=1, seed=6)
    started(sim, 1, [2, 3, 4])
    assert isinstance(sim.nodes[4].role, Learner) and sim.nodes[4].role.observer
    commit(sim, 3)
    assert sim.nodes[4].tree == sim.committed
    # With both voting followers gone, the observer cannot make a quorum.
    sim.crash(2)
    sim.crash(3)
    assert sim.propose()
    sim.stabilize()
    assert len(sim.committed) == 3
    for _ in range(4):
        sim.tick()
        sim.stabilize()
    assert sim.established_leader() is None


def test_observer_far_behind_gets_a_snapshot() -> None:
    sim = Sim(3, observers=1, seed=7, config=ZabConfig(tick_ms=100, commit_log_count=2))
    started(sim, 1, [2, 3])
    commit(sim, 6)
    sim.follow(4, 1)
    sim.stabilize()
    assert sim.syncs["SNAP"] == 1 and sim.nodes[4].tree == sim.committed


def test_leader_without_a_quorum_steps_down_and_followers_time_out() -> None:
    sim = Sim(3, seed=8)
    started(sim, 1, [2, 3])
    commit(sim, 1)
    sim.partition(1, 2)
    sim.partition(1, 3)
    for _ in range(4):
        sim.tick()
        sim.stabilize()
    assert sim.nodes[1].role is None  # stepped down
    # A follower whose leader goes silent (but the connection stays up) gives up too.
    sim.heal()
    for sid in (1, 2, 3):
        sim.crash(sid)
        sim.restart(sid)
    started(sim, 1, [2, 3])
    leader_node = sim.nodes[1]
    leader_node.alive = False  # paused: it neither sends nor reads
    for _ in range(2 * sim.config.sync_limit + 2):
        sim.tick()
        for n in sim.pending():
            sim.flush(n)
    leader_node.alive = True
    assert sim.nodes[2].role is None and sim.nodes[3].role is None


def test_discovery_refuses_a_follower_ahead_of_the_leader() -> None:
    sim = Sim(3, seed=9)
    started(sim, 1, [2, 3])
    commit(sim, 3)
    sim.crash(3)
    commit(sim, 2)
    for sid in (1, 2):
        sim.crash(sid)
        sim.restart(sid)
    sim.restart(3)
    # Node 3 is behind; with only node 2 (ahead) it can never finish discovery.
    sim.partition(3, 1)
    sim.elect(3, [2])
    sim.stabilize()
    for _ in range(2 * sim.config.init_limit + 2):
        sim.tick()
        sim.stabilize()
    assert sim.established_leader() is None
    assert len(sim.committed) == 5


def test_zxid_counter_rollover_forces_a_new_epoch() -> None:
    sim = Sim(3, seed=10)
    started(sim, 1, [2, 3])
    leader = sim.established_leader()
    assert leader is not None
    leader.last_proposed = zp.make_zxid(leader.epoch or 0, 0xFFFFFFFE)
    txn = jute.encode(SetDataTxn("/a", b"", 0))
    with pytest.raises(ZxidRollover):
        leader.propose(TxnHeader(1, 1, leader.next_zxid(), 0, OpCode.SET_DATA), txn)
    assert leader.phase is LeaderPhase.STOPPED
    assert leader.ready().stop is not None
    with pytest.raises(NotLeading):
        leader.next_zxid()


def test_leader_counts_its_own_ack_only_after_its_append_is_durable() -> None:
    sim = Sim(5, seed=11)
    started(sim, 1, [2, 3, 4, 5])
    leader = sim.established_leader()
    assert leader is not None
    for sid in (4, 5):
        sim.crash(sid)
    assert sim.propose()
    ready = leader.ready()
    assert any(isinstance(op, AppendTxn) for op in ready.persist)
    sim._g_before = set(sim.committed)
    for s in ready.send:
        sim._send(sim.nodes[1], s.to, s.packet, s.snapshot)
    pump(sim, skip=1)
    # Acks from 2 and 3 are in, but {2, 3} is not a quorum of 5 without the leader's own.
    assert leader.committed < leader.last_proposed
    for op in ready.persist:
        sim._persist(sim.nodes[1], op)
    leader.advance(ready)
    assert leader.committed == leader.last_proposed


def test_newleader_ack_follows_every_synced_txn_and_the_epoch() -> None:
    learner = Learner(
        2, 1, observer=False, accepted_epoch=1, current_epoch=1,
        last_logged_zxid=0, tree_zxid=0, now_ms=0,
    )  # fmt: skip
    learner.start()
    learner.advance(learner.ready())
    learner.receive(zp.leader_info(2), 0)
    r = learner.ready()
    assert [type(op).__name__ for op in r.persist] == ["SetAcceptedEpoch"]
    assert not r.send and [s.packet.type for s in r.send_after_persist] == [PacketType.ACKEPOCH]
    learner.advance(r)
    learner.receive(zp.packet(PacketType.DIFF, 0), 0)
    txn = jute.encode(SetDataTxn("/a", b"", 0))
    for c in (1, 2):
        entry = zp.TxnEntry(TxnHeader(1, c, zp.make_zxid(1, c), 0, OpCode.SET_DATA), txn)
        learner.receive(zp.proposal(entry), 0)
        learner.receive(zp.packet(PacketType.COMMIT, entry.zxid), 0)
    learner.receive(zp.packet(PacketType.NEWLEADER, zp.make_zxid(2, 0)), 0)
    r = learner.ready()
    kinds = [type(op).__name__ for op in r.persist]
    assert kinds == ["AppendTxn", "AppendTxn", "SetCurrentEpoch"]
    assert isinstance(r.persist[-1], SetCurrentEpoch) and r.persist[-1].epoch == 2
    assert not r.send and [s.packet.type for s in r.send_after_persist] == [PacketType.ACK]
    assert not r.apply  # nothing is applied before UPTODATE
    learner.advance(r)
    learner.receive(zp.packet(PacketType.UPTODATE, -1), 0)
    r = learner.ready()
    assert [op.entry.zxid for op in r.apply] == [zp.make_zxid(1, 1), zp.make_zxid(1, 2)]  # type: ignore[union-attr]
    assert learner.phase is LearnerPhase.BROADCAST


def test_a_request_forwarded_after_the_term_ended_is_dropped() -> None:
    # Found by CI: the leader's connection broke while a client's write was on its way in.
    learner = Learner(
        2, 1, observer=False, accepted_epoch=1, current_epoch=1,
        last_logged_zxid=0, tree_zxid=0, now_ms=0,
    )  # fmt: skip
    learner.start()
    learner.advance(learner.ready())
    learner.disconnected()
    learner.advance(learner.ready())
    learner.forward(zp.ForwardedRequest(5, 1, OpCode.CREATE, b"", ()))
    assert learner.phase is LearnerPhase.STOPPED and not learner.ready().send


def test_learner_refuses_holes_and_commits_of_unknown_txns() -> None:
    learner = Learner(
        2, 1, observer=False, accepted_epoch=1, current_epoch=1,
        last_logged_zxid=0, tree_zxid=0, now_ms=0,
    )  # fmt: skip
    learner.start()
    learner.receive(zp.leader_info(2), 0)
    learner.receive(zp.packet(PacketType.DIFF, 0), 0)
    txn = jute.encode(SetDataTxn("/a", b"", 0))
    entry = zp.TxnEntry(TxnHeader(1, 1, zp.make_zxid(1, 1), 0, OpCode.SET_DATA), txn)
    learner.receive(zp.proposal(entry), 0)
    hole = zp.TxnEntry(TxnHeader(1, 3, zp.make_zxid(1, 3), 0, OpCode.SET_DATA), txn)
    learner.receive(zp.proposal(hole), 0)
    assert learner.phase is LearnerPhase.STOPPED
    other = Learner(
        3, 1, observer=False, accepted_epoch=1, current_epoch=1,
        last_logged_zxid=0, tree_zxid=0, now_ms=0,
    )  # fmt: skip
    other.start()
    other.receive(zp.leader_info(2), 0)
    other.receive(zp.packet(PacketType.DIFF, 0), 0)
    other.receive(zp.packet(PacketType.COMMIT, zp.make_zxid(1, 1)), 0)
    assert other.phase is LearnerPhase.STOPPED


def test_learner_refuses_an_older_leader_epoch() -> None:
    learner = Learner(
        2, 1, observer=False, accepted_epoch=5, current_epoch=4,
        last_logged_zxid=0, tree_zxid=0, now_ms=0,
    )  # fmt: skip
    learner.start()
    learner.receive(zp.leader_info(4), 0)
    assert learner.phase is LearnerPhase.STOPPED and learner.ready().stop


def test_same_epoch_is_acked_with_minus_one() -> None:
    learner = Learner(
        2, 1, observer=False, accepted_epoch=5, current_epoch=4,
        last_logged_zxid=7, tree_zxid=7, now_ms=0,
    )  # fmt: skip
    learner.start()
    learner.receive(zp.leader_info(5), 0)
    r = learner.ready()
    assert not r.persist
    ack = r.send_after_persist[-1].packet
    assert zp.decode_int(ack.data) == -1 and ack.zxid == 7


def test_leader_services_for_the_core() -> None:
    """REQUEST, PING touches, REVALIDATE and SYNC between a learner and the leader."""
    sim = Sim(3, seed=12)
    started(sim, 1, [2, 3])
    learner = sim.nodes[2].role
    leader = sim.established_leader()
    assert isinstance(learner, Learner) and leader is not None
    learner.forward(zp.ForwardedRequest(0x99, 4, OpCode.CREATE, b"req"))
    learner.revalidate(0x99, 30000)
    learner.touch(0x99, 30000)
    sim.tick()
    notices = []
    for _ in range(6):
        for n in sim.pending():
            if n.sid == 1:
                r = leader.ready()
                notices.extend(r.notices)
                for s in r.send:
                    sim._send(n, s.to, s.packet, s.snapshot)
                leader.advance(r)
            else:
                sim.flush(n)
        for cid, to_leader in sim.deliverable():
            sim.deliver(cid, to_leader)
    kinds = {type(n).__name__ for n in notices}
    assert {"LearnerRequest", "RevalidateAsk", "Touch"} <= kinds
    ask = next(n for n in notices if type(n).__name__ == "RevalidateAsk")
    leader.revalidated(ask.conn, 0x99, True)  # type: ignore[union-attr]
    leader.sync(ask.conn)  # type: ignore[union-attr]
    r = leader.ready()
    types = [s.packet.type for s in r.send if s.to == ask.conn]  # type: ignore[union-attr]
    assert PacketType.REVALIDATE in types and PacketType.SYNC in types
    for s in r.send:
        sim._send(sim.nodes[1], s.to, s.packet, s.snapshot)
    leader.advance(r)
    while sim.deliverable():
        for cid, to_leader in sim.deliverable():
            sim.deliver(cid, to_leader)
    r2 = learner.ready()
    names = [type(n).__name__ for n in r2.notices]
    assert names == ["RevalidateResult", "SyncDone"]
    learner.advance(r2)


def test_violations_are_reported() -> None:
    sim = Sim(3, seed=13)
    started(sim, 1, [2, 3])
    commit(sim, 2)
    # Wipe two disks: the committed txns are no longer on a quorum.
    sim.nodes[2].disk.log.clear()
    sim.nodes[3].disk.log.clear()
    with pytest.raises(Violation):
        sim.check_durable()


def test_leader_waits_for_its_own_epoch_before_establishing() -> None:
    sim = Sim(3, seed=14)
    sim.elect(1, [2, 3])
    leader = sim.nodes[1].role
    assert isinstance(leader, Leader)
    for _ in range(10):
        for n in sim.pending():
            if n.sid != 1:
                sim.flush(n)
        for cid, to_leader in sim.deliverable():
            sim.deliver(cid, to_leader)
        if leader.has_ready():
            r = leader.ready()
            if any(isinstance(op, SetCurrentEpoch) for op in r.persist):
                # Followers' NEWLEADER acks may arrive first; without our own durable
                # currentEpoch we must not establish.
                for s in r.send + r.send_after_persist:
                    sim._send(sim.nodes[1], s.to, s.packet, s.snapshot)
                for _ in range(4):
                    for n in sim.pending():
                        if n.sid != 1:
                            sim.flush(n)
                    for cid, to_leader in sim.deliverable():
                        sim.deliver(cid, to_leader)
                assert leader.phase is LeaderPhase.SYNCHRONIZATION
                for op in r.persist:
                    sim._persist(sim.nodes[1], op)
                leader.advance(r)
                assert leader.phase is LeaderPhase.BROADCAST
                return
            for s in r.send + r.send_after_persist:
                sim._send(sim.nodes[1], s.to, s.packet, s.snapshot)
            for op in r.persist:
                sim._persist(sim.nodes[1], op)
            leader.advance(r)
    raise AssertionError("never saw SetCurrentEpoch")
