"""Session tracking on a learner (ZooKeeper's LearnerSessionTracker, global sessions only).

In an ensemble the leader owns session expiry. A learner (follower or observer) tracks the
sessions of its own clients only to know which are live here, and collects the sessions its
clients touched so that its next PING reply tells the leader (which then pushes back their
expiry). It never expires anything itself: the leader's closeSession txn removes a session
everywhere when it applies.
"""

from __future__ import annotations

from corral.server.sessions import SessionTracker

# A deadline far in the future: a learner's tracker never has expiry work.
_NEVER_MS = 1 << 62


class LearnerSessions(SessionTracker):
    """A SessionTracker that never expires sessions and remembers what was touched."""

    def __init__(self, tick_ms: int, now_ms: int, wall_ms: int, server_id: int) -> None:
        super().__init__(tick_ms, now_ms, wall_ms, server_id)
        # session id -> timeout ms, touched since the last `take_touched`.
        self.touched: dict[int, int] = {}

    # No expiry buckets here (nothing would ever drain them): only the table of live
    # sessions and the touches to report.

    def add(self, session_id: int, timeout_ms: int, now_ms: int) -> None:
        self.timeouts.setdefault(session_id, timeout_ms)
        self.touched[session_id] = timeout_ms

    def touch(self, session_id: int, timeout_ms: int, now_ms: int) -> bool:
        if session_id not in self.timeouts or session_id in self.closing:
            return False
        self.touched[session_id] = timeout_ms
        return True

    def expired(self, now_ms: int) -> list[int]:
        return []  # the leader decides expiry

    def next_expiration_ms(self) -> int:
        return _NEVER_MS

    def take_touched(self) -> dict[int, int]:
        touched = self.touched
        self.touched = {}
        return touched
