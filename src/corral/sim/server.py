"""One simulated server's state: election, Zab role, fake disk, tree, and the bits of the
server core a leader needs to turn client requests into txns (prep, pending changes, the
session tracker). The World drives it; this module holds state and recovery."""

from __future__ import annotations

from dataclasses import dataclass, field

from corral.quorum.election import FastLeaderElection
from corral.quorum.follower import Learner, LearnerPhase
from corral.quorum.leader import Leader, LeaderPhase
from corral.quorum.ready import Ready
from corral.quorum.verifier import QuorumVerifier
from corral.quorum.zab_packets import TxnEntry
from corral.server.pending import PendingChanges
from corral.sim.disk import Disk
from corral.sim.treecodec import decode_tree
from corral.tree.datatree import DataTree
from corral.tree.txn import decode_txn

NEVER = 1 << 62


@dataclass
class Proposed:
    """A txn the leader proposed for a client (acknowledged when the leader applies it)."""

    session_id: int
    op: int


@dataclass
class Server:
    sid: int
    observer: bool
    disk: Disk
    fle: FastLeaderElection
    tree: DataTree = field(default_factory=DataTree)
    # The txns the tree holds, in order (ghost: for the checks only).
    applied: list[TxnEntry] = field(default_factory=list)
    up: bool = True
    incarnation: int = 0
    role: Leader | Learner | None = None
    conn: int | None = None  # a learner's connection to its leader
    leader_conns: set[int] = field(default_factory=set)
    inflight: Ready | None = None
    needs_snapshot: bool = False
    paused_until: int = 0
    clock_offset: int = 0
    next_wake: int = NEVER
    # The tree may hold txns not known to be committed (replayed from the log at restart).
    dirty: bool = False
    serving: bool = False  # established (leader) or up to date (learner)
    # Leader-side core state, reset with each role.
    pending: PendingChanges = field(default_factory=PendingChanges)
    proposed: dict[int, Proposed] = field(default_factory=dict)
    tracker: dict[int, int] = field(default_factory=dict)  # session -> deadline (local ms)
    closing: set[int] = field(default_factory=set)
    next_session_check: int = NEVER
    since_snapshot: int = 0
    armed: bool = False  # crash inside the next Ready
    # The active config and the last proposed one (the runner's dynamic config file and its
    # `.next` file: durable once the notice that carries them is handled). `observer` above
    # is the learner type, which follows the active config (Peer.activate_config).
    verifier: QuorumVerifier | None = None
    last_seen: QuorumVerifier | None = None

    def config(self) -> QuorumVerifier:
        assert self.verifier is not None
        return self.verifier

    def leader(self) -> Leader | None:
        role = self.role
        if isinstance(role, Leader) and role.phase is not LeaderPhase.STOPPED:
            return role
        return None

    def learner(self) -> Learner | None:
        role = self.role
        if isinstance(role, Learner) and role.phase is not LearnerPhase.STOPPED:
            return role
        return None

    def state(self) -> str:
        if not self.up:
            return "down"
        role = self.role
        if isinstance(role, Leader):
            return f"leader/{role.phase.value}"
        if isinstance(role, Learner):
            kind = "observer" if self.observer else "follower"
            return f"{kind}({role.leader_sid})/{role.phase.value}"
        return "looking"


def apply_entry(tree: DataTree, entry: TxnEntry) -> None:
    rec, _ = decode_txn(entry.hdr.type, entry.txn)
    tree.apply_txn(entry.hdr, rec)


def recover(srv: Server, upto: int | None = None) -> None:
    """Rebuild the tree as recovery does: the newest snapshot plus every logged txn after
    it (up to `upto`), so a replayed tail may hold txns not known to be committed."""
    d = srv.disk
    tree = decode_tree(d.snap_data) if d.snap_data is not None else DataTree()
    applied = list(d.hist[: d.snap_len])
    for entry in d.hist[d.snap_len :]:
        if upto is not None and entry.zxid > upto:
            break
        apply_entry(tree, entry)
        applied.append(entry)
    srv.tree = tree
    srv.applied = applied
    srv.dirty = True
