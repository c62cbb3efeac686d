"""The struct-packed reply frames are byte for byte the records' jute encodings."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from corral.proto import jute
from corral.proto.codes import Err, OpCode
from corral.proto.records import (
    Create2Response,
    CreateResponse,
    ErrorResponse,
    MultiHeader,
    ReplyHeader,
    SetACLResponse,
    SetDataResponse,
    Stat,
    WatcherEvent,
)
from corral.server.replies import (
    create2_frame,
    create_frame,
    multi_response_body,
    notification_frame,
    stat_frame,
)
from corral.tree.datatree import ApplyResult

longs = st.integers(-(2**63), 2**63 - 1)
ints = st.integers(-(2**31), 2**31 - 1)
stats = st.builds(Stat, longs, longs, longs, longs, ints, ints, ints, longs, ints, ints, longs)
# Paths as clients send them, plus odd ones (non-ASCII, a lone surrogate from a bad decode).
paths = st.text(max_size=40) | st.just("/\udcff")


def _framed(xid: int, zxid: int, err: int, *recs: object) -> bytes:
    body = jute.encode(ReplyHeader(xid, zxid, err)) + b"".join(jute.encode(r) for r in recs)
    return len(body).to_bytes(4, "big", signed=True) + body


@given(ints, longs, stats)
def test_stat_frame_is_set_data_and_set_acl_response(xid: int, zxid: int, stat: Stat) -> None:
    assert stat_frame(xid, zxid, stat) == _framed(xid, zxid, 0, SetDataResponse(stat))
    assert stat_frame(xid, zxid, stat) == _framed(xid, zxid, 0, SetACLResponse(stat))


@given(ints, longs, paths, stats)
def test_create_frames(xid: int, zxid: int, path: str, stat: Stat) -> None:
    assert create_frame(xid, zxid, path) == _framed(xid, zxid, 0, CreateResponse(path))
    assert create2_frame(xid, zxid, path, stat) == _framed(
        xid, zxid, 0, Create2Response(path, stat)
    )


@given(longs, ints, ints, paths)
def test_notification_frame(zxid: int, etype: int, state: int, path: str) -> None:
    assert notification_frame(zxid, etype, state, path) == _framed(
        -1, zxid, 0, WatcherEvent(etype, state, path)
    )


_RESULT_TYPE = {
    OpCode.CREATE: OpCode.CREATE,
    OpCode.CREATE2: OpCode.CREATE2,
    OpCode.CREATE_CONTAINER: OpCode.CREATE2,
    OpCode.CREATE_TTL: OpCode.CREATE2,
    OpCode.DELETE: OpCode.DELETE,
    OpCode.DELETE_CONTAINER: OpCode.DELETE,
    OpCode.SET_DATA: OpCode.SET_DATA,
    OpCode.CHECK: OpCode.CHECK,
}


def _reference_multi(res: ApplyResult, sub_ops: tuple[int, ...]) -> bytes:
    """The MultiResponse built from the records, as the code before the packed one did."""
    out = bytearray()
    for i, sub in enumerate(res.multi):
        rtype = _RESULT_TYPE.get(sub.type, OpCode.ERROR)
        if rtype == OpCode.CREATE and i < len(sub_ops) and sub_ops[i] == OpCode.CREATE2:
            rtype = OpCode.CREATE2
        if rtype == OpCode.ERROR:
            jute.encode_into(out, MultiHeader(-1, False, int(sub.err)))
            jute.encode_into(out, ErrorResponse(int(sub.err)))
            continue
        jute.encode_into(out, MultiHeader(int(rtype), False, 0))
        if rtype == OpCode.CREATE:
            jute.encode_into(out, CreateResponse(sub.path))
        elif rtype == OpCode.CREATE2:
            assert sub.stat is not None
            jute.encode_into(out, Create2Response(sub.path, sub.stat))
        elif rtype == OpCode.SET_DATA:
            assert sub.stat is not None
            jute.encode_into(out, SetDataResponse(sub.stat))
    jute.encode_into(out, MultiHeader(-1, True, -1))
    return bytes(out)


def test_multi_response_body_matches_the_records() -> None:
    rng = random.Random(4)
    print("seed 4")
    types = [*_RESULT_TYPE, OpCode.ERROR]
    errs = [Err.OK, Err.NONODE, Err.RUNTIMEINCONSISTENCY, Err.BADVERSION]
    for _ in range(300):
        subs = []
        sub_ops = []
        for _ in range(rng.randrange(0, 7)):
            t = rng.choice(types)
            stat = Stat(*(rng.randrange(-(2**31), 2**31) for _ in range(11)))
            subs.append(
                ApplyResult(
                    rng.choice(errs) if t == OpCode.ERROR else Err.OK,
                    f"/n{rng.randrange(100)}\u00e9",
                    stat,
                    (),
                    (),
                    int(t),
                )
            )
            sub_ops.append(rng.choice([int(t), int(OpCode.CREATE2)]))
        res = ApplyResult(Err.OK, "", None, tuple(subs), (), int(OpCode.MULTI))
        ops = tuple(sub_ops[: rng.randrange(0, len(sub_ops) + 1)])
        assert multi_response_body(res, ops) == _reference_multi(res, ops)
