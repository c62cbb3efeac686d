"""Zab's leader: discovery, synchronisation and broadcast, as a pure state machine.

The node starts where election ends ("I am LEADING") and speaks ZooKeeper 3.8's learner
protocol to each learner connection (LearnerHandler's view), with this order of events:

  discovery   learners send FOLLOWERINFO/OBSERVERINFO with their acceptedEpoch; once the
              leader and a quorum of voters have connected, the new epoch is fixed at one
              more than every acceptedEpoch seen, persisted as our acceptedEpoch, and sent
              as LEADERINFO. Learners answer ACKEPOCH (currentEpoch, last logged zxid); a
              quorum of those (the leader included) ends discovery. A voter whose history is
              more recent than ours is refused: we cannot lead it.
  sync        currentEpoch is persisted; each learner gets DIFF, TRUNC or SNAP (`plan_sync`),
              the missing proposals with their COMMITs, the outstanding proposals, then
              NEWLEADER. When the leader (after its currentEpoch is durable) and a quorum
              of voters have ACKed NEWLEADER, the leader's history is committed: the leader
              applies it, sends UPTODATE, and starts broadcasting.
  broadcast   `propose` logs a txn and sends PROPOSAL to every voter past discovery
              (syncing ones too: a commit made between NEWLEADER and UPTODATE must reach
              them, see the Zab spec's issues.md); a quorum of ACKs (ours counts once our
              own append is durable, i.e. on `advance`) commits it in zxid order: COMMIT to
              voters, INFORM to observers, apply locally.

Reconfig (QuorumPeer/Leader's dynamic reconfiguration, with `reconfig_enabled`): the
leader keeps the active config (`verifier`) and the last proposed one (`last_seen`). While
they differ, every proposal and NEWLEADER needs a quorum of both. Proposing a RECONFIG txn
makes its config the last seen (at most one in flight: prep answers RECONFIGINPROGRESS);
committing it activates it: COMMITANDACTIVATE to followers and INFORMANDACTIVATE to
observers name the designated leader (us, if we still vote with the same quorum address,
else the voter of the new config that acked the most). A leader that is not the designated
one commits nothing more and stops (learners go back to election; ZooKeeper's learners
instead go straight to the designated leader). A new leader whose config has version 0
versions it with its NEWLEADER zxid, and activates the last seen config once established.
Learners outside the config are accepted as non-voting followers (a joiner syncs before a
reconfig adds it); acks count wherever the sender is a voter.

Liveness: PINGs every half tick; a learner silent for syncLimit ticks (initLimit+syncLimit
while syncing) is dropped; a leader without a synced quorum at a tick, or stuck in
discovery or sync for initLimit ticks, stops (the runner goes back to LOOKING).

The leader never reads disk. It is given the tail of its log (`history`, all txns after
`history_base`) and keeps the last `commit_log_count` committed txns for DIFF; a learner
further behind gets the snapshot from the injected `snapshot()` callback.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from enum import Enum

from corral.proto import jute
from corral.proto.codes import OpCode
from corral.proto.records import QuorumPacket, ReconfigRequest, SetDataTxn, TxnDigest, TxnHeader
from corral.quorum import zab_packets as zp
from corral.quorum.ready import (
    ActivateConfig,
    AppendTxn,
    ApplyTxn,
    ConnClosed,
    Established,
    LearnerRequest,
    PacketIn,
    Ready,
    ReadyBuilder,
    RevalidateAsk,
    SeenConfig,
    Send,
    SetAcceptedEpoch,
    SetCurrentEpoch,
    Touch,
    ZabConfig,
    ZabInput,
)
from corral.quorum.reconfig import ReconfigAsk, ReconfigPlan, plan_reconfig
from corral.quorum.verifier import ConfigTextError, QuorumVerifier
from corral.quorum.zab_packets import PacketType, TxnEntry
from corral.tree.txn import decode_txn

log = logging.getLogger(__name__)


class NotLeading(Exception):
    """propose() before the leader is established, or after it stopped."""


class ZxidRollover(Exception):
    """The epoch's counter is exhausted; the leader stopped to force a new epoch."""


class ProposalBacklogFull(Exception):
    """Too many proposals are outstanding; the core must wait for commits."""


class LeaderPhase(Enum):
    DISCOVERY = "discovery"
    SYNCHRONIZATION = "synchronization"
    BROADCAST = "broadcast"
    STOPPED = "stopped"


class _Stage(Enum):
    """Where one learner connection is in the handshake."""

    CONNECTED = 0  # waiting for FOLLOWERINFO/OBSERVERINFO
    INFO = 1  # waiting for the epoch to be fixed
    EPOCH = 2  # LEADERINFO sent, waiting for ACKEPOCH
    ACKED_EPOCH = 3  # waiting for discovery to end
    SYNC = 4  # sync data and NEWLEADER sent, waiting for its ACK
    RUNNING = 5  # NEWLEADER acked


