"""Glue between a Zab node's Ready and the ensemble core (pure; used by the peer runner and
by tests that run whole ensembles in one process).

server/ may not import quorum/, so the ensemble core talks to Zab through two small
protocols (server.ensemble_core.LeaderPort/LearnerPort); the adapters here implement them
over quorum's Leader and Learner. `feed_core` hands the parts of a Ready that concern the
core (committed txns, notices) to it, in the Ready's order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

from corral.proto.records import Id, TxnHeader
from corral.quorum import zab_packets as zp
from corral.quorum.follower import Learner
from corral.quorum.leader import Leader, ZxidRollover
from corral.quorum.ready import (
    ApplyOp,
    ApplyTxn,
    LearnerRequest,
    LoadSnapshot,
    Notice,
    Ready,
    RevalidateAsk,
    RevalidateResult,
    SyncDone,
    Touch,
)
from corral.quorum.zab_packets import ForwardedRequest
from corral.server.core import Output
from corral.server.ensemble_core import EnsembleCore
from corral.tree.datatree import DataTree
from corral.tree.txn import TxnRecord, decode_txn

__all__ = [
    "LeaderAdapter",
    "LearnerAdapter",
    "apply_to_tree",
    "feed_applies",
    "feed_core",
    "feed_notices",
]

log = logging.getLogger(__name__)


def _nothing() -> None:
    pass


class LeaderAdapter:
    """server.ensemble_core.LeaderPort over a quorum Leader. `queued` is called whenever
    the leader got work from the core (its Ready must then be taken).

    `soft_max` (ZooKeeper's globalOutstandingLimit) is where the core stops taking requests:
    below the Leader's own hard bound (ZabConfig.outstanding_max), so that what the core
    proposes without asking (a session per handshake, expiries) never hits the hard one.
    """

    def __init__(
        self, leader: Leader, queued: Callable[[], None] = _nothing, soft_max: int | None = None
    ) -> None:
        self.node = leader
        self.queued = queued
        self.soft_max = soft_max

    def next_zxid(self) -> int:
        return self.node.next_zxid()

    def can_propose(self) -> bool:
        node = self.node
        if not node.can_propose():
            return False
        if self.soft_max is None:
            return True
        return outstanding_proposals(node.last_proposed, node.committed) < self.soft_max

    def propose(self, hdr: TxnHeader, txn: bytes) -> object:
        self.queued()
        try:
            return self.node.propose(hdr, txn)
        except ZxidRollover:
            # The leader stopped itself (Ready.stop follows): the term and its core end,
            # and the next leader starts a new epoch.
            log.warning("zxid counter exhausted at %#x: a new epoch is needed", hdr.zxid)
            return None

    def revalidated(self, conn: int, session_id: int, valid: bool) -> None:
        self.queued()
        self.node.revalidated(conn, session_id, valid)

    def sync(self, conn: int) -> None:
        self.queued()
        self.node.sync(conn)


class LearnerAdapter:
    """server.ensemble_core.LearnerPort over a quorum Learner (`queued` as for the leader)."""

    def __init__(self, learner: Learner, queued: Callable[[], None] = _nothing) -> None:
        self.node = learner
        self.queued = queued

    @property
    def observer(self) -> bool:
        return self.node.observer

    def forward(
        self, session_id: int, cxid: int, op: int, request: bytes, authinfo: tuple[Id, ...]
    ) -> None:
        self.queued()
        self.node.forward(ForwardedRequest(session_id, cxid, op, request, authinfo))

    def touch(self, session_id: int, timeout_ms: int) -> None:
        self.node.touch(session_id, timeout_ms)  # goes out with the next PING reply

    def revalidate(self, session_id: int, timeout_ms: int) -> None:
        self.queued()
        self.node.revalidate(session_id, timeout_ms)


def outstanding_proposals(last_proposed: int, committed: int) -> int:
    """Proposals not yet committed. Zxids of one epoch are consecutive; a commit point from
    an earlier epoch (nothing committed yet in this one) counts from the epoch's start."""
    epoch_start = zp.make_zxid(zp.epoch_of(last_proposed), 0)
    return last_proposed - max(committed, epoch_start)


def apply_to_tree(tree: DataTree, op: ApplyTxn) -> None:
    """Apply a committed txn with no core serving (during sync, before UPTODATE)."""
    hdr = op.entry.hdr
    txn = decode_txn(hdr.type, op.entry.txn)[0]
    # None only for a bodiless closeSession of an old log, which apply_txn accepts.
    tree.apply_txn(hdr, txn)


def feed_core(core: EnsembleCore, ready: Ready, now_ms: int, wall_ms: int) -> Iterator[Output]:
    """Give the core the Ready's committed txns, then its notices; yields each Output,
    which the caller must perform before taking the next one (the core reuses it)."""
    yield from feed_applies(core, ready.apply, now_ms, wall_ms)
    yield from feed_notices(core, ready.notices, now_ms, wall_ms)


def feed_applies(
    core: EnsembleCore, applies: Sequence[ApplyOp], now_ms: int, wall_ms: int
) -> Iterator[Output]:
    """The committed txns of a Ready, as one batch (see feed_core)."""
    batch: list[tuple[TxnHeader, bytes, TxnRecord | None]] = []
    for op in applies:
        if isinstance(op, ApplyTxn):
            entry = op.entry
            batch.append((entry.hdr, entry.txn, entry.record))
        else:
            assert isinstance(op, LoadSnapshot)
            raise AssertionError("a snapshot to load while serving clients")
    if batch:
        yield core.apply_committed(batch, now_ms, wall_ms)


def feed_notices(
    core: EnsembleCore, notices: Sequence[Notice], now_ms: int, wall_ms: int
) -> Iterator[Output]:
    """The notices of a Ready for the core, in order (see feed_core)."""
    for n in notices:
        if isinstance(n, LearnerRequest):
            req = n.request
            yield core.learner_request(
                n.conn,
                req.session_id,
                req.cxid,
                req.type,
                req.request,
                req.authinfo,
                now_ms,
                wall_ms,
                owner=n.sid,
            )
        elif isinstance(n, Touch):
            yield core.touched(n.session_id, n.timeout_ms, now_ms, wall_ms)
        elif isinstance(n, RevalidateAsk):
            yield core.revalidate_ask(
                n.conn, n.session_id, n.timeout_ms, now_ms, wall_ms, owner=n.sid
            )
        elif isinstance(n, RevalidateResult):
            yield core.revalidate_result(n.session_id, n.valid, now_ms, wall_ms)
        elif isinstance(n, SyncDone):
            yield core.sync_done(now_ms, wall_ms)
        # Established: the runner built this core because of it.
