"""An in-process ensemble: Zab cores, ensemble cores and fake clients, no IO.

`Ensemble` plays every server's runner: it performs each Zab node's Ready (persist is
instant, sends go into per-direction FIFO queues, applies and notices go to the ensemble
core through net.zab_bridge), builds a server's EnsembleCore when its Zab node says
Established, and keeps each client connection's received bytes. Server 1 leads; the others
follow (or observe). Time moves only with `advance`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from core_harness import Reply, connect_body, frame, request, split_frames

from corral.net.zab_bridge import LeaderAdapter, LearnerAdapter, apply_to_tree, feed_core
from corral.proto import jute
from corral.proto.records import ConnectResponse, QuorumPacket, ReplyHeader
from corral.quorum.follower import Learner
from corral.quorum.leader import Leader
from corral.quorum.ready import (
    AppendTxn,
    ApplyTxn,
    Established,
    PacketIn,
    Ready,
    ZabConfig,
)
from corral.quorum.verifier import QuorumVerifier
from corral.quorum.zab_packets import PacketType
from corral.server.core import CoreConfig, Output
from corral.server.ensemble_core import EnsembleCore
from corral.tree.datatree import DataTree

SECRET = b"ensemble-secret"
TICK_MS = 2000


@dataclass
class Member:
    sid: int
    zab: Leader | Learner
    tree: DataTree = field(default_factory=DataTree)
    core: EnsembleCore | None = None
    logged: list[int] = field(default_factory=list)
    stopped: str | None = None


@dataclass
class Client:
    server: int
    conn: int
    inbox: bytearray = field(default_factory=bytearray)
    closed: bool = False


class Ensemble:
    def __init__(
        self,
        size: int = 3,
        observers: tuple[int, ...] = (),
        outstanding_max: int = 1000,
        soft_max: int | None = 1000,
    ) -> None:
        # soft_max: where the leader's core stops taking requests (the runner's
        # globalOutstandingLimit), below the Zab leader's own outstanding_max.
        self.soft_max = soft_max
        voters = [sid for sid in range(1, size + 1) if sid not in observers]
        self.verifier = QuorumVerifier.of_ids(voters, observers)
        self.now = 1_000_000
        self.wall = 1_764_000_000_000
        self.zab_config = ZabConfig(tick_ms=TICK_MS, outstanding_max=outstanding_max)
        # While set, a wire whose next packet is an ACK is not delivered (FIFO kept): the
        # leader's proposals stay outstanding.
        self.hold_acks = False
        self.members: dict[int, Member] = {}
        # (from sid, to sid) -> packets in flight, FIFO as TCP.
        self.wires: dict[tuple[int, int], deque[QuorumPacket]] = {}
        self.clients: dict[int, Client] = {}
        self._next_conn = 100
        leader = Leader(
            1,
            self.verifier,
            accepted_epoch=0,
            current_epoch=0,
            history=[],
            history_base=0,
            tree_zxid=0,
            snapshot=self._no_snapshot,
            now_ms=self.now,
            config=self.zab_config,
        )
        self.members[1] = Member(1, leader)
        for sid in range(2, size + 1):
            learner = Learner(
                sid,
                1,
                observer=sid in observers,
                accepted_epoch=0,
                current_epoch=0,
                last_logged_zxid=0,
                tree_zxid=0,
                now_ms=self.now,
                config=self.zab_config,
            )
            self.members[sid] = Member(sid, learner)
            learner.start()
        self.run()
        assert all(m.core is not None for m in self.members.values()), "not established"

    @staticmethod
    def _no_snapshot() -> tuple[int, bytes]:
        raise AssertionError("no SNAP expected in these tests")

    def core_config(self, sid: int) -> CoreConfig:
        return CoreConfig(tick_ms=TICK_MS, server_id=sid)

    # -- the runner --------------------------------------------------------------------------

    def run(self) -> None:
        """Perform Readys and deliver packets until nothing moves."""
        progress = True
        while progress:
            progress = False
            for m in self.members.values():
                if m.zab.has_ready():
                    self._perform(m, m.zab.ready())
                    progress = True
            for key, wire in self.wires.items():
                if wire and not (self.hold_acks and wire[0].type == PacketType.ACK):
                    self._deliver(key, wire.popleft())
                    progress = True

    def _deliver(self, key: tuple[int, int], pkt: QuorumPacket) -> None:
        src, dst = key
        m = self.members[dst]
        if m.stopped is not None:
            return
        if isinstance(m.zab, Leader):
            m.zab.step(PacketIn(src, pkt, self.now))
        else:
            m.zab.step(PacketIn(1, pkt, self.now))

    def _perform(self, m: Member, ready: Ready) -> None:
        leader = isinstance(m.zab, Leader)
        for send in ready.send + ready.send_after_persist:
            dst = send.to if leader else 1
            self.wires.setdefault((m.sid, dst), deque()).append(send.packet)
        for op in ready.persist:
            if isinstance(op, AppendTxn):
                m.logged.append(op.entry.zxid)
        if m.core is not None:
            for out in feed_core(m.core, ready, self.now, self.wall):
                self._take(m, out)
        else:
            for ap in ready.apply:
                assert isinstance(ap, ApplyTxn)
                apply_to_tree(m.tree, ap)
        for n in ready.notices:
            if isinstance(n, Established):
                assert m.core is None
                if isinstance(m.zab, Leader):
                    port: Any = {"leader": LeaderAdapter(m.zab, soft_max=self.soft_max)}
                else:
                    port = {"learner": LearnerAdapter(m.zab)}
                m.core = EnsembleCore(
                    self.core_config(m.sid), m.tree, self.now, self.wall, SECRET, **port
                )
        if ready.stop is not None:
            m.stopped = ready.stop
        m.zab.advance(ready)

    def _take(self, m: Member, out: Output) -> None:
        assert not out.persist, "an ensemble core never writes the log itself"
        for conn, data in out.sends:
            client = self.clients[conn]
            assert not client.closed
            client.inbox.extend(data)
        for conn in out.closes:
            self.clients[conn].closed = True

    def core(self, sid: int) -> EnsembleCore:
        core = self.members[sid].core
        assert core is not None
        return core

    # -- clients -------------------------------------------------------------------------------

    def open(self, server: int) -> int:
        conn = self._next_conn
        self._next_conn += 1
        self.clients[conn] = Client(server, conn)
        self._take(self.members[server], self.core(server).open(conn, "127.0.0.1"))
        return conn

    def deliver(self, conn: int, data: bytes) -> None:
        """Bytes from a client reach its server (quorum traffic is not run)."""
        client = self.clients[conn]
        m = self.members[client.server]
        self._take(m, self.core(client.server).receive(conn, data, self.now, self.wall))

    def send(self, conn: int, data: bytes) -> None:
        self.deliver(conn, data)
        self.run()

    def connect(self, server: int, **kw: Any) -> tuple[int, ConnectResponse]:
        conn = self.open(server)
        self.send(conn, frame(connect_body(**kw)))
        frames = split_frames(self.raw(conn))
        assert len(frames) == 1, frames
        return conn, jute.decode_exact(ConnectResponse, frames[0])

    def raw(self, conn: int) -> bytes:
        client = self.clients[conn]
        data = bytes(client.inbox)
        client.inbox.clear()
        return data

    def replies(self, conn: int) -> list[Reply]:
        out = []
        for f in split_frames(self.raw(conn)):
            h, pos = jute.decode(ReplyHeader, f)
            out.append(Reply(h.xid, h.zxid, h.err, f[pos:]))
        return out

    def call(self, conn: int, xid: int, op: int, rec: object | None = None) -> list[Reply]:
        self.send(conn, request(xid, op, rec))
        return self.replies(conn)

    def close(self, conn: int) -> None:
        client = self.clients[conn]
        client.closed = True
        self._take(self.members[client.server], self.core(client.server).closed(conn))
        self.run()

    # -- time ------------------------------------------------------------------------------------

    def advance(self, ms: int, step_ms: int = 500) -> None:
        """Let time pass in steps, ticking every Zab node and core."""
        end = self.now + ms
        while self.now < end:
            step = min(step_ms, end - self.now)
            self.now += step
            self.wall += step
            for m in self.members.values():
                if m.stopped is None:
                    m.zab.tick(self.now)
                if m.core is not None:
                    self._take(m, m.core.tick(self.now, self.wall))
            self.run()
