"""The simulated network: per-connection FIFO streams (TCP, as Zab assumes) and its faults.

- Quorum connections (learner -> leader) carry wire bytes both ways, each direction a FIFO
  queue with one delivery in flight at a time. A blocked direction (a partition, one-way or
  both) stalls its queue, as TCP retransmits; it flows again when healed, and a queue stalled
  past the TCP timeout breaks the connection.
- A break (RST, a dead link) loses everything in flight both ways and tells both ends.
  A close by one end (its process stopped the role or crashed) is a FIN: what it already
  wrote still arrives (the kernel flushes it), then the other end sees the close; nothing
  sent to the closed end is read any more.
- Election channels (one per ordered pair of servers) are FIFO too; a message sent while
  the direction is blocked, or to a server that is down, is lost, as in QuorumCnxManager
  whose queues die with their connection.
- Delays: every message gets a small base latency; a "slow link" adds a large extra delay
  to one direction for a while.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

# A queue entry: (earliest delivery time, wire bytes, SNAP's snapshot or None); bytes None
# is the FIN marker.
Frame = tuple[int, bytes | None, bytes | None]
TCP_TIMEOUT_MS = 5_000


@dataclass
class Conn:
    cid: int
    learner: int
    leader: int
    broken: bool = False
    # The end that closed (FIN): its writes still flow; writes to it are dropped.
    closed_by: int | None = None
    # Per destination sid: frames waiting, and whether a delivery event is scheduled.
    queues: dict[int, deque[Frame]] = field(default_factory=dict)
    busy: set[int] = field(default_factory=set)
    stalled_since: dict[int, int] = field(default_factory=dict)
    last: dict[int, int] = field(default_factory=dict)

    def other(self, sid: int) -> int:
        return self.leader if sid == self.learner else self.learner

    def queue(self, dst: int) -> deque[Frame]:
        q = self.queues.get(dst)
        if q is None:
            q = self.queues[dst] = deque()
        return q


class Network:
    def __init__(self, rng: random.Random, base_delay_ms: int = 3) -> None:
        self.rng = rng
        self.base_delay_ms = base_delay_ms
        self.blocked: set[tuple[int, int]] = set()
        # (src, dst) -> (extra delay ms, until global ms)
        self.slow: dict[tuple[int, int], tuple[int, int]] = {}
        self.conns: dict[int, Conn] = {}
        self._next_cid = 1
        self._election_last: dict[tuple[int, int], int] = {}

    def delay(self, src: int, dst: int, now: int) -> int:
        d = self.rng.randint(0, self.base_delay_ms)
        slow = self.slow.get((src, dst))
        if slow is not None:
            extra, until = slow
            if now < until:
                d += self.rng.randint(extra // 2, extra)
            else:
                del self.slow[(src, dst)]
        return d

    def can_reach(self, src: int, dst: int) -> bool:
        return (src, dst) not in self.blocked

    def open(self, learner: int, leader: int) -> Conn:
        conn = Conn(self._next_cid, learner, leader)
        self._next_cid += 1
        self.conns[conn.cid] = conn
        return conn

    def enqueue(
        self, conn: Conn, src: int, now: int, raw: bytes | None, snap: bytes | None
    ) -> bool:
        """Queue a frame from `src`; True when the caller must schedule a delivery."""
        dst = conn.other(src)
        if conn.broken or conn.closed_by == dst:
            return False
        if conn.closed_by is not None and src != conn.closed_by and raw is not None:
            return False
        t = max(now + self.delay(src, dst, now), conn.last.get(dst, 0))
        conn.last[dst] = t
        conn.queue(dst).append((t, raw, snap))
        if dst in conn.busy:
            return False
        conn.busy.add(dst)
        return True

    def election_time(self, src: int, dst: int, now: int) -> int:
        t = max(now + self.delay(src, dst, now), self._election_last.get((src, dst), 0))
        self._election_last[(src, dst)] = t
        return t
