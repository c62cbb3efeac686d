"""The Ready record: everything a Zab node asks its runner to do, in the order it must be done.

A Zab node (leader.Leader, follower.Learner) never does IO. Inputs go in (`step`, `tick`,
`propose`, ...); effects pile up in a ReadyBuilder; the runner takes them as one frozen
`Ready` with `node.ready()`, performs it, and then calls `node.advance(ready)`. At most one
Ready is in flight: the runner asks for the next one only after advancing the previous.

The runner performs a Ready in this order:

1. `send` may go out at once, even while `persist` is still being written (a leader's
   PROPOSAL travels while its own fsync runs). Nothing in `send` vouches for local state.
2. `persist`: each operation durable (fsynced) before any later one is considered written.
   Consecutive AppendTxn may share one fsync (group commit). Epoch files are ZooKeeper's
   write-tmp, fsync, rename.
3. `send_after_persist`: only once all of `persist` is durable. ACK, ACKEPOCH and the
   NEWLEADER ACK always land here (the builder refuses them in `send`): an acknowledgement
   can only leave after the state it vouches for is on disk (ZOOKEEPER-3911, -4643, -4646).
   Once a destination has a message here, the builder routes every later message to that
   destination here too, so per-connection FIFO order is kept by construction.
4. `apply`: committed txns (and a snapshot to load) for the tree, in zxid order, after
   `persist` (a node only applies what it has logged).
5. `notices` for the server core (learner requests, session touches, revalidations,
   sync completions, "established"), then `close` (connections to drop), then `stop`
   (the node has given up: the runner closes its quorum connections and goes LOOKING).

A crash at any point loses only what was not yet durable; the protocol is built so that
this is always safe.

Since `send` never waits for anything, the runner may also take the sends queued after the
Ready it is performing before that Ready is done (`node.take_sends(blocked)`): a leader's
PROPOSALs and COMMITs then leave at once instead of after its own fsync. Only FIFO order
limits this: sends to a destination the Ready being performed still owes a
`send_after_persist` message stay queued, in order, for the next Ready.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from corral.proto.jute import fast_frozen_init
from corral.proto.records import QuorumPacket
from corral.quorum.verifier import QuorumVerifier
from corral.quorum.zab_packets import ForwardedRequest, PacketType, TxnEntry

# --- inputs (what `step` takes) --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PacketIn:
    """A packet arrived on a quorum connection (`snapshot`: the bytes after a SNAP)."""

    conn: int
    packet: QuorumPacket
    now_ms: int
    snapshot: bytes | None = None


@dataclass(frozen=True, slots=True)
class ConnClosed:
    """A quorum connection closed (the peer went away, or the runner dropped it)."""

    conn: int


ZabInput = PacketIn | ConnClosed

# --- persist operations --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AppendTxn:
    """Append this txn to the txn log (zxids strictly increase in a log)."""

    entry: TxnEntry


@dataclass(frozen=True, slots=True)
class TruncateLog:
    """Remove every logged txn with zxid > `zxid` (the learner got TRUNC).

    If the tree already holds txns past `zxid` (a restart replayed an uncommitted tail),
    the runner rebuilds it from the snapshot and the truncated log, as ZooKeeper's
    ZKDatabase.truncateLog does. The learner refuses a target below its snapshot.
    """

    zxid: int


@dataclass(frozen=True, slots=True)
class SaveSnapshot:
    """Write this snapshot (from SNAP) as the node's newest; log txns <= zxid are superseded
    and any logged txn > zxid is discarded (the leader's history replaces ours)."""

    zxid: int
    data: bytes


@dataclass(frozen=True, slots=True)
class SetAcceptedEpoch:
    """Write the acceptedEpoch file (before ACKEPOCH / LEADERINFO depend on it)."""

    epoch: int


@dataclass(frozen=True, slots=True)
class SetCurrentEpoch:
    """Write the currentEpoch file (before the NEWLEADER ACK depends on it)."""

    epoch: int


PersistOp = AppendTxn | TruncateLog | SaveSnapshot | SetAcceptedEpoch | SetCurrentEpoch

# --- apply operations ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApplyTxn:
    """Apply this committed txn to the tree (DataTree.apply_txn), then reply to its client."""

    entry: TxnEntry


@dataclass(frozen=True, slots=True)
class LoadSnapshot:
    """Replace the tree with this snapshot (the learner got SNAP)."""

    zxid: int
    data: bytes


ApplyOp = ApplyTxn | LoadSnapshot

# --- sends ---------------------------------------------------------------------------


# A leader builds several per proposal: the fast frozen __init__ (proto.jute) halves that.
@fast_frozen_init
@dataclass(frozen=True, slots=True)
class Send:
    """Write `packet` to connection `to`; a SNAP packet is followed by `snapshot`
    (zab_packets.snapshot_trailer gives the exact bytes)."""

    to: int
    packet: QuorumPacket
    snapshot: bytes | None = None


# --- notices for the server core -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Established:
    """Leader: a quorum acked NEWLEADER; learner: UPTODATE arrived. Serve clients now."""

    epoch: int
    zxid: int


@fast_frozen_init  # one per forwarded request on a leader
@dataclass(frozen=True, slots=True)
class LearnerRequest:
    """Leader: a learner forwarded this client request (or a sync, type OpCode.SYNC)."""

    conn: int
    sid: int
    request: ForwardedRequest


@dataclass(frozen=True, slots=True)
class Touch:
    """Leader: a learner's client kept this session alive (from its PING reply)."""

    sid: int
    session_id: int
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class RevalidateAsk:
    """Leader: a learner asks whether this session is valid; answer with
    `Leader.revalidated(conn, session_id, valid)`. `sid` is the learner's server id: a
    valid session is owned by that learner from now on (its old server's requests fail
    with SESSIONMOVED)."""

    conn: int
    session_id: int
    timeout_ms: int
    sid: int = -1


@dataclass(frozen=True, slots=True)
class RevalidateResult:
    """Learner: the leader's answer to `Learner.revalidate`."""

    session_id: int
    valid: bool


@dataclass(frozen=True, slots=True)
class SyncDone:
    """Learner: the leader's SYNC arrived; every txn committed before the client's sync
    has been applied, so the oldest pending sync can be answered."""


@dataclass(frozen=True, slots=True)
class SeenConfig:
    """A reconfig was proposed (the leader proposed it, or a learner logged its PROPOSAL, or
    NEWLEADER carried it): QuorumPeer.setLastSeenQuorumVerifier. The runner keeps it as the
    config a next leader must complete and writes it as `<zoo.cfg>.dynamic.next`."""

    verifier: QuorumVerifier


@dataclass(frozen=True, slots=True)
class ActivateConfig:
    """A config became active on this node (QuorumPeer.processReconfig): the leader committed
    a reconfig, a learner got COMMITANDACTIVATE/INFORMANDACTIVATE, or an UPTODATE activated
    the config NEWLEADER carried (a new leader's first version, or a pending reconfig).

    The runner writes `<zoo.cfg>.dynamic.<version>` and points zoo.cfg at it, switches its
    election and transports to the new membership and, with `init_node` (no txn carried
    it), puts its text in /zookeeper/config. `designated_leader` is the leader the old
    leader named for the new config (None when none was named)."""

    verifier: QuorumVerifier
    designated_leader: int | None = None
    init_node: bool = False


Notice = (
    Established
    | LearnerRequest
    | Touch
    | RevalidateAsk
    | RevalidateResult
    | SyncDone
    | SeenConfig
    | ActivateConfig
)

# Packets that vouch for durable state: never in `send`.
_AFTER_PERSIST_ONLY = frozenset({PacketType.ACK, PacketType.ACKEPOCH})


@dataclass(frozen=True, slots=True)
class Ready:
    """One batch of effects; see the module docstring for the order."""

    persist: tuple[PersistOp, ...] = ()
    send: tuple[Send, ...] = ()
    send_after_persist: tuple[Send, ...] = ()
    apply: tuple[ApplyOp, ...] = ()
    notices: tuple[Notice, ...] = ()
    close: tuple[int, ...] = ()
    stop: str | None = None

    def is_empty(self) -> bool:
        return not (
            self.persist
            or self.send
            or self.send_after_persist
            or self.apply
            or self.notices
            or self.close
            or self.stop is not None
        )


@dataclass(slots=True)
class ReadyBuilder:
    """Collects effects between two `take()`s, enforcing the rules the Ready promises."""

    _persist: list[PersistOp] = field(default_factory=list)
    _send: list[Send] = field(default_factory=list)
    _after: list[Send] = field(default_factory=list)
    _apply: list[ApplyOp] = field(default_factory=list)
    _notices: list[Notice] = field(default_factory=list)
    _close: list[int] = field(default_factory=list)
    _stop: str | None = None
    # Destinations that already have a message waiting for persist: FIFO forces the rest.
    _deferred: set[int] = field(default_factory=set)

    def persist(self, op: PersistOp) -> None:
        self._persist.append(op)

    def send(self, to: int, pkt: QuorumPacket, snapshot: bytes | None = None) -> None:
        """Send now, unless FIFO order to `to` already waits on persist."""
        if pkt.type in _AFTER_PERSIST_ONLY:
            raise AssertionError(f"packet type {pkt.type} vouches for disk state")
        if to in self._deferred:
            self._after.append(Send(to, pkt, snapshot))
        else:
            self._send.append(Send(to, pkt, snapshot))

    def send_after_persist(self, to: int, pkt: QuorumPacket) -> None:
        self._deferred.add(to)
        self._after.append(Send(to, pkt))

    def apply(self, op: ApplyOp) -> None:
        self._apply.append(op)

    def notice(self, n: Notice) -> None:
        self._notices.append(n)

    def close(self, conn: int) -> None:
        if conn not in self._close:
            self._close.append(conn)

    def stop(self, reason: str) -> None:
        if self._stop is None:
            self._stop = reason

    def take_sends(self, blocked: AbstractSet[int] = frozenset()) -> tuple[Send, ...]:
        """Take the sends queued so far, except those to a destination in `blocked` (they
        stay, in order, for the next `take()`); see the module docstring."""
        queued = self._send
        if not queued:
            return ()
        if not blocked:
            out = tuple(queued)
            queued.clear()
            return out
        now = tuple(s for s in queued if s.to not in blocked)
        if now:
            queued[:] = [s for s in queued if s.to in blocked]
        return now

    def has_output(self) -> bool:
        return bool(
            self._persist
            or self._send
            or self._after
            or self._apply
            or self._notices
            or self._close
            or self._stop is not None
        )

    def take(self) -> Ready:
        ready = Ready(
            tuple(self._persist),
            tuple(self._send),
            tuple(self._after),
            tuple(self._apply),
            tuple(self._notices),
            tuple(self._close),
            self._stop,
        )
        self._persist.clear()
        self._send.clear()
        self._after.clear()
        self._apply.clear()
        self._notices.clear()
        self._close.clear()
        self._deferred.clear()
        # `stop` is sticky: a stopped node keeps saying so.
        return ready


@dataclass(frozen=True, slots=True)
class ZabConfig:
    """Timing and bounds shared by leader and learners (zoo.cfg's tickTime, initLimit,
    syncLimit; ZooKeeper's commitLogCount)."""

    tick_ms: int = 2000
    init_limit: int = 10
    sync_limit: int = 5
    # Committed proposals the leader keeps in memory to sync learners by DIFF.
    commit_log_count: int = 500
    # Proposals the leader may have outstanding (proposed, not committed) at once.
    outstanding_max: int = 1000
    # zoo.cfg's reconfigEnabled: configs are versioned, activated and changed by reconfig.
    reconfig_enabled: bool = False
    # zoo.cfg's standaloneEnabled: a reconfig must then leave at least 2 voters.
    standalone_enabled: bool = True

    def __post_init__(self) -> None:
        assert self.tick_ms > 0 and self.init_limit > 0 and self.sync_limit > 0
        assert self.commit_log_count > 0 and self.outstanding_max > 0

    @property
    def init_ms(self) -> int:
        return self.tick_ms * self.init_limit

    @property
    def sync_ms(self) -> int:
        return self.tick_ms * self.sync_limit
