"""Local sessions (ZooKeeper's `localSessionsEnabled`, 3.5+): sessions one server keeps to itself.

With local sessions on, every new session of an ensemble member starts local: the server
that accepted it tracks and expires it alone (ZooKeeper's LocalSessionTracker), and nothing
about it is logged or costs a quorum round: no createSession txn, no closeSession txn, no
PING touches to the leader. It can still read and write persistent nodes (its writes go
through the leader like any other). What it cannot do:

- own an ephemeral node. With `localSessionsUpgradingEnabled` the first request that would
  create one (create/create2, or a multi holding such a create) first upgrades the session:
  a createSession txn with the same id goes to the leader just before the request, and from
  then on it is an ordinary global session. Without upgrading, the create answers
  EPHEMERALONLOCALSESSION (-120).
- move. Reconnecting to another server asks the leader, which knows only global sessions:
  the client is told its session expired. If its server dies, or its term ends, the session
  is gone with it.

Local session ids come from the server's own id counter, so their top byte is the server id
(a leader uses it to tell another server's local session from one of its own it forgot).
A standalone server ignores the setting, as ZooKeeper does: all its sessions are logged.
"""

from __future__ import annotations

from corral.proto.codes import CreateMode, OpCode
from corral.proto.jute import DecodeError, decode
from corral.proto.records import CreateRequest
from corral.server.prep_multi import decode_multi_request
from corral.server.sessions import SessionTracker

__all__ = ["LocalSessions", "creates_ephemeral", "session_server_id"]

_CREATE = int(OpCode.CREATE)
_CREATE2 = int(OpCode.CREATE2)
_MULTI = int(OpCode.MULTI)
# CreateMode.isEphemeral: only these two; containers and TTL nodes are not upgrades.
_EPHEMERAL_FLAGS = frozenset({int(CreateMode.EPHEMERAL), int(CreateMode.EPHEMERAL_SEQUENTIAL)})


class LocalSessions(SessionTracker):
    """This server's local sessions: tracked and expired here in tick buckets, never logged.

    It hands out no ids itself (the server's one counter does, so that a local and a global
    session never share an id); an expired local session is simply forgotten.
    """

    def upgrade(self, session_id: int) -> int | None:
        """Stop tracking a session that becomes global; its timeout, or None if not local."""
        timeout = self.timeouts.get(session_id)
        if timeout is None:
            return None
        self.remove(session_id)
        return timeout

    def expire(self, now_ms: int) -> list[int]:
        """The local sessions whose time has come, forgotten already (sorted)."""
        out = self.expired(now_ms)
        for sid in out:
            self.remove(sid)
        return out


def creates_ephemeral(op: int, frame: bytes, pos: int = 8) -> bool:
    """Whether a request (its body at frame[pos:]) would create an ephemeral node: the test
    ZooKeeper's QuorumZooKeeperServer.checkUpgradeSession makes on a local session's writes.

    Only create/create2 count, alone or inside a multi. A body that does not decode is no
    upgrade: prep answers it (MARSHALLINGERROR or BADARGUMENTS) as for any session.
    """
    try:
        if op in (_CREATE, _CREATE2):
            req, _ = decode(CreateRequest, frame, pos)
            return req.flags in _EPHEMERAL_FLAGS
        if op == _MULTI:
            for sub, rec in decode_multi_request(frame, pos):
                if (
                    sub in (_CREATE, _CREATE2)
                    and isinstance(rec, CreateRequest)
                    and rec.flags in _EPHEMERAL_FLAGS
                ):
                    return True
    except DecodeError:
        return False
    return False


def session_server_id(session_id: int) -> int:
    """The server id in a session id's top byte (Java's arithmetic `sessionId >> 56`)."""
    return session_id >> 56
