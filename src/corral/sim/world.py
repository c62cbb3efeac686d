"""The simulation: a seeded scheduler and virtual clock driving N servers, the network,
the disks, client traffic and faults, with the invariants checked after every step.

Each server runs the project's pure cores exactly as a real runner would:
FastLeaderElection on the election channels (notifications through the wire codec), then
a Leader or a Learner on a quorum connection (every packet encoded and decoded, SNAP
followed by its snapshot stream), performing each Ready in the contract's order: `send`,
`persist` (queued on the fake disk, durable at the fsync some milliseconds later),
`send_after_persist`, `apply` (DataTree.apply_txn), notices, closes, `advance`, `stop`.
The leader turns client requests into txns with prep_write and a PendingChanges, and
expires sessions from its own tracker, fed by the learners' PING touches.
"""

from __future__ import annotations

import functools
import heapq
import random
import zlib
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from corral.proto import jute
from corral.proto.codes import Err, OpCode
from corral.quorum import zab_packets as zp
from corral.quorum.election import FastLeaderElection, ServerState
from corral.quorum.election import Ready as ElectionReady
from corral.quorum.election_wire import Notification, decode_notification, encode_notification
from corral.quorum.follower import Learner
from corral.quorum.leader import Leader, LeaderPhase, NotLeading, ProposalBacklogFull, ZxidRollover
from corral.quorum.ready import (
    ActivateConfig,
    ApplyTxn,
    ConnClosed,
    Established,
    LearnerRequest,
    LoadSnapshot,
    PacketIn,
    Ready,
    RevalidateAsk,
    RevalidateResult,
    SeenConfig,
    Send,
    Touch,
    TruncateLog,
    ZabConfig,
)
from corral.quorum.verifier import QuorumServer, QuorumVerifier
from corral.quorum.zab_packets import PacketType, TxnEntry
from corral.server.pending import PendingChanges
from corral.server.prep import PrepConfig, prep_write
from corral.sim import clients, faults, workload
from corral.sim.checker import Checker
from corral.sim.disk import Disk
from corral.sim.errors import Violation
from corral.sim.net import TCP_TIMEOUT_MS, Conn, Network
from corral.sim.server import NEVER, Proposed, Server, recover
from corral.sim.treecodec import decode_tree, encode_tree
from corral.sim.workload import Client
from corral.tree.txn import decode_txn

_SYNC_KINDS = {
    int(PacketType.DIFF): "DIFF",
    int(PacketType.TRUNC): "TRUNC",
    int(PacketType.SNAP): "SNAP",
}
_PREP = PrepConfig()
# Reconfig requests: allowed, and by a super user (only skipACL may write /zookeeper/config).
_PREP_RECONFIG = PrepConfig(reconfig_enabled=True, skip_acl=True)


def member(sid: int, observer: bool = False) -> QuorumServer:
    """Server `sid`'s config entry in reconfig runs (with a client address, as the
    statements of a reconfig carry one)."""
    return QuorumServer(
        sid,
        "127.0.0.1",
        2000 + sid,
        3000 + sid,
        observer=observer,
        client=("127.0.0.1", 4000 + sid),
    )


@dataclass
class SimConfig:
    voters: int = 3
    observers: int = 0
    fault_ms: int = 5_000  # how long the fault phase lasts (virtual ms)
    liveness_ms: int = 60_000  # the bound for convergence after healing
    faults: bool = True
    fault_gap_ms: int = 250  # mean time between fault events
    op_gap_ms: int = 12  # mean time between client operations
    clients_max: int = 8
    crash_in_ready: float = 0.0  # chance any Ready is cut by a crash at a random point
    # (n, k): crash the server performing the n-th Ready at its k-th crash point.
    crash_plan: tuple[int, int] | None = None
    keep_minority_down: bool = True  # the liveness phase may leave a minority crashed
    zab: ZabConfig = field(
        default_factory=lambda: ZabConfig(tick_ms=100, init_limit=10, sync_limit=5)
    )
    snap_count: int = 40  # a server snapshots its tree after this many applied txns
    # The crash sweep's scripted faults instead of random ones (see World.script).
    script: bool = False
    # A deliberately broken runner, to show the checks catch that class of bug:
    # "ack-before-fsync" (ZOOKEEPER-3911), "skip-apply" (a learner misses a txn,
    # ZOOKEEPER-4925), "no-session-check" (writes of expired sessions go through),
    # "activate-proposed" (a server activates a reconfig's config when it logs it).
    mutation: str | None = None
    max_notification_ms: int = 3_200
    # reconfigEnabled: configs are versioned, clients send reconfigs (see clients.py), and
    # `pool` more servers start outside the config (joiners), each with a static config of
    # the ensemble plus itself, as ZooKeeper's documentation has a joiner start.
    reconfig: bool = False
    pool: int = 0


