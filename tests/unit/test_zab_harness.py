"""A deterministic in-process harness for the Zab cores, and its own sanity tests.

`Sim` runs N servers' Leader/Learner state machines with:
- a fake disk per server (acceptedEpoch, currentEpoch, snapshot, txn log) that keeps only
  what a Ready's `persist` made durable: a crash between Ready steps loses the rest;
- a fake network of per-connection FIFO queues carrying real wire bytes (every packet is
  encoded with zab_packets.encode_packet and decoded on delivery); a connection break
  loses what was in flight and tells both ends; partitions stop connections forming; a
  server that crashes or stops still gets out what it already wrote (the kernel flushes
  the socket), so an ack sent before its fsync can outlive the crash;
- pauses (SIGSTOP, a long GC): a paused server reads, writes and times nothing, and finds
  the world changed when it resumes;
- an election "by hand": a quorum of LOOKING voters picks the most up-to-date of them by
  (currentEpoch, last zxid, sid), as FastLeaderElection would;
- a virtual clock advanced in half ticks.

Checked as it runs (`Violation` on failure):
- all committed txns form one sequence G: every commit decision (a leader's applies,
  including its whole history when established) extends G or agrees with it, never
  contradicts it: no committed txn is ever lost or reordered across leader changes;
- every learner's tree is a prefix of G whenever it applies;
- zxids strictly increase in every log; acceptedEpoch >= currentEpoch, both monotonic;
- at most one leader is established per epoch, and an established leader holds every txn
  committed in an earlier epoch;
- every committed txn is on the disks of a quorum of voters;
- a TRUNC removes exactly an uncommitted tail (nothing in G, nothing in the leader's log,
  and what stays is the leader's history).
"""

from __future__ import annotations

import itertools
import json
import random
from collections import deque
from dataclasses import dataclass, field

from corral.proto import jute
from corral.proto.codes import OpCode
from corral.proto.records import QuorumPacket, SetDataTxn, TxnHeader
from corral.quorum import zab_packets as zp
from corral.quorum.follower import Learner, LearnerPhase
from corral.quorum.leader import Leader, LeaderPhase, NotLeading, ZxidRollover
from corral.quorum.ready import (
    AppendTxn,
    ApplyTxn,
    ConnClosed,
    Established,
    LoadSnapshot,
    PacketIn,
    Ready,
    SaveSnapshot,
    SetAcceptedEpoch,
    SetCurrentEpoch,
    TruncateLog,
    ZabConfig,
)
from corral.quorum.verifier import QuorumVerifier
from corral.quorum.zab_packets import TxnEntry
from corral.sim.errors import Violation

Item = tuple[int, bytes]  # (zxid, txn bytes): one applied txn


@dataclass
class Disk:
    accepted_epoch: int = 0
    current_epoch: int = 0
    snap_zxid: int = 0
    snap_tree: tuple[Item, ...] = ()
    log: list[TxnEntry] = field(default_factory=list)

    def last_zxid(self) -> int:
        return self.log[-1].zxid if self.log else self.snap_zxid

    def history(self) -> list[Item]:
        return list(self.snap_tree) + [(e.zxid, e.txn) for e in self.log]


@dataclass
class Node:
    sid: int
    observer: bool
    disk: Disk = field(default_factory=Disk)
    tree: list[Item] = field(default_factory=list)
    role: Leader | Learner | None = None
    conn: int | None = None  # a learner's connection to its leader
    alive: bool = True
    crashes: int = 0
    needs_snapshot: bool = False  # carried from a stopped Learner to the next
    paused: bool = False  # SIGSTOPped: reads, writes and timers all wait

    def tree_zxid(self) -> int:
        return self.tree[-1][0] if self.tree else 0


@dataclass
class Conn:
    cid: int
    learner: int
    leader: int
    to_leader: deque[bytes] = field(default_factory=deque)
    to_learner: deque[tuple[bytes, bytes | None]] = field(default_factory=deque)


def encode_tree(tree: list[Item]) -> bytes:
    return json.dumps([[z, t.hex()] for z, t in tree]).encode()


def decode_tree(data: bytes) -> list[Item]:
    return [(z, bytes.fromhex(t)) for z, t in json.loads(data)]


def is_prefix(a: list[Item], b: list[Item]) -> bool:
    return len(a) <= len(b) and b[: len(a)] == a


