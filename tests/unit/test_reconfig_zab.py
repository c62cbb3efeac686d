"""Reconfig in the pure Zab cores: a leader and learners wired in-process (no IO).

The first leader versions its config with the NEWLEADER zxid; a reconfig proposal (and
any proposal after it) commits only with acks from quorums of both the old and the new
config; its commit is COMMITANDACTIVATE/INFORMANDACTIVATE and activates the config on
every node; a joiner outside the config syncs as a non-voting follower and its acks count
for the new config; a leader removed by a reconfig names another and stops; learners stop
on a change of their role or leader. FastLeaderElection adopts a newer config it hears.
"""

from __future__ import annotations

from collections import deque

from corral.proto import jute
from corral.proto.codes import OpCode
from corral.proto.records import CreateTxn, QuorumPacket, SetDataTxn, TxnHeader
from corral.quorum import zab_packets as zp
from corral.quorum.election import FastLeaderElection
from corral.quorum.election_wire import Notification, ServerState
from corral.quorum.follower import Learner, LearnerPhase
from corral.quorum.leader import Leader, LeaderPhase
from corral.quorum.ready import ActivateConfig, PacketIn, Ready, SeenConfig, ZabConfig
from corral.quorum.verifier import QuorumVerifier
from corral.quorum.zab_packets import TxnEntry

CONFIG = ZabConfig(tick_ms=1000, reconfig_enabled=True)
NOW = 1_000_000


def verifier(voters: list[int], observers: list[int] = (), version: int = 0) -> QuorumVerifier:  # type: ignore[assignment]
    return QuorumVerifier.of_ids(voters, observers).with_version(version)


class Wired:
    """Leader 1 and learners; learner conn id == its sid. Packets queue per direction."""

    def __init__(
        self,
        active: QuorumVerifier,
        learners: dict[int, bool],
        *,
        history: list[TxnEntry] | None = None,
        last_seen: QuorumVerifier | None = None,
        held: set[int] | None = None,
    ) -> None:
        # Everyone at the end of `history` (epoch 1 when there is one), which the leader's
        # log holds and every learner has logged and applied.
        log = history or []
        zxid = log[-1].zxid if log else 0
        epoch = zp.epoch_of(zxid)
        self.leader = Leader(
            1,
            active,
            accepted_epoch=epoch,
            current_epoch=epoch,
            history=log,
            history_base=0,
            tree_zxid=zxid,
            snapshot=lambda: (0, b""),
            now_ms=NOW,
            config=CONFIG,
            last_seen=last_seen,
        )
        self.learners = {
            sid: Learner(
                sid,
                1,
                observer=observer,
                accepted_epoch=epoch,
                current_epoch=epoch,
                last_logged_zxid=zxid,
                tree_zxid=zxid,
                now_ms=NOW,
                config=CONFIG,
                verifier=active,
            )
            for sid, observer in learners.items()
        }
        self.to_leader: dict[int, deque[QuorumPacket]] = {s: deque() for s in learners}
        self.to_learner: dict[int, deque[QuorumPacket]] = {s: deque() for s in learners}
        self.notices: dict[int, list[object]] = {s: [] for s in [1, *learners]}
        self.held: set[int] = held or set()  # learners whose packets to the leader wait
        self.stopped: set[int] = set()
        for learner in self.learners.values():
            learner.start()

    def _perform(self, sid: int, node: Leader | Learner) -> None:
        ready: Ready = node.ready()
        for s in (*ready.send, *ready.send_after_persist):
            if sid == 1:
                self.to_learner[s.to].append(s.packet)
            else:
                self.to_leader[sid].append(s.packet)
        self.notices[sid].extend(ready.notices)
        node.advance(ready)
        if ready.stop is not None:
            self.stopped.add(sid)  # the runner ends the term

    def run(self) -> None:
        moved = True
        while moved:
            moved = False
            nodes: list[tuple[int, Leader | Learner]] = [(1, self.leader), *self.learners.items()]
            for sid, node in nodes:
                if node.has_ready() and sid not in self.stopped:
                    self._perform(sid, node)
                    moved = True
            for sid, q in self.to_learner.items():
                while q:
                    self.learners[sid].step(PacketIn(1, q.popleft(), NOW))
                    moved = True
            for sid, q in self.to_leader.items():
                while q and sid not in self.held:
                    self.leader.receive(sid, q.popleft(), NOW)
                    moved = True

    def propose(self, txn_type: int, txn: object) -> int:
        zxid = self.leader.next_zxid()
        self.leader.propose(TxnHeader(7, 1, zxid, 5, txn_type), jute.encode(txn))
        self.run()
        return zxid

    def reconfig(self, new: QuorumVerifier) -> int:
        zxid = self.leader.next_zxid()
        text = new.with_version(zxid).config_string().encode()
        return self.propose(OpCode.RECONFIG, SetDataTxn("/zookeeper/config", text, -1))

    def activations(self, sid: int) -> list[ActivateConfig]:
        return [n for n in self.notices[sid] if isinstance(n, ActivateConfig)]


