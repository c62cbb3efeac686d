"""Client-protocol situations the random sequences do not reach, each sent to Debian's
Apache ZooKeeper 3.8 (the reference) and to Corral, with the observations compared.

Covered here: the ConnectResponse format for the 44- and 45-byte ConnectRequest and the
readOnly flag; reconnects with a lastZxidSeen ahead of the server (refused: closed without a
reply) and with a wrong password (the all-zeros answer); reconfig on a standalone server
(disabled and enabled); TTL requests with extended types off; whether a write whose body
does not decode spends a zxid; and the session password schemes.

Where ZooKeeper 3.9 answers differently from 3.8 the difference is named (ZOOKEEPER-nnnn)
and the test checks each server against what its own version answers; where Corral differs
on purpose the reason is given and ZooKeeper's answer is pinned, so a change there shows.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable
from typing import Any

import pytest

from corral.proto import jute
from corral.proto.codes import Err, OpCode, Xid
from corral.proto.records import (
    AddWatchRequest,
    AuthPacket,
    ConnectRequest,
    CreateRequest,
    CreateTTLRequest,
    DeleteRequest,
    ExistsRequest,
    GetChildrenRequest,
    GetDataRequest,
    GetEphemeralsRequest,
    ReconfigRequest,
    SetDataRequest,
    SetWatches,
    SetWatches2,
    SyncRequest,
    WatcherEvent,
)
from corral.server.sessions import password_zookeeper
from support.procs import ServerProcess, ServerSettings
from support.rawclient import OPEN_ACL_UNSAFE, ConnectionClosed, RawClient, encode_multi

pytestmark = pytest.mark.zookeeper

IO_TIMEOUT_S = 10.0
_UNIQUE = itertools.count()  # fresh node names on the module's servers
RECONFIG_ON = ServerSettings(cfg=(("reconfigEnabled", "true"),))
ZK_PASSWORDS = ServerSettings(properties=(("corral.sessionPasswordScheme", "zookeeper"),))


def _version(server: ServerProcess) -> tuple[int, ...]:
    version: tuple[int, ...] = server.version  # type: ignore[attr-defined]
    return version


def _both(
    zookeeper: ServerProcess, corral: ServerProcess, observe: Callable[[ServerProcess], Any]
) -> tuple[Any, Any]:
    expected, got = observe(zookeeper), observe(corral)
    print(f"zookeeper {_version(zookeeper)}: {expected}\ncorral {_version(corral)}: {got}")
    return expected, got


# --- the connect handshake --------------------------------------------------------------


def _connect_reply(server: ServerProcess, legacy: bool, read_only: bool) -> tuple[Any, ...]:
    """Send a ConnectRequest for a new session; describe the ConnectResponse's shape."""
    client = RawClient.open(server.address, io_timeout_s=IO_TIMEOUT_S)
    try:
        request = jute.encode(ConnectRequest(0, 0, 30000, 0, b"\0" * 16, read_only))
        assert len(request) == 45
        client.send_frame(request[:-1] if legacy else request)
        frame = client.recv_frame()
        proto, timeout, session, pw_len = struct.unpack_from(">iiqi", frame)
        tail = frame[20 + pw_len :]
        # The session works after either form (the reply's size kept the stream in sync).
        client.send_frame(struct.pack(">ii", -2, OpCode.PING))
        xid, _zxid, err = struct.unpack_from(">iqi", client.recv_frame())
        return (len(frame), proto, timeout, session != 0, pw_len, tail.hex(), (xid, err))
    finally:
        client.abort()


@pytest.mark.parametrize(
    ("legacy", "read_only"),
    [(True, False), (False, False), (False, True)],
    ids=["44-byte", "45-byte", "45-byte-readOnly"],
)
def test_connect_response_mirrors_the_request(
    legacy: bool, read_only: bool, zookeeper: ServerProcess, corral: ServerProcess
) -> None:
    """A 44-byte ConnectRequest (no readOnly byte: go-zookeeper, 3.3-era clients) is answered
    without the readOnly byte (36 bytes), a 45-byte one with it (37 bytes); a read-write
    server says readOnly=false even to a client that accepts read-only service."""
    expected, got = _both(zookeeper, corral, lambda s: _connect_reply(s, legacy, read_only))
    assert got == expected
    assert got[0] == (36 if legacy else 37)
    assert got[4] == 16  # the session password is 16 bytes