class Sim:
    def __init__(
        self,
        voters: int = 3,
        observers: int = 0,
        *,
        seed: int = 0,
        config: ZabConfig | None = None,
        crash_in_ready: float = 0.0,
        buggy_runner_acks_early: bool = False,
        crash_plan: tuple[int, int] | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.config = config or ZabConfig(tick_ms=100, init_limit=10, sync_limit=5)
        ids = list(range(1, voters + 1))
        obs = list(range(voters + 1, voters + observers + 1))
        self.verifier = QuorumVerifier.of_ids(ids, obs)
        self.nodes = {s: Node(s, False) for s in ids} | {s: Node(s, True) for s in obs}
        self.conns: dict[int, Conn] = {}
        self.closing: dict[int, Conn] = {}  # closed by one side, its last bytes in flight
        self.next_conn = 1
        self.now = 0
        self.blocked: set[frozenset[int]] = set()
        self.crash_in_ready = crash_in_ready
        # A runner that breaks the Ready contract (sends acks before persisting): used to
        # show that the checks catch ZOOKEEPER-3911's class of bug.
        self.buggy_runner_acks_early = buggy_runner_acks_early
        # (n, k): crash the server performing the n-th Ready at its k-th crash point (after
        # the sends, after each persist op, after the acks, after the applies).
        self.crash_plan = crash_plan
        self.crash_points = 0  # how many points the planned Ready had
        self.flushes = 0
        self.committed: list[Item] = []  # G
        self.established: dict[int, int] = {}  # epoch -> leader sid
        self.proposals = 0
        self.trace: list[str] = []
        self.truncations = 0
        self.syncs: dict[str, int] = {"DIFF": 0, "TRUNC": 0, "SNAP": 0}
        # Per learner: G and the leader's commit point when each TRUNC to it was decided.
        self.trunc_plans: dict[int, deque[tuple[set[Item], int]]] = {}
        self._g_before: set[Item] = set()
        self._g_before_last = 0

    # -- roles ------------------------------------------------------------------------------

    def note(self, text: str) -> None:
        self.trace.append(f"t={self.now} {text}")
        if len(self.trace) > 400:
            del self.trace[:100]

    def leaders(self) -> list[Node]:
        return [
            n
            for n in self.nodes.values()
            if n.alive and isinstance(n.role, Leader) and n.role.phase is not LeaderPhase.STOPPED
        ]

    def established_leader(self) -> Leader | None:
        for n in self.leaders():
            assert isinstance(n.role, Leader)
            if n.role.phase is LeaderPhase.BROADCAST:
                return n.role
        return None

    def looking(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.alive and n.role is None and not n.paused]

    def try_elect(self) -> bool:
        """If a quorum of voters is LOOKING, elect the most up-to-date among a quorum."""
        voters = [n for n in self.looking() if not n.observer]
        if not self.verifier.contains_quorum(n.sid for n in voters):
            return False
        k = len(self.verifier.voters) // 2 + 1
        group = self.rng.sample(voters, self.rng.randint(k, len(voters)))
        best = max(group, key=lambda n: (n.disk.current_epoch, n.disk.last_zxid(), n.sid))
        if self.rng.random() < 0.1:
            # Not FLE's choice: discovery itself must refuse followers ahead of the leader.
            best = self.rng.choice(voters)
        followers = [n.sid for n in self.looking() if n.sid != best.sid]
        self.elect(best.sid, followers)
        return True

    def elect(self, leader_sid: int, followers: list[int]) -> None:
        node = self.nodes[leader_sid]
        assert node.alive and node.role is None
        d = node.disk
        tree = node.tree

        # A runner hands the leader the last commitLogCount txns of its log (and whatever
        # the tree has not applied yet), not the whole log.
        keep = self.config.commit_log_count
        base = d.log[-keep - 1].zxid if len(d.log) > keep else d.snap_zxid
        base = min(base, node.tree_zxid())

        def snapshot() -> tuple[int, bytes]:
            return (tree[-1][0] if tree else 0), encode_tree(tree)

        node.role = Leader(
            leader_sid,
            self.verifier,
            accepted_epoch=d.accepted_epoch,
            current_epoch=d.current_epoch,
            history=[e for e in d.log if e.zxid > base],
            history_base=base,
            tree_zxid=node.tree_zxid(),
            snapshot=snapshot,
            now_ms=self.now,
            config=self.config,
        )
        self.note(f"elect {leader_sid} (epoch {d.current_epoch}, {d.last_zxid():#x})")
        for sid in followers:
            self.follow(sid, leader_sid)

    def follow(self, sid: int, leader_sid: int) -> None:
        node = self.nodes[sid]
        if not node.alive or node.role is not None:
            return
        if frozenset((sid, leader_sid)) in self.blocked or not self.nodes[leader_sid].alive:
            return
        d = node.disk
        tz = node.tree_zxid()
        learner = Learner(
            sid,
            leader_sid,
            observer=node.observer,
            accepted_epoch=d.accepted_epoch,
            current_epoch=d.current_epoch,
            last_logged_zxid=d.last_zxid(),
            tree_zxid=tz,
            unapplied=[e for e in d.log if e.zxid > tz],
            snapshot_zxid=d.snap_zxid,
            needs_snapshot=node.needs_snapshot,
            now_ms=self.now,
            config=self.config,
        )
        cid = self.next_conn
        self.next_conn += 1
        self.conns[cid] = Conn(cid, sid, leader_sid)
        node.role, node.conn = learner, cid
        self.trunc_plans[sid] = deque()
        learner.start()

    # -- network ----------------------------------------------------------------------------

    def break_conn(self, cid: int) -> None:
        conn = self.conns.pop(cid, None)
        if conn is None:
            return
        self.note(f"break conn {cid} ({conn.learner}->{conn.leader})")
        lnode, ldr = self.nodes[conn.learner], self.nodes[conn.leader]
        if lnode.conn == cid and isinstance(lnode.role, Learner):
            lnode.role.disconnected()
        if isinstance(ldr.role, Leader):
            ldr.role.disconnected(cid)

    def close_after_flush(self, cid: int, dead: int) -> None:
        """`dead` lost its role (crash or stop): what it already wrote to the socket still
        arrives (the kernel flushes it), then the other side sees the close."""
        conn = self.conns.pop(cid, None)
        if conn is None:
            return
        if dead == conn.leader:
            conn.to_leader.clear()
            pending = bool(conn.to_learner)
        else:
            conn.to_learner.clear()
            pending = bool(conn.to_leader)
        self.note(f"close conn {cid} ({conn.learner}->{conn.leader}) after flush")
        if pending:
            self.closing[cid] = conn
        else:
            self._notify_closed(conn)

    def _notify_closed(self, conn: Conn) -> None:
        lnode, ldr = self.nodes[conn.learner], self.nodes[conn.leader]
        if lnode.conn == conn.cid and isinstance(lnode.role, Learner):
            lnode.role.step(ConnClosed(conn.cid))
        if isinstance(ldr.role, Leader):
            ldr.role.step(ConnClosed(conn.cid))

    def partition(self, a: int, b: int) -> None:
        self.blocked.add(frozenset((a, b)))
        for cid, c in list(self.conns.items()):
            if {c.learner, c.leader} == {a, b}:
                self.break_conn(cid)

    def heal(self) -> None:
        self.blocked.clear()

    def deliverable(self) -> list[tuple[int, bool]]:
        out = []
        for cid, c in [*self.conns.items(), *self.closing.items()]:
            if c.to_leader and not self.nodes[c.leader].paused:
                out.append((cid, True))
            if c.to_learner and not self.nodes[c.learner].paused:
                out.append((cid, False))
        return out

    def deliver(self, cid: int, to_leader: bool) -> None:
        closing = cid in self.closing
        c = self.closing[cid] if closing else self.conns[cid]
        if closing and not (c.to_leader if to_leader else c.to_learner):
            return
        self._deliver(c, to_leader)
        if closing and not c.to_leader and not c.to_learner:
            del self.closing[cid]
            self._notify_closed(c)

    def _deliver(self, c: Conn, to_leader: bool) -> None:
        cid = c.cid
        if to_leader:
            raw = c.to_leader.popleft()
            leader = self.nodes[c.leader].role
            if not isinstance(leader, Leader) or not self.nodes[c.leader].alive:
                return
            pkt, end = _decode(raw)
            leader.step(PacketIn(cid, pkt, self.now))
        else:
            raw, snap = c.to_learner.popleft()
            lnode = self.nodes[c.learner]
            learner = lnode.role
            if not isinstance(learner, Learner) or lnode.conn != cid or not lnode.alive:
                return
            pkt, end = _decode(raw)
            if pkt.type == zp.PacketType.SNAP:
                assert snap is not None
                trailer = zp.snapshot_trailer(snap)
                assert raw[end:] == trailer
            learner.step(PacketIn(cid, pkt, self.now, snap))

    # -- performing Readies -----------------------------------------------------------------

    def pending(self) -> list[Node]:
        return [
            n
            for n in self.nodes.values()
            if n.alive and not n.paused and n.role is not None and n.role.has_ready()
        ]

    def flush(self, node: Node) -> None:
        role = node.role
        assert role is not None
        ready = role.ready()
        # The leader decided this Ready's sends at various times since the last one: a TRUNC
        # in it was planned against (at least) G as it stood before this Ready's commits.
        self._g_before = set(self.committed)
        self._g_before_last = self.committed[-1][0] if self.committed else 0
        if isinstance(role, Leader):
            self._record_commits(node, ready)
        crash_at = -1
        if self.crash_in_ready and self.rng.random() < self.crash_in_ready:
            crash_at = self.rng.randint(0, 4 + len(ready.persist))
        self.flushes += 1
        if self.crash_plan is not None and self.crash_plan[0] == self.flushes:
            crash_at = self.crash_plan[1]
            self.crash_points = 4 + len(ready.persist)
        step = 0

        def crash_here() -> bool:
            nonlocal step
            step += 1
            if step - 1 == crash_at:
                self.crash(node.sid, why=f"inside a Ready at step {step - 1}")
                return True
            return False

        early = self.buggy_runner_acks_early
        for s in ready.send + (ready.send_after_persist if early else ()):
            self._send(node, s.to, s.packet, s.snapshot)
        if crash_here():
            return
        for op in ready.persist:
            self._persist(node, op)
            if crash_here():
                return
        for s in () if early else ready.send_after_persist:
            self._send(node, s.to, s.packet, s.snapshot)
        if crash_here():
            return
        for ap in ready.apply:
            self._apply(node, ap)
        if isinstance(role, Learner) and any(isinstance(a, ApplyTxn) for a in ready.apply):
            # A snapshot loaded during sync is not delivered yet: it may hold the leader's
            # not-yet-committed tail until the leader is established (checked then).
            self._check_learner_tree(node)
        for n in ready.notices:
            if isinstance(n, Established):
                self._on_established(node, n)
        if crash_here():
            return
        role.advance(ready)
        for cid in ready.close:
            self.break_conn(cid)
        if ready.stop is not None:
            self.note(f"{node.sid} stops: {ready.stop}")
            self._lose_role(node)

    def _send(self, node: Node, to: int, pkt: QuorumPacket, snapshot: bytes | None) -> None:
        raw = zp.encode_packet(pkt)
        if isinstance(node.role, Leader):
            c = self.conns.get(to)
            if c is None or c.leader != node.sid:
                return
            if pkt.type in (zp.PacketType.DIFF, zp.PacketType.TRUNC, zp.PacketType.SNAP):
                self.syncs[zp.PacketType(pkt.type).name] += 1
            if pkt.type == zp.PacketType.TRUNC:
                plans = self.trunc_plans.setdefault(c.learner, deque())
                plans.append((self._g_before, self._g_before_last))
            if snapshot is not None:
                raw += zp.snapshot_trailer(snapshot)
            c.to_learner.append((raw, snapshot))
        else:
            assert node.conn is not None
            c = self.conns.get(node.conn)
            if c is not None:
                c.to_leader.append(raw)

    def _persist(self, node: Node, op: object) -> None:
        d = node.disk
        if isinstance(op, AppendTxn):
            if op.entry.zxid <= d.last_zxid():
                raise Violation(f"{node.sid}: append {op.entry.zxid:#x} after {d.last_zxid():#x}")
            d.log.append(op.entry)
        elif isinstance(op, TruncateLog):
            self._check_truncate(node, op.zxid)
            d.log = [e for e in d.log if e.zxid <= op.zxid]
            if node.tree_zxid() > op.zxid:
                # ZKDatabase.truncateLog: reload the tree from snapshot + truncated log.
                node.tree = d.history()
            self.truncations += 1
        elif isinstance(op, SaveSnapshot):
            d.snap_zxid, d.snap_tree, d.log = op.zxid, tuple(decode_tree(op.data)), []
        elif isinstance(op, SetAcceptedEpoch):
            if op.epoch < d.accepted_epoch:
                raise Violation(f"{node.sid}: acceptedEpoch down to {op.epoch}")
            d.accepted_epoch = op.epoch
        elif isinstance(op, SetCurrentEpoch):
            if op.epoch < d.current_epoch or op.epoch > d.accepted_epoch:
                raise Violation(f"{node.sid}: currentEpoch {op.epoch} vs {d}")
            d.current_epoch = op.epoch
        else:
            raise AssertionError(op)

    def _apply(self, node: Node, ap: object) -> None:
        if isinstance(ap, ApplyTxn):
            if ap.entry.zxid <= node.tree_zxid():
                raise Violation(f"{node.sid}: applies {ap.entry.zxid:#x} twice")
            logged = {e.zxid for e in node.disk.log}
            if ap.entry.zxid not in logged:
                raise Violation(f"{node.sid}: applies {ap.entry.zxid:#x} it has not logged")
            node.tree.append((ap.entry.zxid, ap.entry.txn))
        elif isinstance(ap, LoadSnapshot):
            node.tree = decode_tree(ap.data)
        else:
            raise AssertionError(ap)

    # -- invariants -------------------------------------------------------------------------

    def _record_commits(self, node: Node, ready: Ready) -> None:
        applies = [(a.entry.zxid, a.entry.txn) for a in ready.apply if isinstance(a, ApplyTxn)]
        established = any(isinstance(n, Established) for n in ready.notices)
        if not applies and not established:
            return
        # When established, the leader's whole history (tree included, which recovery may
        # have filled from the log) is committed.
        seq = node.tree + applies
        if is_prefix(self.committed, seq):
            self.committed = seq
        elif not is_prefix(seq, self.committed):
            raise Violation(
                f"leader {node.sid} commits a sequence that contradicts G: "
                f"{_fmt(seq[-5:])} vs {_fmt(self.committed[-5:])}"
            )
        zs = [z for z, _ in self.committed]
        if any(a >= b for a, b in itertools.pairwise(zs)):
            raise Violation("committed zxids not strictly increasing")

    def _check_learner_tree(self, node: Node) -> None:
        if not is_prefix(node.tree, self.committed):
            raise Violation(
                f"learner {node.sid} tree {_fmt(node.tree[-4:])} is not a prefix of G "
                f"{_fmt(self.committed[-4:])}"
            )

    def _on_established(self, node: Node, n: Established) -> None:
        if isinstance(node.role, Leader):
            prior = self.established.get(n.epoch)
            if prior is not None and prior != node.sid:
                raise Violation(f"two leaders established in epoch {n.epoch}: {prior}, {node.sid}")
            self.established[n.epoch] = node.sid
            self.note(f"{node.sid} established epoch {n.epoch}")
            # Primary integrity: it must hold every txn committed in an earlier epoch. (A
            # paused leader may establish an older epoch after a newer one was: from stale
            # NEWLEADER acks; it cannot commit anything new then, lacking a quorum.)
            older = [item for item in self.committed if zp.epoch_of(item[0]) < n.epoch]
            if not is_prefix(older, node.tree):
                raise Violation(f"established leader {node.sid} lacks committed txns")
        else:
            self._check_learner_tree(node)

    def _check_truncate(self, node: Node, zxid: int) -> None:
        role = node.role
        assert isinstance(role, Learner)
        leader_node = self.nodes[role.leader_sid]
        leader_hist = leader_node.disk.history()
        removed = [(e.zxid, e.txn) for e in node.disk.log if e.zxid > zxid]
        kept = [(e.zxid, e.txn) for e in node.disk.log if e.zxid <= zxid]
        assert node.conn is not None
        # What was committed when the leader decided this TRUNC (later commits of txns the
        # leader sends again after it are fine: this learner's old ack no longer counts).
        # A learner of the leader's own epoch may lose proposals still outstanding then: the
        # leader sends them again right after the TRUNC (as ZooKeeper does).
        committed, resent = self.trunc_plans[node.sid].popleft()
        lh = set(leader_hist)
        for item in removed:
            if item in committed or (item in lh and not (resent >= 0 and item[0] > resent)):
                raise Violation(
                    f"TRUNC to {zxid:#x} on {node.sid} removes {item[0]:#x}, committed or "
                    "in the leader's history"
                )
        for item in kept:
            if item not in lh and item[0] > leader_node.disk.snap_zxid:
                raise Violation(
                    f"TRUNC to {zxid:#x} on {node.sid} keeps {item[0]:#x}, not the leader's"
                )

    def check_durable(self) -> None:
        """Every committed txn is on the disks of a quorum of voters, so no crash of a
        minority can lose it (what ack-before-fsync and over-eager TRUNCs break)."""
        have = {n.sid: set(n.disk.history()) for n in self.nodes.values() if not n.observer}
        for item in self.committed:
            holders = [sid for sid, h in have.items() if item in h]
            if not self.verifier.contains_quorum(holders):
                raise Violation(f"committed {item[0]:#x} is only on the disks of {holders}")

    def check_disks(self) -> None:
        for n in self.nodes.values():
            d = n.disk
            if d.accepted_epoch < d.current_epoch:
                raise Violation(f"{n.sid}: acceptedEpoch < currentEpoch")
            zs = [e.zxid for e in d.log]
            if any(a >= b for a, b in itertools.pairwise(zs)) or (zs and zs[0] <= d.snap_zxid):
                raise Violation(f"{n.sid}: log zxids not increasing")

    # -- faults -----------------------------------------------------------------------------

    def _lose_role(self, node: Node) -> None:
        role = node.role
        node.role = None
        if isinstance(role, Learner):
            node.needs_snapshot = role.needs_snapshot
        if isinstance(role, Learner) and node.conn is not None:
            self.close_after_flush(node.conn, node.sid)
        node.conn = None
        for cid, c in list(self.conns.items()):
            if c.leader == node.sid:
                self.close_after_flush(cid, node.sid)

    def crash(self, sid: int, why: str = "") -> None:
        node = self.nodes[sid]
        if not node.alive:
            return
        self.note(f"crash {sid} {why}")
        self._lose_role(node)
        node.alive = False
        node.paused = False
        node.tree = []
        node.needs_snapshot = False  # memory only
        node.crashes += 1

    def restart(self, sid: int) -> None:
        node = self.nodes[sid]
        if node.alive:
            return
        node.alive = True
        # Recovery as ZooKeeper's: the snapshot plus every logged txn.
        node.tree = node.disk.history()
        self.note(f"restart {sid} at {node.tree_zxid():#x}")

    # -- driving ----------------------------------------------------------------------------

    def propose(self) -> bool:
        leader = self.established_leader()
        if leader is None or not leader.can_propose():
            return False
        self.proposals += 1
        try:
            zxid = leader.next_zxid()
            txn = jute.encode(SetDataTxn("/k", f"v{self.proposals}".encode(), self.proposals))
            leader.propose(TxnHeader(1, self.proposals, zxid, self.now, OpCode.SET_DATA), txn)
        except (NotLeading, ZxidRollover):
            return False
        return True

    def tick(self) -> None:
        self.now += max(1, self.config.tick_ms // 2)
        for n in self.nodes.values():
            if n.alive and not n.paused and n.role is not None:
                n.role.tick(self.now)

    def stabilize(self, max_steps: int = 20000) -> None:
        """Deliver everything and perform every Ready until nothing moves."""
        for _ in range(max_steps):
            moved = False
            for n in self.pending():
                self.flush(n)
                moved = True
            for cid, to_leader in self.deliverable():
                if cid in self.conns or cid in self.closing:
                    self.deliver(cid, to_leader)
                    moved = True
            if not moved:
                return
        raise AssertionError("no quiescence")

    def random_step(self, faults: bool = True) -> None:
        r = self.rng.random()
        pend = self.pending()
        deliv = self.deliverable()
        if r < 0.40 and deliv:
            self.deliver(*self.rng.choice(deliv))
        elif r < 0.65 and pend:
            self.flush(self.rng.choice(pend))
        elif r < 0.78:
            self.propose()
        elif r < 0.86:
            self.tick()
        elif r < 0.90:
            if not self.try_elect():
                leader = self.established_leader()
                if leader is not None:
                    for n in self.looking():
                        if n.sid != leader.my_sid:
                            self.follow(n.sid, leader.my_sid)
        elif faults and r < 0.915:
            alive = [n.sid for n in self.nodes.values() if n.alive]
            if len(alive) > 1:
                self.crash(self.rng.choice(alive))
        elif faults and r < 0.95:
            dead = [n.sid for n in self.nodes.values() if not n.alive]
            if dead:
                self.restart(self.rng.choice(dead))
        elif faults and r < 0.96 and self.conns:
            self.break_conn(self.rng.choice(list(self.conns)))
        elif faults and r < 0.965:
            a, b = self.rng.sample(sorted(self.nodes), 2)
            self.partition(a, b)
        elif r < 0.975:
            self.heal()
        elif faults and r < 0.98:
            # Pause a server (a long GC, SIGSTOP) or let a paused one go on.
            paused = [n for n in self.nodes.values() if n.paused]
            if paused:
                n = self.rng.choice(paused)
                n.paused = False
                self.note(f"resume {n.sid}")
            else:
                n = self.rng.choice(list(self.nodes.values()))
                n.paused = True
                self.note(f"pause {n.sid}")
        self.check_disks()
        self.check_durable()

    def converge(self, rounds: int = 400) -> None:
        """Liveness: heal and restart everyone; then one leader must be followed by every
        server, a txn proposed now must commit, and every tree must equal G."""
        self.heal()
        self.crash_in_ready = 0.0
        for n in self.nodes.values():
            n.paused = False
        for sid in self.nodes:
            self.restart(sid)
        first_new = self.proposals + 1
        for i in range(rounds):
            for sid in self.nodes:
                self.restart(sid)  # a planned crash may still strike while converging
            self.stabilize()
            leader = self.established_leader()
            if leader is not None and i and i % 50 == 0:
                # A server whose acceptedEpoch is above the established epoch cannot join
                # until the next election (as in ZooKeeper): force one.
                self.note(f"converge: forcing a new election, {leader.my_sid} restarts")
                self.crash(leader.my_sid)
                self.restart(leader.my_sid)
                continue
            if leader is None:
                if not self.try_elect():
                    self.tick()
                self.tick()
                continue
            for n in self.looking():
                self.follow(n.sid, leader.my_sid)
            self.stabilize()
            if self._synced() and self.committed and _version(self.committed[-1]) >= first_new:
                for n in self.nodes.values():
                    if n.tree != self.committed:
                        raise Violation(f"{n.sid}'s tree differs from G after convergence")
                return
            if self._synced():
                self.propose()
                self.stabilize()
            self.tick()
        raise AssertionError("no convergence:\n" + "\n".join(self.trace[-60:]))

    def _synced(self) -> bool:
        return all(
            n.role is not None
            and n.tree == self.committed
            and not (isinstance(n.role, Learner) and n.role.phase is not LearnerPhase.BROADCAST)
            for n in self.nodes.values()
        )


def _version(item: Item) -> int:
    return jute.decode(SetDataTxn, item[1])[0].version


def _decode(raw: bytes) -> tuple[QuorumPacket, int]:
    got = zp.decode_packet(raw)
    assert got is not None
    return got


def _fmt(items: list[Item]) -> str:
    return "[" + ", ".join(hex(z) for z, _ in items) + "]"


# -- the harness's own sanity checks --------------------------------------------------------


def test_three_servers_elect_sync_and_commit() -> None:
    sim = Sim(3, seed=1)
    sim.elect(1, [2, 3])
    sim.stabilize()
    assert sim.established_leader() is not None
    for _ in range(5):
        assert sim.propose()
    sim.stabilize()
    assert len(sim.committed) == 5
    for n in sim.nodes.values():
        assert n.tree == sim.committed
        assert n.disk.current_epoch == 1


def test_violation_is_detected_when_a_leader_contradicts_g() -> None:
    sim = Sim(3, seed=2)
    sim.committed = [(zp.make_zxid(1, 1), b"x")]
    node = sim.nodes[1]
    entry = TxnEntry(TxnHeader(1, 1, zp.make_zxid(1, 1), 0, OpCode.SET_DATA), b"y")
    try:
        sim._record_commits(node, Ready(apply=(ApplyTxn(entry),)))
    except Violation:
        return
    raise AssertionError("a contradicting commit went unnoticed")