def test_first_leader_versions_its_config() -> None:
    w = Wired(verifier([1, 2, 3]), {2: False, 3: False})
    w.run()
    assert w.leader.phase is LeaderPhase.BROADCAST
    first = zp.make_zxid(1, 0)
    assert w.leader.verifier.version == first
    for sid in (1, 2, 3):
        (act,) = w.activations(sid)
        assert act.verifier.version == first and act.init_node
    assert any(isinstance(n, SeenConfig) for n in w.notices[1])


def test_reconfig_needs_both_quorums_and_activates_everywhere() -> None:
    # 4 joins as a non-voting follower, 5 observes; the new config is {1, 4} + {5}.
    w = Wired(verifier([1, 2, 3], [5]), {2: False, 3: False, 4: False, 5: True})
    w.run()
    assert w.leader.learners() == dict.fromkeys([2, 3, 4, 5], "RUNNING")
    assert w.leader.is_quorum_synced(verifier([1, 4]))
    assert not w.leader.is_quorum_synced(verifier([1, 5, 6]))  # observers never count
    w.held = {2, 3, 4}
    zxid = w.reconfig(verifier([1, 4], [5]))
    later = w.propose(OpCode.CREATE, CreateTxn("/a", b"", (), False, 1))
    assert w.leader.last_seen.version == zxid
    w.held = {3, 4}  # 2's acks: the old config has its quorum {1, 2}, the new one not
    w.run()
    assert w.leader.committed < zxid
    w.held = {3}  # 4's acks complete the new config's quorum {1, 4}
    w.run()
    assert w.leader.committed == later
    assert w.leader.verifier.version == zxid
    for sid in (1, 2, 4, 5):
        acts = w.activations(sid)
        assert acts[-1].verifier.version == zxid, sid
        assert acts[-1].designated_leader == 1 and not acts[-1].init_node
    assert w.learners[4].phase is LearnerPhase.BROADCAST  # still following 1, now voting
    # 2 is no longer a voter: it stays, as a non-voting follower (ZooKeeper's behaviour).
    assert w.learners[2].phase is LearnerPhase.BROADCAST
    # Once active, only the new config's quorum counts.
    w.held = {2, 3}
    after = w.propose(OpCode.CREATE, CreateTxn("/b", b"", (), False, 2))
    assert w.leader.committed == after


def test_a_removed_leader_names_another_and_stops() -> None:
    w = Wired(verifier([1, 2, 3]), {2: False, 3: False})
    w.run()
    w.held = {3}
    zxid = w.reconfig(verifier([2, 3]))
    assert w.leader.committed < zxid  # needs 3 as well: {2, 3} is the new quorum
    w.held = set()
    w.run()
    assert w.leader.phase is LeaderPhase.STOPPED
    (act,) = [a for a in w.activations(1) if a.verifier.version == zxid]
    assert act.designated_leader in (2, 3)
    for sid in (2, 3):
        assert w.learners[sid].phase is LearnerPhase.STOPPED  # another leader: elect again
        assert w.activations(sid)[-1].verifier.version == zxid


def test_a_learner_whose_role_changes_stops() -> None:
    w = Wired(verifier([1, 2, 3], [4]), {2: False, 3: False, 4: True})
    w.run()
    zxid = w.reconfig(verifier([1, 2, 3], [4]).with_version(0))  # no change: nobody stops
    assert all(learner.phase is LearnerPhase.BROADCAST for learner in w.learners.values())
    zxid = w.reconfig(verifier([1, 2, 3, 4]))
    assert w.leader.committed == zxid
    assert w.learners[4].phase is LearnerPhase.STOPPED  # observer -> participant
    assert w.activations(4)[-1].verifier.version == zxid
    assert w.learners[2].phase is LearnerPhase.BROADCAST


def test_a_late_learner_gets_the_active_config_in_newleader() -> None:
    w = Wired(verifier([1, 2, 3]), {2: False, 3: False})
    w.run()
    zxid = w.reconfig(verifier([1, 2, 3, 9]))
    late = Learner(
        9,
        1,
        observer=False,
        accepted_epoch=0,
        current_epoch=0,
        last_logged_zxid=0,
        tree_zxid=0,
        now_ms=NOW,
        config=CONFIG,
        verifier=verifier([1, 2, 3, 9]),  # its static config: the ensemble plus itself
    )
    w.learners[9] = late
    w.to_leader[9], w.to_learner[9], w.notices[9] = deque(), deque(), []
    late.start()
    w.run()
    assert late.phase is LearnerPhase.BROADCAST
    (act,) = w.activations(9)
    assert act.verifier.version == zxid and act.init_node