def _connect_variant(server: ServerProcess, request: bytes) -> tuple[Any, ...]:
    """Send `request` as the first frame, then a getData and a ping in the same write (a
    client that does not wait for the ConnectResponse): what comes back."""
    client = RawClient.open(server.address, io_timeout_s=IO_TIMEOUT_S)
    try:
        get = struct.pack(">ii", 1, OpCode.GET_DATA) + jute.encode(GetDataRequest("/", False))
        ping = struct.pack(">ii", Xid.PING, OpCode.PING)
        client.send_raw(b"".join(struct.pack(">i", len(f)) + f for f in (request, get, ping)))
        frame = client.recv_frame()
        _, timeout, session, pw_len = struct.unpack_from(">iiqi", frame)
        out: list[Any] = [len(frame), timeout, session != 0, pw_len]
        for _ in range(2):
            xid, _zxid, err = struct.unpack_from(">iqi", client.recv_frame())
            out.append((xid, err))
        return tuple(out)
    finally:
        client.abort()


CONNECT_VARIANTS = {
    "timeout 0": ConnectRequest(0, 0, 0, 0, b"\0" * 16, False),
    "negative timeout": ConnectRequest(0, 0, -5, 0, b"\0" * 16, False),
    "huge timeout": ConnectRequest(0, 0, 10**9, 0, b"\0" * 16, False),
    "protocolVersion 42": ConnectRequest(42, 0, 30000, 0, b"\0" * 16, False),
    "null password": ConnectRequest(0, 0, 30000, 0, None, False),
}


@pytest.mark.parametrize("variant", [*CONNECT_VARIANTS, "trailing bytes"])
def test_connect_request_variants_and_pipelining(
    variant: str, zookeeper: ServerProcess, corral: ServerProcess
) -> None:
    """Timeouts clamped to [2, 20] x tickTime, protocolVersion and bytes after the readOnly
    byte ignored, a null password taken as none; requests sent right behind the
    ConnectRequest wait for the session and are answered in order."""
    if variant == "trailing bytes":
        request = jute.encode(CONNECT_VARIANTS["null password"]) + b"extra"
    else:
        request = jute.encode(CONNECT_VARIANTS[variant])
    expected, got = _both(zookeeper, corral, lambda s: _connect_variant(s, request))
    assert got == expected


def _reconnect(server: ServerProcess, ahead: int, password: bytes | None) -> tuple[Any, ...]:
    """Open a session, break its connection, reconnect with lastZxidSeen = last seen +
    `ahead` (and the given password, default the right one): what the server answers, and
    whether the session is still usable afterwards with the right password."""
    first = RawClient.connect(server.address, io_timeout_s=IO_TIMEOUT_S)
    first.create(f"/reconnect-probe-{next(_UNIQUE)}", flags=1)
    seen, sid, right = first.last_zxid, first.session_id, first.passwd
    first.abort()
    client = RawClient.open(server.address, io_timeout_s=IO_TIMEOUT_S)
    try:
        passwd = right if password is None else password
        client.send_frame(jute.encode(ConnectRequest(0, seen + ahead, 30000, sid, passwd, False)))
        try:
            frame = client.recv_frame()
        except ConnectionClosed:
            answer: tuple[Any, ...] = ("closed without a reply",)
        else:
            _, timeout, session, pw_len = struct.unpack_from(">iiqi", frame)
            pw = frame[20 : 20 + pw_len]
            if session:  # accepted: the connection serves (a ping is answered)
                after = "serves" if client.ping().err == 0 else "ping failed"
            else:  # refused: the server closes (bounded wait for the EOF)
                after = "then closed" if client.connection_closed(IO_TIMEOUT_S) else "open"
            answer = (
                "reply",
                len(frame),
                timeout,
                "same session" if session == sid else session,
                "zeros" if pw == bytes(16) else "password",
                after,
            )
    finally:
        client.abort()
    with RawClient.connect(
        server.address, session_id=sid, passwd=right, last_zxid_seen=seen
    ) as again:
        still = again.session_id == sid
    return (*answer, "session lives" if still else "session gone")


