"""The invariants, checked after every step of a simulation (see corral.sim).

Ghost state kept here (never seen by the servers):
- G, the one sequence of committed txns: a leader's commit decision (taken when the
  runner takes its Ready, before any COMMIT leaves) extends G or agrees with it; when a
  leader is established, its whole history is committed and must extend G.
- the acknowledged txns, in acknowledgement order.
- a tree digest per zxid, from the first synced server whose tree reached it.
- with reconfig, the configs in force along G: the initial one, then the config of each
  committed RECONFIG txn from its position on; and every config version any server
  activated, with its membership.

Reconfig invariants: every committed prefix of G is durable on a quorum of the config in
force (of both configs when G ends with the reconfig that changed it); a leader commits
txns of its own epoch only where it votes in the config in force; an established leader's
config is no older than the last committed one; a config version means one membership
everywhere, and an activated version is a committed reconfig's zxid (or a first leader's
NEWLEADER zxid versioning the initial membership, ZOOKEEPER-1783).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from corral.proto.codes import OpCode
from corral.quorum import zab_packets as zp
from corral.quorum.leader import Leader, reconfig_verifier
from corral.quorum.ready import ApplyTxn, Established, Ready
from corral.quorum.verifier import QuorumVerifier
from corral.quorum.zab_packets import TxnEntry
from corral.sim.errors import Violation
from corral.sim.treecodec import tree_digest
from corral.tree.znode import is_container_owner, is_ttl_owner

if TYPE_CHECKING:
    from corral.sim.server import Server


def _hex(entries: Iterable[TxnEntry]) -> str:
    return "[" + ", ".join(hex(e.zxid) for e in entries) + "]"


class Checker:
    def __init__(
        self, verifier: QuorumVerifier, digest_every: int = 4, reconfig: bool = False
    ) -> None:
        self.verifier = verifier
        self.reconfig = reconfig
        # (position in G of the RECONFIG txn, its config); the initial config first.
        self.configs: list[tuple[int, QuorumVerifier]] = [(-1, verifier)]
        # Config version -> (voters, observers), as activated anywhere.
        self.activated: dict[int, tuple[frozenset[int], frozenset[int]]] = {}
        self.g: list[TxnEntry] = []
        self.g_pos: dict[int, int] = {}
        self.established: dict[int, int] = {}  # epoch -> leader sid
        self.acked: list[int] = []  # in acknowledgement order
        self.max_acked = 0
        self.invoked: dict[tuple[int, int], int] = {}  # (session, cxid) -> max_acked then
        self.session_last: dict[int, tuple[int, int]] = {}  # session -> (cxid, zxid)
        self.digests: dict[int, tuple[int, int]] = {}  # zxid -> (digest, sid)
        self.digest_every = digest_every
        self.digest_checks = 0
        self._lcp: dict[int, tuple[int, int]] = {}  # sid -> (disk.shrinks, lcp with G)
        self._durable_key = (0, 0)

    # -- G --------------------------------------------------------------------------------

    def _extend(self, entry: TxnEntry, where: str) -> None:
        if self.g and entry.zxid <= self.g[-1].zxid:
            raise Violation(f"{where}: committed zxid {entry.zxid:#x} after {self.g[-1].zxid:#x}")
        self.g_pos[entry.zxid] = len(self.g)
        self.g.append(entry)
        if self.reconfig and entry.hdr.type == OpCode.RECONFIG:
            config = reconfig_verifier(entry)
            if config.version != entry.zxid:
                raise Violation(f"{where}: reconfig {entry.zxid:#x} carries {config.version:#x}")
            self.configs.append((len(self.g) - 1, config))

    def in_force(self, pos: int) -> QuorumVerifier:
        """The config under which G's txn at `pos` commits (a reconfig: the one before it)."""
        for at, config in reversed(self.configs):
            if at < pos:
                return config
        raise AssertionError("the initial config is at -1")

    def _agree(self, seq: list[TxnEntry], start: int, where: str) -> None:
        """seq[i] is at position start + i of G, or extends it."""
        g = self.g
        for i, entry in enumerate(seq):
            pos = start + i
            if pos < len(g):
                if g[pos] != entry:
                    raise Violation(
                        f"{where} commits {entry.zxid:#x} where G has {g[pos].zxid:#x} "
                        f"(G tail {_hex(g[max(0, pos - 2) : pos + 3])})"
                    )
            elif pos == len(g):
                self._extend(entry, where)
            else:  # pragma: no cover - positions are consecutive
                raise Violation(f"{where}: a hole in G at {pos}")

    def on_leader_ready(self, srv: Server, ready: Ready) -> None:
        """A leader's Ready was taken: its applies are commit decisions."""
        applies = [a.entry for a in ready.apply if isinstance(a, ApplyTxn)]
        est = [n for n in ready.notices if isinstance(n, Established)]
        where = f"leader {srv.sid}"
        old_len = len(self.g)
        if est:
            epoch = est[0].epoch
            prior = self.established.get(epoch)
            if prior is not None and prior != srv.sid:
                raise Violation(f"two leaders established in epoch {epoch}: {prior} and {srv.sid}")
            self.established[epoch] = srv.sid
            seq = srv.applied + applies
            # Primary integrity: every txn committed in an earlier epoch is in its history.
            older = [e for e in self.g if zp.epoch_of(e.zxid) < epoch]
            if seq[: len(older)] != older:
                raise Violation(
                    f"leader {srv.sid} established epoch {epoch} without committed txns: "
                    f"has {_hex(seq[-3:])}, G {_hex(older[-3:])}"
                )
            self._agree(seq, 0, where)
        elif applies:
            self._agree(applies, len(srv.applied), where)
        if self.reconfig and applies:
            self._check_leader_config(srv, applies, old_len, bool(est))

    def _check_leader_config(
        self, srv: Server, applies: list[TxnEntry], old_len: int, established: bool
    ) -> None:
        role = srv.role
        assert isinstance(role, Leader) and role.epoch is not None
        start = len(srv.applied)
        for i, entry in enumerate(applies):
            pos = start + i
            if pos < old_len or zp.epoch_of(entry.zxid) != role.epoch:
                continue
            config = self.in_force(pos)
            if not config.is_voter(srv.sid):
                raise Violation(
                    f"leader {srv.sid} commits {entry.zxid:#x} under config "
                    f"{config.version:#x}, where it is not a voter"
                )
        if established:
            last = self.configs[-1][1]
            if last.version > role.last_seen.version:
                raise Violation(
                    f"leader {srv.sid} established epoch {role.epoch} under config "
                    f"{role.last_seen.version:#x}, older than committed {last.version:#x}"
                )

    def on_activate(self, srv: Server, config: QuorumVerifier) -> None:
        """A server activated `config` (its dynamic config file names it now)."""
        members = (config.voters, config.observers)
        seen = self.activated.setdefault(config.version, members)
        if seen != members:
            raise Violation(
                f"server {srv.sid} activated config {config.version:#x} as "
                f"{sorted(config.voters)}+{sorted(config.observers)}, elsewhere "
                f"{sorted(seen[0])}+{sorted(seen[1])}"
            )
        committed = [c for at, c in self.configs[1:] if c.version == config.version]
        if committed:
            if committed[0].servers != config.servers:
                raise Violation(f"server {srv.sid} activated {config.version:#x} unlike its txn")
            return
        initial = self.configs[0][1]
        if zp.counter_of(config.version) != 0 or not initial.same_members(config):
            raise Violation(
                f"server {srv.sid} activated config {config.version:#x}, which no committed "
                f"reconfig carries (committed: {[hex(c.version) for _, c in self.configs]})"
            )

    def on_apply(self, srv: Server, entry: TxnEntry) -> None:
        """`entry` was just appended to srv.applied (checked unless the tree is unverified)."""
        if srv.dirty:
            return
        pos = len(srv.applied) - 1
        if pos >= len(self.g) or self.g[pos] != entry:
            raise Violation(
                f"server {srv.sid} applied {entry.zxid:#x} at {pos}, not G's "
                f"{_hex(self.g[max(0, pos - 2) : pos + 1])}"
            )

    def on_synced(self, srv: Server) -> None:
        """A learner is up to date: its whole tree history must be a prefix of G."""
        n = len(srv.applied)
        if srv.applied != self.g[:n]:
            raise Violation(
                f"server {srv.sid} synced with a tree that is not a prefix of G: "
                f"{_hex(srv.applied[-3:])} vs {_hex(self.g[max(0, n - 3) : n])}"
            )
        srv.dirty = False

    def invoke(self, session_id: int, cxid: int) -> None:
        """A client sent a write: it must be ordered after every write acknowledged so far."""
        self.invoked[(session_id, cxid)] = self.max_acked

    def lost_reply(self, session_id: int, cxid: int) -> None:
        """The client's connection closed before the answer: it never learns the outcome."""
        self.invoked.pop((session_id, cxid), None)

    def on_ack(self, entry: TxnEntry) -> None:
        """The leader applied a txn it proposed for a client: the client gets its answer
        (unless it moved to another server meanwhile)."""
        zxid = entry.zxid
        pos = self.g_pos.get(zxid)
        if pos is None or self.g[pos] != entry:
            raise Violation(f"acknowledged {zxid:#x} is not committed")
        hdr = entry.hdr
        floor = self.invoked.pop((hdr.client_id, hdr.cxid), None)
        if floor is not None:
            # Real-time order (linearizability of writes): it was sent after an answer
            # for floor had been given, so it must come after it.
            if zxid <= floor:
                raise Violation(f"write {zxid:#x} was sent after {floor:#x} was acknowledged")
            # A session's writes take effect in the order it sent them.
            last = self.session_last.get(hdr.client_id)
            if last is not None and (hdr.cxid > last[0]) != (zxid > last[1]):
                raise Violation(
                    f"session {hdr.client_id:#x}: request {hdr.cxid} at {zxid:#x} is out of "
                    f"order with its request {last[0]} at {last[1]:#x}"
                )
            if last is None or hdr.cxid > last[0]:
                self.session_last[hdr.client_id] = (hdr.cxid, zxid)
        self.max_acked = max(self.max_acked, zxid)
        self.acked.append(zxid)

    # -- trees ----------------------------------------------------------------------------

    def after_applies(self, srv: Server, force: bool = False) -> None:
        tree = srv.tree
        zxid = tree.last_zxid
        if not force and (zp.counter_of(zxid) % self.digest_every) != 0:
            return
        for owner in tree.ephemerals_by_session():
            if is_container_owner(owner) or is_ttl_owner(owner):
                continue
            if owner not in tree.sessions:
                raise Violation(f"server {srv.sid}: ephemerals of dead session {owner:#x}")
        if srv.dirty or not srv.serving:
            return
        self.digest_checks += 1
        digest = tree_digest(tree)
        seen = self.digests.get(zxid)
        if seen is None:
            self.digests[zxid] = (digest, srv.sid)
        elif seen[0] != digest:
            raise Violation(f"servers {seen[1]} and {srv.sid} have different trees at {zxid:#x}")

    # -- durability -------------------------------------------------------------------------

    def lcp(self, srv: Server) -> int:
        d = srv.disk
        cached = self._lcp.get(srv.sid)
        v = cached[1] if cached is not None and cached[0] == d.shrinks else 0
        hist, g = d.hist, self.g
        n = min(len(hist), len(g))
        v = min(v, n)
        while v < n and hist[v] == g[v]:
            v += 1
        self._lcp[srv.sid] = (d.shrinks, v)
        return v

    def check_durable(self, voters: list[Server]) -> None:
        """Every committed txn is durable on a quorum of voters' disks."""
        need = len(self.g)
        if not need:
            return
        key = (need, sum(s.disk.writes for s in voters))
        if key == self._durable_key:
            return
        self._durable_key = key
        holders = [s.sid for s in voters if self.lcp(s) >= need]
        at, config = self.configs[-1]
        configs = [config]
        if at == need - 1:
            configs.append(self.configs[-2][1])  # the reconfig itself needed both
        if not all(c.contains_quorum(holders) for c in configs):
            lost = min(sorted((self.lcp(s) for s in voters), reverse=True)[: len(voters) // 2 + 1])
            lost = min(lost, need - 1)
            raise Violation(
                f"committed {self.g[lost].zxid:#x} is durable only on {holders or 'none'} "
                f"(prefixes held: { {s.sid: self.lcp(s) for s in voters} }; config "
                f"{', '.join(hex(c.version) for c in configs)})"
            )
