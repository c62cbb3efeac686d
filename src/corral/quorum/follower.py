"""Zab's learner (follower or observer), as a pure state machine.

Starts where election ends ("FOLLOWING/OBSERVING leader N") once the runner has connected
to the leader's quorum port, and speaks ZooKeeper 3.8's learner side (Learner.java):

  discovery   FOLLOWERINFO/OBSERVERINFO (acceptedEpoch<<32, LearnerInfo); on LEADERINFO a
              newer epoch is persisted as acceptedEpoch before ACKEPOCH(currentEpoch, last
              logged zxid) leaves; the same epoch is answered with -1; an older one ends us.
  sync        DIFF, TRUNC (persist a log truncation) or SNAP (persist and load the snapshot),
              then PROPOSAL/COMMIT pairs and outstanding PROPOSALs (INFORMs for observers),
              each logged as it arrives and checked for continuity; NEWLEADER: currentEpoch
              is persisted after every txn before it, and only then the NEWLEADER ACK goes
              (ZOOKEEPER-3911/-4643/-4646/-4785 by construction: it is a send_after_persist).
              The synced txns are applied on UPTODATE, when the leader's history is known
              to be committed by a quorum; until then nothing is applied.
  broadcast   PROPOSAL: log it, ACK after persist. COMMIT: apply everything logged up to it,
              in order. INFORM (observers): log and apply. PING: answer with the sessions
              our clients touched. SYNC and REVALIDATE answers go to the core as notices.

Reconfig (with `reconfig_enabled`): a logged RECONFIG proposal is the last seen config
(SeenConfig); COMMITANDACTIVATE (followers) and INFORMANDACTIVATE (observers) commit it and
activate it once applied (ActivateConfig), as does UPTODATE for a newer config NEWLEADER
carried. A change of our role (participant/observer) or of the leader (the designated one
is not ours, or ours no longer votes) ends the term: the runner elects again with the new
config (ZooKeeper's learner instead goes straight to its new role). A learner outside the
config is a non-voting follower and goes on.

A leader silent for syncLimit ticks (initLimit before the NEWLEADER ACK) stops us.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from enum import Enum

from corral.proto import jute
from corral.proto.codes import OpCode
from corral.proto.records import QuorumPacket
from corral.quorum import zab_packets as zp
from corral.quorum.leader import reconfig_verifier
from corral.quorum.ready import (
    ActivateConfig,
    AppendTxn,
    ApplyTxn,
    ConnClosed,
    Established,
    LoadSnapshot,
    PacketIn,
    Ready,
    ReadyBuilder,
    RevalidateResult,
    SaveSnapshot,
    SeenConfig,
    Send,
    SetAcceptedEpoch,
    SetCurrentEpoch,
    SyncDone,
    TruncateLog,
    ZabConfig,
    ZabInput,
)
from corral.quorum.verifier import ConfigTextError, QuorumVerifier
from corral.quorum.zab_packets import ForwardedRequest, PacketType, TxnEntry

log = logging.getLogger(__name__)


class LearnerPhase(Enum):
    DISCOVERY = "discovery"  # FOLLOWERINFO sent, waiting for LEADERINFO
    AWAIT_SYNC = "await_sync"  # ACKEPOCH sent, waiting for DIFF/TRUNC/SNAP
    SYNCHRONIZATION = "synchronization"  # receiving history, waiting for NEWLEADER
    AWAIT_UPTODATE = "await_uptodate"  # NEWLEADER acked
    BROADCAST = "broadcast"
    STOPPED = "stopped"


class Learner:
    """One learning term with one leader (`observer=True` for an observer).

    `last_logged_zxid` is the last txn in our log (or our snapshot's zxid); `tree_zxid` what
    the tree holds; `unapplied` the logged txns after `tree_zxid` (empty when recovery
    replayed the whole log, as ZooKeeper's does). Call `start()` once connected.
    """

    def __init__(
        self,
        my_sid: int,
        leader_sid: int,
        *,
        observer: bool,
        accepted_epoch: int,
        current_epoch: int,
        last_logged_zxid: int,
        tree_zxid: int,
        now_ms: int,
        unapplied: Sequence[TxnEntry] = (),
        snapshot_zxid: int = 0,
        needs_snapshot: bool = False,
        config_version: int = 0,
        config: ZabConfig | None = None,
        verifier: QuorumVerifier | None = None,
    ) -> None:
        assert accepted_epoch >= current_epoch >= 0, (accepted_epoch, current_epoch)
        self.my_sid = my_sid
        self.leader_sid = leader_sid
        self.observer = observer
        self.config = config or ZabConfig()
        self.accepted_epoch = accepted_epoch
        self.current_epoch = current_epoch
        self.last_logged = last_logged_zxid
        self.tree_zxid = tree_zxid
        self.snapshot_zxid = snapshot_zxid
        self._unapplied: deque[TxnEntry] = deque(unapplied)
        prev = tree_zxid
        for e in self._unapplied:
            assert e.zxid > prev
            prev = e.zxid
        assert prev == last_logged_zxid, "unapplied must reach the last logged txn"
        # The active config (None: not tracked, as in tests without reconfig).
        self.verifier = verifier
        self._config_version = verifier.version if verifier is not None else config_version
        # The config NEWLEADER carried (activated on UPTODATE when newer).
        self._newleader_config: QuorumVerifier | None = None
        # Committed reconfigs to activate once applied: zxid -> designated leader.
        self._activations: dict[int, int] = {}
        # Set when a leader asked us to truncate below our snapshot, which we cannot do: the
        # runner passes it to our next Learner, which then flags its ACKEPOCH so that the
        # leader replaces our state with a SNAP (ZOOKEEPER-1549's stuck learner).
        self.needs_snapshot = needs_snapshot
        self.phase = LearnerPhase.DISCOVERY
        self.new_epoch: int | None = None
        # Highest zxid the leader told us is committed (COMMIT, INFORM, or UPTODATE).
        self._commit_to = tree_zxid
        # Proposals of the new epoch received before NEWLEADER: ACKed after its ACK.
        self._early_acks: list[int] = []
        self._touches: dict[int, int] = {}
        self._last_heard = now_ms
        self._out = ReadyBuilder()
        self._in_flight: Ready | None = None
        self.started = False

    # -- inputs ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connected to the leader: introduce ourselves."""
        assert not self.started
        self.started = True
        kind = PacketType.OBSERVERINFO if self.observer else PacketType.FOLLOWERINFO
        data = zp.encode_learner_info(self.my_sid, self._config_version)
        self._send(zp.packet(kind, zp.make_zxid(self.accepted_epoch, 0), data))

    def step(self, inp: ZabInput) -> None:
        """One input from the connection to the leader (its conn id is not checked)."""
        if isinstance(inp, PacketIn):
            self.receive(inp.packet, inp.now_ms, inp.snapshot)
        elif isinstance(inp, ConnClosed):
            self.disconnected()

    def receive(self, pkt: QuorumPacket, now_ms: int, snapshot: bytes | None = None) -> None:
        """A packet from the leader; `snapshot` carries the bytes that followed a SNAP."""
        if self.phase is LearnerPhase.STOPPED:
            return
        self._last_heard = now_ms
        try:
            self._dispatch(pkt, snapshot)
        except jute.ProtocolError as exc:
            self._stop(f"bad packet {pkt.type} from the leader: {exc}")

    def disconnected(self) -> None:
        """The connection to the leader broke."""
        self._stop("connection to the leader closed")

    def tick(self, now_ms: int) -> None:
        if self.phase is LearnerPhase.STOPPED:
            return
        synced = self.phase in (LearnerPhase.AWAIT_UPTODATE, LearnerPhase.BROADCAST)
        limit = self.config.sync_ms if synced else self.config.init_ms
        if now_ms - self._last_heard > limit:
            self._stop(f"leader silent for {now_ms - self._last_heard} ms")

    def next_deadline(self) -> int:
        synced = self.phase in (LearnerPhase.AWAIT_UPTODATE, LearnerPhase.BROADCAST)
        return self._last_heard + (self.config.sync_ms if synced else self.config.init_ms) + 1

    def forward(self, req: ForwardedRequest) -> None:
        """Send a client's write (or sync, type OpCode.SYNC) to the leader.

        After the term ended (the leader's connection broke) a client's request can still
        arrive before the runner has closed the client connections: it is dropped, as its
        client is about to lose the connection and will learn nothing was acknowledged."""
        if self.phase is LearnerPhase.STOPPED:
            return
        assert self.phase is LearnerPhase.BROADCAST, "forwarding before UPTODATE"
        self._send(zp.request_packet(req))

    def revalidate(self, session_id: int, timeout_ms: int) -> None:
        """Ask the leader whether a reconnecting client's session is still valid."""
        if self.phase is not LearnerPhase.STOPPED:
            self._send(zp.revalidate_request(session_id, timeout_ms))

    def touch(self, session_id: int, timeout_ms: int) -> None:
        """A client of ours showed life; the next PING reply tells the leader."""
        self._touches[session_id] = timeout_ms

    # -- Ready ------------------------------------------------------------------------------

    def has_ready(self) -> bool:
        return self._out.has_output()

    def take_sends(self, blocked: AbstractSet[int] = frozenset()) -> tuple[Send, ...]:
        """Sends that may leave before the next Ready (ready.py: the runner's early sends)."""
        return self._out.take_sends(blocked)

    def ready(self) -> Ready:
        assert self._in_flight is None, "advance() the previous Ready first"
        self._in_flight = self._out.take()
        return self._in_flight

    def advance(self, ready: Ready) -> None:
        assert ready is self._in_flight, "advance() takes the Ready from ready()"
        self._in_flight = None

    # -- protocol ------------------------------------------------------------------------

    def _dispatch(self, pkt: QuorumPacket, snapshot: bytes | None) -> None:
        t = pkt.type
        phase = self.phase
        if phase is LearnerPhase.DISCOVERY:
            if t == PacketType.LEADERINFO:
                self._on_leader_info(pkt)
            else:
                self._stop(f"expected LEADERINFO, got {t}")
        elif phase is LearnerPhase.AWAIT_SYNC:
            self._on_sync_start(pkt, snapshot)
        elif phase in (LearnerPhase.SYNCHRONIZATION, LearnerPhase.AWAIT_UPTODATE):
            self._on_syncing(pkt)
        else:
            self._on_broadcast(pkt)

    def _on_leader_info(self, pkt: QuorumPacket) -> None:
        version = zp.decode_int(pkt.data)
        new_epoch = zp.epoch_of(pkt.zxid)
        if version < zp.PROTOCOL_VERSION:
            self._stop(f"leader speaks protocol {version:#x}")
            return
        # With a snapshot we cannot truncate, we still report our real history (the leader
        # must weigh it in discovery, and may need our vote) and ask for a SNAP by a flag.
        # (Reporting zxid -1 instead hid our history, so a Corral leader could not count us
        # and a quorum that needed us never formed; found by corral.sim.)
        last = self.last_logged
        wants = self.needs_snapshot
        if new_epoch > self.accepted_epoch:
            self.accepted_epoch = new_epoch
            self._out.persist(SetAcceptedEpoch(new_epoch))
            answer = zp.ack_epoch(self.current_epoch, last, wants)
        elif new_epoch == self.accepted_epoch:
            # Already acked this epoch (to this or another leader): tell our zxid, no vote.
            answer = zp.ack_epoch(-1, last, wants)
        else:
            self._stop(f"leader's epoch {new_epoch} is below our accepted {self.accepted_epoch}")
            return
        self.new_epoch = new_epoch
        self._out.send_after_persist(self.leader_sid, answer)
        self.phase = LearnerPhase.AWAIT_SYNC

    def _on_sync_start(self, pkt: QuorumPacket, snapshot: bytes | None) -> None:
        t = pkt.type
        if t == PacketType.DIFF:
            log.info("learner %d: DIFF from %s", self.my_sid, zp.zxid_str(self.last_logged))
            # DIFF carries the leader's last commit: what we hold up to it is committed.
            self._commit_to = max(self._commit_to, min(pkt.zxid, self.last_logged))
        elif t == PacketType.TRUNC:
            target = pkt.zxid
            if target > self.last_logged:
                self._stop(f"TRUNC to {zp.zxid_str(target)}, beyond our log")
                return
            if target < self.snapshot_zxid:
                # Our snapshot holds txns the leader's history lacks (a snapshot taken from
                # a leader's uncommitted tail): only a SNAP can replace it.
                self.needs_snapshot = True
                self._stop(f"cannot truncate to {zp.zxid_str(target)} below our snapshot")
                return
            log.warning("learner %d: TRUNC to %s", self.my_sid, zp.zxid_str(target))
            self._out.persist(TruncateLog(target))
            self.last_logged = target
            while self._unapplied and self._unapplied[-1].zxid > target:
                self._unapplied.pop()
            self.tree_zxid = min(self.tree_zxid, target)
            # The leader truncates us to a txn of its committed history.
            self._commit_to = target
        elif t == PacketType.SNAP:
            if snapshot is None:
                self._stop("SNAP without its snapshot")
                return
            self._out.persist(SaveSnapshot(pkt.zxid, snapshot))
            self.needs_snapshot = False
            self._out.apply(LoadSnapshot(pkt.zxid, snapshot))
            self.last_logged = self.tree_zxid = self.snapshot_zxid = pkt.zxid
            self._commit_to = pkt.zxid
            self._unapplied.clear()
        else:
            self._stop(f"expected DIFF, TRUNC or SNAP, got {t}")
            return
        self.phase = LearnerPhase.SYNCHRONIZATION

    def _on_syncing(self, pkt: QuorumPacket) -> None:
        t = pkt.type
        if t == PacketType.PROPOSAL:
            entry = zp.decode_txn_entry(pkt.data)
            logged = self._log(entry)
            if logged:
                self._seen(entry)
            if logged and not self.observer and self._in_new_epoch(entry.zxid):
                if self.phase is LearnerPhase.AWAIT_UPTODATE:
                    self._out.send_after_persist(
                        self.leader_sid, zp.packet(PacketType.ACK, entry.zxid)
                    )
                else:
                    self._early_acks.append(entry.zxid)
        elif t == PacketType.COMMIT:
            self._note_commit(pkt.zxid)
        elif t == PacketType.COMMITANDACTIVATE:
            self._note_commit(pkt.zxid)
            self._activations[pkt.zxid] = zp.decode_long(pkt.data)
        elif t == PacketType.INFORM:
            entry = zp.decode_txn_entry(pkt.data)
            self._log(entry)
            self._note_commit(entry.zxid)
        elif t == PacketType.INFORMANDACTIVATE:
            designated, entry = zp.decode_inform_and_activate(pkt.data)
            self._log(entry)
            self._note_commit(entry.zxid)
            self._activations[entry.zxid] = designated
        elif t == PacketType.NEWLEADER and self.phase is LearnerPhase.SYNCHRONIZATION:
            self._on_newleader(pkt)
        elif t == PacketType.UPTODATE and self.phase is LearnerPhase.AWAIT_UPTODATE:
            self._on_uptodate()
        elif t == PacketType.PING:
            pass  # ZooKeeper's learner ignores pings until it is up to date
        else:
            self._stop(f"unexpected packet {t} during sync")

    def _on_newleader(self, pkt: QuorumPacket) -> None:
        assert self.new_epoch is not None
        if zp.epoch_of(pkt.zxid) != self.new_epoch:
            self._stop(f"NEWLEADER for {zp.zxid_str(pkt.zxid)}, not epoch {self.new_epoch}")
            return
        if pkt.data is not None and len(pkt.data) > 1:
            try:
                self._newleader_config = QuorumVerifier.from_config_string(pkt.data.decode())
            except (ConfigTextError, UnicodeDecodeError) as exc:
                log.warning("learner %d: NEWLEADER with a bad config: %s", self.my_sid, exc)
            else:
                if self.config.reconfig_enabled:
                    self._out.notice(SeenConfig(self._newleader_config))
        # Everything logged so far is in persist ahead of this, so the epoch file is only
        # written once the synced txns are (ZOOKEEPER-4643), and the ACK only after both.
        self.current_epoch = self.new_epoch
        self._out.persist(SetCurrentEpoch(self.new_epoch))
        self._out.send_after_persist(self.leader_sid, zp.packet(PacketType.ACK, pkt.zxid))
        for zxid in self._early_acks:
            self._out.send_after_persist(self.leader_sid, zp.packet(PacketType.ACK, zxid))
        self._early_acks.clear()
        self.phase = LearnerPhase.AWAIT_UPTODATE

    def _on_uptodate(self) -> None:
        assert self.new_epoch is not None
        # A quorum acked NEWLEADER: the leader's history (every txn before its epoch) is
        # committed; later txns commit by their own COMMIT.
        epoch_start = zp.make_zxid(self.new_epoch, 0)
        for e in self._unapplied:
            if e.zxid < epoch_start:
                self._commit_to = max(self._commit_to, e.zxid)
        self._apply_committed()
        self._out.send_after_persist(self.leader_sid, zp.packet(PacketType.ACK, epoch_start))
        self.phase = LearnerPhase.BROADCAST
        self._out.notice(Established(self.new_epoch, self.tree_zxid))
        log.info("learner %d: up to date at %s", self.my_sid, zp.zxid_str(self.tree_zxid))
        if self._newleader_config is not None:
            self._activate(self._newleader_config, None, init_node=True)

    def _on_broadcast(self, pkt: QuorumPacket) -> None:
        t = pkt.type
        if t == PacketType.PROPOSAL and not self.observer:
            entry = zp.decode_txn_entry(pkt.data)
            if self._log(entry):
                self._seen(entry)
                self._out.send_after_persist(self.leader_sid, zp.packet(PacketType.ACK, entry.zxid))
        elif t == PacketType.COMMIT and not self.observer:
            self._note_commit(pkt.zxid)
            self._apply_committed()
        elif t == PacketType.COMMITANDACTIVATE and not self.observer:
            self._note_commit(pkt.zxid)
            self._activations[pkt.zxid] = zp.decode_long(pkt.data)
            self._apply_committed()
        elif t == PacketType.INFORM and self.observer:
            entry = zp.decode_txn_entry(pkt.data)
            self._log(entry)
            self._note_commit(entry.zxid)
            self._apply_committed()
        elif t == PacketType.INFORMANDACTIVATE and self.observer:
            designated, entry = zp.decode_inform_and_activate(pkt.data)
            self._log(entry)
            self._note_commit(entry.zxid)
            self._activations[entry.zxid] = designated
            self._apply_committed()
        elif t == PacketType.PING:
            data = zp.encode_touches(self._touches)
            self._touches.clear()
            self._send(zp.packet(PacketType.PING, pkt.zxid, data))
        elif t == PacketType.SYNC:
            self._out.notice(SyncDone())
        elif t == PacketType.REVALIDATE:
            session_id, valid = zp.decode_revalidate_answer(pkt.data)
            self._out.notice(RevalidateResult(session_id, valid))
        else:
            log.warning("learner %d: ignoring packet %d", self.my_sid, t)

    # -- helpers --------------------------------------------------------------------------

    def _in_new_epoch(self, zxid: int) -> bool:
        return self.new_epoch is not None and zp.epoch_of(zxid) == self.new_epoch

    def _log(self, entry: TxnEntry) -> bool:
        """Persist a txn from the leader; False for a duplicate we already hold."""
        zxid = entry.zxid
        if zxid <= self.last_logged:
            # The Zab spec tolerates a duplicate PROPOSAL (issues.md, issue 2).
            return False
        same_epoch = zp.epoch_of(zxid) == zp.epoch_of(self.last_logged)
        if same_epoch and zxid != self.last_logged + 1:
            # A hole inside an epoch means lost txns (ZOOKEEPER-4925): never paper over it.
            raise jute.ProtocolError(
                f"proposal {zp.zxid_str(zxid)} after {zp.zxid_str(self.last_logged)}"
            )
        self._out.persist(AppendTxn(entry))
        self._unapplied.append(entry)
        self.last_logged = zxid
        return True

    def _note_commit(self, zxid: int) -> None:
        if zxid > self.last_logged:
            raise jute.ProtocolError(f"COMMIT {zp.zxid_str(zxid)} of a txn we do not have")
        self._commit_to = max(self._commit_to, zxid)

    def _apply_committed(self) -> None:
        # Only logged txns are here, and their appends precede this apply in the Ready.
        while self._unapplied and self._unapplied[0].zxid <= self._commit_to:
            if self.phase is LearnerPhase.STOPPED:
                return  # a reconfig ended the term: nothing after it is ours to apply
            entry = self._unapplied.popleft()
            self._out.apply(ApplyTxn(entry))
            self.tree_zxid = entry.zxid
            designated = self._activations.pop(entry.zxid, None)
            if designated is not None:
                self._activate(reconfig_verifier(entry), designated)

    # -- reconfig -------------------------------------------------------------------------

    def _seen(self, entry: TxnEntry) -> None:
        """A logged RECONFIG proposal: its config is the last seen one."""
        if entry.hdr.type == OpCode.RECONFIG and self.config.reconfig_enabled:
            self._out.notice(SeenConfig(reconfig_verifier(entry)))

    def _activate(
        self, new: QuorumVerifier, designated: int | None, init_node: bool = False
    ) -> None:
        """QuorumPeer.processReconfig: a newer config becomes active; a change of our role
        or of our leader ends the term."""
        old = self.verifier
        if not self.config.reconfig_enabled or (old is not None and new.version <= old.version):
            return
        self.verifier = new
        self._out.notice(ActivateConfig(new, designated, init_node))
        me = self.my_sid
        # updateLearnerType: outside the config we stay a (non-voting) participant.
        role_change = (me in new.observers) != self.observer
        if designated is not None:
            leader_change = designated != self.leader_sid
        else:
            before = new.server(self.leader_sid) if old is None else old.server(self.leader_sid)
            after = new.server(self.leader_sid)
            leader_change = (
                before is None
                or after is None
                or not new.is_voter(self.leader_sid)
                or (before.host, before.quorum_port) != (after.host, after.quorum_port)
            )
        if role_change or leader_change:
            self._stop(f"config {new.version:#x} changes our role or leader")

    def _send(self, pkt: QuorumPacket) -> None:
        self._out.send(self.leader_sid, pkt)

    def _stop(self, reason: str) -> None:
        if self.phase is not LearnerPhase.STOPPED:
            log.warning("learner %d: stops following %d: %s", self.my_sid, self.leader_sid, reason)
            self.phase = LearnerPhase.STOPPED
            self._out.stop(reason)