@pytest.mark.parametrize(
    ("ahead", "password"),
    [(0, None), (1000, None), (0, b"\x01" * 16), (0, b"")],
    ids=["in-step", "zxid-from-the-future", "wrong-password", "empty-password"],
)
def test_reconnect_with_last_zxid_seen_and_password(
    ahead: int, password: bytes | None, zookeeper: ServerProcess, corral: ServerProcess
) -> None:
    """A client that has seen a zxid newer than the server's last is refused (the connection
    closed, no ConnectResponse: it must try another server) and its session is untouched; a
    wrong password gets the all-zeros answer (timeout 0, session 0, 16 zero bytes), then the
    connection is closed; the right one resumes the session."""
    expected, got = _both(zookeeper, corral, lambda s: _reconnect(s, ahead, password))
    assert got == expected


def test_a_wrong_password_does_not_disconnect_the_owner(
    zookeeper: ServerProcess, corral: ServerProcess
) -> None:
    """Deliberate difference. ZooKeeper (3.8 and 3.9: processConnectRequest) closes the
    session's current connection (CLIENT_RECONNECT) before it checks the password, so anyone
    who knows a session id (cons, dump and logs show them) can keep disconnecting its owner.
    Corral checks the password first and leaves the owner's connection alone."""

    def observe(server: ServerProcess) -> str:
        with RawClient.connect(server.address, io_timeout_s=IO_TIMEOUT_S) as owner:
            impostor = RawClient.open(server.address, io_timeout_s=IO_TIMEOUT_S)
            try:
                impostor.send_frame(
                    jute.encode(ConnectRequest(0, 0, 30000, owner.session_id, b"\1" * 16, False))
                )
                frame = impostor.recv_frame()
                assert struct.unpack_from(">iiq", frame)[1:] == (0, 0)  # refused
            finally:
                impostor.abort()
            try:
                return "owner served" if owner.ping().err == 0 else "owner error"
            except ConnectionClosed:
                return "owner disconnected"

    expected, got = _both(zookeeper, corral, observe)
    assert expected == "owner disconnected"
    assert got == "owner served"


# --- session passwords ------------------------------------------------------------------


def test_session_passwords(
    zookeeper: ServerProcess, corral: ServerProcess, corral_pool: Any
) -> None:
    """ZooKeeper's password is java.util.Random(sessionId ^ 0xB3415C00).nextBytes(16): anyone
    who knows a session id knows it. Corral's default is HMAC-SHA256(secret, id)[:16];
    corral.sessionPasswordScheme=zookeeper gives ZooKeeper's (mixed ensembles)."""
    compatible = corral_pool.get(ZK_PASSWORDS)
    for server, guessable in ((zookeeper, True), (corral, False), (compatible, True)):
        with RawClient.connect(server.address) as client:
            assert len(client.passwd) == 16
            matches = client.passwd == password_zookeeper(client.session_id)
            assert matches is guessable, (server.kind, server.address)
            # Either way the server accepts its own password on a reconnect.
            with RawClient.connect(
                server.address, session_id=client.session_id, passwd=client.passwd
            ) as again:
                assert again.session_id == client.session_id


# --- reconfig on a standalone server ------------------------------------------------------


def _zxid_cost(server: ServerProcess, send: Callable[[RawClient], int]) -> tuple[int, int, int]:
    """(err, reply zxid - before, next write's zxid - before) around `send`, which returns
    the error code of the request under test."""
    with RawClient.connect(server.address, io_timeout_s=IO_TIMEOUT_S) as client:
        before = client.create2(f"/zxid-cost-{next(_UNIQUE)}", b"").zxid
        err = send(client)
        at_reply = client.last_zxid
        after = client.create2(f"/zxid-cost-{next(_UNIQUE)}", b"").zxid
        return (err, at_reply - before, after - before)


