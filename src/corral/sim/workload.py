"""Client traffic for the simulator: sessions and the write requests they send.

A client has one session, attached to one server; it pings through that server, moves to
another when its server stops serving, and sends creates (persistent, ephemeral,
sequential), sets, deletes and multis on a small set of paths so that requests collide,
fail and succeed in every way prep knows. Some clients close their session; some are
abandoned (stop pinging) so that the leader expires them.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field

from corral.proto import jute
from corral.proto.codes import CreateMode, OpCode
from corral.proto.records import (
    CheckVersionRequest,
    CreateRequest,
    DeleteRequest,
    MultiHeader,
    ReconfigRequest,
    SetDataRequest,
)
from corral.quorum.verifier import QuorumVerifier
from corral.tree.datatree import OPEN_ACL_UNSAFE

PATHS = ("/a", "/b", "/a/x", "/a/y", "/b/x", "/c", "/q")
SingleRequest = CreateRequest | SetDataRequest | DeleteRequest | CheckVersionRequest
# What prep_write takes: a record, the ops of a multi, a timeout, or nothing.
Request = SingleRequest | ReconfigRequest | list[tuple[int, object]] | int | None


@dataclass
class Client:
    session_id: int
    server: int
    timeout_ms: int
    state: str = "creating"  # creating, live, dead
    abandoned: bool = False
    cxid: int = 0
    created_at: int = 0
    outstanding: set[int] = field(default_factory=set)  # cxids sent on this connection

    def next_cxid(self) -> int:
        self.cxid += 1
        return self.cxid


def random_write(rng: random.Random) -> tuple[int, Request]:
    r = rng.random()
    if r < 0.35:
        return int(OpCode.CREATE), _create(rng)
    if r < 0.6:
        return int(OpCode.SET_DATA), _set(rng)
    if r < 0.8:
        return int(OpCode.DELETE), _delete(rng)
    ops: list[tuple[int, object]] = []
    for _ in range(rng.randint(1, 3)):
        k = rng.random()
        if k < 0.3:
            ops.append(
                (int(OpCode.CHECK), CheckVersionRequest(rng.choice(PATHS), rng.choice((-1, 0, 1))))
            )
        elif k < 0.55:
            ops.append((int(OpCode.CREATE), _create(rng)))
        elif k < 0.8:
            ops.append((int(OpCode.SET_DATA), _set(rng)))
        else:
            ops.append((int(OpCode.DELETE), _delete(rng)))
    return int(OpCode.MULTI), ops


def _create(rng: random.Random) -> CreateRequest:
    mode = rng.choice(
        (CreateMode.PERSISTENT, CreateMode.PERSISTENT, CreateMode.EPHEMERAL,
         CreateMode.PERSISTENT_SEQUENTIAL, CreateMode.EPHEMERAL_SEQUENTIAL)
    )  # fmt: skip
    path = rng.choice(PATHS)
    if mode in (CreateMode.PERSISTENT_SEQUENTIAL, CreateMode.EPHEMERAL_SEQUENTIAL):
        path = "/q/n-"
    return CreateRequest(path, rng.randbytes(rng.randint(0, 6)), OPEN_ACL_UNSAFE, int(mode))


def _set(rng: random.Random) -> SetDataRequest:
    return SetDataRequest(
        rng.choice(PATHS), rng.randbytes(rng.randint(0, 8)), rng.choice((-1, -1, 0, 1, 2))
    )


def _delete(rng: random.Random) -> DeleteRequest:
    path = rng.choice(PATHS[:-1]) if rng.random() < 0.9 else "/q"
    return DeleteRequest(path, rng.choice((-1, -1, 0, 1)))


# -- reconfig requests ----------------------------------------------------------------------


def statement(sid: int, observer: bool) -> str:
    """A server's statement as a reconfig carries it (sim.world.member's addresses)."""
    role = "observer" if observer else "participant"
    return f"server.{sid}=127.0.0.1:{2000 + sid}:{3000 + sid}:{role};127.0.0.1:{4000 + sid}"


def random_reconfig(
    rng: random.Random, view: QuorumVerifier, sids: list[int], version: int
) -> tuple[str, ReconfigRequest]:
    """A reconfig as an operator would send it, from the config `view` the client read
    (version `version`, or -1 for an unconditional one): incremental adds (of a server
    outside the config, or a role change), removals, both at once, or a bulk membership."""
    members = {s.sid: s.observer for s in view.servers}
    outside = [s for s in sids if s not in members]
    r = rng.random()
    if r < 0.3 and outside:
        sid = rng.choice(outside)
        return "add", ReconfigRequest(statement(sid, rng.random() < 0.25), "", "", version)
    if r < 0.55 and members:
        leaving = rng.sample(sorted(members), min(len(members), rng.choice((1, 1, 2))))
        return "remove", ReconfigRequest("", ",".join(map(str, leaving)), "", version)
    if r < 0.65 and members:
        sid = rng.choice(sorted(members))
        return "role", ReconfigRequest(statement(sid, not members[sid]), "", "", version)
    if r < 0.8 and members and outside:
        join = rng.choice(outside)
        leave = rng.choice(sorted(members))
        joining = statement(join, rng.random() < 0.25)
        return "swap", ReconfigRequest(joining, str(leave), "", version)
    chosen = rng.sample(sids, rng.randint(2, len(sids)))
    roles = {sid: rng.random() < 0.2 for sid in chosen}
    roles[chosen[0]] = False  # at least one voter
    text = ",".join(statement(sid, obs) for sid, obs in sorted(roles.items()))
    return "bulk", ReconfigRequest("", "", text, version)


# -- the REQUEST packet's bytes (a learner forwards the client's request as it came) ---------

_TIMEOUT = struct.Struct(">i")


def encode_request(op: int, request: Request) -> bytes:
    if op == OpCode.CREATE_SESSION:
        assert isinstance(request, int)
        return _TIMEOUT.pack(request)
    if request is None:
        return b""
    if isinstance(request, list):
        out = bytearray()
        for sub, rec in request:
            jute.encode_into(out, MultiHeader(sub, False, -1))
            jute.encode_into(out, rec)
        jute.encode_into(out, MultiHeader(-1, True, -1))
        return bytes(out)
    assert not isinstance(request, int)
    return jute.encode(request)


def decode_request(op: int, data: bytes) -> Request | bytes:
    """The leader's view of a forwarded request (a multi stays bytes: prep decodes it)."""
    if op == OpCode.CREATE_SESSION:
        return int(_TIMEOUT.unpack_from(data)[0])
    if op == OpCode.CLOSE_SESSION:
        return None
    if op == OpCode.MULTI:
        return data
    cls = {
        OpCode.CREATE: CreateRequest,
        OpCode.SET_DATA: SetDataRequest,
        OpCode.DELETE: DeleteRequest,
        OpCode.RECONFIG: ReconfigRequest,
    }[OpCode(op)]
    return jute.decode_exact(cls, data)
