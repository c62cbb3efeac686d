"""The standalone server's heart: bytes and time in, replies and txns to persist out.

`StandaloneCore` is ZooKeeper's standalone request pipeline (Prep -> Sync -> Final) as a pure
state machine. The runner (net/) feeds it what happens and performs the `Output`:

    out = core.receive(conn_id, data, now_ms, wall_ms)
    write out.sends; close out.closes (after their sends); append out.persist to the log;
    answer out.four_letter (then close those connections)
    ... later, when the log is durable up to zxid:  out = core.persisted(zxid, now_ms, wall_ms)

Writes are prepped at once (with the next zxid, against the tree plus the pending changes),
persisted, and applied in zxid order once durable; their watch events go out before their
reply. Reads are answered from the tree, but never ahead of the same connection's earlier
requests, so replies stay in request order and a session sees its own writes. Auth and SASL
are answered at once, outside that order, as ZooKeeper does.

The returned Output is owned by the core and reused: consume it before calling the core
again. `now_ms` is a monotonic clock (expiry); `wall_ms` the wall clock (txn times, ids).
"""

from __future__ import annotations

import hmac
import logging
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from corral import limits
from corral.proto import jute
from corral.proto.codes import Err, KeeperState, OpCode, Perm
from corral.proto.jute import DecodeError
from corral.proto.records import (
    CreateRequest,
    CreateTTLRequest,
    DeleteRequest,
    ErrorTxn,
    Id,
    ReconfigRequest,
    SetACLRequest,
    SetDataRequest,
    TxnHeader,
)
from corral.server import acl
from corral.server.acl import AuthIds
from corral.server.auth import Authenticator, AuthOutcome
from corral.server.connection import (
    EXPIRED_PASSWORD,
    Connection,
    ConnState,
    FrameError,
    Slot,
    connect_response_frame,
    parse_connect,
)
from corral.server.prep import (
    PendingChanges,
    PrepConfig,
    decode_multi_request,
    prep_close_session,
    prep_write,
)
from corral.server.reads import Reads
from corral.server.reaper import reap_candidates
from corral.server.replies import (
    READ_OPS,
    WRITE_OPS,
    create2_frame,
    create_frame,
    header_frame,
    multi_response_body,
    notification_frame,
    raw_frame,
    stat_frame,
)
from corral.server.sasl_digest import DigestConfig
from corral.server.sessions import SessionTracker, negotiate_timeout, password_for
from corral.server.stats import CoreStats, collect_stats
from corral.tree.datatree import ApplyResult, DataTree
from corral.tree.txn import TxnRecord
from corral.tree.watches import WatchEvent

log = logging.getLogger(__name__)

_REQ_HDR = struct.Struct(">ii")
_SYNC_CONNECTED = int(KeeperState.SYNC_CONNECTED)
_READ = int(Perm.READ)
_MARSHALLING = int(Err.MARSHALLINGERROR)
_REQUEST_CLASSES: dict[int, type] = {
    OpCode.CREATE: CreateRequest,
    OpCode.CREATE2: CreateRequest,
    OpCode.CREATE_CONTAINER: CreateRequest,
    OpCode.CREATE_TTL: CreateTTLRequest,
    OpCode.DELETE: DeleteRequest,
    OpCode.SET_DATA: SetDataRequest,
    OpCode.SET_ACL: SetACLRequest,
    OpCode.RECONFIG: ReconfigRequest,
}


