"""A write whose body does not decode on an ensemble leader's own connection: answered
MARSHALLINGERROR without a txn, as ZooKeeper 3.9 (ZOOKEEPER-4575); and with the session
check failed (the session moved), still answered through its txn, never left hanging.

(Standalone: tests/unit/test_core.py; against ZooKeeper 3.8 and its 3.9 rule:
tests/conformance/test_protocol_vs_zookeeper.py::test_a_write_that_does_not_decode.)
"""

from __future__ import annotations

from core_harness import frame
from ensemble_harness import Ensemble

from corral.proto import jute
from corral.proto.codes import Err, OpCode
from corral.proto.records import ACL, CreateRequest, Id, RequestHeader, SetDataRequest

OPEN = (ACL(31, Id("world", "anyone")),)
_UNDECODABLE_CREATE = b"\x00\x00\x00\x09/tr"  # a path length beyond the body


def _bad_create(xid: int) -> bytes:
    return frame(jute.encode(RequestHeader(xid, int(OpCode.CREATE))) + _UNDECODABLE_CREATE)


def test_undecodable_write_on_the_leader_spends_no_zxid() -> None:
    ens = Ensemble(3)
    conn, _ = ens.connect(1)
    (ok,) = ens.call(conn, 1, OpCode.CREATE, CreateRequest("/u", b"", OPEN, 0))
    assert ok.err == 0
    zxids = {m.tree.last_zxid for m in ens.members.values()}
    ens.send(conn, _bad_create(2))
    (bad,) = ens.replies(conn)
    assert (bad.xid, bad.zxid, bad.err) == (2, ok.zxid, Err.MARSHALLINGERROR)
    assert {m.tree.last_zxid for m in ens.members.values()} == zxids  # no txn anywhere
    (next_write,) = ens.call(conn, 3, OpCode.SET_DATA, SetDataRequest("/u", b"x", -1))
    assert (next_write.err, next_write.zxid) == (0, ok.zxid + 1)


def test_undecodable_write_of_a_moved_session_on_the_leader_is_not_left_hanging() -> None:
    """The session moved to a follower: the leader's stale connection is closed on any
    request (ZooKeeper's SESSIONMOVED handling), this one too."""
    ens = Ensemble(3)
    old, resp = ens.connect(1)
    new, _ = ens.connect(2, session_id=resp.session_id, passwd=resp.passwd)
    ens.send(old, _bad_create(2))
    ens.replies(old)  # whatever was sent before the close
    assert ens.clients[old].closed
    (w,) = ens.call(new, 3, OpCode.CREATE, CreateRequest("/moved", b"", OPEN, 0))
    assert w.err == 0
