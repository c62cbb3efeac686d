"""Session tracking on ensemble members (ZooKeeper's LeaderSessionTracker and
LearnerSessionTracker, both UpgradeableSessionTrackers).

Global sessions are logged (createSession/closeSession txns) and the leader owns their
expiry. Beside them each member may keep local sessions of its own clients
(server.local_sessions): tracked and expired here, never logged.

- `LeaderSessions`: every global session with its expiry, kept alive by the leader's own
  clients and by the learners' PING touches, and with its *owner*: the server whose
  connection last claimed it (the leader itself, or the learner that created or revalidated
  it). A request of a global session that comes through any other server fails with
  SESSIONMOVED: the client has moved on, and that server's connection is stale.
- `LearnerSessions`: the sessions of this learner's own clients, only to know which are
  live here, and the touches to report in the next PING reply. It never expires a global
  session itself: the leader's closeSession txn removes it everywhere when it applies.
"""

from __future__ import annotations

from corral.proto.codes import Err
from corral.server.local_sessions import LocalSessions, session_server_id
from corral.server.sessions import SessionTracker

# A deadline far in the future: a learner's tracker never has expiry work.
_NEVER_MS = 1 << 62
# The owner of sessions whose connection is one of the leader's own (ZooKeeper's
# ServerCnxn.me); learners own sessions under their server id (>= 0).
LEADER_OWNER = -1

_OK = Err.OK
_EXPIRED = Err.SESSIONEXPIRED
_MOVED = Err.SESSIONMOVED
_EPHEMERAL_ON_LOCAL = Err.EPHEMERALONLOCALSESSION


class UpgradeableSessions(SessionTracker):
    """What both trackers share: this server's local sessions beside the global ones."""

    def __init__(
        self, tick_ms: int, now_ms: int, wall_ms: int, server_id: int, local_sessions: bool
    ) -> None:
        super().__init__(tick_ms, now_ms, wall_ms, server_id)
        self.server_id = server_id
        self.local: LocalSessions | None = (
            LocalSessions(tick_ms, now_ms, wall_ms, server_id) if local_sessions else None
        )

    def is_local(self, session_id: int) -> bool:
        local = self.local
        return local is not None and session_id in local.timeouts

    def touch(self, session_id: int, timeout_ms: int, now_ms: int) -> bool:
        local = self.local
        if local is not None and local.touch(session_id, timeout_ms, now_ms):
            return True
        return self.touch_global(session_id, timeout_ms, now_ms)

    def touch_global(self, session_id: int, timeout_ms: int, now_ms: int) -> bool:
        """Touch a global session only (on the leader also a learner revalidating a
        reconnecting client)."""
        return SessionTracker.touch(self, session_id, timeout_ms, now_ms)

    def add_local(self, session_id: int, timeout_ms: int, now_ms: int) -> None:
        assert self.local is not None, "local sessions are not enabled"
        self.local.add(session_id, timeout_ms, now_ms)

    def next_session_id(self, taken: dict[int, int] | None = None) -> int:
        # One counter for local and global sessions: an id is never both.
        while True:
            sid = super().next_session_id(taken)
            if not self.is_local(sid):
                return sid

    def upgrade(self, session_id: int, now_ms: int) -> int | None:
        """A local session becomes global (its createSession is on its way): track it as
        global from now on. Its timeout, or None if it was not local."""
        local = self.local
        timeout = None if local is None else local.upgrade(session_id)
        if timeout is not None:
            self.add(session_id, timeout, now_ms)
        return timeout

    def committed(self, session_id: int) -> None:
        """A createSession txn applied: the session is global. A local copy (a session
        upgraded through another server after it moved) must not linger here."""
        local = self.local
        if local is not None and session_id in local.timeouts:
            local.remove(session_id)

    def expire_local(self, now_ms: int) -> list[int]:
        """Local sessions that expired, already forgotten (their connections must go)."""
        local = self.local
        return [] if local is None else local.expire(now_ms)

    def remove(self, session_id: int) -> None:
        super().remove(session_id)
        local = self.local
        if local is not None:
            local.remove(session_id)

    def set_closing(self, session_id: int) -> None:
        super().set_closing(session_id)
        local = self.local
        if local is not None:
            local.set_closing(session_id)

    def next_expiration_ms(self) -> int:
        mine = self._global_next_expiration_ms()
        local = self.local
        return mine if local is None else min(mine, local.next_expiration_ms())

    def _global_next_expiration_ms(self) -> int:
        return super().next_expiration_ms()

    def local_count(self) -> int:
        local = self.local
        return 0 if local is None else len(local)


