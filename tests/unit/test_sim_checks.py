"""The simulator's own checks: each catches the class of bug it is there for (a runner or a
core deliberately broken), and its fake disk, network and tree image behave as documented."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from dataclasses import replace

import pytest

from corral.proto.codes import OpCode
from corral.proto.records import CreateSessionTxn, CreateTxn, TxnHeader
from corral.quorum.ready import AppendTxn, SetAcceptedEpoch, SetCurrentEpoch, TruncateLog
from corral.quorum.zab_packets import TxnEntry, make_zxid
from corral.sim.disk import Disk
from corral.sim.errors import Violation
from corral.sim.run import SimFailure, run_world, shape_of, sweep, sweep_config
from corral.sim.treecodec import decode_tree, encode_tree, tree_digest
from corral.tree.datatree import OPEN_ACL_UNSAFE, DataTree


@pytest.fixture(autouse=True)
def quiet_cores() -> Iterator[None]:
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


def first_failure(mutation: str, seeds: range, reconfig: bool = False) -> SimFailure:
    for seed in seeds:
        try:
            run_world(seed, replace(shape_of(seed, reconfig=reconfig), mutation=mutation))
        except SimFailure as exc:
            return exc
    raise AssertionError(f"mutation {mutation} went unnoticed in {len(seeds)} seeds")


def test_acks_before_fsync_are_caught() -> None:
    """ZOOKEEPER-3911's class: an ACK leaves before the txn is durable."""
    exc = first_failure("ack-before-fsync", range(20))
    assert "durable only on" in str(exc)


def test_a_learner_that_misses_a_txn_is_caught() -> None:
    """ZOOKEEPER-4925's class: a server's tree diverges from the others at one zxid."""
    exc = first_failure("skip-apply", range(20))
    assert "different trees" in str(exc)


def test_writes_of_expired_sessions_are_caught() -> None:
    """An ephemeral node owned by a session that no longer exists."""
    exc = first_failure("no-session-check", range(60))
    assert "ephemerals of dead session" in str(exc)


def test_activating_a_proposed_config_is_caught() -> None:
    """A config must become active only once its reconfig commits."""
    exc = first_failure("activate-proposed", range(20), reconfig=True)
    assert "which no committed reconfig carries" in str(exc)


def test_a_reconfig_committed_without_the_new_quorum_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A leader that counts only the old config's acks while a reconfig is pending."""
    import corral.quorum.leader as leader_mod

    def old_quorum_only(self: leader_mod._Proposal) -> bool:
        return self.verifiers[0].contains_quorum(self.acks)

    monkeypatch.setattr(leader_mod._Proposal, "has_all_quorums", old_quorum_only)
    exc = first_failure("", range(60), reconfig=True)
    assert "durable only on" in str(exc)


def test_a_diff_where_a_trunc_is_due_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """ZOOKEEPER-1154's class: the leader lets a learner keep an uncommitted tail."""
    import corral.quorum.leader as leader_mod

    real = leader_mod.plan_sync

    def diff_instead_of_trunc(committed: list[int], base: int, peer: int) -> leader_mod.SyncPlan:
        plan = real(committed, base, peer)
        if plan.kind is leader_mod.PacketType.TRUNC:
            return leader_mod.SyncPlan(leader_mod.PacketType.DIFF, peer)
        return plan

    # The sweep's schedule isolates a leader that keeps logging, then heals: a TRUNC.
    run_world(0, sweep_config())
    monkeypatch.setattr(leader_mod, "plan_sync", diff_instead_of_trunc)
    with pytest.raises(SimFailure):
        run_world(0, sweep_config())


def test_crash_sweep_over_discovery_and_sync() -> None:
    """Every crash point of every discovery and sync Ready (DIFF, TRUNC, SNAP) of the
    scripted schedule, and of every 200th broadcast Ready; each run must stay safe and
    converge. (The full sweep: python -m corral.sim --sweep.)"""
    res = sweep(seed=0, stride=200)
    kinds = " ".join(res.by_kind)
    print(f"sweep: {res.runs} runs over {res.readies} Readies: {dict(res.by_kind)}")
    for kind in ("discovery", "synchronization", "await_uptodate", "DIFF", "TRUNC", "SNAP"):
        assert kind in kinds, kind
    assert res.runs > 100
    assert not res.failures, res.failures[0]


# -- the pieces ----------------------------------------------------------------------------


def _entry(zxid: int) -> TxnEntry:
    hdr = TxnHeader(1, zxid & 0xFF, zxid, 0, int(OpCode.CREATE_SESSION))
    from corral.proto import jute

    return TxnEntry(hdr, jute.encode(CreateSessionTxn(1000)))