def test_election_adopts_a_newer_config() -> None:
    joiner_view = verifier([1, 2, 3, 4])  # a joiner's static config, version 0
    fle = FastLeaderElection(4, joiner_view, reconfig_enabled=True)
    ready = fle.start(0, 0, 0)
    assert sorted(to for to, _ in ready.sends) == [1, 2, 3]
    current = verifier([1, 2, 3], version=0x100000000)
    n = Notification(
        ServerState.FOLLOWING, 1, 0x100000005, 1, 1, config=current.config_string().encode()
    )
    ready = fle.receive(2, n, 10)
    assert ready.adopt == current
    assert fle.verifier == current and not fle.observer
    # It is outside the config now: it proposes nobody and follows the leader the voters
    # follow once enough of them said so.
    for sid, state in ((1, ServerState.LEADING), (2, ServerState.FOLLOWING)):
        n = Notification(state, 1, 0x100000005, 1, 1, config=current.config_string().encode())
        ready = fle.receive(sid, n, 20)
    assert ready.decision is not None
    assert (ready.decision.state, ready.decision.leader) == (ServerState.FOLLOWING, 1)
    # Without reconfigEnabled the config in notifications is not adopted.
    plain = FastLeaderElection(4, joiner_view)
    plain.start(0, 0, 0)
    assert plain.receive(2, n, 10).adopt is None and plain.verifier == joiner_view


# -- found by corral.sim --------------------------------------------------------------------

EPOCH1 = zp.make_zxid(1, 0)


def reconfig_entry(zxid: int, new: QuorumVerifier) -> TxnEntry:
    text = new.with_version(zxid).config_string().encode()
    hdr = TxnHeader(7, 1, zxid, 5, OpCode.RECONFIG)
    return TxnEntry(hdr, jute.encode(SetDataTxn("/zookeeper/config", text, -1)))


def test_a_new_leader_completes_the_reconfig_its_log_holds() -> None:
    """sim seed 212 (--reconfig): a leader crashed after logging its reconfig proposal but
    before the runner wrote the `.next` file (notices come after a Ready's acks); restarted,
    it led under the old config, committed the reconfig with its history, and went on
    committing as a voter of a config that had removed it. The log decides now."""
    active = verifier([1, 2, 3], version=EPOCH1)
    entry = reconfig_entry(EPOCH1 + 1, verifier([1, 2]))
    w = Wired(active, {2: False, 3: False}, history=[entry], last_seen=active, held={2})
    assert w.leader.last_seen.version == entry.zxid
    w.run()
    assert any(isinstance(n, SeenConfig) and n.verifier.version == entry.zxid for n in w.notices[1])
    # {1, 3} is a quorum of the old config only: the new one needs 2 as well.
    assert w.leader.phase is not LeaderPhase.BROADCAST
    w.held = set()
    w.run()
    assert w.leader.phase is LeaderPhase.BROADCAST
    assert w.leader.verifier.version == entry.zxid
    assert w.activations(2)[-1].verifier.version == entry.zxid


def test_a_next_file_whose_reconfig_was_truncated_is_ignored() -> None:
    """sim seed 217 (--reconfig): a leader's reconfig was never committed and a TRUNC
    removed it from its log, but its `.next` file still named it; elected again, it
    activated that config, which no committed txn carries."""
    active = verifier([1, 2, 3], version=EPOCH1)
    log = [reconfig_entry(EPOCH1 + 1, verifier([1, 2, 3], [4]))]  # a committed, active one
    active = verifier([1, 2, 3], [4], version=EPOCH1 + 1)
    stale = verifier([1, 2], version=EPOCH1 + 7)  # proposed at +7, truncated away
    w = Wired(active, {2: False, 3: False}, history=log, last_seen=stale, held={2})
    assert w.leader.last_seen == active
    w.run()
    assert w.leader.phase is LeaderPhase.BROADCAST  # {1, 3}: the active config's quorum
    assert w.leader.verifier == active
    assert not [a for a in w.activations(1) if a.verifier.version == stale.version]


def test_an_observer_counts_for_a_pending_config_that_makes_it_a_voter() -> None:
    """sim seed 163 (--reconfig): a reconfig making observer 4 a voter was logged but not
    committed; the next leader needs a quorum of both configs, but counted only
    participant-type learners, so 4 (connected as an observer, as its active config says)
    never counted and no leader got past discovery. ZooKeeper counts learners by id."""
    active = verifier([1, 2, 3], [4], version=EPOCH1)
    entry = reconfig_entry(EPOCH1 + 1, verifier([1, 4]))
    w = Wired(active, {2: False, 3: False, 4: True}, history=[entry])
    w.run()
    assert w.leader.phase is LeaderPhase.BROADCAST
    assert w.leader.verifier.version == entry.zxid
    # 4 votes now: its observer term ends, and it rejoins as a participant.
    assert w.learners[4].phase is LearnerPhase.STOPPED
    assert w.activations(4)[-1].verifier.version == entry.zxid
