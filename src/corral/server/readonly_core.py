"""Read-only service of an ensemble member cut off from its quorum (ZooKeeper's
ReadOnlyZooKeeperServer with `readonlymode.enabled`).

`ReadOnlyCore` is `StandaloneCore` over the member's last tree with every way of changing
state taken out. What ZooKeeper does, and so this core:

- Only clients whose ConnectRequest says readOnly are served; any other connection is closed
  without a reply (StandaloneCore's handshake, `serves_read_only`). Every ConnectResponse
  says readOnly=true, so the client knows (kazoo: KeeperState.CONNECTED_RO).
- Sessions are local to this server: created and expired here, never logged, never in the
  tree (no quorum could commit them). A client reconnecting with a global session (one in
  the tree's session table) is closed without a reply, as ZooKeeper's validateSession does;
  any other unknown session gets the all-zeros "expired" answer.
- Reads (getData, exists, getChildren, getACL, multiRead, watches, ...) are answered from
  the tree as it was when the quorum was lost. Watches can be set but never fire later (the
  tree does not change here); setWatches still reports the changes a client missed.
- sync, create*, delete, deleteContainer, setData, setACL, multi, check and reconfig are
  answered NOTREADONLY (-119) with the tree's last zxid (ReadOnlyRequestProcessor's list;
  its filter comes first, so a top-level check gets NOTREADONLY, not 3.9's UNIMPLEMENTED).
  closeSession of a local session ends it here.

ZooKeeper 3.7+ only creates sessions in read-only mode with `localSessionsEnabled=true`;
without it its read-only server answers every new client with a bare NOTREADONLY reply
header in place of a ConnectResponse, which no client can use (ZOOKEEPER-3863). Corral's
read-only sessions are local whatever that setting says.

The tree belongs to the member and is handed back to the next Zab term: nothing here
changes it. Watches live in the tree's watch table keyed by connection id, so `shutdown`
removes every watch of this core's connections before the tree goes back; `tree_unchanged`
states the invariant for the runner's assertion.
"""

from __future__ import annotations

import dataclasses
import logging
import struct

from corral.proto.codes import Err, OpCode
from corral.server.connection import Connection, ConnState, Slot
from corral.server.core import CoreConfig, Output, StandaloneCore
from corral.server.replies import header_frame
from corral.server.sessions import SessionTracker
from corral.server.stats import CoreStats
from corral.tree.datatree import DataTree

__all__ = ["READ_ONLY_REFUSED_OPS", "ReadOnlyCore"]

log = logging.getLogger(__name__)

_REQ_HDR = struct.Struct(">ii")
_NOT_READ_ONLY = int(Err.NOTREADONLY)
# No container or TTL reaping here: it would write.
_NEVER_MS = 1 << 62

# What ZooKeeper's ReadOnlyRequestProcessor answers with NOTREADONLY.
READ_ONLY_REFUSED_OPS = frozenset(
    {
        OpCode.SYNC,
        OpCode.CREATE,
        OpCode.CREATE2,
        OpCode.CREATE_TTL,
        OpCode.CREATE_CONTAINER,
        OpCode.DELETE,
        OpCode.DELETE_CONTAINER,
        OpCode.SET_DATA,
        OpCode.RECONFIG,
        OpCode.SET_ACL,
        OpCode.MULTI,
        OpCode.CHECK,
    }
)
# What _request answers itself, before the core: authentication enforcement comes first.
_ANSWERED_HERE = READ_ONLY_REFUSED_OPS | {OpCode.CLOSE_SESSION}


