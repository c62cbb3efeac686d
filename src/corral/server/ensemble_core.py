"""The client-serving side of an ensemble member: the standalone pipeline on top of Zab.

`EnsembleCore` is `StandaloneCore` with its zxid source, its log and its session authority
replaced by the established Zab node of this term (a `Leader` or a `Learner`). Everything
that is about one client connection (framing, handshake, reply order, reads, watches, auth)
is the standalone core's, unchanged. What differs:

- Leader: a write (from one of its own clients, or a REQUEST a learner forwarded) is prepped
  with `leader.next_zxid()` against the tree plus the pending changes, then proposed
  (`leader.propose`) instead of handed to a local log. The leader owns the global sessions:
  it creates them (createSession txns, also for learners' clients), keeps them alive from
  its own clients' traffic and from learners' PING reports (`Touch`), answers learners'
  revalidations, and expires them (closeSession txns).
- Learner (follower or observer): writes, new sessions and syncs are forwarded to the leader
  (REQUEST). A client reconnecting with a session id is admitted only after the leader says
  the session is valid (REVALIDATE). Touched sessions go into the next PING reply.
- Sessions (server.global_sessions): the leader knows which server owns each global
  session (the one that created or last revalidated it); a write or a leader-served read
  arriving through any other server fails with SESSIONMOVED and that stale connection is
  closed, as ZooKeeper does. With `localSessionsEnabled` new sessions start local to their
  server (server.local_sessions): no createSession/closeSession txns, expiry here; an
  ephemeral create upgrades them (a createSession just before it) or, without upgrading,
  answers EPHEMERALONLOCALSESSION.
- Everyone: committed txns come from Zab (`Ready.apply`, in zxid order) and are applied with
  `apply_committed`: the tree changes (`DataTree.apply_txn`), watch events go out, and the
  server's own clients get their replies, in their request order (a read waits behind its
  connection's pending writes, as in standalone).

Shared with the standalone core, not copied: the handshake calls the session hooks
`_new_session`/`_resume_session` (a learner overrides both), every write goes through
`_prep_request` (the leader's forwarded REQUESTs too), and `_taking_requests` stops a
leader's own clients while its proposal backlog is full (learners' REQUESTs wait in order
in `_deferred`); commits make room again.

A core lives for one term: the runner builds it when Zab says `Established` and drops it
(closing every client connection) when the Zab node stops. The runner must take the Zab
node's Ready after every call into the core, since proposals, forwards, revalidations and
sync answers are queued there.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import struct
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, cast

from corral.proto import jute
from corral.proto.codes import Err, OpCode
from corral.proto.jute import DecodeError
from corral.proto.records import (
    ErrorTxn,
    GetDataResponse,
    Id,
    ReconfigRequest,
    SetDataTxn,
    SyncRequest,
    SyncResponse,
    TxnHeader,
)
from corral.server.acl import AuthIds
from corral.server.connection import (
    Connection,
    ConnState,
    Slot,
)
from corral.server.core import CoreConfig, Output, StandaloneCore, _Inflight
from corral.server.global_sessions import (
    LEADER_OWNER,
    LeaderSessions,
    LearnerSessions,
    UpgradeableSessions,
)
from corral.server.local_sessions import creates_ephemeral
from corral.server.prep import decode_multi_request, prep_write
from corral.server.replies import WRITE_OPS, header_frame, record_frame
from corral.server.stats import CoreStats
from corral.tree.datatree import DataTree
from corral.tree.txn import TxnRecord, decode_txn

if TYPE_CHECKING:
    from corral.tree.datatree import ApplyResult

# The established leader's reconfig planner: request, zxid -> (error code, new config text).
ReconfigPlanner = Callable[[ReconfigRequest, int], tuple[int, bytes]]

log = logging.getLogger(__name__)

_INT = struct.Struct(">i")
_MARSHALLING = int(Err.MARSHALLINGERROR)
_SESSION_MOVED = int(Err.SESSIONMOVED)
_EPHEMERAL_ON_LOCAL = int(Err.EPHEMERALONLOCALSESSION)
_ERROR = int(OpCode.ERROR)
_CREATE_SESSION = int(OpCode.CREATE_SESSION)
_CLOSE_SESSION = int(OpCode.CLOSE_SESSION)
# The writes that may create an ephemeral node (QuorumZooKeeperServer.checkUpgradeSession).
_MAY_CREATE_EPHEMERAL = frozenset({int(OpCode.CREATE), int(OpCode.CREATE2), int(OpCode.MULTI)})
# Learners' requests a leader holds while its proposal backlog is full (a memory bound).
_DEFERRED_MAX = 100_000
# No container/TTL reaping on a learner: the leader does it.
_NEVER_MS = 1 << 62


class LeaderPort(Protocol):
    """What the core asks of the established Zab leader (quorum.leader.Leader fits; the
    runner may wrap it). server/ sits below quorum/, hence a protocol, not an import."""

    def next_zxid(self) -> int: ...
    def can_propose(self) -> bool: ...
    def propose(self, hdr: TxnHeader, txn: bytes) -> object: ...
    def revalidated(self, conn: int, session_id: int, valid: bool) -> None: ...
    def sync(self, conn: int) -> None: ...


class LearnerPort(Protocol):
    """What the core asks of the established Zab learner (the runner adapts
    quorum.follower.Learner: `forward` builds its ForwardedRequest)."""

    @property
    def observer(self) -> bool: ...
    def forward(
        self, session_id: int, cxid: int, op: int, request: bytes, authinfo: tuple[Id, ...]
    ) -> None: ...
    def touch(self, session_id: int, timeout_ms: int) -> None: ...
    def revalidate(self, session_id: int, timeout_ms: int) -> None: ...


class _Waiting:
    """A request of one of our clients that a learner forwarded, waiting for its commit.

    `local_err`: the error to answer if the leader fails it (an ERROR txn): a local
    session's ephemeral create without upgrading is EPHEMERALONLOCALSESSION to its client,
    whatever the leader, which cannot know the session, logged (ZooKeeper's follower keeps
    that exception on its own copy of the request in the same way)."""

    __slots__ = ("conn", "local_err", "op", "slot", "sub_ops")

    def __init__(
        self,
        conn: Connection,
        op: int,
        slot: Slot | None,
        sub_ops: tuple[int, ...],
        local_err: int = 0,
    ) -> None:
        self.conn = conn
        self.op = op
        self.slot = slot
        self.sub_ops = sub_ops
        self.local_err = local_err


class EnsembleCore(StandaloneCore):
    """One term of client service on an ensemble member. See the module docstring."""

    def __init__(
        self,
        config: CoreConfig,
        tree: DataTree,
        now_ms: int,
        wall_ms: int,
        secret: bytes,
        *,
        leader: LeaderPort | None = None,
        learner: LearnerPort | None = None,
        reconfig: ReconfigPlanner | None = None,
    ) -> None:
        if (leader is None) == (learner is None):
            raise ValueError("an ensemble core serves as leader or as learner, not both")
        super().__init__(config, tree, now_ms, wall_ms, secret)
        if reconfig is not None:
            # The leader's reconfig checks (server/prep_reconfig.py, quorum/reconfig.py).
            self.prep_config = dataclasses.replace(self.prep_config, reconfig=reconfig)
        self.leader = leader
        self.learner = learner
        local = config.local_sessions_enabled
        tracker: LeaderSessions | LearnerSessions
        if learner is not None:
            # Only the sessions this server's clients prove live are tracked here; the
            # leader revalidates any other on reconnect.
            tracker = LearnerSessions(config.tick_ms, now_ms, wall_ms, config.server_id, local)
            self._next_container_check = _NEVER_MS
            self._leader_sessions: LeaderSessions | None = None
        else:
            # Every global session (restored from the tree as the standalone core does),
            # with owners.
            tracker = self._leader_sessions = LeaderSessions(
                config.tick_ms, now_ms, wall_ms, config.server_id, local
            )
            for sid, timeout in sorted(tree.sessions.items()):
                tracker.add(sid, timeout, now_ms)
        self.sessions = tracker
        self._tracker: UpgradeableSessions = tracker
        # Leader: zxids of our own clients' requests that failed with SESSIONMOVED (their
        # connections close when those apply).
        self._moved: set[int] = set()
        # Learner: forwarded requests by (session id, cxid), oldest first per key.
        self._waiting: dict[tuple[int, int], deque[_Waiting]] = {}
        # Learner: clients' syncs forwarded to the leader, answered in order by SyncDone.
        self._syncs: deque[tuple[Connection, Slot, str]] = deque()
        # Leader: some of our clients' requests wait for room in the proposal backlog.
        self._throttled = False
        # Leader: learners' requests held while the proposal backlog is full, in order.
        self._deferred: deque[tuple[int, int, int, int, bytes, tuple[Id, ...], int]] = deque()
        # Learner: connections waiting for the leader's REVALIDATE answer, by session id.
        self._revalidating: dict[int, list[Connection]] = {}

    def _write_reply(self, item: _Inflight, res: ApplyResult) -> bytes:
        if item.op == OpCode.RECONFIG and item.hdr.type == OpCode.RECONFIG and not res.err:
            # FinalRequestProcessor: the new config's text and /zookeeper/config's Stat.
            data = cast(SetDataTxn, item.txn).data
            assert res.stat is not None
            reply = GetDataResponse(data, res.stat)
            return record_frame(item.hdr.cxid, self.tree.last_zxid, 0, reply)
        return super()._write_reply(item, res)

    @property
    def mode(self) -> str:
        """ZooKeeper's serverState as `srvr` shows it."""
        if self.leader is not None:
            return "leader"
        assert self.learner is not None
        return "observer" if self.learner.observer else "follower"

    def snapshot_for_4lw(self, asking_conn_id: int | None = None) -> CoreStats:
        stats = super().snapshot_for_4lw(asking_conn_id)
        sessions = self.sessions
        if isinstance(sessions, UpgradeableSessions):
            stats = dataclasses.replace(stats, local_sessions=sessions.local_count())
        return stats

    # --- inputs from Zab ---

    def apply_committed(
        self,
        entries: Sequence[tuple[TxnHeader, bytes, TxnRecord | None]],
        now_ms: int,
        wall_ms: int,
    ) -> Output:
        """Committed txns (header, encoded txn, and the txn decoded when the caller has it
        already, else None) from Zab's Ready.apply, in zxid order: apply them and answer
        our clients."""
        self._begin(now_ms, wall_ms)
        for hdr, txn, record in entries:
            self._apply(self._item_for(hdr, txn, record))
        self._run_deferred()
        return self._finish()

    def learner_request(
        self,
        conn: int,
        session_id: int,
        cxid: int,
        op: int,
        request: bytes,
        authinfo: tuple[Id, ...],
        now_ms: int,
        wall_ms: int,
        *,
        owner: int,
    ) -> Output:
        """Leader: a learner (on quorum connection `conn`, server id `owner`) forwarded a
        request or a sync."""
        self._begin(now_ms, wall_ms)
        self._learner_request(conn, session_id, cxid, op, request, authinfo, owner)
        return self._finish()

    def touched(self, session_id: int, timeout_ms: int, now_ms: int, wall_ms: int) -> Output:
        """Leader: a learner's client kept this session alive (its PING reply said so)."""
        self._begin(now_ms, wall_ms)
        self.sessions.touch(session_id, timeout_ms, now_ms)
        return self._finish()

    def revalidate_ask(
        self,
        conn: int,
        session_id: int,
        timeout_ms: int,
        now_ms: int,
        wall_ms: int,
        *,
        owner: int,
    ) -> Output:
        """Leader: is this session (a client reconnecting to learner `owner`) still valid?

        Only a global session is (Leader.revalidateSession / checkIfValidGlobalSession): a
        local session cannot move, so its client is told it expired. A valid session now
        belongs to that learner."""
        self._begin(now_ms, wall_ms)
        assert self.leader is not None and self._leader_sessions is not None
        sessions = self._leader_sessions
        valid = sessions.touch_global(session_id, timeout_ms, now_ms)
        if valid:
            sessions.set_owner(session_id, owner)
        self.leader.revalidated(conn, session_id, valid)
        return self._finish()

    def revalidate_result(self, session_id: int, valid: bool, now_ms: int, wall_ms: int) -> Output:
        """Learner: the leader's answer to a revalidation."""
        self._begin(now_ms, wall_ms)
        self._revalidated(session_id, valid)
        return self._finish()

    def sync_done(self, now_ms: int, wall_ms: int) -> Output:
        """Learner: the leader's SYNC arrived: answer the oldest pending sync."""
        self._begin(now_ms, wall_ms)
        self._sync_done()
        return self._finish()

    def tick(self, now_ms: int, wall_ms: int) -> Output:
        leader = self.leader
        if leader is not None and leader.can_propose():
            # Global expiry, reaping, stalled handshakes; we go on in the same Output.
            super().tick(now_ms, wall_ms)
        else:
            # A learner expires no global session and reaps nothing; on a leader they wait
            # until proposals can be taken again.
            self._begin(now_ms, wall_ms)
            self._close_stalled_handshakes(now_ms)
        # Local sessions expire here, whatever the leader does: no txn, the connection goes.
        for sid in self._tracker.expire_local(now_ms):
            log.info("expiring local session %#x", sid)
            conn = self.by_session.get(sid)
            if conn is not None:
                self._close(conn)
        return self._finish()

    # --- the zxid source and the log: Zab's ---

    def _take_zxid(self) -> int:
        assert self.leader is not None, "only the leader assigns zxids"
        return self.leader.next_zxid()

    def _log(self, hdr: TxnHeader, txn: bytes) -> None:
        assert self.leader is not None, "only the leader proposes"
        self.leader.propose(hdr, txn)

    def _finish(self) -> Output:
        learner = self.learner
        if learner is not None:
            assert isinstance(self.sessions, LearnerSessions)
            for sid, timeout in self.sessions.take_touched().items():
                learner.touch(sid, timeout)
        return super()._finish()

    # --- client requests ---

    def _write(self, conn: Connection, xid: int, op: int, frame: bytes) -> None:
        sid = conn.session_id
        local_err = 0
        if self._tracker.local is not None and self._tracker.is_local(sid):
            if op == _CLOSE_SESSION:
                self._close_local_session(conn, xid)
                return
            if op in _MAY_CREATE_EPHEMERAL and creates_ephemeral(op, frame):
                if self.config.local_sessions_upgrading_enabled:
                    self._upgrade(sid)
                else:
                    local_err = _EPHEMERAL_ON_LOCAL
        leader_sessions = self._leader_sessions
        if leader_sessions is not None:
            # _taking_requests() said there is room. The session check of ZooKeeper's prep,
            # with our own connections as the owner.
            if op == _CLOSE_SESSION:
                err, ephemeral_err = Err.OK, Err.OK  # not checked: anyone may close it
            else:
                err, ephemeral_err = leader_sessions.check(sid, LEADER_OWNER)
            self._prep_request(sid, xid, op, frame, 8, conn.auth, conn, err, ephemeral_err)
            if err == _SESSION_MOVED:
                self._moved.add(self.inflight[-1].hdr.zxid)
            return
        assert self.learner is not None
        slot = Slot(0, None, op, xid, self.now_ms)
        conn.queue.append(slot)
        if op == _CLOSE_SESSION:
            self.sessions.set_closing(sid)
        waiting = _Waiting(conn, op, slot, _multi_sub_ops(op, frame), local_err)
        self._wait_for(sid, xid, waiting)
        self.learner.forward(sid, xid, op, bytes(frame[8:]), conn.auth.ids)

    def _close_local_session(self, conn: Connection, xid: int) -> None:
        """closeSession of a local session: forgotten here, no txn; answered in order, then
        the connection closes."""
        sid = conn.session_id
        log.info("closing local session %#x", sid)
        local = self._tracker.local
        assert local is not None
        local.remove(sid)
        slot = Slot(0, None, _CLOSE_SESSION, xid, self.now_ms)
        slot.reply = header_frame(xid, self.tree.last_zxid, 0)
        slot.close_after = True
        conn.queue.append(slot)
        if conn.queue[0] is slot:
            self._drain(conn)  # else the write before it sends it when it applies

    def _upgrade(self, sid: int) -> None:
        """A local session is about to create an ephemeral: make it global, with a
        createSession (same id, same timeout) that goes before the request."""
        timeout = self._tracker.upgrade(sid, self.now_ms)
        assert timeout is not None
        log.info("upgrading local session %#x to a global session", sid)
        if self.learner is not None:
            # No reply waits for it: it is the leader's to log; FIFO puts it first.
            self.learner.forward(sid, 0, _CREATE_SESSION, _INT.pack(timeout), ())
            return
        assert self._leader_sessions is not None
        self._leader_sessions.set_owner(sid, LEADER_OWNER)
        self._propose_create_session(sid, 0, timeout)

    def _read(
        self, conn: Connection, xid: int, op: int, frame: bytes, start_ms: int, auth: AuthIds
    ) -> None:
        learner = self.learner
        if learner is None:
            sessions = self._leader_sessions
            assert sessions is not None
            if sessions.owned_elsewhere(conn.session_id):
                # ZooKeeper's leader checks the session of reads and pings too: this client
                # moved to a learner, this connection is stale (SESSIONMOVED: close).
                log.info(
                    "connection %d: session %#x moved to another server; closing",
                    conn.conn_id,
                    conn.session_id,
                )
                self._close(conn)
                return
            super()._read(conn, xid, op, frame, start_ms, auth)
            return
        if op != OpCode.SYNC:
            super()._read(conn, xid, op, frame, start_ms, auth)
            return
        try:
            req, _ = jute.decode(SyncRequest, frame, 8)
        except DecodeError:
            super()._read(conn, xid, op, frame, start_ms, auth)  # answers MARSHALLINGERROR
            return
        # The reply waits for the leader's SYNC, which follows every commit before it. The
        # slot goes first: this read was either next in line or just taken off the head.
        slot = Slot(0, None, op, xid, start_ms)
        conn.queue.appendleft(slot)
        self._syncs.append((conn, slot, req.path))
        learner.forward(conn.session_id, xid, op, bytes(frame[8:]), auth.ids)

    def _new_session(self, conn: Connection) -> None:
        if self._tracker.local is not None:
            self._new_local_session(conn)
            return
        if self.learner is None:
            super()._new_session(conn)
            assert self._leader_sessions is not None
            self._leader_sessions.set_owner(conn.session_id, LEADER_OWNER)
            return
        # The learner picks the id (its server id in the top byte); the leader logs it.
        timeout = conn.timeout_ms
        sid = self.sessions.next_session_id(self.tree.sessions)
        self.sessions.add(sid, timeout, self.now_ms)
        conn.session_id = sid
        conn.state = ConnState.AWAITING_SESSION
        self.by_session[sid] = conn
        self._wait_for(sid, 0, _Waiting(conn, OpCode.CREATE_SESSION, None, ()))
        self.learner.forward(sid, 0, int(OpCode.CREATE_SESSION), _INT.pack(timeout), ())

    def _new_local_session(self, conn: Connection) -> None:
        """A new session is local: no txn, established at once (ZooKeeper's createSession
        of a local session skips the quorum and goes straight to its final processor)."""
        sid = self.sessions.next_session_id(self.tree.sessions)
        self._tracker.add_local(sid, conn.timeout_ms, self.now_ms)
        conn.session_id = sid
        self.by_session[sid] = conn
        self._establish(conn, True)

    def _resume_session(self, conn: Connection, sid: int) -> None:
        if self.learner is None:
            # The leader knows every global session and its own local ones.
            super()._resume_session(conn, sid)
            return
        info = conn.connect
        assert info is not None
        if not hmac.compare_digest(info.passwd, self._password(sid)):
            log.info("connection %d: wrong password for session %#x", conn.conn_id, sid)
            self._refuse_session(conn)
            return
        if self._tracker.is_local(sid):
            # One of our local sessions, back on this server: ours to judge.
            if self.sessions.touch(sid, conn.timeout_ms, self.now_ms):
                self._attach_session(conn, sid)
            else:
                self._refuse_session(conn)
            return
        # Only the leader knows whether the session is still live: ask it (REVALIDATE).
        conn.state = ConnState.AWAITING_SESSION
        waiting = self._revalidating.setdefault(sid, [])
        waiting.append(conn)
        if len(waiting) == 1:
            self.learner.revalidate(sid, conn.timeout_ms)

    def _attach_session(self, conn: Connection, sid: int) -> None:
        sessions = self._leader_sessions
        if sessions is not None:
            # A client reconnecting to the leader: the session is ours again
            # (LeaderZooKeeperServer.revalidateSession), before any request it pipelined.
            sessions.set_owner(sid, LEADER_OWNER)
        super()._attach_session(conn, sid)

    def _revalidated(self, sid: int, valid: bool) -> None:
        for conn in self._revalidating.pop(sid, []):
            if conn.state is not ConnState.AWAITING_SESSION:
                continue  # it went away meanwhile
            if not valid:
                log.info("connection %d: session %#x is not valid", conn.conn_id, sid)
                self._refuse_session(conn)
                continue
            self.sessions.add(sid, conn.timeout_ms, self.now_ms)
            self._attach_session(conn, sid)

    def _sync_done(self) -> None:
        if not self._syncs:
            log.warning("SYNC from the leader without a pending sync")
            return
        conn, slot, path = self._syncs.popleft()
        if conn.state is ConnState.CLOSED:
            return
        slot.reply = record_frame(slot.xid, self.tree.last_zxid, 0, SyncResponse(path))
        self._drain(conn)

    # --- the leader's side of forwarded requests ---

    def _learner_request(
        self,
        conn: int,
        sid: int,
        cxid: int,
        op: int,
        body: bytes,
        authinfo: tuple[Id, ...],
        owner: int,
    ) -> None:
        leader = self.leader
        assert leader is not None
        if self._deferred or (op != OpCode.SYNC and not leader.can_propose()):
            # Too many proposals in flight: hold it (and everything after it, syncs too, to
            # keep each learner's order) until commits make room.
            if len(self._deferred) >= _DEFERRED_MAX:
                # Bounded memory: the learner's client gets no answer and times out.
                log.warning("dropping a forwarded request of session %#x: backlog full", sid)
                return
            self._deferred.append((conn, sid, cxid, op, body, authinfo, owner))
            return
        self._prep_forwarded(conn, sid, cxid, op, body, authinfo, owner)

    def _prep_forwarded(
        self,
        conn: int,
        sid: int,
        cxid: int,
        op: int,
        body: bytes,
        authinfo: tuple[Id, ...],
        owner: int,
    ) -> None:
        assert self.leader is not None
        sessions = self._leader_sessions
        assert sessions is not None
        if op == OpCode.SYNC:
            self.leader.sync(conn)
            return
        if op == OpCode.CREATE_SESSION:
            # The learner chose the id (a new session, or a local one upgrading); the body
            # is the negotiated timeout. The session belongs to that learner.
            try:
                (timeout,) = _INT.unpack_from(body, 0)
            except struct.error:
                timeout = -1
            if timeout <= 0:
                hdr = TxnHeader(sid, cxid, self._take_zxid(), self.wall_ms, int(OpCode.ERROR))
                self._propose(hdr, ErrorTxn(_MARSHALLING), None, op, None)
                return
            self.sessions.add(sid, timeout, self.now_ms)
            sessions.set_owner(sid, owner)
            self._propose_create_session(sid, cxid, timeout)
        elif op in WRITE_OPS:
            if op == _CLOSE_SESSION:
                err, ephemeral_err = Err.OK, Err.OK  # not checked: anyone may close it
            else:
                err, ephemeral_err = sessions.check(sid, owner)
            auth = AuthIds.of(authinfo)
            self._prep_request(sid, cxid, op, body, 0, auth, None, err, ephemeral_err)
        else:
            log.warning("ignoring forwarded op %d of session %#x: not a write", op, sid)

    def _propose_create_session(self, sid: int, cxid: int, timeout: int) -> None:
        hdr, txn = prep_write(
            self.tree,
            self.pending,
            _CREATE_SESSION,
            timeout,
            session_id=sid,
            cxid=cxid,
            zxid=self._take_zxid(),
            time_ms=self.wall_ms,
            config=self.prep_config,
        )
        self._propose(hdr, txn, None, _CREATE_SESSION, None)

    def _run_deferred(self) -> None:
        leader = self.leader
        deferred = self._deferred
        while deferred and leader is not None and leader.can_propose():
            self._prep_forwarded(*deferred.popleft())
        if self._throttled and self._taking_requests():
            # Commits made room: run what our own clients sent meanwhile.
            self._throttled = False
            for conn in list(self.conns.values()):
                if conn.backlog and conn.state is ConnState.ESTABLISHED:
                    self._pump(conn)

    def _taking_requests(self) -> bool:
        leader = self.leader
        if leader is None or (not self._deferred and leader.can_propose()):
            return True
        self._throttled = True
        return False

    # --- committed txns ---

    def _apply(self, item: _Inflight) -> None:
        hdr = item.hdr
        htype = hdr.type
        conn = item.conn
        if conn is not None and self._session_moved(item):
            # ZooKeeper answers nothing: SESSIONMOVED closes the stale connection.
            item.conn = None
            super()._apply(item)
            log.info(
                "connection %d: session %#x moved to another server; closing",
                conn.conn_id,
                hdr.client_id,
            )
            self._close(conn)
            return
        if htype == _CREATE_SESSION:
            self._tracker.committed(hdr.client_id)
        super()._apply(item)

    def _session_moved(self, item: _Inflight) -> bool:
        """Whether this applied request of one of our connections failed with SESSIONMOVED.

        A single request is an ERROR txn with that code. A multi fails op by op; ZooKeeper's
        leader still closes its own client's connection (the exception is on its request
        object), a learner answers the multi's results: we do the same."""
        moved = self._moved
        if moved and item.hdr.zxid in moved:
            moved.discard(item.hdr.zxid)
            return True
        return item.hdr.type == _ERROR and cast(ErrorTxn, item.txn).err == _SESSION_MOVED

    def _wait_for(self, sid: int, cxid: int, waiting: _Waiting) -> None:
        self._waiting.setdefault((sid, cxid), deque()).append(waiting)

    def _item_for(self, hdr: TxnHeader, data: bytes, record: TxnRecord | None) -> _Inflight:
        """The applied txn with what we know of its client (ours, or nobody here)."""
        inflight = self.inflight
        if inflight and inflight[0].hdr.zxid == hdr.zxid:
            return inflight.popleft()  # the leader's own proposal
        assert not inflight or inflight[0].hdr.zxid > hdr.zxid, "commit out of zxid order"
        # Decoded here unless Zab had it decoded already. None only for a bodiless
        # closeSession of an old log, which apply_txn accepts.
        txn = record if record is not None else cast(TxnRecord, decode_txn(hdr.type, data)[0])
        waiting = self._take_waiting(hdr)
        if waiting is None:
            return _Inflight(hdr, txn, None, hdr.type, None)
        if waiting.local_err and hdr.type == _ERROR:
            # Our client gets the error we know (an ERROR txn applies as nothing, whatever
            # its code).
            txn = ErrorTxn(waiting.local_err)
        return _Inflight(hdr, txn, waiting.conn, waiting.op, waiting.slot, waiting.sub_ops)

    def _take_waiting(self, hdr: TxnHeader) -> _Waiting | None:
        key = (hdr.client_id, hdr.cxid)
        queue = self._waiting.get(key)
        if not queue:
            return None
        head = queue[0]
        # A session's createSession (cxid 0) is never confused with a client request.
        is_create = hdr.type == OpCode.CREATE_SESSION
        if (head.op == OpCode.CREATE_SESSION) != is_create and hdr.type != OpCode.ERROR:
            return None
        queue.popleft()
        if not queue:
            del self._waiting[key]
        return head


def _multi_sub_ops(op: int, frame: bytes) -> tuple[int, ...]:
    """A multi's sub-op types (they shape its reply: create2 answers with a Stat)."""
    if op != OpCode.MULTI:
        return ()
    try:
        return tuple(sub for sub, _ in decode_multi_request(frame, 8))
    except DecodeError:
        return ()
