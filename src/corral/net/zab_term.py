"""One Zab term of an ensemble member: the Zab node, its Ready pump, timers, and clients.

`LeaderTerm` runs a Zab Leader on the quorum port (learners dial in); `LearnerTerm` a Zab
Learner dialled to the leader's quorum port. Each performs its node's Ready in the order
ready.py prescribes: `send` at once; `persist` in order through the store's writer thread,
which keeps that order (txns with group commit; the epoch files; a TRUNC's log truncation;
a SNAP's snapshot file); `send_after_persist` once all of that is durable; then committed
txns to the tree (a SNAP replaces the tree; a TRUNC below the tree rebuilds it from snapshot
and log), through the ensemble core while serving (which answers the clients); notices;
closes; `advance`. Clients are served only while the term is established (from Zab's
`Established` until the node stops): the client listener is opened then, and closed with
every client connection when the term ends.

A Zab or core exception is a broken invariant: the whole server stops (`Peer.fail`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from corral.net.quorum_transport import LearnerListener, PacketStream, connect_learner
from corral.net.runner import ServerState, _listen, _x509_ids, freeze_startup_objects
from corral.net.server import ClientServer, monotonic_ms, wall_ms
from corral.net.zab_bridge import (
    LeaderAdapter,
    LearnerAdapter,
    apply_to_tree,
    feed_applies,
    feed_core,
    feed_notices,
)
from corral.proto.records import QuorumPacket, TxnHeader
from corral.quorum.follower import Learner
from corral.quorum.leader import Leader
from corral.quorum.ready import (
    ActivateConfig,
    AppendTxn,
    ApplyTxn,
    ConnClosed,
    Established,
    Ready,
    SaveSnapshot,
    SeenConfig,
    SetAcceptedEpoch,
    SetCurrentEpoch,
    TruncateLog,
)
from corral.quorum.zab_packets import TxnEntry
from corral.server.ensemble_core import EnsembleCore
from corral.store.database import Database, NeedsSnapshotError
from corral.tree.datatree import DataTree
from corral.tree.znode import ZNode

if TYPE_CHECKING:
    from corral.net.peer_runner import Peer

__all__ = ["LeaderTerm", "LearnerTerm", "Term"]

log = logging.getLogger(__name__)

# How often the Zab timers are looked at (deadlines are exact; this is the resolution).
TIMER_RESOLUTION_S = 0.05
SHUTDOWN_CLOSE_TIMEOUT_S = 5.0


class _TermFailed(Exception):
    """A step of this term failed in a way that ends only the term (back to LOOKING)."""


class _NoLog:
    """The ensemble core never persists by itself: Zab does (TxnSink for ClientServer)."""

    def append(self, hdr: TxnHeader, txn: bytes) -> None:
        raise AssertionError("an ensemble core asked to log a txn directly")


class Term:
    """One Zab term: the node, its Ready pump, its timers and (once established) clients."""

    node: Leader | Learner

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.wake = asyncio.Event()
        self.core: EnsembleCore | None = None
        self.clients: ClientServer | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.stopped: asyncio.Future[str] = peer.loop.create_future()
        # While the pump performs a Ready: the destinations it still owes a message sent
        # after persist (early sends to them must wait: FIFO). None while it is idle.
        self._blocked: frozenset[int] | None = None
        self._early_pending = False

    def kick(self) -> None:
        self.wake.set()
        if self._blocked is not None and not self._early_pending:
            # The pump is busy (usually waiting for an fsync): what the node queued to send
            # leaves at the end of this loop turn, not after that fsync (ready.py).
            self._early_pending = True
            self.peer.loop.call_soon(self._send_early)

    def _send_early(self) -> None:
        self._early_pending = False
        blocked = self._blocked
        if blocked is None or self.stopped.done():
            return  # the pump takes everything with the next Ready
        for s in self.node.take_sends(blocked):
            self.send(s.to, s.packet, s.snapshot)

    def guarded(self, step: Callable[..., None], *args: object) -> None:
        """Feed the Zab node; an exception from it is a broken invariant: stop the server."""
        if self.stopped.done():
            return
        try:
            step(*args)
        except Exception as exc:
            log.critical("server %d: the Zab node failed", self.peer.my_sid, exc_info=exc)
            self.peer.fail(exc)
            self.end(f"fatal: {exc!r}")
            return
        self.kick()

    async def run(self) -> None:
        await self.start()
        self.tasks.append(asyncio.ensure_future(self._pump()))
        self.tasks.append(asyncio.ensure_future(self._zab_timer()))
        stopper = asyncio.ensure_future(self.peer.stop.wait())
        waits: set[asyncio.Future[object]] = {self.stopped, stopper}  # type: ignore[arg-type]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if self.stopped.done():
            log.warning("server %d: term ended: %s", self.peer.my_sid, self.stopped.result())

    async def start(self) -> None:
        raise NotImplementedError

    def end(self, reason: str) -> None:
        if not self.stopped.done():
            self.stopped.set_result(reason)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(BaseException):
                await task
        await self.close_quorum()
        clients = self.clients
        if clients is not None:
            clients.stop_accepting()
            clients.close_all()
            await clients.wait_no_connections(SHUTDOWN_CLOSE_TIMEOUT_S)
            with contextlib.suppress(Exception):
                await clients.wait_closed()
        self.core = None
        self.clients = None
        self.peer.trim_recent()

    async def close_quorum(self) -> None:
        raise NotImplementedError

    def send(self, to: int, pkt: QuorumPacket, snapshot: bytes | None) -> None:
        raise NotImplementedError

    def drop(self, conn: int) -> None:
        raise NotImplementedError

    def make_core(self) -> EnsembleCore:
        raise NotImplementedError

    # -- the Ready pump --------------------------------------------------------------------------

    async def _pump(self) -> None:
        node = self.node
        try:
            while True:
                await self.wake.wait()
                self.wake.clear()
                while node.has_ready():
                    ready = node.ready()
                    self._blocked = frozenset(s.to for s in ready.send_after_persist)
                    await self._perform(ready)
                    self._blocked = None
                    node.advance(ready)
                    if ready.stop is not None:
                        self.end(ready.stop)
                        return
        except _TermFailed as exc:
            self.end(str(exc))
        except Exception as exc:
            # The store failed, or an invariant broke: the server stops.
            log.critical("server %d: stopping", self.peer.my_sid, exc_info=exc)
            self.peer.fail(exc)
            self.end(f"fatal: {exc!r}")

    async def _perform(self, ready: Ready) -> None:
        peer = self.peer
        for s in ready.send:
            self.send(s.to, s.packet, s.snapshot)
        core, clients = self.core, self.clients
        # Committed txns that are already durable here need not wait for this Ready's own
        # persist (new appends, an fsync away): a node only applies what it has logged, and
        # these are logged. A leader's commits always are (their appends went in an earlier
        # Ready, whose persist completed before this one was taken), and so is a follower's
        # COMMIT for a PROPOSAL it has acked. Waiting cost every reply one more fsync.
        early = core is not None and clients is not None and _durable_applies(ready, peer)
        if early:
            assert core is not None and clients is not None
            for out in feed_applies(core, ready.apply, monotonic_ms(), wall_ms()):
                clients.perform(out)
        await self._persist(ready)
        # A proposed config is recorded (the `.next` file) before the ACK that says we hold
        # its proposal, as ZooKeeper writes it before logging: a crash after the ACK must not
        # leave a logged, acknowledged reconfig without it.
        for n in ready.notices:
            if isinstance(n, SeenConfig):
                peer.see_config(n.verifier)
        for s in ready.send_after_persist:
            self.send(s.to, s.packet, s.snapshot)
        now, wall = monotonic_ms(), wall_ms()
        if core is not None and clients is not None:
            if not early:
                for out in feed_applies(core, ready.apply, now, wall):
                    clients.perform(out)
            for out in feed_notices(core, ready.notices, now, wall):
                clients.perform(out)
        else:
            for ap in ready.apply:
                if isinstance(ap, ApplyTxn):
                    apply_to_tree(peer.tree, ap)
                else:
                    log.info(
                        "server %d: loading the leader's snapshot at %#x", peer.my_sid, ap.zxid
                    )
                    peer.tree = Database.tree_from_stream(
                        ap.zxid, ap.data, empty_for_load=DataTree.empty_for_load, make_node=ZNode
                    )
                    # Our active config, not the leader's snapshot's (ZOOKEEPER-2819).
                    peer.init_config_node()
            for i, n in enumerate(ready.notices):
                if isinstance(n, Established):
                    await self._serve(n)
                    core, clients = self.core, self.clients
                    assert core is not None and clients is not None
                    rest = Ready(notices=ready.notices[i + 1 :])
                    for out in feed_core(core, rest, now, wall):
                        clients.perform(out)
                    break
        for n in ready.notices:
            if isinstance(n, ActivateConfig):
                peer.activate_config(n.verifier, n.init_node)
        for conn in ready.close:
            self.drop(conn)
        if ready.apply:
            # The recent window keeps the applied txns a DIFF may need (commitLogCount) and
            # every unapplied one; without trimming while serving it grew by every txn of a
            # term (hundreds of MB under a sustained write load).
            peer.trim_recent()
            if peer.database is not None:
                peer.database.maybe_snapshot(peer.tree)

    async def _persist(self, ready: Ready) -> None:
        """Ready.persist, in order, all durable on return."""
        peer = self.peer
        db = peer.database
        assert db is not None
        waits: list[asyncio.Future[None]] = []
        last_append = 0
        # Consecutive appends go to the store in one call (one wake-up of its writer thread
        # per run, not per txn; the writer's group commit then covers them with one fsync).
        run: list[TxnEntry] = []
        for op in ready.persist:
            if isinstance(op, AppendTxn):
                run.append(op.entry)
                last_append = op.entry.zxid
                continue
            if run:
                _append_run(peer, db, run)
                run = []
            fut, done = peer.store_op()
            waits.append(fut)
            if isinstance(op, SetAcceptedEpoch):
                db.set_accepted_epoch(op.epoch, on_done=done)
                peer.accepted_epoch = op.epoch
            elif isinstance(op, SetCurrentEpoch):
                db.set_current_epoch(op.epoch, on_done=done)
                peer.current_epoch = op.epoch
            elif isinstance(op, TruncateLog):
                await self._truncate(op.zxid, fut, done)
            else:
                assert isinstance(op, SaveSnapshot)
                db.save_snapshot_stream(op.zxid, op.data, on_done=done)
                peer.recent.clear()
                peer.recent_base = op.zxid
                await fut
                peer.durable_zxid = op.zxid  # the snapshot replaced the whole log
        if run:
            _append_run(peer, db, run)
        if last_append:
            await peer.wait_durable(last_append)
        for fut in waits:
            await fut

    async def _truncate(
        self, zxid: int, fut: asyncio.Future[None], done: Callable[[], None]
    ) -> None:
        peer = self.peer
        db = peer.database
        assert db is not None
        try:
            db.truncate(zxid, on_done=done)
        except NeedsSnapshotError as exc:
            # Nothing changed on disk; the next learner asks its leader for a SNAP.
            peer.needs_snapshot = True
            raise _TermFailed(f"cannot truncate to {zxid:#x}: {exc}") from exc
        await fut
        # Later appends reuse no zxid above the cut (one leader per epoch), but never let a
        # durability mark from before the cut vouch for anything written after it.
        peer.durable_zxid = min(peer.durable_zxid, zxid)
        while peer.recent and peer.recent[-1].zxid > zxid:
            peer.recent.pop()
        peer.recent_base = min(peer.recent_base, zxid)
        if peer.tree.last_zxid > zxid:
            log.warning("server %d: rebuilding the tree at %#x after TRUNC", peer.my_sid, zxid)
            peer.tree = await peer.loop.run_in_executor(
                None,
                lambda: db.rebuild_tree(
                    new_tree=DataTree,
                    empty_for_load=DataTree.empty_for_load,
                    make_node=ZNode,
                    upto=zxid,
                ),
            )
            peer.init_config_node()

    async def _serve(self, n: Established) -> None:
        peer = self.peer
        assert peer.election is not None
        peer.election.update_peer_epoch(n.epoch)
        core = self.make_core()
        assert peer.database is not None
        render: Callable[[int, str], bytes] = _no_words
        clients = ClientServer(
            core,
            _NoLog(),
            lambda conn_id, word: render(conn_id, word),
            max_client_cnxns=peer.config.max_client_cnxns,
            max_cnxns=peer.config.max_cnxns,
            x509_ids=_x509_ids(peer.config),
            # A core exception is a broken invariant: the server stops (DESIGN.md).
            on_crash=self._core_crashed,
        )
        if peer.four_letter is not None:
            render = peer.four_letter(
                ServerState(peer.config, core, peer.database, clients, wall_ms())
            )
        self.core, self.clients = core, clients
        # What the term starts with (the tree, the store, modules) lives on.
        freeze_startup_objects()
        await peer.not_serving.close()
        await _listen(peer.config, clients, peer.tls)
        self.tasks.append(asyncio.ensure_future(self._core_timer()))
        log.info(
            "server %d: serving clients as %s in epoch %d at %#x",
            peer.my_sid,
            core.mode,
            n.epoch,
            n.zxid,
        )

    def _core_crashed(self, exc: BaseException) -> None:
        self.peer.fail(exc)
        self.end(f"the core failed: {exc!r}")

    async def _zab_timer(self) -> None:
        node = self.node
        while True:
            await asyncio.sleep(TIMER_RESOLUTION_S)
            now = monotonic_ms()
            if now >= node.next_deadline():
                self.guarded(node.tick, now)

    async def _core_timer(self) -> None:
        interval = max(self.peer.config.tick_time_ms // 2, 1) / 1000
        while True:
            await asyncio.sleep(interval)
            core, clients = self.core, self.clients
            if (
                core is not None
                and clients is not None
                and monotonic_ms() >= core.next_deadline_ms()
            ):
                clients.tick()
                self.kick()


def _leader_receive_all(leader: Leader, conn: int, pkts: list[QuorumPacket], now: int) -> None:
    receive = leader.receive
    debug = log.isEnabledFor(logging.DEBUG)
    for pkt in pkts:
        if debug:
            log.debug("learner conn %d: packet %d zxid %#x", conn, pkt.type, pkt.zxid)
        receive(conn, pkt, now)


def _learner_receive_all(learner: Learner, pkts: list[QuorumPacket], now: int) -> None:
    receive = learner.receive
    for pkt in pkts:
        receive(pkt, now)


def _durable_applies(ready: Ready, peer: Peer) -> bool:
    """Whether every txn `ready` applies is already durable in our log (they are in zxid
    order: the last one decides)."""
    if not ready.apply:
        return False
    last = ready.apply[-1]
    return isinstance(last, ApplyTxn) and last.entry.zxid <= peer.durable_zxid


def _append_run(peer: Peer, db: Database, run: list[TxnEntry]) -> None:
    """Queue consecutive logged txns in the store, then keep them in the recent window."""
    db.append_many([(e.hdr, e.txn) for e in run])
    peer.recent.extend(run)


def _no_words(_conn: int, _word: str) -> bytes:
    return b""


class LeaderTerm(Term):
    def __init__(self, peer: Peer) -> None:
        super().__init__(peer)
        tree_zxid = peer.tree.last_zxid
        history = list(peer.recent)
        self.node = self.leader = Leader(
            peer.my_sid,
            peer.verifier,
            accepted_epoch=peer.accepted_epoch,
            current_epoch=peer.current_epoch,
            history=history,
            history_base=peer.recent_base,
            tree_zxid=tree_zxid,
            snapshot=lambda: Database.serialize_tree(peer.tree),
            now_ms=monotonic_ms(),
            config=peer.zab_config,
            last_seen=peer.last_seen,
        )
        self.listener = LearnerListener(
            peer.me.host,
            peer.me.quorum_port,
            self._on_packet,
            self._on_closed,
            on_packets=self._on_packets,
        )

    async def start(self) -> None:
        log.info("server %d: LEADING", self.peer.my_sid)
        await self.listener.start()
        self.kick()  # the constructor may have queued the epoch already (a single voter)

    def _on_packet(self, conn: int, pkt: QuorumPacket, snapshot: bytes | None) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("learner conn %d: packet %d zxid %#x", conn, pkt.type, pkt.zxid)
        self.guarded(self.leader.receive, conn, pkt, monotonic_ms())

    def _on_packets(self, conn: int, pkts: list[QuorumPacket]) -> None:
        # One read's packets (mostly ACKs) in one guarded step: one clock read, one kick.
        self.guarded(_leader_receive_all, self.leader, conn, pkts, monotonic_ms())

    def _on_closed(self, conn: int) -> None:
        self.guarded(self.leader.disconnected, conn)

    def send(self, to: int, pkt: QuorumPacket, snapshot: bytes | None) -> None:
        self.listener.send(to, pkt, snapshot)

    def drop(self, conn: int) -> None:
        self.listener.drop(conn)

    async def close_quorum(self) -> None:
        await self.listener.close()

    def make_core(self) -> EnsembleCore:
        peer = self.peer
        return EnsembleCore(
            peer.core_config,
            peer.tree,
            monotonic_ms(),
            wall_ms(),
            peer.secret,
            leader=LeaderAdapter(
                self.leader, self.kick, soft_max=peer.config.global_outstanding_limit
            ),
            reconfig=self.leader.reconfig_port,
        )


class LearnerTerm(Term):
    def __init__(self, peer: Peer, leader_sid: int) -> None:
        super().__init__(peer)
        self.leader_sid = leader_sid
        tree_zxid = peer.tree.last_zxid
        observer = peer.observer
        self.node = self.learner = Learner(
            peer.my_sid,
            leader_sid,
            observer=observer,
            accepted_epoch=peer.accepted_epoch,
            current_epoch=peer.current_epoch,
            last_logged_zxid=peer.last_logged,
            tree_zxid=tree_zxid,
            unapplied=[e for e in peer.recent if e.zxid > tree_zxid],
            now_ms=monotonic_ms(),
            snapshot_zxid=max(peer.snapshot_zxid, 0),
            needs_snapshot=peer.needs_snapshot,
            config=peer.zab_config,
            verifier=peer.verifier,
        )
        peer.needs_snapshot = False
        self.stream: PacketStream | None = None

    async def start(self) -> None:
        peer = self.peer
        leader = peer.verifier.server(self.leader_sid) or peer.last_seen.server(self.leader_sid)
        if leader is None:
            self.end(f"leader {self.leader_sid} is in no config we know")
            return
        log.info("server %d: %s leader %d", peer.my_sid, peer.state.name, self.leader_sid)
        # The leader opens its quorum port just after deciding, maybe after us: retry
        # every 100 ms (ZooKeeper's leaderConnectDelayDuringRetryMs) for as long as Zab
        # gives a learner to connect (initLimit ticks). Retrying only once a tick cost
        # ~2 s of failover whenever the first attempt beat the leader's listener.
        retry_ms = 100
        attempts = max(1, peer.zab_config.init_limit * peer.zab_config.tick_ms // retry_ms)
        self.stream = await connect_learner(
            leader.host,
            leader.quorum_port,
            self.leader_sid,
            self._on_packet,
            self._on_closed,
            attempts=attempts,
            delay_s=retry_ms / 1000,
            on_packets=self._on_packets,
        )
        if self.stream is None:
            self.end(f"could not connect to leader {self.leader_sid}")
            return
        self.learner.start()
        self.kick()

    def _on_packet(self, conn: int, pkt: QuorumPacket, snapshot: bytes | None) -> None:
        # Learner.step(PacketIn(...)) without building the PacketIn (one per packet).
        self.guarded(self.learner.receive, pkt, monotonic_ms(), snapshot)

    def _on_packets(self, _conn: int, pkts: list[QuorumPacket]) -> None:
        # One read's PROPOSALs and COMMITs in one guarded step: one clock read, one kick.
        self.guarded(_learner_receive_all, self.learner, pkts, monotonic_ms())

    def _on_closed(self, conn: int) -> None:
        self.guarded(self.learner.step, ConnClosed(conn))

    def send(self, to: int, pkt: QuorumPacket, snapshot: bytes | None) -> None:
        if self.stream is not None:
            self.stream.send(pkt, snapshot)

    def drop(self, conn: int) -> None:
        if self.stream is not None:
            self.stream.close()

    async def close_quorum(self) -> None:
        if self.stream is not None:
            self.stream.close()
        # A TRUNC this learner could not do asks the next one for a SNAP.
        self.peer.needs_snapshot = self.peer.needs_snapshot or self.learner.needs_snapshot

    def make_core(self) -> EnsembleCore:
        peer = self.peer
        return EnsembleCore(
            peer.core_config,
            peer.tree,
            monotonic_ms(),
            wall_ms(),
            peer.secret,
            learner=LearnerAdapter(self.learner, self.kick),
        )