@dataclass(slots=True)
class _Peer:
    conn: int
    deadline_ms: int
    stage: _Stage = _Stage.CONNECTED
    sid: int = -1
    observer: bool = False
    # A participant-type learner (FOLLOWERINFO): it acks, and its acks count wherever its
    # sid votes (a follower outside the config is a non-voting follower until a reconfig).
    voter: bool = False
    accepted_epoch: int = -1
    last_zxid: int = -1
    wants_snapshot: bool = False  # its ACKEPOCH asked for a SNAP
    # In the broadcast set: gets PROPOSAL/COMMIT (voters) or INFORM (observers), and PINGs.
    forwarding: bool = False


@dataclass(frozen=True, slots=True)
class SyncPlan:
    """How to bring a learner in line: DIFF after `zxid`, TRUNC to `zxid` (then DIFF after
    it), or SNAP (zxid unused)."""

    kind: PacketType
    zxid: int


def plan_sync(committed: Sequence[int], base: int, peer_zxid: int) -> SyncPlan:
    """Decide DIFF/TRUNC/SNAP for a learner whose last logged zxid is `peer_zxid`.

    `committed` holds the committed zxids the leader has in memory (its adopted history
    counts as committed), ascending and complete after `base`. Two facts make this exact:
    - two logs holding the same zxid agree up to it (one leader per epoch);
    - a log holding a txn of epoch e got it from e's leader after syncing with it, and e's
      leader proposed only once established, so the log's txns below epoch e are e's
      leader's history, committed, and therefore a prefix of ours.
    Hence:
    - the peer's zxid is one of ours (or our base): DIFF from it;
    - otherwise its txns of epoch e = epoch(peer) that we lack are an uncommitted tail:
      TRUNC to our last txn below its zxid in epoch e if we have one, else to our last txn
      below epoch e (it holds that one: see above), then DIFF. This is ZOOKEEPER-1154's
      lesson (compare histories by epoch) without falling back to SNAP;
    - the peer is behind our window: SNAP. Since the peer then holds nothing past our base,
      replacing its state with our snapshot never drops a committed txn it held.
    """
    if peer_zxid == base or _contains(committed, peer_zxid):
        return SyncPlan(PacketType.DIFF, peer_zxid)
    if peer_zxid > base:
        known = [base, *committed]
        epoch = zp.epoch_of(peer_zxid)
        same = [z for z in known if zp.epoch_of(z) == epoch and z < peer_zxid]
        if same:
            return SyncPlan(PacketType.TRUNC, same[-1])
        before = [z for z in known if z < zp.make_zxid(epoch, 0)]
        if before:
            return SyncPlan(PacketType.TRUNC, before[-1])
    return SyncPlan(PacketType.SNAP, 0)


def _contains(history: Sequence[int], zxid: int) -> bool:
    lo, hi = 0, len(history)
    while lo < hi:
        mid = (lo + hi) // 2
        if history[mid] < zxid:
            lo = mid + 1
        else:
            hi = mid
    return lo < len(history) and history[lo] == zxid


@dataclass(slots=True)
class _Proposal:
    entry: TxnEntry
    # The configs whose quorums must all ack it: the active one, and the last proposed one
    # while a reconfig is in flight (Proposal.qvAcksetPairs).
    verifiers: tuple[QuorumVerifier, ...] = ()
    acks: set[int] = field(default_factory=set)

    def has_all_quorums(self) -> bool:
        verifiers = self.verifiers
        if len(verifiers) == 1:  # no reconfig in flight: the usual case, once per ACK
            return verifiers[0].contains_quorum(self.acks)
        return all(v.contains_quorum(self.acks) for v in verifiers)


_RECONFIG = int(OpCode.RECONFIG)


def reconfig_verifier(entry: TxnEntry) -> QuorumVerifier:
    """The config a RECONFIG txn carries (a SetDataTxn of /zookeeper/config)."""
    txn = decode_txn(entry.hdr.type, entry.txn)[0]
    if not isinstance(txn, SetDataTxn) or txn.data is None:
        raise ConfigTextError(f"reconfig txn {zp.zxid_str(entry.zxid)} without a config")
    try:
        text = txn.data.decode()
    except UnicodeDecodeError:
        raise ConfigTextError("reconfig txn's config is not UTF-8") from None
    return QuorumVerifier.from_config_string(text)