class ReadOnlyCore(StandaloneCore):
    """Read-only client service over a member's tree. See the module docstring."""

    serves_read_only = True

    def __init__(
        self, config: CoreConfig, tree: DataTree, now_ms: int, wall_ms: int, secret: bytes
    ) -> None:
        super().__init__(config, tree, now_ms, wall_ms, secret)
        # Local sessions only: the tree's (global) sessions are not ours to keep alive or
        # expire, and expiring one would be a write.
        self.sessions = SessionTracker(config.tick_ms, now_ms, wall_ms, config.server_id)
        self._next_container_check = _NEVER_MS
        # The invariant `tree_unchanged` checks.
        self._start_zxid = tree.last_zxid
        self._start_nodes = len(tree.nodes)

    @property
    def mode(self) -> str:
        """ZooKeeper's serverState of a ReadOnlyZooKeeperServer."""
        return "read-only"

    # --- sessions (the handshake hooks) ---

    def _new_session(self, conn: Connection) -> None:
        """A local session: established at once, nothing to log."""
        # Never an id of a global session, which a client might still hold.
        sid = self.sessions.next_session_id(self.tree.sessions)
        self.sessions.add(sid, conn.timeout_ms, self.now_ms)
        conn.session_id = sid
        self.by_session[sid] = conn
        log.info("connection %d: read-only session %#x", conn.conn_id, sid)
        self._establish(conn, True)

    def _resume_session(self, conn: Connection, sid: int) -> None:
        if sid in self.tree.sessions:
            # A global session cannot be renewed without the quorum: close, no reply.
            log.info("connection %d: refusing global session %#x (read-only)", conn.conn_id, sid)
            self._close(conn)
            return
        super()._resume_session(conn, sid)

    # --- requests ---

    def _request(self, conn: Connection, frame: bytes) -> None:
        if len(frame) >= _REQ_HDR.size:
            xid, op = _REQ_HDR.unpack_from(frame, 0)
            if (
                self.auth.enforce_schemes
                and op in _ANSWERED_HERE
                and self._refused_unauthenticated(conn, xid)
            ):
                return  # enforcement comes first, as in ZooKeeper's processPacket
            if op in READ_ONLY_REFUSED_OPS:
                self._refuse_write(conn, xid, op)
                return
            if op == OpCode.CLOSE_SESSION:
                self._close_local_session(conn, xid)
                return
        super()._request(conn, frame)

    def _refuse_write(self, conn: Connection, xid: int, op: int) -> None:
        # The request still keeps the session alive; a closing session's is dropped.
        if not self.sessions.touch(conn.session_id, conn.timeout_ms, self.now_ms):
            return
        self._answer(conn, xid, op, header_frame(xid, self.tree.last_zxid, _NOT_READ_ONLY))

    def _answer(
        self, conn: Connection, xid: int, op: int, reply: bytes, close: bool = False
    ) -> None:
        """Send `reply` in request order (behind anything queued; nothing normally is,
        since reads are answered at once and no write ever waits here)."""
        if conn.queue:
            slot = Slot(0, None, op, xid, self.now_ms)
            slot.reply = reply
            slot.close_after = close
            conn.queue.append(slot)
            self._drain(conn)
            return
        self._emit(conn, reply)
        self._record(conn, op, xid, self.now_ms)
        if close:
            self._close(conn)

    def _close_local_session(self, conn: Connection, xid: int) -> None:
        sid = conn.session_id
        if not self.sessions.touch(sid, conn.timeout_ms, self.now_ms):
            return
        self.sessions.remove(sid)
        reply = header_frame(xid, self.tree.last_zxid, 0)
        self._answer(conn, xid, OpCode.CLOSE_SESSION, reply, close=True)

    # --- time ---

    def tick(self, now_ms: int, wall_ms: int) -> Output:
        """Expire local sessions (their connections close) and stalled handshakes."""
        self._begin(now_ms, wall_ms)
        for sid in self.sessions.expired(now_ms):
            log.info("expiring read-only session %#x", sid)
            self.sessions.remove(sid)
            owner = self.by_session.get(sid)
            if owner is not None:
                self._close(owner)
        self._close_stalled_handshakes(now_ms)
        return self._finish()

    def persisted(self, zxid: int, now_ms: int, wall_ms: int) -> Output:
        raise AssertionError("a read-only core has nothing to persist")

    def snapshot_for_4lw(self, asking_conn_id: int | None = None) -> CoreStats:
        # mntr's global_sessions is the tree's table, as ZooKeeper's read-only server reports;
        # its read-only sessions count as local ones.
        stats = super().snapshot_for_4lw(asking_conn_id)
        return dataclasses.replace(
            stats, global_sessions=len(self.tree.sessions), local_sessions=len(self.sessions)
        )

    # --- the end ---

    def shutdown(self) -> Output:
        """Close every connection and drop its watches from the tree (the quorum is back,
        or the server stops). The core must not be used afterwards."""
        self._begin(self.now_ms, self.wall_ms)
        for conn in list(self.conns.values()):
            if conn.state is not ConnState.CLOSED:
                self._close(conn)
        self.conns.clear()
        self.by_session.clear()
        self.sessions = SessionTracker(self.config.tick_ms, self.now_ms, self.wall_ms)
        return self._finish()

    def tree_unchanged(self) -> bool:
        """Whether the tree is still the one this core was given (zxid and node count;
        the pending-change table of the standalone pipeline stayed empty)."""
        return (
            self.tree.last_zxid == self._start_zxid
            and len(self.tree.nodes) == self._start_nodes
            and not self.inflight
            and self.next_zxid == self._start_zxid + 1
        )