# A scheduled action: (time, sequence number, target sid or -1, action). The target's
# events wait while it is paused.
Event = tuple[int, int, int, Callable[[], None]]


class World:
    def __init__(self, seed: int, config: SimConfig) -> None:
        self.seed = seed
        self.config = config
        self.rng = random.Random(seed)
        self.now = 0
        self._events: list[Event] = []
        self._seq = 0
        voters = list(range(1, config.voters + 1))
        observers = list(range(config.voters + 1, config.voters + config.observers + 1))
        n = config.voters + config.observers
        pool = list(range(n + 1, n + config.pool + 1)) if config.reconfig else []
        if config.reconfig:
            self.verifier = QuorumVerifier(
                tuple(member(s, s in observers) for s in voters + observers)
            )
        else:
            self.verifier = QuorumVerifier.of_ids(voters, observers)
        self.net = Network(random.Random(self.rng.getrandbits(64)))
        self.checker = Checker(self.verifier, reconfig=config.reconfig)
        self.stats: Counter[str] = Counter()
        self.trace: deque[str] = deque(maxlen=400)
        self.trace_hash = 0
        self.snapshots: dict[tuple[int, int], list[TxnEntry]] = {}
        self.servers: dict[int, Server] = {}
        for sid in voters + observers + pool:
            disk = Disk(sid, self._snapshot_txns)
            own, observer = self.verifier, sid in observers
            if sid in pool:
                observer = self.rng.random() < 0.3
                own = QuorumVerifier((*self.verifier.servers, member(sid, observer)))
            srv = Server(sid, observer, disk, self._new_fle(sid, own, observer))
            srv.verifier = srv.last_seen = own
            self.servers[sid] = srv
        # Whose disks count for durability: the voters, or everyone when configs change.
        self.voter_servers = (
            list(self.servers.values()) if config.reconfig else [self.servers[s] for s in voters]
        )
        self.clients: dict[int, Client] = {}
        self.next_session = 1
        self.readies = 0
        self.crash_points = 0  # of the planned Ready
        self.crash_plan_phase = ""
        self.faults_on = False
        self.traffic_on = True
        self.ready_log: list[str] | None = None  # the sweep records each Ready's phase
        self.partition_gen = 0
        self.excused: list[int] = []  # healed servers that cannot join the current leader

    # -- scheduling ---------------------------------------------------------------------------

    def at(self, time: int, action: Callable[[], None], target: int = -1) -> None:
        self._seq += 1
        heapq.heappush(self._events, (max(time, self.now), self._seq, target, action))

    def run_until(self, end: int, stop: Callable[[], bool] | None = None) -> bool:
        events = self._events
        servers = self.servers
        check = self.checker.check_durable
        voters = self.voter_servers
        while events and events[0][0] <= end:
            time, _, target, action = heapq.heappop(events)
            if target >= 0:
                resume = servers[target].paused_until
                if resume > time:
                    self._seq += 1
                    heapq.heappush(events, (resume, self._seq, target, action))
                    continue
            self.now = time
            action()
            check(voters)
            if stop is not None and stop():
                return True
        self.now = max(self.now, end)
        return stop() if stop is not None else False

    def note(self, text: str) -> None:
        line = f"{self.now:>7} {text}"
        self.trace.append(line)
        self.trace_hash = zlib.crc32(line.encode(), self.trace_hash)

    def local(self, srv: Server) -> int:
        return self.now + srv.clock_offset

    # -- election -----------------------------------------------------------------------------

    def _new_fle(self, sid: int, verifier: QuorumVerifier, observer: bool) -> FastLeaderElection:
        return FastLeaderElection(
            sid,
            verifier,
            observer=observer,
            reconfig_enabled=self.config.reconfig,
            max_notification_interval_ms=self.config.max_notification_ms,
        )

    def start_looking(self, srv: Server) -> None:
        srv.role = None
        srv.serving = False
        srv.conn = None
        srv.next_session_check = NEVER
        d = srv.disk
        self.note(f"{srv.sid} LOOKING (epoch {d.current_epoch}, {d.last_zxid():#x})")
        self._election(srv, srv.fle.start(self.local(srv), d.last_zxid(), d.current_epoch))

    def _election(self, srv: Server, ready: ElectionReady) -> None:
        if ready.adopt is not None:
            # Before the sends: they go to the adopted config's voters (as the runner).
            self.stats["config_adopted"] += 1
            self.activate_config(srv, ready.adopt, "election")
        for dst, n in ready.sends:
            self._election_send(srv, dst, n)
        if ready.decision is not None:
            self._decided(srv, ready.decision.state, ready.decision.leader)
        self.wake(srv)

    def _election_send(self, srv: Server, dst: int, n: Notification) -> None:
        peer = self.servers[dst]
        if not peer.up or not self.net.can_reach(srv.sid, dst):
            return
        raw = encode_notification(n)
        src, inc, src_inc = srv.sid, peer.incarnation, srv.incarnation

        def deliver() -> None:
            if peer.incarnation != inc or not peer.up or not self.net.can_reach(src, dst):
                return
            if self.servers[src].incarnation != src_inc:
                return  # the sender's process died with its queue
            self.stats["election_msgs"] += 1
            self._election(peer, peer.fle.receive(src, decode_notification(raw), self.local(peer)))

        self.at(self.net.election_time(src, dst, self.now), deliver, dst)

    def _decided(self, srv: Server, state: ServerState, leader_sid: int) -> None:
        d = srv.disk
        assert not d.pending and srv.inflight is None
        cfg = self.config.zab
        now = self.local(srv)
        srv.pending = PendingChanges()
        srv.proposed = {}
        srv.tracker = {}
        srv.closing = set()
        srv.next_session_check = NEVER
        if state is ServerState.LEADING:
            if not srv.config().is_voter(srv.sid):
                raise Violation(
                    f"server {srv.sid} decided LEADING under config {srv.config().version:#x}, "
                    f"where it is not a voter"
                )
            log = d.log_entries()
            base = d.zxids[d.log_start - 1] if d.log_start > 0 else 0
            if len(log) > cfg.commit_log_count:
                base = log[-cfg.commit_log_count - 1].zxid
            base = min(base, srv.tree.last_zxid)
            history = [e for e in log if e.zxid > base]

            def snapshot() -> tuple[int, bytes]:
                data = encode_tree(srv.tree)
                self.snapshots[(srv.tree.last_zxid, zlib.crc32(data))] = list(srv.applied)
                return srv.tree.last_zxid, data

            srv.role = Leader(
                srv.sid,
                srv.config(),
                accepted_epoch=d.accepted_epoch,
                current_epoch=d.current_epoch,
                history=history,
                history_base=base,
                tree_zxid=srv.tree.last_zxid,
                snapshot=snapshot,
                now_ms=now,
                config=cfg,
                last_seen=srv.last_seen if self.config.reconfig else None,
            )
            srv.leader_conns = set()
            self.stats["leaderships"] += 1
            self.note(f"{srv.sid} LEADING (epoch {d.current_epoch}, {d.last_zxid():#x})")
            self.pump(srv)
        else:
            tz = srv.tree.last_zxid
            learner = Learner(
                srv.sid,
                leader_sid,
                observer=srv.observer,
                accepted_epoch=d.accepted_epoch,
                current_epoch=d.current_epoch,
                last_logged_zxid=d.last_zxid(),
                tree_zxid=tz,
                unapplied=[e for e in d.log_entries() if e.zxid > tz],
                snapshot_zxid=d.snap_zxid,
                needs_snapshot=srv.needs_snapshot,
                now_ms=now,
                config=cfg,
                verifier=srv.verifier if self.config.reconfig else None,
            )
            srv.role = learner
            srv.conn = None
            self.note(f"{srv.sid} {state.name} {leader_sid}")
            self._connect(srv, learner, self.now + cfg.init_ms)
        self.wake(srv)

    # -- quorum connections -------------------------------------------------------------------

    def _connect(self, srv: Server, learner: Learner, give_up: int) -> None:
        inc = srv.incarnation

        def attempt() -> None:
            if srv.incarnation != inc or srv.role is not learner:
                return
            leader_srv = self.servers[learner.leader_sid]
            known = srv.config().server(leader_srv.sid) or (
                srv.last_seen is not None and srv.last_seen.server(leader_srv.sid)
            )
            if not known:
                # LearnerTerm.start: the leader's address is in no config we know.
                self.note(f"{srv.sid}: leader {leader_srv.sid} is in no config it knows")
                self.stop_role(srv)
                return
            ok = (
                leader_srv.up
                and leader_srv.leader() is not None
                and self.net.can_reach(srv.sid, leader_srv.sid)
                and self.net.can_reach(leader_srv.sid, srv.sid)
            )
            if ok:
                conn = self.net.open(srv.sid, leader_srv.sid)
                srv.conn = conn.cid
                leader_srv.leader_conns.add(conn.cid)
                learner.start()
                self.pump(srv)
            elif self.now >= give_up:
                self.note(f"{srv.sid} cannot connect to leader {learner.leader_sid}")
                self.stop_role(srv)
            else:
                self.at(self.now + 100, attempt, srv.sid)

        self.at(self.now + self.rng.randint(1, 5), attempt, srv.sid)

    def _qsend(self, srv: Server, cid: int, raw: bytes | None, snap: bytes | None = None) -> None:
        conn = self.net.conns.get(cid)
        if conn is None:
            return
        if self.net.enqueue(conn, srv.sid, self.now, raw, snap):
            dst = conn.other(srv.sid)
            self.at(conn.queue(dst)[0][0], lambda: self._qdeliver(conn, dst), dst)

    def _qdeliver(self, conn: Conn, dst: int) -> None:
        q = conn.queue(dst)
        if conn.broken or not q:
            conn.busy.discard(dst)
            return
        src = conn.other(dst)
        if not self.net.can_reach(src, dst):
            # TCP retransmits; a link dead for long enough breaks the connection.
            since = conn.stalled_since.setdefault(dst, self.now)
            if self.now - since > TCP_TIMEOUT_MS:
                self.break_conn(conn, "TCP timeout")
                return
            self.at(self.now + self.rng.randint(20, 80), lambda: self._qdeliver(conn, dst), dst)
            return
        conn.stalled_since.pop(dst, None)
        _, raw, snap = q.popleft()
        if raw is None:
            self.net.conns.pop(conn.cid, None)
            self._conn_closed(conn, dst)
        elif conn.closed_by != dst:
            self._packet_in(conn, dst, raw, snap)
        if q and not conn.broken:
            self.at(max(q[0][0], self.now), lambda: self._qdeliver(conn, dst), dst)
        else:
            conn.busy.discard(dst)

    def _packet_in(self, conn: Conn, dst: int, raw: bytes, snap: bytes | None) -> None:
        srv = self.servers[dst]
        if not srv.up:
            return
        got = zp.decode_packet(raw)
        assert got is not None, "a whole packet was written"
        pkt, end = got
        if pkt.type == PacketType.SNAP:
            assert snap is not None and raw[end:] == zp.snapshot_trailer(snap)
        self.stats["quorum_msgs"] += 1
        now = self.local(srv)
        if dst == conn.leader:
            leader = srv.leader()
            if leader is None or conn.cid not in srv.leader_conns:
                return
            leader.step(PacketIn(conn.cid, pkt, now))
        else:
            learner = srv.learner()
            if learner is None or srv.conn != conn.cid:
                return
            learner.step(PacketIn(conn.cid, pkt, now, snap))
        self.pump(srv)

    def _conn_closed(self, conn: Conn, sid: int) -> None:
        """End `sid` of the connection learns that it closed."""
        srv = self.servers[sid]
        if not srv.up:
            return
        if sid == conn.leader and conn.cid in srv.leader_conns:
            srv.leader_conns.discard(conn.cid)
            leader = srv.leader()
            if leader is not None:
                leader.step(ConnClosed(conn.cid))
        elif sid == conn.learner and srv.conn == conn.cid:
            learner = srv.learner()
            if learner is not None:
                learner.step(ConnClosed(conn.cid))
        self.pump(srv)

    def close_conn(self, conn: Conn, closer: int) -> None:
        """A FIN from `closer`: its writes still arrive, then the other end sees the close."""
        if conn.broken or conn.closed_by is not None:
            return
        conn.queue(closer).clear()
        self._qsend(self.servers[closer], conn.cid, None)
        conn.closed_by = closer

    def break_conn(self, conn: Conn, why: str) -> None:
        if conn.broken:
            return
        conn.broken = True
        for q in conn.queues.values():
            q.clear()
        self.stats["conn_breaks"] += 1
        self.note(f"break conn {conn.cid} ({conn.learner}->{conn.leader}): {why}")
        self.net.conns.pop(conn.cid, None)
        for sid in (conn.learner, conn.leader):
            self.at(
                self.now + self.rng.randint(1, 30),
                functools.partial(self._conn_closed, conn, sid),
                sid,
            )

    # -- performing Readies ---------------------------------------------------------------------

    def pump(self, srv: Server) -> None:
        while srv.up and srv.inflight is None and srv.role is not None and srv.role.has_ready():
            role = srv.role
            ready = role.ready()
            self.readies += 1
            crash_at = -1
            points = len(ready.persist) + 4
            if self.config.crash_plan is not None and self.config.crash_plan[0] == self.readies:
                crash_at = self.config.crash_plan[1]
                self.crash_points = points
                self.crash_plan_phase = self._ready_kind(srv, ready)
            elif self.faults_on and (
                srv.armed
                or (self.config.crash_in_ready and self.rng.random() < self.config.crash_in_ready)
            ):
                srv.armed = False
                crash_at = self.rng.randint(0, points - 1)
                self.stats["crash_in_ready"] += 1
            if self.ready_log is not None:
                self.ready_log.append(self._ready_kind(srv, ready))
            if isinstance(role, Leader):
                self.checker.on_leader_ready(srv, ready)
            srv.inflight = ready
            early = self.config.mutation == "ack-before-fsync"
            for s in ready.send + (ready.send_after_persist if early else ()):
                self._zab_send(srv, s)
            if crash_at == 0:
                self.crash(srv, "inside a Ready, after its sends")
                return
            for op in ready.persist:
                srv.disk.write(op)
            if ready.persist:
                delay = self.rng.choice((0, 1, 1, 2, 3, 5)) if self.rng.random() < 0.97 else 40
                self.stats["fsyncs"] += 1
                self.at(
                    self.now + delay,
                    functools.partial(self._fsynced, srv, ready, srv.incarnation, crash_at),
                    srv.sid,
                )
                return
            self._finish(srv, ready, crash_at)

    def _fsynced(self, srv: Server, ready: Ready, inc: int, crash_at: int) -> None:
        if srv.incarnation != inc or srv.inflight is not ready:
            return
        n = len(ready.persist)
        if 1 <= crash_at <= n:
            self.crash(srv, f"inside a Ready, {crash_at} of {n} writes durable", keep=crash_at)
            return
        for op in srv.disk.sync():
            if isinstance(op, TruncateLog) and srv.tree.last_zxid > op.zxid:
                # ZKDatabase.truncateLog: reload from the snapshot and the truncated log.
                recover(srv, upto=op.zxid)
                self.stats["trunc_reloads"] += 1
        self._finish(srv, ready, crash_at - n)

    def _finish(self, srv: Server, ready: Ready, crash_at: int) -> None:
        """Everything after the fsync. crash_at counts from 1 = after the acks."""
        role = srv.role
        assert role is not None
        # The runner records a proposed config (`.next`) before the acks (zab_term._perform).
        for notice in ready.notices:
            if isinstance(notice, SeenConfig):
                self._notice(srv, notice)
        if self.config.mutation != "ack-before-fsync":
            for s in ready.send_after_persist:
                self._zab_send(srv, s)
        if crash_at == 1:
            self.crash(srv, "inside a Ready, after its acks")
            return
        if ready.apply:
            for ap in ready.apply:
                if isinstance(ap, ApplyTxn):
                    self._apply(srv, ap.entry)
                else:
                    assert isinstance(ap, LoadSnapshot)
                    self._load_snapshot(srv, ap)
            self.checker.after_applies(srv)
            self._maybe_snapshot(srv)
        for notice in ready.notices:
            if not isinstance(notice, SeenConfig):
                self._notice(srv, notice)
        if crash_at == 2:
            self.crash(srv, "inside a Ready, after its applies")
            return
        role.advance(ready)
        srv.inflight = None
        if (
            isinstance(role, Leader)
            and role.phase is not LeaderPhase.STOPPED
            and not role.verifier.is_voter(srv.sid)
        ):
            raise Violation(
                f"leader {srv.sid} goes on under config {role.verifier.version:#x}, "
                f"where it is not a voter"
            )
        for cid in ready.close:
            conn = self.net.conns.get(cid)
            if conn is not None:
                srv.leader_conns.discard(cid)
                self.close_conn(conn, srv.sid)
        if crash_at == 3:
            self.crash(srv, "after a Ready")
            return
        if ready.stop is not None:
            self.note(f"{srv.sid} stops: {ready.stop}")
            self.stop_role(srv)
            return
        self.pump(srv)
        self.wake(srv)

    def _ready_kind(self, srv: Server, ready: Ready) -> str:
        role = srv.role
        phase = role.phase.value if role is not None else "none"
        kinds = sorted(
            {_SYNC_KINDS[s.packet.type] for s in ready.send if s.packet.type in _SYNC_KINDS}
        )
        who = "leader" if isinstance(role, Leader) else "learner"
        return f"{who}:{phase}" + (f":{'+'.join(kinds)}" if kinds else "")

    def _zab_send(self, srv: Server, s: Send) -> None:
        raw = zp.encode_packet(s.packet)
        if s.packet.type in _SYNC_KINDS:
            self.stats["sync_" + _SYNC_KINDS[s.packet.type]] += 1
        if s.snapshot is not None:
            raw += zp.snapshot_trailer(s.snapshot)
        if isinstance(srv.role, Leader):
            if s.to in srv.leader_conns:
                self._qsend(srv, s.to, raw, s.snapshot)
        elif srv.conn is not None:
            self._qsend(srv, srv.conn, raw, s.snapshot)

    def _apply(self, srv: Server, entry: TxnEntry) -> None:
        if entry.zxid <= srv.tree.last_zxid:
            raise Violation(f"server {srv.sid} applies {entry.zxid:#x} at {srv.tree.last_zxid:#x}")
        if not srv.disk.holds(entry.zxid):
            raise Violation(f"server {srv.sid} applies {entry.zxid:#x}, which it has not logged")
        rec, _ = decode_txn(entry.hdr.type, entry.txn)
        if (
            self.config.mutation == "skip-apply"
            and isinstance(srv.role, Learner)
            and zp.counter_of(entry.zxid) == 7
        ):
            srv.tree.last_zxid = entry.zxid
            result = None
        else:
            result = srv.tree.apply_txn(entry.hdr, rec)
        srv.applied.append(entry)
        srv.since_snapshot += 1
        self.checker.on_apply(srv, entry)
        if isinstance(srv.role, Leader):
            srv.pending.applied(entry.zxid)
            self.stats["commits"] += 1
            prop = srv.proposed.pop(entry.zxid, None)
            if entry.hdr.type == OpCode.CLOSE_SESSION:
                srv.tracker.pop(entry.hdr.client_id, None)
                srv.closing.discard(entry.hdr.client_id)
            if prop is not None:
                self.checker.on_ack(entry)
                self.stats["acked"] += 1
                self._client_result(prop, entry, result.err if result is not None else Err.OK)

    def _load_snapshot(self, srv: Server, ap: LoadSnapshot) -> None:
        srv.tree = decode_tree(ap.data)
        srv.applied = list(self._snapshot_txns(ap.zxid, ap.data))
        srv.since_snapshot = 0
        # A snapshot sent during sync may hold the leader's not yet committed history.
        srv.dirty = True

    def _snapshot_txns(self, zxid: int, data: bytes) -> list[TxnEntry]:
        return self.snapshots[(zxid, zlib.crc32(data))]

    def _maybe_snapshot(self, srv: Server) -> None:
        if srv.since_snapshot < self.config.snap_count:
            return
        self.take_snapshot(srv)

    def take_snapshot(self, srv: Server) -> None:
        srv.since_snapshot = 0
        n = len(srv.applied)
        assert srv.disk.hist[:n][-1:] == srv.applied[-1:], "tree holds a txn not on disk"
        data = encode_tree(srv.tree)
        self.snapshots[(srv.tree.last_zxid, zlib.crc32(data))] = list(srv.applied)
        srv.disk.save_local_snapshot(srv.tree.last_zxid, data, n)
        self.stats["snapshots"] += 1

    def _notice(self, srv: Server, notice: object) -> None:
        now = self.local(srv)
        if isinstance(notice, Established):
            srv.serving = True
            srv.fle.update_peer_epoch(notice.epoch)
            if isinstance(srv.role, Leader):
                srv.dirty = False
                srv.tracker = {s: now + t for s, t in srv.tree.sessions.items()}
                srv.next_session_check = now + self.config.zab.tick_ms
                self.stats["established"] += 1
                self.note(f"{srv.sid} established epoch {notice.epoch} at {notice.zxid:#x}")
            else:
                self.checker.on_synced(srv)
                self.note(f"{srv.sid} up to date at {srv.tree.last_zxid:#x}")
            self.checker.after_applies(srv, force=True)
        elif isinstance(notice, LearnerRequest):
            req = notice.request
            try:
                record = workload.decode_request(req.type, req.request)
            except (jute.ProtocolError, KeyError, ValueError) as exc:
                raise Violation(
                    f"leader {srv.sid} cannot decode a forwarded request: {exc}"
                ) from None
            self.submit_at_leader(srv, req.session_id, req.cxid, req.type, record)
        elif isinstance(notice, Touch):
            self.touch_session(srv, notice.session_id, notice.timeout_ms)
        elif isinstance(notice, RevalidateAsk):
            leader = srv.leader()
            valid = notice.session_id in srv.tracker and notice.session_id not in srv.closing
            if valid:
                self.touch_session(srv, notice.session_id, notice.timeout_ms)
            if leader is not None:
                leader.revalidated(notice.conn, notice.session_id, valid)
        elif isinstance(notice, SeenConfig):
            # Peer.see_config: the `.next` file, replaced by any other version (as ZooKeeper's
            # setLastSeenQuorumVerifier: NEWLEADER's config replaces a truncated proposal's).
            last = srv.last_seen
            if self.config.reconfig and (last is None or notice.verifier.version != last.version):
                srv.last_seen = notice.verifier
                if self.config.mutation == "activate-proposed":
                    self.activate_config(srv, notice.verifier, "proposal")
        elif isinstance(notice, ActivateConfig):
            self.activate_config(srv, notice.verifier, "init" if notice.init_node else "commit")
        elif isinstance(notice, RevalidateResult):
            client = self.clients.get(notice.session_id)
            if client is not None and not notice.valid and client.state == "live":
                client.state = "dead"
                self.stats["revalidate_refused"] += 1

    # -- configs --------------------------------------------------------------------------------

    def activate_config(self, srv: Server, verifier: QuorumVerifier, how: str) -> None:
        """Peer.activate_config: the dynamic config file now names this config; the election
        switches to it; our learner type follows it (outside it, a non-voting participant)."""
        if verifier.version <= srv.config().version:
            return
        srv.verifier = verifier
        if srv.last_seen is None or verifier.version >= srv.last_seen.version:
            srv.last_seen = verifier
        me = verifier.server(srv.sid)
        srv.observer = me is not None and me.observer
        srv.fle.set_verifier(verifier, srv.observer)
        self.stats["activations"] += 1
        self.checker.on_activate(srv, verifier)
        role = "voter" if verifier.is_voter(srv.sid) else "observer" if me else "outside"
        self.note(
            f"{srv.sid} activates config {verifier.version:#x} ({how}; {role}): "
            f"voters {sorted(verifier.voters)} observers {sorted(verifier.observers)}"
        )

    # -- the leader's core --------------------------------------------------------------------

    def submit_at_leader(
        self, srv: Server, session_id: int, cxid: int, op: int, request: object
    ) -> bool:
        leader = srv.leader()
        if leader is None or not srv.serving or not leader.can_propose():
            return False
        now = self.local(srv)
        error = Err.OK
        if op == OpCode.CREATE_SESSION:
            assert isinstance(request, int)
            srv.tracker[session_id] = now + request
        elif session_id not in srv.tracker or session_id in srv.closing:
            if self.config.mutation != "no-session-check":
                error = Err.SESSIONEXPIRED
        try:
            zxid = leader.next_zxid()
        except NotLeading:
            return False
        prep = _PREP
        if op == OpCode.RECONFIG:
            prep = replace(_PREP_RECONFIG, reconfig=leader.reconfig_port)
        hdr, txn = prep_write(
            srv.tree, srv.pending, op, request,  # type: ignore[arg-type]
            session_id=session_id, cxid=cxid, zxid=zxid, time_ms=now, config=prep,
            session_error=error,
        )  # fmt: skip
        if op == OpCode.CLOSE_SESSION:
            srv.closing.add(session_id)
        try:
            leader.propose(hdr, jute.encode(txn))
        except (NotLeading, ZxidRollover, ProposalBacklogFull):
            return False
        srv.proposed[zxid] = Proposed(session_id, op)
        self.stats["proposals"] += 1
        if hdr.type == OpCode.RECONFIG:
            self.stats["reconfigs_proposed"] += 1
            self.note(f"{srv.sid} proposes reconfig {zxid:#x}")
            if self.faults_on and not self.config.script:
                faults.during_reconfig(self, srv)
        self.pump(srv)
        return True

    def touch_session(self, srv: Server, session_id: int, timeout_ms: int) -> None:
        if session_id in srv.tracker and session_id not in srv.closing:
            srv.tracker[session_id] = max(srv.tracker[session_id], self.local(srv) + timeout_ms)

    def _expire_sessions(self, srv: Server) -> None:
        now = self.local(srv)
        if now < srv.next_session_check:
            return
        srv.next_session_check = now + self.config.zab.tick_ms
        for session_id, deadline in sorted(srv.tracker.items()):
            if deadline > now or session_id in srv.closing:
                continue
            if self.submit_at_leader(srv, session_id, 0, int(OpCode.CLOSE_SESSION), None):
                self.stats["expiries"] += 1
                self.note(f"{srv.sid} expires session {session_id:#x}")

    def _client_result(self, prop: Proposed, entry: TxnEntry, err: Err) -> None:
        client = self.clients.get(prop.session_id)
        if client is None:
            return
        client.outstanding.discard(entry.hdr.cxid)
        if prop.op == OpCode.CREATE_SESSION:
            if client.state == "creating":
                client.state = "live"
                clients.schedule_ping(self, client)
        elif prop.op == OpCode.CLOSE_SESSION or err == Err.SESSIONEXPIRED:
            client.state = "dead"
        if prop.op == OpCode.RECONFIG:
            self.stats[f"reconfig_{err.name}"] += 1

    # -- timers -----------------------------------------------------------------------------

    def wake(self, srv: Server) -> None:
        """Schedule the next tick this server's cores want."""
        if not srv.up:
            return
        off = srv.clock_offset
        times = [NEVER]
        if srv.serving and srv.leader() is not None:
            times.append(srv.next_session_check)
        d = srv.fle.next_deadline()
        if d is not None:
            times.append(d)
        role = srv.leader() or srv.learner()
        if role is not None and srv.inflight is None:
            times.append(role.next_deadline())
        t = min(times) - off
        if t >= srv.next_wake:
            return
        srv.next_wake = t
        inc = srv.incarnation

        def fire() -> None:
            if srv.incarnation != inc or not srv.up:
                return
            srv.next_wake = NEVER
            self.tick(srv)

        self.at(t, fire, srv.sid)

    def tick_if_up(self, srv: Server, inc: int) -> None:
        if srv.up and srv.incarnation == inc:
            self.tick(srv)

    def tick(self, srv: Server) -> None:
        now = self.local(srv)
        self._election(srv, srv.fle.tick(now))
        role = srv.role
        if role is not None:
            role.tick(now)
            self.pump(srv)
        if srv.leader() is not None and srv.serving:
            self._expire_sessions(srv)
        self.wake(srv)

    def stop_role(self, srv: Server) -> None:
        role = srv.role
        if isinstance(role, Learner):
            srv.needs_snapshot = role.needs_snapshot
        self._close_all(srv)
        assert srv.inflight is None, "a stop is taken only between Readies"
        self.start_looking(srv)

    def _close_all(self, srv: Server) -> None:
        cids = set(srv.leader_conns)
        if srv.conn is not None:
            cids.add(srv.conn)
        for cid in sorted(cids):
            conn = self.net.conns.get(cid)
            if conn is not None:
                self.close_conn(conn, srv.sid)
        srv.leader_conns = set()
        srv.conn = None

    # -- faults -----------------------------------------------------------------------------

    def crash(
        self, srv: Server, why: str, keep: int | None = None, stay_down: bool = False
    ) -> None:
        if not srv.up:
            return
        self.stats["crashes"] += 1
        if keep is None:
            kept, queued, torn = srv.disk.crash(self.rng)
        else:
            kept, queued, torn = srv.disk.crash(self.rng, keep)
        self.stats["unsynced_lost"] += queued - kept
        self.stats["torn_tails"] += int(torn)
        self.note(f"crash {srv.sid} ({why}); {kept}/{queued} unsynced writes survive")
        self._close_all(srv)
        srv.up = False
        srv.incarnation += 1
        srv.role = None
        srv.inflight = None
        srv.serving = False
        srv.paused_until = 0
        srv.next_wake = NEVER
        srv.needs_snapshot = False
        if stay_down:
            return
        inc = srv.incarnation
        if not self.faults_on:
            # A crash decided during the faults (inside a Ready) struck after healing:
            # the liveness phase brings it back like every other server.
            self.at(self.now + 100, functools.partial(self._restart_if, srv, inc, False))
        elif not self.config.script and self.rng.random() < 0.85:
            # A supervisor restarts the process after a while.
            delay = self.rng.randint(20, 3000)
            self.at(self.now + delay, functools.partial(self._restart_if, srv, inc, True))

    def _restart_if(self, srv: Server, inc: int, during_faults: bool) -> None:
        if not srv.up and srv.incarnation == inc and self.faults_on == during_faults:
            self.restart(srv)

    def restart(self, srv: Server) -> None:
        if srv.up:
            return
        srv.up = True
        srv.fle = self._new_fle(srv.sid, srv.config(), srv.observer)
        srv.clock_offset = 0
        recover(srv)
        self.stats["restarts"] += 1
        self.note(f"restart {srv.sid} at {srv.tree.last_zxid:#x} ({len(srv.applied)} txns)")
        if self.faults_on and not self.config.script and self.rng.random() < 0.3:
            # ZooKeeper snapshots its recovered tree, uncommitted tail and all (ZOOKEEPER-1549).
            self.take_snapshot(srv)
        self.start_looking(srv)

    # -- phases -----------------------------------------------------------------------------

    def start(self) -> None:
        for srv in self.servers.values():
            self.at(self.rng.randint(0, 50), functools.partial(self.start_looking, srv), srv.sid)
        self.at(200, functools.partial(clients.traffic_loop, self))
        if self.config.script:
            self.faults_on = True
            faults.script(self)
        elif self.config.faults:
            self.faults_on = True
            first = self.rng.randint(200, 2 * self.config.fault_gap_ms + 200)
            self.at(first, functools.partial(faults.fault_loop, self))