def pending_config(
    verifier: QuorumVerifier,
    last_seen: QuorumVerifier | None,
    history: Sequence[TxnEntry],
    history_base: int,
) -> QuorumVerifier:
    """The config a new leader must complete: the newest RECONFIG txn in its log when that
    is newer than the active config, whatever the `.next` file says.

    The runner writes the `.next` file (SeenConfig) and the active one (ActivateConfig)
    only after a Ready's acks have left, so a crash can leave a logged (even committed)
    reconfig the files do not know; and a TRUNC can remove the reconfig a `.next` file
    names. Both made a leader act under a config that was not the one in force (found by
    corral.sim; ZooKeeper writes `.next` before logging the proposal). A `.next` config
    older than our history window cannot be checked against the log and is believed.
    """
    logged = None
    for entry in history:
        if entry.hdr.type == _RECONFIG:
            logged = entry
    if logged is not None:
        config = reconfig_verifier(logged)
        if config.version > verifier.version:
            return config
    if last_seen is None or last_seen.version <= verifier.version:
        return verifier
    if last_seen.version > history_base:
        return verifier  # its reconfig would be in our history: a TRUNC removed it
    return last_seen


class Leader:
    """One leadership term. Drive it with `receive`, `disconnected`, `tick`, `propose`,
    `revalidated`, `sync`; take effects with `ready()` and report them done with
    `advance(ready)`."""

    def __init__(
        self,
        my_sid: int,
        verifier: QuorumVerifier,
        *,
        accepted_epoch: int,
        current_epoch: int,
        history: Sequence[TxnEntry],
        history_base: int,
        tree_zxid: int,
        snapshot: Callable[[], tuple[int, bytes]],
        now_ms: int,
        config: ZabConfig | None = None,
        last_seen: QuorumVerifier | None = None,
    ) -> None:
        if not verifier.is_voter(my_sid):
            raise ValueError(f"server {my_sid} is not a voter and cannot lead")
        assert accepted_epoch >= current_epoch >= 0, (accepted_epoch, current_epoch)
        prev = history_base
        for e in history:
            assert e.zxid > prev, f"history not ascending at {zp.zxid_str(e.zxid)}"
            prev = e.zxid
        self.my_sid = my_sid
        self.verifier = verifier
        self.config = config or ZabConfig()
        # The last proposed config (QuorumPeer.lastSeenQuorumVerifier): see pending_config.
        self.last_seen = verifier
        if self.config.reconfig_enabled:
            self.last_seen = pending_config(verifier, last_seen, history, history_base)
        # False once a committed reconfig named another leader (Leader.allowedToCommit).
        self._allowed_to_commit = True
        self.accepted_epoch = accepted_epoch
        self.current_epoch = current_epoch
        self._history: deque[TxnEntry] = deque(history)
        self._base = history_base
        self.last_logged = prev
        assert history_base <= tree_zxid <= self.last_logged, (history_base, tree_zxid)
        # Our history as of election: committed as a whole once a quorum acks NEWLEADER.
        self._initial_end = self.last_logged
        self._summary = (current_epoch, self.last_logged)
        self._snapshot = snapshot
        self.applied = tree_zxid  # highest zxid handed out to apply (or in the tree)
        self._applied_done = tree_zxid  # highest zxid the runner has applied
        self.committed = -1  # highest committed zxid, once established
        self.epoch: int | None = None
        self.phase = LeaderPhase.DISCOVERY
        self._candidate_epoch = accepted_epoch + 1
        self._connecting: set[int] = {my_sid}
        self._electing: set[int] = set()
        self._newleader_acks: set[int] = set()
        self._outstanding: dict[int, _Proposal] = {}
        self.last_proposed = self.last_logged
        self._pending_syncs: dict[int, list[int]] = {}
        self._peers: dict[int, _Peer] = {}
        self._by_sid: dict[int, int] = {}
        self._phase_deadline = now_ms + self.config.init_ms
        self._next_ping = now_ms + self.config.tick_ms // 2
        self._next_check = now_ms + self.config.tick_ms
        self._out = ReadyBuilder()
        self._in_flight: Ready | None = None
        if self.last_seen.version > max(verifier.version, last_seen.version if last_seen else 0):
            self._out.notice(SeenConfig(self.last_seen))  # the log knew better than `.next`
        self._maybe_fix_epoch()

    # -- inputs ---------------------------------------------------------------------------

    def step(self, inp: ZabInput) -> None:
        """One input from the quorum port (see also `receive`/`disconnected`)."""
        if isinstance(inp, PacketIn):
            self.receive(inp.conn, inp.packet, inp.now_ms)
        elif isinstance(inp, ConnClosed):
            self.disconnected(inp.conn)

    def receive(self, conn: int, pkt: QuorumPacket, now_ms: int) -> None:
        """A packet from a learner connection (learner connections are opened by learners;
        the first packet on one names its server id)."""
        if self.phase is LeaderPhase.STOPPED:
            return
        peer = self._peers.get(conn)
        if peer is None:
            peer = self._peers[conn] = _Peer(conn, now_ms + self.config.init_ms)
        running = peer.stage is _Stage.RUNNING and self.phase is LeaderPhase.BROADCAST
        peer.deadline_ms = now_ms + (self.config.sync_ms if running else self.config.init_ms)
        try:
            self._dispatch(peer, pkt, now_ms)
        except jute.ProtocolError as exc:
            self._drop(peer, f"bad packet {pkt.type}: {exc}")

    def disconnected(self, conn: int) -> None:
        """The runner saw this learner connection close."""
        peer = self._peers.pop(conn, None)
        if peer is not None and self._by_sid.get(peer.sid) == conn:
            del self._by_sid[peer.sid]

    def tick(self, now_ms: int) -> None:
        """Timers: learner deadlines, phase timeouts, pings, the quorum check."""
        if self.phase is LeaderPhase.STOPPED:
            return
        for peer in list(self._peers.values()):
            if now_ms > peer.deadline_ms:
                self._drop(peer, "learner silent past its deadline")
        if self.phase is not LeaderPhase.BROADCAST and now_ms >= self._phase_deadline:
            self._stop(f"timeout in {self.phase.value}: no quorum within initLimit")
            return
        if now_ms >= self._next_ping:
            self._next_ping = now_ms + max(1, self.config.tick_ms // 2)
            ping = zp.packet(PacketType.PING, self.last_proposed)
            for peer in self._peers.values():
                if peer.forwarding:
                    self._out.send(peer.conn, ping)
        if now_ms >= self._next_check:
            self._next_check = now_ms + self.config.tick_ms
            if self.phase is LeaderPhase.BROADCAST:
                synced = {self.my_sid} | {
                    p.sid for p in self._peers.values() if p.stage is _Stage.RUNNING and p.voter
                }
                if not self._has_all_quorums(synced):
                    self._stop(f"not sufficient followers synced, only {sorted(synced)}")

    def next_deadline(self) -> int:
        """When `tick` next has something to do (for the runner's timer)."""
        times = [self._next_ping, self._next_check]
        if self.phase is not LeaderPhase.BROADCAST:
            times.append(self._phase_deadline)
        times.extend(p.deadline_ms + 1 for p in self._peers.values())
        return min(times)

    def next_zxid(self) -> int:
        """The zxid the next proposal must carry (prep_write's `zxid`)."""
        if self.phase is not LeaderPhase.BROADCAST:
            raise NotLeading(self.phase.value)
        return self.last_proposed + 1

    def can_propose(self) -> bool:
        return (
            self.phase is LeaderPhase.BROADCAST
            and len(self._outstanding) < self.config.outstanding_max
        )

    def propose(self, hdr: TxnHeader, txn: bytes, digest: TxnDigest | None = None) -> TxnEntry:
        """Log and broadcast a txn prep made with `next_zxid()`; it commits on a quorum."""
        if self.phase is not LeaderPhase.BROADCAST:
            raise NotLeading(self.phase.value)
        zxid = hdr.zxid
        assert zxid == self.last_proposed + 1, (zp.zxid_str(zxid), self.last_proposed)
        if zp.counter_of(zxid) >= zp.COUNTER_MAX:
            self._stop("zxid counter rolled over: a new epoch is needed")
            raise ZxidRollover(zp.zxid_str(zxid))
        if len(self._outstanding) >= self.config.outstanding_max:
            raise ProposalBacklogFull(str(len(self._outstanding)))
        entry = TxnEntry(hdr, txn, digest)
        if hdr.type == _RECONFIG:
            # Prep checked it; from now on every proposal needs both quorums.
            self.last_seen = reconfig_verifier(entry)
            self._out.notice(SeenConfig(self.last_seen))
        self._history.append(entry)
        self.last_logged = self.last_proposed = zxid
        self._outstanding[zxid] = _Proposal(entry, self._verifiers())
        self._out.persist(AppendTxn(entry))
        pkt = zp.proposal(entry)
        for peer in self._peers.values():
            # Every participant-type learner gets proposals (its acks count if it votes).
            if peer.forwarding and not peer.observer:
                self._out.send(peer.conn, pkt)
        return entry

    def revalidated(self, conn: int, session_id: int, valid: bool) -> None:
        """The core's answer to a RevalidateAsk."""
        if conn in self._peers and self.phase is not LeaderPhase.STOPPED:
            self._out.send(conn, zp.revalidate_answer(session_id, valid))

    def sync(self, conn: int) -> None:
        """A learner forwarded a client's sync: answer SYNC once everything proposed so far
        is committed (Leader.processSync)."""
        if conn not in self._peers or self.phase is not LeaderPhase.BROADCAST:
            return
        if not self._outstanding:
            self._out.send(conn, zp.packet(PacketType.SYNC, 0))
        else:
            self._pending_syncs.setdefault(self.last_proposed, []).append(conn)

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
        """The runner performed `ready`: its persist is durable, its applies are done."""
        assert ready is self._in_flight, "advance() takes the Ready from ready()"
        self._in_flight = None
        for op in ready.persist:
            if isinstance(op, AppendTxn):
                prop = self._outstanding.get(op.entry.zxid)
                if prop is not None:
                    prop.acks.add(self.my_sid)
            elif isinstance(op, SetCurrentEpoch):
                self.current_epoch = op.epoch
                self._newleader_acks.add(self.my_sid)
        for ap in ready.apply:
            if isinstance(ap, ApplyTxn):
                self._applied_done = max(self._applied_done, ap.entry.zxid)
        if self.phase is LeaderPhase.SYNCHRONIZATION:
            self._maybe_establish()
        if self.phase is LeaderPhase.BROADCAST:
            self._try_commit()
            self._trim_history()

    # -- discovery ------------------------------------------------------------------------

    def _dispatch(self, peer: _Peer, pkt: QuorumPacket, now_ms: int) -> None:
        t = pkt.type
        if peer.stage is _Stage.CONNECTED:
            if t in (PacketType.FOLLOWERINFO, PacketType.OBSERVERINFO):
                self._on_learner_info(peer, pkt)
            else:
                self._drop(peer, f"first packet {t} is not FOLLOWERINFO or OBSERVERINFO")
        elif peer.stage is _Stage.EPOCH and t == PacketType.ACKEPOCH:
            self._on_ack_epoch(peer, pkt)
        elif peer.stage is _Stage.SYNC and t == PacketType.ACK:
            self._on_newleader_ack(peer, pkt, now_ms)
        elif peer.stage is _Stage.RUNNING:
            self._on_running(peer, pkt)
        else:
            self._drop(peer, f"unexpected packet {t} in stage {peer.stage.name}")

    def _on_learner_info(self, peer: _Peer, pkt: QuorumPacket) -> None:
        info = zp.decode_learner_info(pkt.data)
        if info is None or info.protocol_version < zp.PROTOCOL_VERSION:
            self._drop(peer, "learner without a Zab 1.0 LearnerInfo")
            return
        if info.serverid == self.my_sid:
            self._drop(peer, f"a learner claims our own id {self.my_sid}")
            return
        if (
            self.verifier.server(info.serverid) is None
            and self.last_seen.server(info.serverid) is None
        ):
            # LearnerHandler takes it too: a joiner syncs as a non-voting follower first.
            log.info("leader %d: learner %d is not in the config", self.my_sid, info.serverid)
        if info.config_version > self.verifier.version:
            self._drop(peer, "learner has a later configuration than ours")
            return
        old = self._by_sid.get(info.serverid)
        if old is not None and old in self._peers:
            self._drop(self._peers[old], "replaced by a new connection from the same server")
        self._by_sid[info.serverid] = peer.conn
        peer.sid = info.serverid
        peer.observer = pkt.type == PacketType.OBSERVERINFO
        peer.voter = not peer.observer
        peer.accepted_epoch = zp.epoch_of(pkt.zxid)
        peer.stage = _Stage.INFO
        if self.epoch is not None:
            self._send_leader_info(peer)
            return
        self._candidate_epoch = max(self._candidate_epoch, peer.accepted_epoch + 1)
        # Counted by its id, whatever its learner type (Leader.isParticipant, SyncedLearnerTracker
        # .addAck): an observer that a pending reconfig makes a voter must count for the new
        # config, or no leader could ever complete that reconfig (found by corral.sim).
        self._connecting.add(peer.sid)
        self._maybe_fix_epoch()

    def _maybe_fix_epoch(self) -> None:
        if self.epoch is not None or not self._has_all_quorums(self._connecting):
            return
        epoch = self._candidate_epoch
        assert epoch > self.accepted_epoch >= self.current_epoch
        self.epoch = epoch
        if (
            self.config.reconfig_enabled
            and self.verifier.version == 0
            and self.last_seen.version == 0
        ):
            # ZOOKEEPER-1783: the first established config gets a version, the NEWLEADER
            # zxid, so it wins over joiners' unversioned initial configs. It travels in
            # NEWLEADER and becomes active once a quorum acked it.
            self.last_seen = self.verifier.with_version(zp.make_zxid(epoch, 0))
            self._out.notice(SeenConfig(self.last_seen))
        self.accepted_epoch = epoch
        self._out.persist(SetAcceptedEpoch(epoch))
        log.info("leader %d: new epoch %d", self.my_sid, epoch)
        for peer in self._peers.values():
            if peer.stage is _Stage.INFO:
                self._send_leader_info(peer)
        self._electing.add(self.my_sid)
        self._maybe_finish_discovery()

    def _send_leader_info(self, peer: _Peer) -> None:
        assert self.epoch is not None
        # After persist: LEADERINFO announces an epoch we must already have accepted.
        self._out.send_after_persist(peer.conn, zp.leader_info(self.epoch))
        peer.stage = _Stage.EPOCH

    def _on_ack_epoch(self, peer: _Peer, pkt: QuorumPacket) -> None:
        their_epoch, peer.wants_snapshot = zp.decode_ack_epoch(pkt.data)
        peer.last_zxid = pkt.zxid
        peer.stage = _Stage.ACKED_EPOCH
        if self.phase is LeaderPhase.DISCOVERY:
            if their_epoch != -1:
                if (their_epoch, pkt.zxid) > self._summary:
                    self._drop(peer, "learner is ahead of the leader")
                    return
                # (zxid -1: an older learner hiding its history to get a SNAP; it cannot vote.)
                if pkt.zxid != -1:
                    self._electing.add(peer.sid)  # by id, as _connecting
            self._maybe_finish_discovery()
        else:
            self._sync_learner(peer)

    def _maybe_finish_discovery(self) -> None:
        if self.phase is not LeaderPhase.DISCOVERY:
            return
        if self.my_sid not in self._electing:
            return
        if not self._has_all_quorums(self._electing):
            return
        assert self.epoch is not None
        self.phase = LeaderPhase.SYNCHRONIZATION
        # Our own NEWLEADER ack counts once this is durable (see advance).
        self._out.persist(SetCurrentEpoch(self.epoch))
        self._phase_deadline += self.config.init_ms
        for peer in self._peers.values():
            if peer.stage is _Stage.ACKED_EPOCH:
                self._sync_learner(peer)

    # -- synchronisation ----------------------------------------------------------------

    def _commit_point(self) -> int:
        """Txns up to here go to learners with a COMMIT."""
        return max(self._initial_end, self.committed)

    def _sync_learner(self, peer: _Peer) -> None:
        assert self.epoch is not None
        commit_point = self._commit_point()
        committed = [e.zxid for e in self._history if e.zxid <= commit_point]
        if peer.wants_snapshot:
            # Its snapshot holds txns it cannot truncate: only our snapshot replaces them.
            # (Its history is no more recent than ours: discovery checked.)
            plan = SyncPlan(PacketType.SNAP, 0)
        else:
            plan = plan_sync(committed, self._base, peer.last_zxid)
        snapshot: bytes | None = None
        if plan.kind is PacketType.SNAP:
            start, snapshot = self._snapshot()
            # The snapshot is our tree; what follows it must still be in memory.
            assert self._base <= start <= self.applied, (start, self._base, self.applied)
            self._out.send(peer.conn, zp.packet(PacketType.SNAP, start), snapshot)
        elif plan.kind is PacketType.TRUNC:
            start = plan.zxid
            self._out.send(peer.conn, zp.packet(PacketType.TRUNC, start))
        else:
            start = plan.zxid
            self._out.send(
                peer.conn, zp.packet(PacketType.DIFF, min(commit_point, self.last_logged))
            )
        log.info(
            "leader %d: sync %d by %s (peer at %s, from %s)",
            self.my_sid,
            peer.sid,
            plan.kind.name,
            zp.zxid_str(peer.last_zxid),
            zp.zxid_str(start),
        )
        if peer.voter:
            # Whatever we send it again it must ack again: an ack it gave before this sync
            # may be for a txn the TRUNC or SNAP is about to remove from its disk.
            for zxid, prop in self._outstanding.items():
                if zxid > start:
                    prop.acks.discard(peer.sid)
        for entry in self._history:
            if entry.zxid <= start:
                continue
            is_committed = entry.zxid <= commit_point
            if not is_committed and peer.observer:
                break
            self._out.send(peer.conn, zp.proposal(entry))
            if is_committed:
                self._out.send(peer.conn, zp.packet(PacketType.COMMIT, entry.zxid))
        # NEWLEADER carries the config the learner activates on UPTODATE: before we are
        # established, the last seen one (which we activate then too); once broadcasting,
        # the active one (a pending reconfig's PROPOSAL and COMMITANDACTIVATE were sent
        # above or follow; ZooKeeper sends the last seen one here too).
        established = self.phase is LeaderPhase.BROADCAST
        config = (self.verifier if established else self.last_seen).config_string().encode()
        self._out.send(
            peer.conn, zp.packet(PacketType.NEWLEADER, zp.make_zxid(self.epoch, 0), config)
        )
        peer.stage = _Stage.SYNC
        peer.forwarding = True

    def _on_newleader_ack(self, peer: _Peer, pkt: QuorumPacket, now_ms: int) -> None:
        assert self.epoch is not None
        if pkt.zxid != zp.make_zxid(self.epoch, 0):
            self._drop(peer, f"NEWLEADER ACK for {zp.zxid_str(pkt.zxid)}, another epoch")
            return
        peer.stage = _Stage.RUNNING
        # Until UPTODATE a learner only waits (it ignores pings): keep the initLimit bound
        # then, and syncLimit once broadcasting (LearnerHandler's tickOfNextAckDeadline).
        established = self.phase is LeaderPhase.BROADCAST
        peer.deadline_ms = now_ms + (self.config.sync_ms if established else self.config.init_ms)
        # By id, as _connecting: an observer's NEWLEADER ACK vouches for our whole history
        # (observers get all of it before NEWLEADER: it is committed then).
        self._newleader_acks.add(peer.sid)
        if self.phase is LeaderPhase.BROADCAST:
            self._out.send(peer.conn, zp.packet(PacketType.UPTODATE, zp.NO_ZXID))
        else:
            self._maybe_establish()

    def _maybe_establish(self) -> None:
        if self.phase is not LeaderPhase.SYNCHRONIZATION:
            return
        if self.my_sid not in self._newleader_acks:
            return
        if not self._has_all_quorums(self._newleader_acks):
            return
        assert self.epoch is not None
        self.phase = LeaderPhase.BROADCAST
        self.committed = self.last_logged
        self.last_proposed = zp.make_zxid(self.epoch, 0)
        for entry in self._history:
            if entry.zxid > self.applied:
                self._out.apply(ApplyTxn(entry))
                self.applied = entry.zxid
        log.info(
            "leader %d: established epoch %d at %s", self.my_sid, self.epoch, hex(self.committed)
        )
        self._out.notice(Established(self.epoch, self.committed))
        for peer in self._peers.values():
            if peer.stage is _Stage.RUNNING:
                self._out.send(peer.conn, zp.packet(PacketType.UPTODATE, zp.NO_ZXID))
        if self.config.reconfig_enabled and self.last_seen.version > self.verifier.version:
            # startZkServer: the config NEWLEADER carried is active now (ZOOKEEPER-1324).
            new = self.last_seen
            self._activate(new, self._designated_leader(new, self._newleader_acks), True)

    # -- broadcast ----------------------------------------------------------------------

    def _on_running(self, peer: _Peer, pkt: QuorumPacket) -> None:
        t = pkt.type
        if t == PacketType.ACK:
            if peer.voter and zp.counter_of(pkt.zxid) != 0 and self._allowed_to_commit:
                prop = self._outstanding.get(pkt.zxid)
                if prop is not None:
                    prop.acks.add(peer.sid)
                    self._try_commit()
        elif t == PacketType.PING:
            for session_id, timeout in zp.decode_touches(pkt.data):
                self._out.notice(Touch(peer.sid, session_id, timeout))
        elif t == PacketType.REVALIDATE:
            session_id, timeout = zp.decode_revalidate_request(pkt.data)
            self._out.notice(RevalidateAsk(peer.conn, session_id, timeout, peer.sid))
        elif t == PacketType.REQUEST:
            self._out.notice(LearnerRequest(peer.conn, peer.sid, zp.decode_request(pkt)))
        else:
            log.warning("leader %d: unexpected packet %d from %d", self.my_sid, t, peer.sid)

    def _try_commit(self) -> None:
        # Commit strictly in zxid order: only the oldest outstanding proposal can commit.
        while self._outstanding and self.phase is LeaderPhase.BROADCAST and self._allowed_to_commit:
            zxid, prop = next(iter(self._outstanding.items()))
            if not prop.has_all_quorums():
                return
            del self._outstanding[zxid]
            assert zxid > self.committed, (zxid, self.committed)
            self.committed = zxid
            designated: int | None = None
            if prop.entry.hdr.type == _RECONFIG:
                designated = self._designated_leader(prop.verifiers[-1], prop.acks)
                commit = zp.commit_and_activate(zxid, designated)
            else:
                commit = zp.packet(PacketType.COMMIT, zxid)
            # INFORM carries the whole txn: built only when an observer is there to get it.
            info: QuorumPacket | None = None
            for peer in self._peers.values():
                if not peer.forwarding:
                    continue
                if peer.observer:
                    if info is None:
                        info = (
                            zp.inform(prop.entry)
                            if designated is None
                            else zp.inform_and_activate(prop.entry, designated)
                        )
                    self._out.send(peer.conn, info)
                else:
                    self._out.send(peer.conn, commit)
            self._out.apply(ApplyTxn(prop.entry))
            self.applied = zxid
            if designated is not None:
                self._activate(prop.verifiers[-1], designated)
            if self._pending_syncs:
                for key in [k for k in self._pending_syncs if k <= zxid]:
                    for conn in self._pending_syncs.pop(key):
                        if conn in self._peers:
                            self._out.send(conn, zp.packet(PacketType.SYNC, 0))

    # -- reconfig -------------------------------------------------------------------------

    def _verifiers(self) -> tuple[QuorumVerifier, ...]:
        """The configs whose quorums a decision needs now (both while a reconfig is pending)."""
        if self.last_seen.version > self.verifier.version:
            return (self.verifier, self.last_seen)
        return (self.verifier,)

    def _has_all_quorums(self, ids: set[int]) -> bool:
        return all(v.contains_quorum(ids) for v in self._verifiers())

    def is_quorum_synced(self, verifier: QuorumVerifier) -> bool:
        """Leader.isQuorumSynced: a quorum of `verifier` is us (if we vote in it) and
        followers that are synced and running (observers never ack, so never count)."""
        ids = {self.my_sid} if verifier.is_voter(self.my_sid) else set()
        for p in self._peers.values():
            if p.stage is _Stage.RUNNING and p.voter and p.forwarding:
                ids.add(p.sid)
        return verifier.contains_quorum(ids)

    def plan_reconfig(self, ask: ReconfigAsk, zxid: int) -> ReconfigPlan:
        """The leader's checks of a reconfig request (quorum/reconfig.py)."""
        return plan_reconfig(
            ask,
            zxid,
            active=self.verifier,
            last_seen=self.last_seen,
            standalone_enabled=self.config.standalone_enabled,
            quorum_synced=self.is_quorum_synced,
        )

    def reconfig_port(self, req: ReconfigRequest, zxid: int) -> tuple[int, bytes]:
        """`plan_reconfig` in the shape server.prep_ops.PrepConfig.reconfig takes."""
        ask = ReconfigAsk(
            req.joining_servers, req.leaving_servers, req.new_members, req.cur_config_id
        )
        plan = self.plan_reconfig(ask, zxid)
        if plan.err or plan.verifier is None:
            log.info(
                "leader %d: reconfig refused (%s): %s", self.my_sid, plan.err.name, plan.reason
            )
            return int(plan.err), b""
        return 0, plan.verifier.config_string().encode()

    def _designated_leader(self, new: QuorumVerifier, acks: set[int]) -> int:
        """Leader.getDesignatedLeader: us if we still vote in the new config (same quorum
        address); else, of the new config's voters that acked the reconfig (or NEWLEADER),
        the one that acked the longest run of the proposals after it (the most up to date)."""
        mine, old_me = new.server(self.my_sid), self.verifier.server(self.my_sid)
        if (
            mine is not None
            and new.is_voter(self.my_sid)
            and old_me is not None
            and (mine.host, mine.quorum_port) == (old_me.host, old_me.quorum_port)
        ):
            return self.my_sid
        candidates = sorted(new.voters.intersection(acks) - {self.my_sid})
        assert candidates, "a committed reconfig has acks from a quorum of its config"
        best = candidates[0]
        for later in self._outstanding.values():
            candidates = [c for c in candidates if c in later.acks]
            if not candidates:
                break
            best = candidates[0]
        return best

    def _activate(
        self, verifier: QuorumVerifier, designated: int | None = None, init_node: bool = False
    ) -> None:
        log.info(
            "leader %d: config version %#x active: %s",
            self.my_sid,
            verifier.version,
            verifier.config_string().replace("\n", " "),
        )
        self.verifier = verifier
        if verifier.version > self.last_seen.version:
            self.last_seen = verifier
        self._out.notice(ActivateConfig(verifier, designated, init_node))
        if designated is not None and designated != self.my_sid:
            # allowedToCommit = false: the new config's leader takes over. We leave now;
            # our learners see COMMITANDACTIVATE name another leader and elect again.
            self._allowed_to_commit = False
            self._stop(f"reconfig designated leader {designated} for the new config")

    def _trim_history(self) -> None:
        # Keep commit_log_count committed txns for DIFF; never drop what the tree (and so a
        # snapshot) does not yet contain, nor anything outstanding.
        keep = self.config.commit_log_count + len(self._outstanding)
        while len(self._history) > keep and self._history[0].zxid <= self._applied_done:
            self._base = self._history.popleft().zxid

    # -- helpers --------------------------------------------------------------------------

    def _drop(self, peer: _Peer, reason: str) -> None:
        log.warning(
            "leader %d: dropping learner %d (conn %d): %s", self.my_sid, peer.sid, peer.conn, reason
        )
        self._out.close(peer.conn)
        self.disconnected(peer.conn)

    def _stop(self, reason: str) -> None:
        log.warning("leader %d: stops leading: %s", self.my_sid, reason)
        self.phase = LeaderPhase.STOPPED
        for conn in list(self._peers):
            self._out.close(conn)
        self._peers.clear()
        self._by_sid.clear()
        self._out.stop(reason)

    def learners(self) -> dict[int, str]:
        """sid -> handshake stage, for status output and tests."""
        return {p.sid: p.stage.name for p in self._peers.values() if p.sid >= 0}

    @property
    def history_base(self) -> int:
        return self._base

    def history(self) -> list[TxnEntry]:
        return list(self._history)
