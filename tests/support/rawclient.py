"""A small synchronous raw-protocol ZooKeeper client for tests, built on corral.proto.

It speaks frames and records directly, so a test can send any opcode (including the ones
kazoo lacks: addWatch, multiRead, getEphemerals, getAllChildrenNumber, whoAmI,
removeWatches, checkWatches, setWatches2, createContainer, createTTL, check outside multi),
a 44- or 45-byte ConnectRequest, or malformed bytes. Replies are matched by xid;
notifications (xid -1) that arrive meanwhile are kept, in arrival order, in `events`.

It is deliberately dumb: no reconnects, no pings unless asked, no client-side checks.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import socket
import struct
from collections.abc import Sequence
from typing import Any

from corral.proto import jute
from corral.proto.codes import OpCode, Xid
from corral.proto.records import (
    ACL,
    AddWatchRequest,
    AuthPacket,
    CheckVersionRequest,
    CheckWatchesRequest,
    ConnectRequest,
    ConnectResponse,
    Create2Response,
    CreateRequest,
    CreateResponse,
    CreateTTLRequest,
    DeleteRequest,
    ErrorResponse,
    ExistsRequest,
    ExistsResponse,
    GetACLRequest,
    GetACLResponse,
    GetAllChildrenNumberRequest,
    GetAllChildrenNumberResponse,
    GetChildren2Request,
    GetChildren2Response,
    GetChildrenRequest,
    GetChildrenResponse,
    GetDataRequest,
    GetDataResponse,
    GetEphemeralsRequest,
    GetEphemeralsResponse,
    Id,
    MultiHeader,
    RemoveWatchesRequest,
    ReplyHeader,
    RequestHeader,
    SetACLRequest,
    SetACLResponse,
    SetDataRequest,
    SetDataResponse,
    SetWatches,
    SetWatches2,
    Stat,
    SyncRequest,
    SyncResponse,
    WatcherEvent,
    WhoAmIResponse,
)

Address = tuple[str, int]

OPEN_ACL_UNSAFE = (ACL(31, Id("world", "anyone")),)
READ_ACL_UNSAFE = (ACL(1, Id("world", "anyone")),)
CREATOR_ALL_ACL = (ACL(31, Id("auth", "")),)

# The body record of a successful reply, per opcode (None: header only).
RESPONSE_RECORD: dict[int, type | None] = {
    OpCode.CREATE: CreateResponse,
    OpCode.CREATE2: Create2Response,
    OpCode.CREATE_CONTAINER: Create2Response,
    OpCode.CREATE_TTL: Create2Response,
    OpCode.DELETE: None,
    OpCode.EXISTS: ExistsResponse,
    OpCode.GET_DATA: GetDataResponse,
    OpCode.SET_DATA: SetDataResponse,
    OpCode.GET_ACL: GetACLResponse,
    OpCode.SET_ACL: SetACLResponse,
    OpCode.GET_CHILDREN: GetChildrenResponse,
    OpCode.GET_CHILDREN2: GetChildren2Response,
    OpCode.SYNC: SyncResponse,
    OpCode.PING: None,
    OpCode.CHECK: None,
    OpCode.CHECK_WATCHES: None,
    OpCode.REMOVE_WATCHES: None,
    OpCode.ADD_WATCH: ErrorResponse,
    OpCode.GET_EPHEMERALS: GetEphemeralsResponse,
    OpCode.GET_ALL_CHILDREN_NUMBER: GetAllChildrenNumberResponse,
    OpCode.WHO_AM_I: WhoAmIResponse,
    OpCode.SET_WATCHES: None,
    OpCode.SET_WATCHES2: None,
    OpCode.CLOSE_SESSION: None,
    OpCode.AUTH: None,
}

# The result record of one sub-op of a multi/multiRead reply, by the type in its MultiHeader.
MULTI_RESULT_RECORD: dict[int, type | None] = {
    OpCode.CREATE: CreateResponse,
    OpCode.CREATE2: Create2Response,
    OpCode.CREATE_CONTAINER: Create2Response,
    OpCode.CREATE_TTL: Create2Response,
    OpCode.DELETE: None,
    OpCode.CHECK: None,
    OpCode.SET_DATA: SetDataResponse,
    OpCode.GET_DATA: GetDataResponse,
    OpCode.GET_CHILDREN: GetChildrenResponse,
    OpCode.ERROR: ErrorResponse,
}

_LEN = struct.Struct(">i")


class ConnectionClosed(ConnectionError):
    """The server closed the connection (or the socket broke) while we waited for bytes."""


def digest(user: str, password: str) -> str:
    """The digest ACL id of user:password: "user:base64(sha1(user:password))"."""
    raw = hashlib.sha1(f"{user}:{password}".encode()).digest()
    return f"{user}:{base64.b64encode(raw).decode()}"


@dataclasses.dataclass(frozen=True)
class Notification:
    """A watch event as received: the ReplyHeader zxid (-1 before 3.9) and the WatcherEvent."""

    zxid: int
    type: int
    state: int
    path: str


@dataclasses.dataclass(frozen=True)
class MultiResult:
    """One sub-result of a multi/multiRead reply: the MultiHeader type and err, and the body."""

    type: int
    err: int
    body: Any


@dataclasses.dataclass(frozen=True)
class Reply:
    """A reply: its header, raw body bytes, and the opcode it answers."""

    xid: int
    zxid: int
    err: int
    body: bytes
    op: int

    def decode(self, cls: type[Any]) -> Any:
        return jute.decode_exact(cls, self.body)

    @property
    def result(self) -> Any:
        """The decoded body for a successful reply (None when there is none)."""
        if self.err != 0:
            return None
        if self.op in (OpCode.MULTI, OpCode.MULTI_READ):
            return decode_multi_response(self.body)
        cls = RESPONSE_RECORD.get(self.op)
        if cls is None or not self.body:
            return None
        return self.decode(cls)


def encode_multi(ops: Sequence[tuple[int, Any]]) -> bytes:
    """A MultiOperationRecord: (MultiHeader + sub-request)* then the done header."""
    out = bytearray()
    for op, req in ops:
        jute.encode_into(out, MultiHeader(int(op), False, -1))
        jute.encode_into(out, req)
    jute.encode_into(out, MultiHeader(-1, True, -1))
    return bytes(out)


def decode_multi_response(data: bytes) -> list[MultiResult]:
    results: list[MultiResult] = []
    pos = 0
    while True:
        hdr, pos = jute.decode(MultiHeader, data, pos)
        if hdr.done:
            break
        cls = MULTI_RESULT_RECORD.get(hdr.type)
        body = None
        if cls is not None:
            body, pos = jute.decode(cls, data, pos)
        results.append(MultiResult(hdr.type, hdr.err, body))
    if pos != len(data):
        raise jute.DecodeError(f"{len(data) - pos} trailing bytes after a multi response")
    return results


class RawClient:
    """One connection and session. Not thread-safe; every wait is bounded by io_timeout_s."""

    def __init__(self, sock: socket.socket, io_timeout_s: float) -> None:
        self.sock = sock
        self.io_timeout_s = io_timeout_s
        self._buf = bytearray()
        self._next_xid = 1
        self.events: list[Notification] = []
        self.last_zxid = 0
        self.connect_response: ConnectResponse | None = None
        self.session_id = 0
        self.passwd = b""
        self.closed = False
        # Replies that arrived while we waited for another xid (pipelined requests).
        self._early: dict[int, list[Reply]] = {}
        self._pending_ops: dict[int, int] = {}

    # --- connection ---

    @classmethod
    def open(cls, address: Address, io_timeout_s: float = 10.0) -> RawClient:
        """A TCP connection with no handshake sent yet (for malformed-handshake tests)."""
        sock = socket.create_connection(address, timeout=io_timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock, io_timeout_s)

    @classmethod
    def connect(
        cls,
        address: Address,
        *,
        timeout_ms: int = 30000,
        session_id: int = 0,
        passwd: bytes = b"\x00" * 16,
        last_zxid_seen: int = 0,
        read_only: bool = False,
        legacy: bool = False,
        io_timeout_s: float = 10.0,
    ) -> RawClient:
        """Connect and complete the handshake; raise ConnectionClosed if it is refused.

        legacy=True sends the 44-byte ConnectRequest without the readOnly byte (go-zookeeper,
        3.3-era clients); the server must answer without it too.
        """
        client = cls.open(address, io_timeout_s)
        try:
            client.handshake(
                timeout_ms=timeout_ms,
                session_id=session_id,
                passwd=passwd,
                last_zxid_seen=last_zxid_seen,
                read_only=read_only,
                legacy=legacy,
            )
        except BaseException:
            client.abort()
            raise
        return client

    def handshake(
        self,
        *,
        timeout_ms: int = 30000,
        session_id: int = 0,
        passwd: bytes = b"\x00" * 16,
        last_zxid_seen: int = 0,
        read_only: bool = False,
        legacy: bool = False,
    ) -> ConnectResponse:
        req = jute.encode(
            ConnectRequest(0, last_zxid_seen, timeout_ms, session_id, passwd, read_only)
        )
        if legacy:
            req = req[:-1]
        self.send_frame(req)
        frame = self.recv_frame()
        if legacy:
            # No readOnly byte in the reply either: decode with a default.
            frame = frame + b"\x00" if len(frame) == 36 else frame
        resp = jute.decode_exact(ConnectResponse, frame)
        if resp.session_id == 0 and resp.timeout == 0:
            self.connect_response = resp
            raise ConnectionClosed("session expired or invalid (handshake answered with zeros)")
        self.connect_response = resp
        self.session_id = resp.session_id
        self.passwd = resp.passwd or b""
        return resp

    def close(self) -> None:
        """closeSession, wait (bounded) for its reply, and close the socket."""
        if self.closed:
            return
        # ConnectionClosed and TimeoutError are OSErrors: a dead server needs no goodbye.
        with contextlib.suppress(OSError):
            self.request(OpCode.CLOSE_SESSION, None)
        self.abort()

    def abort(self) -> None:
        """Close the socket without ending the session (a client crash / network break)."""
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- frames ---

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, payload: bytes) -> None:
        self.sock.sendall(_LEN.pack(len(payload)) + payload)

    def _fill(self, n: int) -> None:
        while len(self._buf) < n:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError as exc:
                raise TimeoutError(f"no reply within {self.io_timeout_s}s") from exc
            except OSError as exc:
                raise ConnectionClosed(str(exc)) from exc
            if not chunk:
                raise ConnectionClosed("server closed the connection")
            self._buf += chunk

    def recv_frame(self) -> bytes:
        self._fill(4)
        (n,) = _LEN.unpack_from(self._buf, 0)
        if n < 0:
            raise jute.DecodeError(f"negative frame length {n}")
        self._fill(4 + n)
        frame = bytes(self._buf[4 : 4 + n])
        del self._buf[: 4 + n]
        return frame

    def connection_closed(self, timeout_s: float | None = None) -> bool:
        """Whether the server closes the connection (EOF) within timeout_s, reading past
        (and keeping) any notifications and replies that come first."""
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout_s if timeout_s is not None else self.io_timeout_s)
        try:
            while True:
                self._read_one()
        except ConnectionClosed:
            return True
        except TimeoutError:
            return False
        finally:
            self.sock.settimeout(old)

    # --- requests ---

    def new_xid(self) -> int:
        xid = self._next_xid
        self._next_xid += 1
        return xid

    def submit(self, op: int, body: Any = None, xid: int | None = None) -> int:
        """Send one request (body: a record, raw bytes or None); return its xid."""
        if xid is None:
            xid = self.new_xid()
        out = bytearray()
        jute.encode_into(out, RequestHeader(xid, int(op)))
        if isinstance(body, bytes | bytearray):
            out += body
        elif body is not None:
            jute.encode_into(out, body)
        self.send_frame(bytes(out))
        self._pending_ops[xid] = int(op)
        return xid

    def _read_one(self) -> Reply | None:
        """Read one frame; a notification goes to `events`, a reply is returned."""
        frame = self.recv_frame()
        hdr, pos = jute.decode(ReplyHeader, frame)
        if hdr.xid == Xid.NOTIFICATION:
            ev = jute.decode_exact(WatcherEvent, frame[pos:])
            self.events.append(Notification(hdr.zxid, ev.type, ev.state, ev.path))
            return None
        # As the Java client: pings and auth replies do not move lastZxidSeen.
        if hdr.xid not in (Xid.PING, Xid.AUTH) and hdr.zxid > self.last_zxid:
            self.last_zxid = hdr.zxid
        op = self._pending_ops.pop(hdr.xid, -1)
        return Reply(hdr.xid, hdr.zxid, hdr.err, frame[pos:], op)

    def read_reply(self, xid: int) -> Reply:
        """Wait for the reply to `xid`, keeping notifications and other replies."""
        early = self._early.get(xid)
        if early:
            reply = early.pop(0)
            if not early:
                del self._early[xid]
            return reply
        while True:
            reply = self._read_one()
            if reply is None:
                continue
            if reply.xid == xid:
                return reply
            self._early.setdefault(reply.xid, []).append(reply)

    def request(self, op: int, body: Any = None, xid: int | None = None) -> Reply:
        """Send a request and wait for its reply."""
        return self.read_reply(self.submit(op, body, xid))

    def ping(self) -> Reply:
        """A ping (xid -2). Replies are ordered, so every notification the server queued
        for this connection before it saw the ping is in `events` when this returns."""
        return self.request(OpCode.PING, None, Xid.PING)

    def take_events(self) -> list[Notification]:
        events, self.events = self.events, []
        return events

    def wait_event(self) -> Notification:
        """The next notification (bounded by io_timeout_s)."""
        while not self.events:
            reply = self._read_one()
            if reply is not None:
                self._early.setdefault(reply.xid, []).append(reply)
        return self.events.pop(0)

    # --- one method per operation (each returns the Reply; .result decodes it) ---

    def auth(self, scheme: str, auth: bytes) -> Reply:
        return self.request(OpCode.AUTH, AuthPacket(0, scheme, auth), Xid.AUTH)

    def add_digest(self, user: str, password: str) -> Reply:
        return self.auth("digest", f"{user}:{password}".encode())

    def create(
        self,
        path: str,
        data: bytes | None = b"",
        acl: Sequence[ACL] = OPEN_ACL_UNSAFE,
        flags: int = 0,
        op: int = OpCode.CREATE,
    ) -> Reply:
        return self.request(op, CreateRequest(path, data, tuple(acl), flags))

    def create2(
        self,
        path: str,
        data: bytes | None = b"",
        acl: Sequence[ACL] = OPEN_ACL_UNSAFE,
        flags: int = 0,
    ) -> Reply:
        return self.create(path, data, acl, flags, OpCode.CREATE2)

    def create_container(
        self, path: str, data: bytes | None = b"", acl: Sequence[ACL] = OPEN_ACL_UNSAFE
    ) -> Reply:
        return self.create(path, data, acl, 4, OpCode.CREATE_CONTAINER)

    def create_ttl(
        self,
        path: str,
        ttl: int,
        data: bytes | None = b"",
        acl: Sequence[ACL] = OPEN_ACL_UNSAFE,
        flags: int = 5,
    ) -> Reply:
        return self.request(OpCode.CREATE_TTL, CreateTTLRequest(path, data, tuple(acl), flags, ttl))

    def delete(self, path: str, version: int = -1) -> Reply:
        return self.request(OpCode.DELETE, DeleteRequest(path, version))

    def exists(self, path: str, watch: bool = False) -> Reply:
        return self.request(OpCode.EXISTS, ExistsRequest(path, watch))

    def get_data(self, path: str, watch: bool = False) -> Reply:
        return self.request(OpCode.GET_DATA, GetDataRequest(path, watch))

    def set_data(self, path: str, data: bytes | None, version: int = -1) -> Reply:
        return self.request(OpCode.SET_DATA, SetDataRequest(path, data, version))

    def get_acl(self, path: str) -> Reply:
        return self.request(OpCode.GET_ACL, GetACLRequest(path))

    def set_acl(self, path: str, acl: Sequence[ACL], version: int = -1) -> Reply:
        return self.request(OpCode.SET_ACL, SetACLRequest(path, tuple(acl), version))

    def get_children(self, path: str, watch: bool = False) -> Reply:
        return self.request(OpCode.GET_CHILDREN, GetChildrenRequest(path, watch))

    def get_children2(self, path: str, watch: bool = False) -> Reply:
        return self.request(OpCode.GET_CHILDREN2, GetChildren2Request(path, watch))

    def sync(self, path: str) -> Reply:
        return self.request(OpCode.SYNC, SyncRequest(path))

    def check(self, path: str, version: int) -> Reply:
        """check (op 13) outside a multi: only ever valid inside one (3.9 rejects it)."""
        return self.request(OpCode.CHECK, CheckVersionRequest(path, version))

    def multi(self, ops: Sequence[tuple[int, Any]]) -> Reply:
        return self.request(OpCode.MULTI, encode_multi(ops))

    def multi_read(self, ops: Sequence[tuple[int, Any]]) -> Reply:
        return self.request(OpCode.MULTI_READ, encode_multi(ops))

    def add_watch(self, path: str, mode: int) -> Reply:
        return self.request(OpCode.ADD_WATCH, AddWatchRequest(path, mode))

    def check_watches(self, path: str, watcher_type: int) -> Reply:
        return self.request(OpCode.CHECK_WATCHES, CheckWatchesRequest(path, watcher_type))

    def remove_watches(self, path: str, watcher_type: int) -> Reply:
        return self.request(OpCode.REMOVE_WATCHES, RemoveWatchesRequest(path, watcher_type))

    def set_watches(
        self,
        relative_zxid: int,
        data: Sequence[str] = (),
        exist: Sequence[str] = (),
        child: Sequence[str] = (),
    ) -> Reply:
        rec = SetWatches(relative_zxid, tuple(data), tuple(exist), tuple(child))
        return self.request(OpCode.SET_WATCHES, rec, Xid.SET_WATCHES)

    def set_watches2(
        self,
        relative_zxid: int,
        data: Sequence[str] = (),
        exist: Sequence[str] = (),
        child: Sequence[str] = (),
        persistent: Sequence[str] = (),
        recursive: Sequence[str] = (),
    ) -> Reply:
        rec = SetWatches2(
            relative_zxid,
            tuple(data),
            tuple(exist),
            tuple(child),
            tuple(persistent),
            tuple(recursive),
        )
        return self.request(OpCode.SET_WATCHES2, rec, Xid.SET_WATCHES)

    def get_ephemerals(self, prefix: str) -> Reply:
        return self.request(OpCode.GET_EPHEMERALS, GetEphemeralsRequest(prefix))

    def get_all_children_number(self, path: str) -> Reply:
        return self.request(OpCode.GET_ALL_CHILDREN_NUMBER, GetAllChildrenNumberRequest(path))

    def who_am_i(self) -> Reply:
        return self.request(OpCode.WHO_AM_I, None)


__all__ = [
    "CREATOR_ALL_ACL",
    "OPEN_ACL_UNSAFE",
    "READ_ACL_UNSAFE",
    "ConnectionClosed",
    "MultiResult",
    "Notification",
    "RawClient",
    "Reply",
    "Stat",
    "digest",
    "encode_multi",
]