RECONFIG = ReconfigRequest("", "", "server.1=127.0.0.1:2888:3888:participant;2181", -1)


def _reconfig(client: RawClient) -> int:
    return client.request(OpCode.RECONFIG, RECONFIG).err


@pytest.mark.parametrize("enabled", [False, True], ids=["disabled", "enabled"])
def test_reconfig_on_a_standalone_server(
    enabled: bool, zookeeper_pool: Any, corral_pool: Any
) -> None:
    """reconfigEnabled=false: RECONFIGDISABLED; true: UNIMPLEMENTED (a standalone server
    cannot reconfigure). Either way prep fails it as a txn, which spends a zxid."""
    settings = RECONFIG_ON if enabled else ServerSettings()
    expected, got = _both(
        zookeeper_pool.get(settings), corral_pool.get(settings), lambda s: _zxid_cost(s, _reconfig)
    )
    assert got == expected
    assert got[0] == (Err.UNIMPLEMENTED if enabled else Err.RECONFIGDISABLED)


# --- TTL requests with extended types off (the default) -----------------------------------


def _ttl_cases() -> dict[str, Callable[[RawClient], int]]:
    def create_ttl(c: RawClient) -> int:
        return c.create_ttl("/ttl-off-a", ttl=60_000).err

    def create_flag5(c: RawClient) -> int:
        return c.request(OpCode.CREATE, CreateRequest("/ttl-off-b", b"", OPEN_ACL_UNSAFE, 5)).err

    def create2_flag6(c: RawClient) -> int:
        return c.request(OpCode.CREATE2, CreateRequest("/ttl-off-c", b"", OPEN_ACL_UNSAFE, 6)).err

    def multi_ttl(c: RawClient) -> Any:
        reply = c.multi(
            [(OpCode.CREATE_TTL, CreateTTLRequest("/ttl-off-d", b"", OPEN_ACL_UNSAFE, 5, 1000))]
        )
        return (reply.err, [(r.type, r.err) for r in reply.result or ()])

    return {
        "createTTL": create_ttl,
        "create-flag-5": create_flag5,
        "create2-flag-6": create2_flag6,
        "multi-createTTL": multi_ttl,
    }


TTL_CASES = _ttl_cases()


@pytest.mark.parametrize("case", list(TTL_CASES))
def test_ttl_requests_with_extended_types_off(
    case: str, zookeeper: ServerProcess, corral: ServerProcess
) -> None:
    expected, got = _both(zookeeper, corral, lambda s: _zxid_cost(s, TTL_CASES[case]))
    assert got == expected


# --- a write whose body does not decode -----------------------------------------------------

MALFORMED_WRITES: dict[str, tuple[int, bytes]] = {
    "create": (OpCode.CREATE, struct.pack(">i", 2) + b"/x" + struct.pack(">i", 5) + b"ab"),
    "create2": (OpCode.CREATE2, struct.pack(">i", 2) + b"/x"),
    "createContainer": (OpCode.CREATE_CONTAINER, b"\0\0"),
    "createTTL": (OpCode.CREATE_TTL, struct.pack(">i", 2) + b"/x"),
    "delete": (OpCode.DELETE, struct.pack(">i", 2) + b"/x"),
    "setData": (OpCode.SET_DATA, struct.pack(">i", 2) + b"/x" + struct.pack(">i", 9)),
    "setACL": (OpCode.SET_ACL, struct.pack(">i", 2) + b"/x" + struct.pack(">i", 3)),
    "reconfig": (OpCode.RECONFIG, struct.pack(">i", 50) + b"x"),
    "multi": (OpCode.MULTI, struct.pack(">i?i", 1, False, -1) + struct.pack(">i", 2) + b"/x"),
}
# ZOOKEEPER-4575 (3.9.0) made prep decode a request body before it takes the next zxid:
# since then a write whose body does not decode is answered MARSHALLINGERROR without
# spending a zxid (the error txn reuses the last one); multi still takes its zxid first.
# 3.8 spent one for every such write except reconfig, which it already decoded first.
# (err, reply zxid - before, next write's zxid - before):
SPENDS_A_ZXID = (Err.MARSHALLINGERROR, 1, 2)
SPENDS_NONE = (Err.MARSHALLINGERROR, 0, 1)