@dataclass(frozen=True, slots=True)
class CoreConfig:
    """The few settings the core needs (taken from corral.config's ServerConfig).

    min/max session timeouts of -1 mean ZooKeeper's defaults, 2x and 20x tick_ms.
    """

    tick_ms: int = 2000
    min_session_timeout_ms: int = -1
    max_session_timeout_ms: int = -1
    # The top byte of session ids. A standalone ZooKeeper uses 1 whatever its myid
    # (ZooKeeperServer.createSessionTrackerServerId), so its ids look like 0x01...
    server_id: int = 1
    # Use ZooKeeper's guessable java.util.Random session passwords (mixed ensembles).
    zookeeper_passwords: bool = False
    skip_acl: bool = False
    extended_types_enabled: bool = False
    reconfig_enabled: bool = False
    enforce_quota: bool = False
    providers: acl.AuthProviders = acl.DEFAULT_PROVIDERS
    # zookeeper.DigestAuthenticationProvider.superDigest ("super:<base64 sha1>").
    super_digest: str | None = None
    # SASL DIGEST-MD5 (the JAAS Server section); None: SASL not configured.
    sasl: DigestConfig | None = None
    sasl_super_users: tuple[str, ...] = ()
    # zookeeper.enforce.auth.schemes when enforcement is on (sessionRequireClientSASLAuth:
    # sasl); empty: off. zookeeper.allowSaslFailedClients. See server.auth.
    enforce_auth_schemes: frozenset[str] = frozenset()
    allow_sasl_failed_clients: bool = False
    max_buffer_bytes: int = limits.jute_maxbuffer_bytes
    outstanding_max: int = limits.outstanding_requests_per_connection_max
    # ContainerManager: znode.container.checkIntervalMs / maxPerMinute / maxNeverUsedIntervalMs.
    container_check_interval_ms: int = 60_000
    container_max_per_minute: int = 10_000
    container_max_never_used_ms: int = 0
    # A connection that has not completed its handshake this long after it was accepted is
    # closed (ZooKeeper's zookeeper.nio.sessionlessCnxnTimeout). Unlike ZooKeeper, bytes
    # trickling in do not extend it, so a slowloris cannot hold a connection forever.
    sessionless_timeout_ms: int = 10_000
    # Reply bytes a connection may be handed before the runner reports its socket drained
    # (Output.await_drain, then `drained`); 0: no bound (a runner that never reports).
    send_buffer_max_bytes: int = 0
    # localSessionsEnabled / localSessionsUpgradingEnabled: ensemble members only (a
    # standalone server ignores them, as ZooKeeper's does); see server.local_sessions.
    local_sessions_enabled: bool = False
    local_sessions_upgrading_enabled: bool = False

    @property
    def min_timeout(self) -> int:
        v = self.min_session_timeout_ms
        return self.tick_ms * 2 if v == -1 else v

    @property
    def max_timeout(self) -> int:
        v = self.max_session_timeout_ms
        return self.tick_ms * 20 if v == -1 else v


@dataclass(slots=True)
class Output:
    """What the runner must do after a call; reused by the core between calls.

    sends: (conn id, bytes) with at most one entry per connection per call;
    closes: connections to close after their sends are written;
    persist: (header, encoded txn) to append to the log, in zxid order;
    four_letter: (conn id, word): answer the word, then close that connection;
    pause_reading / resume_reading: connections over / back under the outstanding bound;
    await_drain: connections over the send bound: call `drained` once their socket's
    write buffer is (nearly) empty.
    """

    sends: list[tuple[int, bytes]] = field(default_factory=list)
    closes: list[int] = field(default_factory=list)
    persist: list[tuple[TxnHeader, bytes]] = field(default_factory=list)
    four_letter: list[tuple[int, str]] = field(default_factory=list)
    pause_reading: list[int] = field(default_factory=list)
    resume_reading: list[int] = field(default_factory=list)
    await_drain: list[int] = field(default_factory=list)

    def clear(self) -> None:
        self.sends.clear()
        self.closes.clear()
        self.persist.clear()
        self.four_letter.clear()
        self.pause_reading.clear()
        self.resume_reading.clear()
        self.await_drain.clear()


class _Inflight:
    """A txn handed out for persisting, waiting to be applied."""

    __slots__ = ("conn", "hdr", "op", "slot", "sub_ops", "txn")

    def __init__(
        self,
        hdr: TxnHeader,
        txn: TxnRecord,
        conn: Connection | None,
        op: int,
        slot: Slot | None,
        sub_ops: tuple[int, ...] = (),
    ) -> None:
        self.hdr = hdr
        self.sub_ops = sub_ops  # a multi's request op types (the reply shape of create2)
        self.txn = txn
        self.conn = conn
        self.op = op
        self.slot = slot


