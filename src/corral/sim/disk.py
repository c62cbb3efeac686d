"""A fake disk: what a server's Ready persisted, with unsynced writes lost on a crash.

The disk holds the two epoch files, the newest snapshot and the txn log. Writes are queued
(`write`) and become durable together at `sync` (the fsync the runner waits for before
sending acks). A crash keeps a random prefix of the queued writes (the kernel may have
flushed some) and can tear the next log record (its checksum then fails and recovery drops
it, which is the same as losing it); the rest is gone.

The log is kept as `hist`: the txns a snapshot holds (the first `snap_len`, known to the
simulator only, for its checks) followed by the logged txns; `log_start` is where the real
log begins (after a snapshot received by SNAP, the older log is gone).
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable

from corral.quorum.ready import (
    AppendTxn,
    PersistOp,
    SaveSnapshot,
    SetAcceptedEpoch,
    SetCurrentEpoch,
    TruncateLog,
)
from corral.quorum.zab_packets import TxnEntry
from corral.sim.errors import Violation

# (zxid, bytes) of a snapshot -> the txns it holds (the simulator's ghost record).
SnapshotLookup = Callable[[int, bytes], list[TxnEntry]]


class Disk:
    def __init__(self, sid: int, lookup: SnapshotLookup) -> None:
        self.sid = sid
        self._lookup = lookup
        self.accepted_epoch = 0
        self.current_epoch = 0
        self.hist: list[TxnEntry] = []
        self.zxids: list[int] = []  # hist's zxids, for bisect
        self.snap_zxid = 0
        self.snap_data: bytes | None = None
        self.snap_len = 0
        self.log_start = 0
        self.pending: list[PersistOp] = []
        # Bumped whenever durable txns are removed (truncate, snapshot install).
        self.shrinks = 0
        self.writes = 0  # bumped on every durable change

    def last_zxid(self) -> int:
        return self.zxids[-1] if self.zxids else self.snap_zxid

    def holds(self, zxid: int) -> bool:
        i = bisect.bisect_left(self.zxids, zxid)
        return i < len(self.zxids) and self.zxids[i] == zxid

    def log_entries(self) -> list[TxnEntry]:
        return self.hist[self.log_start :]

    # -- writing ---------------------------------------------------------------------------

    def write(self, op: PersistOp) -> None:
        self.pending.append(op)

    def sync(self) -> list[PersistOp]:
        """fsync: every queued write is durable. Returns what was written."""
        done = self.pending
        self.pending = []
        for op in done:
            self._durable(op)
        return done

    def crash(self, rng: random.Random, keep: int | None = None) -> tuple[int, int, bool]:
        """Power loss: a prefix of the queued writes survives (`keep` of them, else a random
        number), maybe a torn record after it. Returns (kept, queued, torn)."""
        queued = len(self.pending)
        kept = rng.randint(0, queued) if keep is None else min(keep, queued)
        for op in self.pending[:kept]:
            self._durable(op)
        torn = kept < queued and isinstance(self.pending[kept], AppendTxn) and rng.random() < 0.5
        self.pending = []
        return kept, queued, torn

    def save_local_snapshot(self, zxid: int, data: bytes, txns: int) -> None:
        """A snapshot of the server's own tree (written to a temp file and renamed: atomic)."""
        assert txns <= len(self.hist)
        self.writes += 1
        self.snap_zxid, self.snap_data, self.snap_len = zxid, data, txns

    def _durable(self, op: PersistOp) -> None:
        self.writes += 1
        if isinstance(op, AppendTxn):
            zxid = op.entry.zxid
            if zxid <= self.last_zxid():
                raise Violation(f"disk {self.sid}: append {zxid:#x} after {self.last_zxid():#x}")
            self.hist.append(op.entry)
            self.zxids.append(zxid)
        elif isinstance(op, TruncateLog):
            cut = bisect.bisect_right(self.zxids, op.zxid)
            if cut < self.snap_len:
                raise Violation(f"disk {self.sid}: TRUNC to {op.zxid:#x} below its snapshot")
            if cut < len(self.hist):
                del self.hist[cut:]
                del self.zxids[cut:]
                self.shrinks += 1
        elif isinstance(op, SaveSnapshot):
            txns = self._lookup(op.zxid, op.data)
            self.hist = list(txns)
            self.zxids = [e.zxid for e in txns]
            self.snap_zxid, self.snap_data = op.zxid, op.data
            self.snap_len = self.log_start = len(txns)
            self.shrinks += 1
        elif isinstance(op, SetAcceptedEpoch):
            if op.epoch < self.accepted_epoch:
                raise Violation(
                    f"disk {self.sid}: acceptedEpoch {self.accepted_epoch} -> {op.epoch}"
                )
            self.accepted_epoch = op.epoch
        elif isinstance(op, SetCurrentEpoch):
            if op.epoch < self.current_epoch or op.epoch > self.accepted_epoch:
                raise Violation(
                    f"disk {self.sid}: currentEpoch {self.current_epoch} -> {op.epoch} "
                    f"(acceptedEpoch {self.accepted_epoch})"
                )
            self.current_epoch = op.epoch
        else:  # pragma: no cover - the PersistOp union is closed
            raise AssertionError(op)