class LeaderSessions(UpgradeableSessions):
    """The leader's tracker: global sessions with their owners, plus its local sessions."""

    def __init__(
        self,
        tick_ms: int,
        now_ms: int,
        wall_ms: int,
        server_id: int,
        local_sessions: bool = False,
    ) -> None:
        super().__init__(tick_ms, now_ms, wall_ms, server_id, local_sessions)
        # Global session id -> owner (a learner's server id, or LEADER_OWNER); absent: not
        # claimed yet in this term (the first request claims it, as ZooKeeper's checkSession).
        self.owners: dict[int, int] = {}

    def set_owner(self, session_id: int, owner: int) -> None:
        if session_id in self.timeouts:
            self.owners[session_id] = owner

    def remove(self, session_id: int) -> None:
        super().remove(session_id)
        self.owners.pop(session_id, None)

    def check(self, session_id: int, owner: int) -> tuple[Err, Err]:
        """ZooKeeper's checkSession for a write coming through `owner`: (the session error
        prep reports, the error of an ephemeral create; OK when the session may own them).

        A local session of ours is fine but owns no ephemerals (EPHEMERALONLOCALSESSION). A
        global one must not be closing (SESSIONEXPIRED) and must belong to `owner` (else
        SESSIONMOVED); the first
        request after the term began claims it. A session we do not know is expired, unless
        local sessions are on and its id names another server: then it is that server's
        local session, which only that server can judge (it still owns no ephemerals).
        """
        local = self.local
        if session_id in self.timeouts:
            if session_id in self.closing:
                return _EXPIRED, _OK
            current = self.owners.get(session_id)
            if current is None:
                self.owners[session_id] = owner
            elif current != owner:
                return _MOVED, _OK
            return _OK, _OK
        if local is None:
            return _EXPIRED, _OK
        if session_id in local.timeouts:
            return (_EXPIRED if session_id in local.closing else _OK), _EPHEMERAL_ON_LOCAL
        if session_server_id(session_id) == self.server_id:
            return _EXPIRED, _OK
        # Another server's local session: its ephemeral creates fail as ZooKeeper's leader
        # fails them (checkGlobalSession: SESSIONEXPIRED). A lone create is answered -120 by
        # its learner, which knows the session is local; inside a multi the client sees -112.
        return _OK, _EXPIRED

    def owned_elsewhere(self, session_id: int) -> bool:
        """Whether a global session now belongs to a learner (its client moved away from
        one of our connections)."""
        return self.owners.get(session_id, LEADER_OWNER) != LEADER_OWNER


class LearnerSessions(UpgradeableSessions):
    """A learner's tracker: never expires global sessions, remembers what was touched."""

    def __init__(
        self,
        tick_ms: int,
        now_ms: int,
        wall_ms: int,
        server_id: int,
        local_sessions: bool = False,
    ) -> None:
        super().__init__(tick_ms, now_ms, wall_ms, server_id, local_sessions)
        # session id -> timeout ms, touched since the last `take_touched`.
        self.touched: dict[int, int] = {}

    # No expiry buckets for global sessions here (nothing would ever drain them): only the
    # table of live sessions and the touches to report.

    def add(self, session_id: int, timeout_ms: int, now_ms: int) -> None:
        self.timeouts.setdefault(session_id, timeout_ms)
        self.touched[session_id] = timeout_ms

    def touch_global(self, session_id: int, timeout_ms: int, now_ms: int) -> bool:
        # No expiry bucket to move: remember the touch for the leader (local sessions never
        # get here, so their touches are not reported).
        if session_id not in self.timeouts or session_id in self.closing:
            return False
        self.touched[session_id] = timeout_ms
        return True

    def remove(self, session_id: int) -> None:
        super().remove(session_id)
        self.touched.pop(session_id, None)

    def expired(self, now_ms: int) -> list[int]:
        return []  # the leader decides expiry of global sessions

    def _global_next_expiration_ms(self) -> int:
        return _NEVER_MS

    def take_touched(self) -> dict[int, int]:
        touched = self.touched
        self.touched = {}
        return touched