def _spends_a_zxid(op: str, version: tuple[int, ...]) -> bool:
    if op == "multi":
        return True
    return version < (3, 9, 0) and op != "reconfig"


@pytest.mark.parametrize("op", list(MALFORMED_WRITES))
def test_a_write_that_does_not_decode(
    op: str, zookeeper: ServerProcess, corral: ServerProcess
) -> None:
    code, body = MALFORMED_WRITES[op]

    def send(client: RawClient) -> int:
        return client.request(code, body).err

    expected, got = _both(zookeeper, corral, lambda s: _zxid_cost(s, send))
    for server, outcome in ((zookeeper, expected), (corral, got)):
        spends = _spends_a_zxid(op, _version(server))
        assert outcome == (SPENDS_A_ZXID if spends else SPENDS_NONE), server.kind


# --- reply headers of the requests with special xids or no txn ----------------------------


def _headers(server: ServerProcess) -> list[tuple[str, int, Any, int, str]]:
    """(what, reply xid, reply zxid, err, body) for each request, in order. The zxid is
    relative to a create just before ("+N"), except the literal 0 and -1 some replies carry."""
    requests: list[tuple[str, int, int, Any]] = [
        ("ping", Xid.PING, OpCode.PING, None),
        ("ping with xid 7", 7, OpCode.PING, None),
        ("auth", Xid.AUTH, OpCode.AUTH, AuthPacket(0, "digest", b"hdr:pw")),
        ("auth with xid 9", 9, OpCode.AUTH, AuthPacket(0, "digest", b"hdr2:pw")),
        ("setWatches", Xid.SET_WATCHES, OpCode.SET_WATCHES, SetWatches(0, (), (), ())),
        ("setWatches with xid 5", 5, OpCode.SET_WATCHES, SetWatches(0, (), (), ())),
        ("setWatches2", Xid.SET_WATCHES, OpCode.SET_WATCHES2, SetWatches2(0, (), (), (), (), ())),
        ("sync", 11, OpCode.SYNC, SyncRequest("/hdr")),
        ("addWatch", 12, OpCode.ADD_WATCH, AddWatchRequest("/hdr", 0)),
        ("getEphemerals", 13, OpCode.GET_EPHEMERALS, GetEphemeralsRequest("/")),
        ("getAllChildrenNumber", 14, OpCode.GET_ALL_CHILDREN_NUMBER, SyncRequest("/hdr")),
        ("closeSession", 15, OpCode.CLOSE_SESSION, None),
    ]
    with RawClient.connect(server.address, io_timeout_s=IO_TIMEOUT_S) as cleanup:
        cleanup.delete("/hdr")
    client = RawClient.connect(server.address, io_timeout_s=IO_TIMEOUT_S)
    try:
        before = client.create2("/hdr", b"").zxid
        out = []
        for what, xid, op, body in requests:
            client.submit(op, body, xid)
            frame = client.recv_frame()
            rxid, zxid, err = struct.unpack_from(">iqi", frame)
            shown: Any = zxid if zxid in (0, -1) else f"+{zxid - before}"
            out.append((what, rxid, shown, err, frame[16:].hex()))
    finally:
        client.abort()
    # An opcode the server does not serve (an unknown one, the server-internal error type):
    # UNIMPLEMENTED with zxid -1, then the connection is closed.
    for what, op in (("unknown opcode 99", 99), ("error opcode -1", OpCode.ERROR)):
        with RawClient.connect(server.address, io_timeout_s=IO_TIMEOUT_S) as client:
            client.submit(op, None, 21)
            rxid, zxid, err = struct.unpack_from(">iqi", client.recv_frame())
            closed = client.connection_closed(IO_TIMEOUT_S)
            out.append((what, rxid, zxid, err, "closed" if closed else "open"))
    return out


