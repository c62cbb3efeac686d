"""Differential test of malformed and unusual frames: what ZooKeeper does with each (reply
codes, whether it closes the connection, whether it stays up) Corral must do too.

Each scenario runs on a fresh connection. After the bytes under test the client sends a
ping: replies are ordered, so either the reply to the bad request and then the ping's reply
arrive, or the server closes the connection. The observation is the list of (xid, err)
replies before the ping's, and "closed" or "open".
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from corral.proto import jute
from corral.proto.codes import OpCode, Xid
from corral.proto.records import (
    ACL,
    AuthPacket,
    ConnectRequest,
    CreateRequest,
    GetDataRequest,
    Id,
    MultiHeader,
    ReplyHeader,
    RequestHeader,
    SetDataRequest,
)
from support.procs import ServerProcess
from support.rawclient import ConnectionClosed, RawClient, encode_multi

pytestmark = pytest.mark.zookeeper

OPEN = (ACL(31, Id("world", "anyone")),)
# How long a connection that answered the ping may take to be closed after all.
CLOSE_GRACE_S = 0.3


def _frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def _request(xid: int, op: int, body: bytes = b"") -> bytes:
    return _frame(jute.encode(RequestHeader(xid, op)) + body)


def _ustring(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">i", len(raw)) + raw


@dataclass(frozen=True)
class Scenario:
    name: str
    handshake: bool  # complete a normal handshake first
    payload: Callable[[str], bytes]  # given a unique path, the raw bytes to send


def _get_data(path: str) -> bytes:
    return jute.encode(GetDataRequest(path, False))


SCENARIOS = [
    Scenario("negative frame length", True, lambda p: struct.pack(">i", -5)),
    Scenario("frame length beyond jute.maxbuffer", True, lambda p: struct.pack(">i", 0x7FFFFFF0)),
    Scenario("empty frame", True, lambda p: struct.pack(">i", 0)),
    Scenario("header cut short", True, lambda p: _frame(b"\x00\x00\x00\x01\x00")),
    Scenario("unknown opcode", True, lambda p: _request(1, 99)),
    Scenario("unknown negative opcode", True, lambda p: _request(1, -77)),
    Scenario("getData body cut short", True, lambda p: _request(1, OpCode.GET_DATA, b"\x00\x00")),
    Scenario(
        "getData path length beyond the frame",
        True,
        lambda p: _request(1, OpCode.GET_DATA, struct.pack(">i", 1000) + b"/abc\x00"),
    ),
    Scenario(
        "getData with trailing bytes",
        True,
        lambda p: _request(1, OpCode.GET_DATA, _get_data("/") + b"junk"),
    ),
    Scenario(
        "setData with negative data length",
        True,
        lambda p: _request(
            1, OpCode.SET_DATA, jute.encode(SetDataRequest(p, b"", -1))[:-8] + b"\xff\xff\xff\xfe"
        ),
    ),
    Scenario(
        "multi without its end marker",
        True,
        lambda p: _request(
            1,
            OpCode.MULTI,
            jute.encode(MultiHeader(OpCode.CREATE, False, -1))
            + jute.encode(CreateRequest(p, b"", OPEN, 0)),
        ),
    ),
    Scenario(
        "multi with a read inside",
        True,
        lambda p: _request(
            1, OpCode.MULTI, encode_multi([(OpCode.GET_DATA, GetDataRequest(p, False))])
        ),
    ),
    Scenario(
        "multiRead with a write inside",
        True,
        lambda p: _request(
            1, OpCode.MULTI_READ, encode_multi([(OpCode.CREATE, CreateRequest(p, b"", OPEN, 0))])
        ),
    ),
    Scenario(
        "multi create with invalid flags",
        True,
        lambda p: _request(
            1, OpCode.MULTI, encode_multi([(OpCode.CREATE, CreateRequest(p, b"", OPEN, 9))])
        ),
    ),
    Scenario(
        "create with null ACL vector",
        True,
        lambda p: _request(
            1,
            OpCode.CREATE,
            jute.encode(CreateRequest(p, b"", (), 0))[:-8] + b"\xff\xff\xff\xff" + b"\0\0\0\0",
        ),
    ),
    Scenario("auth packet without a body", True, lambda p: _request(Xid.AUTH, OpCode.AUTH)),
    Scenario(
        "auth with an unknown scheme",
        True,
        lambda p: _request(Xid.AUTH, OpCode.AUTH, jute.encode(AuthPacket(0, "nosuch", b"x"))),
    ),
    Scenario(
        "digest auth without a colon",
        True,
        lambda p: _request(Xid.AUTH, OpCode.AUTH, jute.encode(AuthPacket(0, "digest", b"x"))),
    ),
    Scenario("ping with a normal xid", True, lambda p: _request(7, OpCode.PING)),
    # Opcodes a client has no business sending: the notification type, the unused 10.
    Scenario("notification opcode", True, lambda p: _request(1, OpCode.NOTIFICATION)),
    Scenario("unused opcode 10", True, lambda p: _request(1, 10)),
    # Well-framed requests with values out of their enum's range.
    Scenario(
        "addWatch with an unknown mode",
        True,
        lambda p: _request(1, OpCode.ADD_WATCH, _ustring(p) + struct.pack(">i", 2)),
    ),
    Scenario(
        "checkWatches with an unknown watcher type",
        True,
        lambda p: _request(1, OpCode.CHECK_WATCHES, _ustring(p) + struct.pack(">i", 9)),
    ),
    Scenario(
        "removeWatches with watcher type 0",
        True,
        lambda p: _request(1, OpCode.REMOVE_WATCHES, _ustring(p) + struct.pack(">i", 0)),
    ),
    Scenario(
        "sasl token without SASL configured",
        True,
        lambda p: _request(1, OpCode.SASL, struct.pack(">i", 3) + b"abc"),
    ),
    Scenario("whoAmI with a body", True, lambda p: _request(1, OpCode.WHO_AM_I, b"junk")),
    Scenario("multiRead with no ops", True, lambda p: _request(1, OpCode.MULTI_READ, b"")),
    Scenario(
        "empty multi",
        True,
        lambda p: _request(1, OpCode.MULTI, jute.encode(MultiHeader(-1, True, -1))),
    ),
    Scenario("handshake too short", False, lambda p: _frame(b"\x00" * 10)),
    Scenario(
        "handshake with a password longer than 16 bytes",
        False,
        lambda p: _frame(jute.encode(ConnectRequest(0, 0, 30000, 0, b"x" * 40, False))),
    ),
    Scenario(
        "handshake with a zxid from the future",
        False,
        lambda p: _frame(jute.encode(ConnectRequest(0, 1 << 60, 30000, 0, b"\0" * 16, False))),
    ),
    Scenario(
        "handshake for an unknown session",
        False,
        lambda p: _frame(jute.encode(ConnectRequest(0, 0, 30000, 0x7777, b"\0" * 16, False))),
    ),
]


# Scenarios whose answer changed between ZooKeeper 3.8.0 (the reference here) and 3.9:
# name -> (why, the version that changed it, what 3.9 answers).
KNOWN_DIFFERENCES: dict[str, tuple[str, tuple[int, ...], tuple[object, ...]]] = {
    "multi create with invalid flags": (
        "ZOOKEEPER-4026 (3.9.0, 3.8.4): MultiOperationRecord rejects an unknown create mode "
        "while decoding (MARSHALLINGERROR); 3.8.0 decodes it and answers the multi with OK",
        (3, 9, 0),
        ((1, -5), "open"),
    ),
}


def _version(server: ServerProcess) -> tuple[int, ...]:
    version: tuple[int, ...] = server.version  # type: ignore[attr-defined]
    return version


def _observe(server: ServerProcess, scenario: Scenario) -> tuple[object, ...]:
    path = "/malformed-" + scenario.name.replace(" ", "-")
    client = RawClient.open(server.address, io_timeout_s=5.0)
    try:
        if scenario.handshake:
            client.handshake()
        client.send_raw(scenario.payload(path))
        if not scenario.handshake:
            # The answer to a handshake is a ConnectResponse (or nothing): its size says
            # which, and a refused session is all zeros.
            try:
                frame = client.recv_frame()
            except (ConnectionClosed, TimeoutError) as exc:
                return ("no handshake reply", type(exc).__name__)
            session = frame[8:16] if len(frame) >= 16 else b""
            return ("handshake reply", len(frame), "session" if any(session) else "refused")
        replies: list[tuple[int, int]] = []
        try:
            client.send_frame(jute.encode(RequestHeader(Xid.PING, OpCode.PING)))
            while True:
                frame = client.recv_frame()
                hdr, _ = jute.decode(ReplyHeader, frame)
                if hdr.xid == Xid.PING:
                    break
                replies.append((hdr.xid, hdr.err))
        except (ConnectionClosed, BrokenPipeError):
            return (*replies, "closed")
        # ZooKeeper may answer the ping before it closes a connection it has condemned
        # (the close is queued behind the replies): give it a moment to do so.
        return (*replies, "closed" if client.connection_closed(CLOSE_GRACE_S) else "open")
    finally:
        client.abort()


def _still_serving(server: ServerProcess) -> bool:
    with RawClient.connect(server.address, io_timeout_s=5.0) as client:
        return client.exists("/").err == 0


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name.replace(" ", "-"))
def test_malformed_input_is_handled_as_zookeeper_does(
    scenario: Scenario, zookeeper: ServerProcess, corral: ServerProcess
) -> None:
    expected = _observe(zookeeper, scenario)
    assert _still_serving(zookeeper), f"ZooKeeper died of {scenario.name}"
    got = _observe(corral, scenario)
    assert _still_serving(corral), f"Corral died of {scenario.name}"
    print(f"{scenario.name}: zookeeper {expected}, corral {got}")
    known = KNOWN_DIFFERENCES.get(scenario.name)
    if known is not None and (_version(zookeeper) < known[1]) != (_version(corral) < known[1]):
        expected = known[2] if _version(corral) >= known[1] else expected
    assert got == expected, f"{scenario.name}: ZooKeeper {expected}, Corral {got}"


def test_reads_of_the_empty_path_read_the_root(
    zookeeper: ServerProcess, corral: ServerProcess
) -> None:
    """ZooKeeper's DataTree keeps the root under "" as well as "/" (3.8 and 3.9): reads of ""
    answer for "/". (The random sequences never read "": the root's contents depend on
    every other sequence.)"""
    for server in (zookeeper, corral):
        with RawClient.connect(server.address) as client:
            for op in ("exists", "get_data", "get_children2", "get_acl"):
                empty, root = getattr(client, op)(""), getattr(client, op)("/")
                assert (empty.err, empty.body) == (root.err, root.body), (server.kind, op)