class StandaloneCore:
    """ZooKeeper's standalone server logic, pure. See the module docstring."""

    def __init__(
        self, config: CoreConfig, tree: DataTree, now_ms: int, wall_ms: int, secret: bytes
    ) -> None:
        self.config = config
        self.tree = tree
        self.secret = secret
        self.prep_config = PrepConfig(
            skip_acl=config.skip_acl,
            extended_types_enabled=config.extended_types_enabled,
            reconfig_enabled=config.reconfig_enabled,
            enforce_quota=config.enforce_quota,
            providers=config.providers,
        )
        self.pending = PendingChanges()
        self.sessions = SessionTracker(config.tick_ms, now_ms, wall_ms, config.server_id)
        # Sessions restored from the snapshot/log live on until they expire (ZooKeeper).
        for sid, timeout in sorted(tree.sessions.items()):
            self.sessions.add(sid, timeout, now_ms)
        self.conns: dict[int, Connection] = {}
        self.by_session: dict[int, Connection] = {}
        self.inflight: deque[_Inflight] = deque()
        self.next_zxid = tree.last_zxid + 1
        self.reads = Reads(tree, config.skip_acl, config.providers)
        self.now_ms = now_ms
        self.wall_ms = wall_ms
        self._out = Output()
        self._dirty: list[Connection] = []
        self._next_container_check = now_ms + config.container_check_interval_ms
        self._reaping: dict[int, str] = {}  # zxid -> container/TTL path being deleted
        # (deadline_ms, conn id) of accepted connections, in accept order.
        self._handshake_deadlines: deque[tuple[int, int]] = deque()
        self.auth = Authenticator(
            config.providers,
            config.super_digest,
            config.sasl,
            config.sasl_super_users,
            secret,
            config.enforce_auth_schemes,
            config.allow_sasl_failed_clients,
        )
        # Counters for four-letter words and metrics.
        self.packets_received = 0
        self.packets_sent = 0
        self.lat_min = 0
        self.lat_max = 0
        self.lat_total = 0
        self.lat_count = 0

    # --- inputs ---

    def open(
        self,
        conn_id: int,
        remote_ip: str,
        secure_ids: tuple[Id, ...] = (),
        remote_port: int = 0,
        now_ms: int | None = None,
    ) -> Output:
        """A client connected (secure_ids: ids from its TLS certificate, e.g. x509).

        `now_ms` starts its handshake deadline (default: the time of the last call).
        """
        self._out.clear()
        if conn_id in self.conns:
            raise ValueError(f"connection {conn_id} is already open")
        if now_ms is not None:
            self.now_ms = now_ms
        self.conns[conn_id] = Connection(
            conn_id, remote_ip, secure_ids, self.config.max_buffer_bytes, remote_port
        )
        self._handshake_deadlines.append(
            (self.now_ms + self.config.sessionless_timeout_ms, conn_id)
        )
        return self._out

    def receive(self, conn_id: int, data: bytes, now_ms: int, wall_ms: int) -> Output:
        """Bytes arrived on a connection."""
        self._begin(now_ms, wall_ms)
        conn = self.conns.get(conn_id)
        if conn is not None and conn.state is not ConnState.CLOSED:
            try:
                frames, word = conn.feed(data)
            except FrameError as exc:
                log.info("closing connection %d: %s", conn_id, exc)
                self._close(conn)
            else:
                if word is not None:
                    # Answered by the runner (admin/fourletter), which then closes.
                    conn.state = ConnState.CLOSED
                    conn.packets_received += 1  # ZooKeeper counts the word as a packet
                    self.packets_received += 1
                    self._out.four_letter.append((conn_id, word))
                for frame in frames:
                    if conn.state is ConnState.CLOSED:
                        break
                    self._frame(conn, frame)
        return self._finish()

    def closed(self, conn_id: int, now_ms: int | None = None) -> Output:
        """The runner saw the connection close (either side). The session lives on."""
        self._begin(self.now_ms if now_ms is None else now_ms, self.wall_ms)
        conn = self.conns.pop(conn_id, None)
        if conn is not None:
            self._detach(conn)
        return self._finish()

    def drained(self, conn_id: int, now_ms: int, wall_ms: int) -> Output:
        """The runner wrote what it was given for `conn_id` (answers Output.await_drain)."""
        self._begin(now_ms, wall_ms)
        conn = self.conns.get(conn_id)
        if conn is not None and conn.state is not ConnState.CLOSED:
            conn.unacked_bytes = 0
            if conn.send_blocked:
                conn.send_blocked = False
                self._drain(conn)
        return self._finish()

    def persisted(self, zxid: int, now_ms: int, wall_ms: int) -> Output:
        """The log is durable up to `zxid`: apply those txns and answer."""
        self._begin(now_ms, wall_ms)
        inflight = self.inflight
        while inflight and inflight[0].hdr.zxid <= zxid:
            self._apply(inflight.popleft())
        return self._finish()

    def tick(self, now_ms: int, wall_ms: int) -> Output:
        """Time passed: expire sessions, reap containers and TTL nodes."""
        self._begin(now_ms, wall_ms)
        for sid in self.sessions.expired(now_ms):
            log.info("expiring session %#x", sid)
            hdr, txn = prep_close_session(
                self.tree, self.pending, session_id=sid, zxid=self._take_zxid(), time_ms=wall_ms
            )
            self._propose(hdr, txn, None, OpCode.CLOSE_SESSION, None)
        if now_ms >= self._next_container_check:
            self._next_container_check = now_ms + self.config.container_check_interval_ms
            self._reap(wall_ms)
        self._close_stalled_handshakes(now_ms)
        return self._finish()

    def next_deadline_ms(self) -> int:
        """The next `now_ms` at which `tick` has work (session buckets, container checks,
        a connection's handshake deadline)."""
        deadline = min(self.sessions.next_expiration_ms(), self._next_container_check)
        if self._handshake_deadlines:
            deadline = min(deadline, self._handshake_deadlines[0][0])
        return deadline

    def _close_stalled_handshakes(self, now_ms: int) -> None:
        """Close connections still without a ConnectRequest at their deadline.

        Deadlines are queued in accept order, so the queue is sorted and each connection is
        looked at once: those that got further (or closed) by then are simply dropped.
        """
        deadlines = self._handshake_deadlines
        while deadlines and deadlines[0][0] <= now_ms:
            _, conn_id = deadlines.popleft()
            conn = self.conns.get(conn_id)
            if conn is not None and conn.state is ConnState.FRESH:
                log.info("closing connection %d: no handshake in time", conn_id)
                self._close(conn)

    # --- plumbing ---

    def _begin(self, now_ms: int, wall_ms: int) -> None:
        self._out.clear()
        self.now_ms = now_ms
        self.wall_ms = wall_ms

    def _finish(self) -> Output:
        out = self._out
        for conn in self._dirty:
            chunks = conn.out
            if chunks:
                # One reply (the usual case) goes out as it is, without a copy.
                out.sends.append(
                    (conn.conn_id, chunks[0] if len(chunks) == 1 else b"".join(chunks))
                )
                chunks.clear()
        self._dirty.clear()
        return out

    def _emit(self, conn: Connection, data: bytes) -> None:
        out = conn.out
        if not out:
            self._dirty.append(conn)
        out.append(data)
        conn.packets_sent += 1
        self.packets_sent += 1
        conn.unacked_bytes += len(data)
        cap = self.config.send_buffer_max_bytes
        if cap and conn.unacked_bytes >= cap and not conn.send_blocked:
            conn.send_blocked = True
            self._out.await_drain.append(conn.conn_id)

    def _take_zxid(self) -> int:
        zxid = self.next_zxid
        self.next_zxid = zxid + 1
        return zxid

    def _close(self, conn: Connection) -> None:
        """Close a connection after whatever it has been sent so far."""
        if conn.state is ConnState.CLOSED:
            return
        self._out.closes.append(conn.conn_id)
        self._detach(conn)

    def _detach(self, conn: Connection) -> None:
        conn.state = ConnState.CLOSED
        conn.queue.clear()
        conn.backlog.clear()
        conn.backlog_bytes = 0
        self.tree.watches.remove_watcher(conn.conn_id)
        if self.by_session.get(conn.session_id) is conn:
            del self.by_session[conn.session_id]

    # --- frames ---

    def _frame(self, conn: Connection, frame: bytes) -> None:
        self.packets_received += 1
        conn.packets_received += 1
        state = conn.state
        if state is ConnState.ESTABLISHED:
            if (
                conn.backlog
                or conn.send_blocked
                or len(conn.queue) >= self.config.outstanding_max
                or not self._taking_requests()
            ):
                self._stash(conn, frame)
            else:
                self._request(conn, frame)
        elif state is ConnState.FRESH:
            self._connect(conn, frame)
        elif state is ConnState.AWAITING_SESSION:
            # Pipelined after the ConnectRequest: ZooKeeper stops reading until the session
            # exists; we hold the frames and run them once it does.
            self._stash(conn, frame)

    def _taking_requests(self) -> bool:
        """Whether requests are processed now; while not, they wait in the connections'
        backlogs (reading paused). Always, here; an ensemble leader says no while its
        proposal backlog is full, and pumps the backlogs when commits make room."""
        return True

    def _stash(self, conn: Connection, frame: bytes) -> None:
        conn.backlog.append(frame)
        conn.backlog_bytes += len(frame)
        if not conn.paused:
            conn.paused = True
            self._out.pause_reading.append(conn.conn_id)
        if conn.backlog_bytes > limits.connection_backlog_bytes_max:
            log.warning("connection %d: too many unprocessed requests; closing", conn.conn_id)
            self._close(conn)

    def _pump(self, conn: Connection) -> None:
        """Run held frames while the connection is under its outstanding bound."""
        backlog = conn.backlog
        limit = self.config.outstanding_max
        while (
            backlog
            and conn.state is ConnState.ESTABLISHED
            and not conn.send_blocked
            and len(conn.queue) < limit
            and self._taking_requests()
        ):
            frame = backlog.popleft()
            conn.backlog_bytes -= len(frame)
            self._request(conn, frame)
        if conn.paused and not backlog and conn.state is ConnState.ESTABLISHED:
            conn.paused = False
            self._out.resume_reading.append(conn.conn_id)

    # --- the connect handshake ---

    # ZooKeeper's `this instanceof ReadOnlyZooKeeperServer`: every ConnectResponse says
    # readOnly, and clients that did not ask for read-only service are closed at once.
    serves_read_only = False

    def _connect(self, conn: Connection, frame: bytes) -> None:
        try:
            info = parse_connect(frame)
        except DecodeError as exc:
            log.info("connection %d: bad ConnectRequest: %s", conn.conn_id, exc)
            self._close(conn)
            return
        conn.connect = info
        if self.serves_read_only and not info.read_only:
            # Checked before anything else, as ZooKeeper does (no reply; a 44-byte
            # ConnectRequest, which has no readOnly byte, counts as not read-only).
            log.info("connection %d: refusing a not-read-only client", conn.conn_id)
            self._close(conn)
            return
        if info.last_zxid_seen > self.tree.last_zxid:
            # The client has seen a newer state than ours: it must try another server.
            log.info(
                "refusing session %#x: client saw zxid %#x, ours is %#x",
                info.session_id,
                info.last_zxid_seen,
                self.tree.last_zxid,
            )
            self._close(conn)
            return
        cfg = self.config
        conn.timeout_ms = negotiate_timeout(info.timeout, cfg.min_timeout, cfg.max_timeout)
        if info.session_id == 0:
            self._new_session(conn)
        else:
            self._resume_session(conn, info.session_id)

    # The two session hooks of the handshake. An ensemble learner overrides both: it asks
    # its leader to create (createSession REQUEST) or revalidate (REVALIDATE) the session.

    def _new_session(self, conn: Connection) -> None:
        """A ConnectRequest without a session id: create a session (a createSession txn;
        the connection is established when it applies)."""
        timeout = conn.timeout_ms
        sid = self.sessions.next_session_id(self.tree.sessions)
        self.sessions.add(sid, timeout, self.now_ms)
        conn.session_id = sid
        conn.state = ConnState.AWAITING_SESSION
        self.by_session[sid] = conn
        hdr, txn = prep_write(
            self.tree,
            self.pending,
            OpCode.CREATE_SESSION,
            timeout,
            session_id=sid,
            cxid=0,
            zxid=self._take_zxid(),
            time_ms=self.wall_ms,
            config=self.prep_config,
        )
        self._propose(hdr, txn, conn, OpCode.CREATE_SESSION, None)

    def _resume_session(self, conn: Connection, sid: int) -> None:
        """A ConnectRequest naming a session: admit it if the password matches and the
        session is live here."""
        info = conn.connect
        assert info is not None
        valid = hmac.compare_digest(info.passwd, self._password(sid)) and self.sessions.touch(
            sid, conn.timeout_ms, self.now_ms
        )
        if not valid:
            log.info("connection %d: invalid session %#x, probably expired", conn.conn_id, sid)
            self._refuse_session(conn)
            return
        self._attach_session(conn, sid)

    def _refuse_session(self, conn: Connection) -> None:
        """The all-zeros ConnectResponse of an invalid session, then close."""
        info = conn.connect
        assert info is not None
        self._emit(
            conn,
            connect_response_frame(
                0, 0, EXPIRED_PASSWORD, self.serves_read_only, info.has_read_only
            ),
        )
        self._close(conn)

    def _attach_session(self, conn: Connection, sid: int) -> None:
        """Serve a valid existing session on this connection."""
        old = self.by_session.get(sid)
        if old is not None and old is not conn:
            # The client moved to this connection: drop the old one (CLIENT_RECONNECT).
            self._close(old)
        conn.session_id = sid
        self.by_session[sid] = conn
        self._establish(conn, False)

    def _password(self, sid: int) -> bytes:
        return password_for(sid, self.secret, self.config.zookeeper_passwords)

    def _establish(self, conn: Connection, new_session: bool) -> None:
        info = conn.connect
        assert info is not None
        conn.state = ConnState.ESTABLISHED
        conn.established_wall_ms = self.wall_ms
        if new_session:
            conn.record_reply(OpCode.CREATE_SESSION, 0, self.tree.last_zxid, self.now_ms, 0)
        self._emit(
            conn,
            connect_response_frame(
                conn.timeout_ms,
                conn.session_id,
                self._password(conn.session_id),
                self.serves_read_only,
                info.has_read_only,
            ),
        )
        self._pump(conn)

    # --- requests ---

    def _request(self, conn: Connection, frame: bytes) -> None:
        if len(frame) < 8:
            log.info("connection %d: frame too short for a RequestHeader", conn.conn_id)
            self._close(conn)
            return
        xid, op = _REQ_HDR.unpack_from(frame, 0)
        if op == OpCode.AUTH:
            # Answered at once, without touching the session.
            self._authenticated(conn, self.auth.auth(conn, xid, frame))
            return
        if op == OpCode.SASL:
            self._authenticated(conn, self.auth.sasl_step(conn, xid, frame))
            return
        if self.auth.enforce_schemes and self._refused_unauthenticated(conn, xid):
            return
        # Every other packet keeps the session alive; a packet of a session that is closing
        # (expired, or closeSession sent) is dropped without a reply, as ZooKeeper's touch
        # does; the connection goes when the closeSession txn applies.
        if not self.sessions.touch(conn.session_id, conn.timeout_ms, self.now_ms):
            log.debug("connection %d: dropping op %d of a closing session", conn.conn_id, op)
            return
        if op in READ_OPS:
            if conn.queue:
                conn.queue.append(Slot(0, frame, op, xid, self.now_ms, conn.auth))
            else:
                self._read(conn, xid, op, frame, self.now_ms, conn.auth)
        elif op in WRITE_OPS:
            self._write(conn, xid, op, frame)
        else:
            # Unknown ops, a top-level check (3.9.3+), notification, and the server-internal
            # createSession/deleteContainer/error: UNIMPLEMENTED, then close. (ZooKeeper
            # passes createSession and deleteContainer from clients on to prep.)
            log.info("connection %d: unimplemented op %d", conn.conn_id, op)
            self._emit(conn, header_frame(xid, -1, Err.UNIMPLEMENTED))
            self._close(conn)

    def _read(
        self, conn: Connection, xid: int, op: int, frame: bytes, start_ms: int, auth: AuthIds
    ) -> None:
        reads = self.reads
        try:
            reply = reads.answer(conn, xid, op, frame, auth)
        except DecodeError as exc:
            # ZooKeeper answers a body it cannot read with MARSHALLINGERROR.
            log.info("connection %d: bad op %d request: %s", conn.conn_id, op, exc)
            reply = header_frame(xid, self.tree.last_zxid, _MARSHALLING)
        if reads.events:
            # setWatches: the events for changes missed while disconnected come first.
            events = reads.events
            reads.events = []
            for ev in events:
                self._emit(conn, _notification(ev))
        self._emit(conn, reply)
        self._record(conn, op, xid, start_ms)

    def _record(self, conn: Connection, op: int, xid: int, start_ms: int) -> None:
        latency = self.now_ms - start_ms
        conn.record_reply(op, xid, self.tree.last_zxid, self.now_ms, latency)
        if self.lat_count == 0 or latency < self.lat_min:
            self.lat_min = latency
        if latency > self.lat_max:
            self.lat_max = latency
        self.lat_total += latency
        self.lat_count += 1

    def _write(self, conn: Connection, xid: int, op: int, frame: bytes) -> None:
        self._prep_request(conn.session_id, xid, op, frame, 8, conn.auth, conn)

    def _prep_request(
        self,
        sid: int,
        cxid: int,
        op: int,
        data: bytes,
        pos: int,
        auth: AuthIds,
        conn: Connection | None,
        session_error: Err = Err.OK,
        ephemeral_error: Err = Err.OK,
    ) -> None:
        """Prep write `op` of session `sid` (its request body at data[pos:]) into a txn with
        the next zxid, and propose it. `conn` is the connection to answer once it applies;
        None for a request another server forwarded (an ensemble leader's learners).
        `session_error`/`ephemeral_error`: an ensemble leader's session check (prep_write)."""
        request: Any
        sub_ops: tuple[int, ...] = ()
        if op == OpCode.CLOSE_SESSION:
            request = None
        elif op == OpCode.MULTI:
            try:
                request = decode_multi_request(data, pos)
                sub_ops = tuple(sub for sub, _ in request)
            except DecodeError:
                # ZooKeeper takes a multi's zxid before decoding it: prep fails it with
                # MARSHALLINGERROR, spending that zxid.
                request = data[pos:]
                sub_ops = ()
        else:
            try:
                request, _ = jute.decode(_REQUEST_CLASSES[op], data, pos)
            except DecodeError as exc:
                log.info("session %#x: bad op %d request: %s", sid, op, exc)
                if conn is not None and session_error == Err.OK:
                    # ZooKeeper 3.9 decodes the body before taking a zxid (ZOOKEEPER-4575):
                    # MARSHALLINGERROR without spending one (3.8 spent one). Answered in
                    # order: queued like a read, which the read side refuses as not one.
                    self._refuse_undecodable(conn, cxid, op, data)
                    return
                # A learner's forwarded request waits for a txn's commit, and an ensemble
                # leader tracks a failed session check by its txn: those get one.
                zxid = self._take_zxid()
                slot = Slot(zxid, None, op, cxid, self.now_ms) if conn is not None else None
                hdr = TxnHeader(sid, cxid, zxid, self.wall_ms, int(OpCode.ERROR))
                self._propose(hdr, ErrorTxn(_MARSHALLING), conn, op, slot)
                return
        zxid = self._take_zxid()
        wall = self.wall_ms
        slot = Slot(zxid, None, op, cxid, self.now_ms) if conn is not None else None
        hdr, txn = prep_write(
            self.tree,
            self.pending,
            op,
            request,
            session_id=sid,
            cxid=cxid,
            zxid=zxid,
            time_ms=wall,
            auth=auth,
            config=self.prep_config,
            session_ephemeral_error=ephemeral_error,
            session_error=session_error,
        )
        if op == OpCode.CLOSE_SESSION:
            self.sessions.set_closing(sid)
        self._propose(hdr, txn, conn, op, slot, sub_ops)

    def _refuse_undecodable(self, conn: Connection, xid: int, op: int, frame: bytes) -> None:
        """MARSHALLINGERROR for a write whose body does not decode, after the connection's
        earlier replies and with the zxid of the last txn applied by then: the frame goes
        through the read path, whose Reads.answer raises DecodeError for a write op."""
        if conn.queue:
            conn.queue.append(Slot(0, frame, op, xid, self.now_ms, conn.auth))
        else:
            self._read(conn, xid, op, frame, self.now_ms, conn.auth)

    def _propose(
        self,
        hdr: TxnHeader,
        txn: TxnRecord,
        conn: Connection | None,
        op: int,
        slot: Slot | None,
        sub_ops: tuple[int, ...] = (),
    ) -> None:
        assert not self.inflight or self.inflight[-1].hdr.zxid < hdr.zxid, "zxid order"
        self._log(hdr, jute.encode(txn))
        self.inflight.append(_Inflight(hdr, txn, conn, op, slot, sub_ops))
        if conn is not None and slot is not None:
            conn.queue.append(slot)

    def _log(self, hdr: TxnHeader, txn: bytes) -> None:
        """Hand a prepped txn to the log (an ensemble leader: to Zab, which proposes it)."""
        self._out.persist.append((hdr, txn))

    # --- auth ---

    def _refused_unauthenticated(self, conn: Connection, xid: int) -> bool:
        """ZooKeeper's authentication enforcement, checked before any request but auth and
        sasl (pings included): -124 and close when the connection lacks a required id."""
        refused = self.auth.enforce(conn, xid)
        if refused is None:
            return False
        self._authenticated(conn, refused)
        return True

    def _authenticated(self, conn: Connection, outcome: AuthOutcome) -> None:
        if outcome.reply is not None:
            self._emit(conn, outcome.reply)
        if outcome.close:
            self._close(conn)

    # --- applying durable txns ---

    def _apply(self, item: _Inflight) -> None:
        hdr = item.hdr
        res = self.tree.apply_txn(hdr, item.txn)
        self.pending.applied(hdr.zxid)
        if res.events:
            self._deliver(res.events)
        htype = hdr.type
        if htype == OpCode.CREATE_SESSION:
            conn = item.conn
            if conn is not None and conn.state is ConnState.AWAITING_SESSION:
                self._establish(conn, True)
            return
        if htype == OpCode.CLOSE_SESSION:
            self.sessions.remove(hdr.client_id)
            owner = self.by_session.get(hdr.client_id)
            if owner is not None and owner is not item.conn:
                self._close(owner)  # expired: its connection goes (no reply)
        elif item.op == OpCode.DELETE_CONTAINER:
            self._reaping.pop(hdr.zxid, None)
        conn = item.conn
        slot = item.slot
        if conn is None or slot is None or conn.state is ConnState.CLOSED:
            return
        slot.reply = self._write_reply(item, res)
        if item.op == OpCode.CLOSE_SESSION:
            slot.close_after = True
        self._drain(conn)

    def _write_reply(self, item: _Inflight, res: ApplyResult) -> bytes:
        op = item.op
        xid = item.hdr.cxid
        htype = item.hdr.type
        zxid = self.tree.last_zxid
        if htype == OpCode.ERROR or (res.err and op != OpCode.MULTI):
            return header_frame(xid, zxid, res.err)
        if op == OpCode.SET_DATA or op == OpCode.SET_ACL:
            assert res.stat is not None
            return stat_frame(xid, zxid, res.stat)
        if op == OpCode.CREATE:
            return create_frame(xid, zxid, res.path)
        if op in (OpCode.CREATE2, OpCode.CREATE_CONTAINER, OpCode.CREATE_TTL):
            assert res.stat is not None
            return create2_frame(xid, zxid, res.path, res.stat)
        if op == OpCode.MULTI:
            return raw_frame(xid, zxid, 0, multi_response_body(res, item.sub_ops))
        return header_frame(xid, zxid, 0)  # delete, closeSession

    def _drain(self, conn: Connection) -> None:
        """Send the replies at the head of the queue that are ready; run reads reached."""
        queue = conn.queue
        while queue:
            slot = queue[0]
            if slot.reply is None:
                frame = slot.frame
                if frame is None:
                    break  # a write not applied yet
                if conn.send_blocked:
                    break  # a deferred read: it runs once the client took its replies
                queue.popleft()
                self._read(conn, slot.xid, slot.op, frame, slot.start_ms, slot.auth or conn.auth)
                continue
            queue.popleft()
            self._emit(conn, slot.reply)
            self._record(conn, slot.op, slot.xid, slot.start_ms)
            if slot.close_after:
                self._close(conn)
                return
        if conn.backlog:
            self._pump(conn)

    def _deliver(self, events: tuple[WatchEvent, ...]) -> None:
        conns = self.conns
        skip_acl = self.config.skip_acl
        providers = self.config.providers
        for ev in events:
            conn = conns.get(ev.watcher)
            if conn is None or conn.state is not ConnState.ESTABLISHED:
                continue
            # 3.9.2: no event about a node the watcher may not read.
            if ev.acl and not acl.check(ev.acl, _READ, conn.auth, skip_acl, providers):
                continue
            self._emit(conn, _notification(ev))

    # --- containers and TTL nodes (ZooKeeper's ContainerManager) ---

    def _reap(self, wall_ms: int) -> None:
        tree = self.tree
        cfg = self.config
        # ZooKeeper spaces the deletes out to maxPerMinute; we issue at most that many per
        # check interval's share of a minute.
        budget = max(1, cfg.container_max_per_minute * cfg.container_check_interval_ms // 60_000)
        candidates = reap_candidates(tree, wall_ms, cfg.container_max_never_used_ms)
        reaping = set(self._reaping.values())
        for path in candidates:
            if budget <= 0:
                break
            if path in reaping:
                continue
            budget -= 1
            hdr, txn = prep_write(
                tree,
                self.pending,
                OpCode.DELETE_CONTAINER,
                path,
                session_id=0,
                cxid=0,
                zxid=self._take_zxid(),
                time_ms=wall_ms,
                config=self.prep_config,
            )
            self._reaping[hdr.zxid] = path
            self._propose(hdr, txn, None, OpCode.DELETE_CONTAINER, None)

    # --- introspection (four-letter words, admin) ---

    def connections(self) -> list[Connection]:
        return list(self.conns.values())

    def outstanding_requests(self) -> int:
        return sum(len(c.queue) for c in self.conns.values())

    def reset_stats(self, *, server: bool = True, connections: bool = True) -> None:
        """Zero the server-wide counters (srst) and/or the per-connection ones (crst)."""
        if server:
            self.packets_received = self.packets_sent = 0
            self.lat_min = self.lat_max = self.lat_total = self.lat_count = 0
        if connections:
            for conn in self.conns.values():
                conn.reset_stats()

    @property
    def mode(self) -> str:
        """ZooKeeper's serverState as `srvr` shows it (EnsembleCore: leader, follower...)."""
        return "standalone"

    def snapshot_for_4lw(self, asking_conn_id: int | None = None) -> CoreStats:
        """What the core knows for the four-letter words and metrics.

        The server layer may not import admin/, so this is a plain record;
        `corral.admin.core_snapshot.server_snapshot` turns it into fourletter's
        ServerSnapshot, adding what only the runner knows (conf, uptime, environment).
        """
        return collect_stats(self, asking_conn_id)


def _notification(ev: WatchEvent) -> bytes:
    return notification_frame(ev.zxid, int(ev.type), _SYNC_CONNECTED, ev.path)