def test_reply_headers_of_special_requests(zookeeper: ServerProcess, corral: ServerProcess) -> None:
    """Pings are answered with xid -2 whatever xid they had; auth with the request's xid and
    zxid 0; setWatches, sync, addWatch (a 4-byte body), getEphemerals, getAllChildrenNumber
    and closeSession with the request's xid and the last zxid; an unknown opcode with
    UNIMPLEMENTED and zxid -1, then the connection closes."""
    expected, got = _both(zookeeper, corral, _headers)
    assert got == expected


# --- replies in request order, notifications before the replies that follow them ---------


def _pipeline(n: int) -> tuple[list[tuple[int, int, Any]], bytes]:
    """n rounds of mixed requests, sent as one burst: (xid, op, body) and the bytes."""
    out = bytearray()
    sent: list[tuple[int, int, Any]] = []
    xid = 0

    def add(op: int, body: Any, fixed_xid: int | None = None) -> None:
        nonlocal xid
        xid += 1
        use = xid if fixed_xid is None else fixed_xid
        payload = struct.pack(">ii", use, op)
        payload += body if isinstance(body, bytes) else jute.encode(body) if body else b""
        out.extend(struct.pack(">i", len(payload)) + payload)
        sent.append((use, op, body))

    for i in range(n):
        path = f"/pipe/n{i % 3}"
        add(OpCode.CREATE, CreateRequest(path, b"c", OPEN_ACL_UNSAFE, 0))
        add(OpCode.EXISTS, ExistsRequest(path, True))
        add(OpCode.GET_DATA, GetDataRequest(path, True))
        add(OpCode.SET_DATA, SetDataRequest(path, b"%d" % i, -1))
        add(OpCode.PING, None, Xid.PING)
        add(OpCode.GET_CHILDREN, GetChildrenRequest("/pipe", True))
        add(OpCode.SET_DATA, struct.pack(">i", 2) + b"/x")  # does not decode
        add(OpCode.SYNC, SyncRequest(path))
        add(OpCode.DELETE, DeleteRequest(path, -1 if i % 2 else 5))
        add(OpCode.MULTI_READ, encode_multi([(OpCode.GET_DATA, GetDataRequest(path, False))]))
    return sent, bytes(out)


def _run_pipeline(server: ServerProcess) -> list[tuple[Any, ...]]:
    """What comes back for one burst: ("reply", xid, err) and ("event", type, path) in
    arrival order. Checks on the way: reply xids in request order, and every frame's zxid
    (notifications' too, from 3.9 on) at least the one before it."""
    with RawClient.connect(server.address, io_timeout_s=IO_TIMEOUT_S) as setup:
        setup.create("/pipe")
    sent, burst = _pipeline(40)
    client = RawClient.connect(server.address, io_timeout_s=IO_TIMEOUT_S)
    try:
        client.send_raw(burst)
        seen: list[tuple[Any, ...]] = []
        xids: list[int] = []
        last_zxid = 0
        notification_zxids = _version(server) >= (3, 9, 0)
        while len(xids) < len(sent):
            frame = client.recv_frame()
            xid, zxid, err = struct.unpack_from(">iqi", frame)
            if xid == Xid.NOTIFICATION:
                event = jute.decode_exact(WatcherEvent, frame[16:])
                seen.append(("event", event.type, event.path))
                if not notification_zxids:
                    continue
            else:
                xids.append(xid)
                seen.append(("reply", xid, err))
            assert zxid >= last_zxid, f"{server.kind}: zxid {zxid} after {last_zxid}"
            last_zxid = zxid
        assert xids == [x for x, _, _ in sent], f"{server.kind}: replies out of order"
        return seen
    finally:
        client.close()


def test_pipelined_requests_are_answered_in_order(
    zookeeper: ServerProcess, corral: ServerProcess
) -> None:
    """400 requests in one burst (writes, watch-setting reads, pings, sync, multiRead and a
    write that does not decode): the replies come in request order, each watch event comes
    before the reply to the write that fired it, and everything matches ZooKeeper."""
    expected, got = _both(zookeeper, corral, _run_pipeline)
    assert got == expected