def test_disk_keeps_only_synced_writes_and_a_prefix_of_the_rest() -> None:
    disk = Disk(1, lambda z, d: [])
    disk.write(SetAcceptedEpoch(1))
    disk.write(AppendTxn(_entry(make_zxid(1, 1))))
    disk.sync()
    for c in (2, 3, 4):
        disk.write(AppendTxn(_entry(make_zxid(1, c))))
    kept, queued, _ = disk.crash(random.Random(0), keep=1)
    assert (kept, queued) == (1, 3)
    assert disk.last_zxid() == make_zxid(1, 2) and not disk.pending
    disk.write(TruncateLog(make_zxid(1, 1)))
    disk.sync()
    assert disk.last_zxid() == make_zxid(1, 1) and disk.shrinks == 1
    with pytest.raises(Violation):
        disk.write(AppendTxn(_entry(make_zxid(1, 1))))
        disk.sync()
    with pytest.raises(Violation):
        disk.write(SetCurrentEpoch(2))  # above acceptedEpoch
        disk.sync()


def test_tree_image_round_trips() -> None:
    tree = DataTree()
    tree.apply_txn(TxnHeader(7, 1, 1, 5, int(OpCode.CREATE_SESSION)), CreateSessionTxn(3000))
    tree.apply_txn(
        TxnHeader(7, 2, 2, 6, int(OpCode.CREATE)), CreateTxn("/a", b"x", OPEN_ACL_UNSAFE, False, 1)
    )
    tree.apply_txn(
        TxnHeader(7, 3, 3, 7, int(OpCode.CREATE)), CreateTxn("/a/e", None, OPEN_ACL_UNSAFE, True, 1)
    )
    copy = decode_tree(encode_tree(tree))
    assert copy.last_zxid == 3
    assert copy.ephemerals(7) == {"/a/e"}
    assert tree_digest(copy) == tree_digest(tree)
    tree.apply_txn(TxnHeader(7, 4, 4, 8, int(OpCode.CLOSE_SESSION)), None)
    assert tree_digest(copy) != tree_digest(tree)


# -- a core fix the simulator found -------------------------------------------------------


def test_a_learner_that_needs_a_snapshot_still_counts_in_discovery() -> None:
    """Seed 5579: a voter whose snapshot holds an uncommitted tail (ZOOKEEPER-1549) could not
    truncate, so it asked for a SNAP by reporting zxid -1; the leader could not count such a
    voter, and with the third voter down no quorum ever formed. Now it reports its real
    history with a flag, counts in discovery, and gets the SNAP."""
    from corral.quorum import zab_packets as zp
    from corral.quorum.follower import Learner
    from corral.quorum.leader import Leader
    from corral.quorum.ready import PacketIn
    from corral.quorum.verifier import QuorumVerifier

    assert zp.decode_ack_epoch(zp.ack_epoch(5, 9, True).data) == (5, True)
    assert zp.decode_ack_epoch(zp.ack_epoch(5, 9).data) == (5, False)
    assert zp.decode_int(zp.ack_epoch(5, 9, True).data) == 5  # what ZooKeeper reads

    learner = Learner(
        2, 1, observer=False, accepted_epoch=1, current_epoch=1,
        last_logged_zxid=make_zxid(1, 3), tree_zxid=make_zxid(1, 3), now_ms=0,
        snapshot_zxid=make_zxid(1, 3), needs_snapshot=True,
    )  # fmt: skip
    learner.start()
    learner.advance(learner.ready())
    learner.receive(zp.leader_info(2), 0)
    ack = learner.ready().send_after_persist[0].packet
    assert ack.zxid == make_zxid(1, 3) and zp.decode_ack_epoch(ack.data) == (1, True)

    history = [_entry(make_zxid(1, c)) for c in range(1, 6)]
    leader = Leader(
        1, QuorumVerifier.of_ids([1, 2, 3]), accepted_epoch=1, current_epoch=1,
        history=history, history_base=0, tree_zxid=make_zxid(1, 5),
        snapshot=lambda: (make_zxid(1, 5), b"tree"), now_ms=0,
    )  # fmt: skip
    info = zp.packet(zp.PacketType.FOLLOWERINFO, make_zxid(1, 0), zp.encode_learner_info(2, 0))
    leader.step(PacketIn(7, info, 0))
    leader.advance(leader.ready())
    leader.step(PacketIn(7, ack, 0))
    sends = [s for s in leader.ready().send if s.to == 7]
    assert sends and sends[0].packet.type == zp.PacketType.SNAP, "voter counted, then SNAPped"
