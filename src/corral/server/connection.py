"""Per-connection protocol state: framing, the connect handshake, and the reply queue.

Pure: bytes in, frames and reply bytes out. The core (core.py) owns the decisions (sessions,
ACLs, the tree); this module owns what is specific to one client connection:

- turning a byte stream into frames (4-byte big-endian signed length; a length < 0 or
  > jute.maxbuffer closes the connection, as ZooKeeper's "Len error" does), including the
  four-letter-word sniff on the first 4 bytes of a fresh connection;
- parsing the ConnectRequest (44 bytes without the trailing readOnly byte, 45 with it) and
  encoding the ConnectResponse in the same format as the client spoke;
- the queue that keeps replies in request order while writes wait for their txn to be
  durable and reads wait behind the connection's earlier writes.
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from dataclasses import dataclass

from corral import limits
from corral.proto.jute import DecodeError, ProtocolError
from corral.proto.records import Id
from corral.server.acl import AuthIds, ip_auth_id

_INT = struct.Struct(">i")
_CONNECT_HEAD = struct.Struct(">iqiq")  # protocolVersion, lastZxidSeen, timeOut, sessionId
_CONNECT_RESP_HEAD = struct.Struct(
    ">iiiqi"
)  # frame length, protocolVersion, timeOut, sessionId, len

# ZooKeeper's FourLetterCommands: the words it recognises as the first 4 bytes of a connection.
FOUR_LETTER_WORDS = frozenset(
    {
        "conf", "cons", "crst", "dirs", "dump", "envi", "gtmk", "hash", "isro", "mntr",
        "ruok", "srst", "srvr", "stat", "stmk", "wchc", "wchp", "wchs",
    }
)  # fmt: skip
_FOUR_LETTER_CODES = {int.from_bytes(w.encode(), "big", signed=True): w for w in FOUR_LETTER_WORDS}
# Telnet's "interrupt process" sequence: ZooKeeper just closes the connection on it.
_TELNET_CLOSE = int.from_bytes(b"\xff\xf4\xff\xfd", "big", signed=True)


class FrameError(ProtocolError):
    """A frame length ZooKeeper would reject ("Len error"): the connection is closed."""


class ConnState(enum.Enum):
    FRESH = 0  # waiting for the ConnectRequest (or a four-letter word)
    AWAITING_SESSION = 1  # ConnectRequest accepted; its createSession txn is not durable yet
    ESTABLISHED = 2
    CLOSED = 3


@dataclass(frozen=True, slots=True)
class ConnectInfo:
    """A decoded ConnectRequest; `has_read_only` says whether the client sent the last byte."""

    protocol_version: int
    last_zxid_seen: int
    timeout: int
    session_id: int
    passwd: bytes
    read_only: bool
    has_read_only: bool


def parse_connect(body: bytes) -> ConnectInfo:
    """Decode a ConnectRequest, with or without the trailing readOnly byte.

    Like ZooKeeper's ProtocolManager, the readOnly byte is read only if it is there; extra
    bytes after it are ignored.
    """
    if len(body) < _CONNECT_HEAD.size + 4:
        raise DecodeError(f"ConnectRequest too short ({len(body)} bytes)")
    proto, last_zxid, timeout, session_id = _CONNECT_HEAD.unpack_from(body, 0)
    pos = _CONNECT_HEAD.size
    (n,) = _INT.unpack_from(body, pos)
    pos += 4
    if n == -1:
        passwd = b""
    elif 0 <= n <= len(body) - pos:
        passwd = bytes(body[pos : pos + n])
        pos += n
    else:
        raise DecodeError(f"bad ConnectRequest password length {n}")
    has_ro = pos < len(body)
    read_only = bool(body[pos]) if has_ro else False
    return ConnectInfo(proto, last_zxid, timeout, session_id, passwd, read_only, has_ro)


def connect_response_frame(
    timeout: int, session_id: int, passwd: bytes, read_only: bool, with_read_only: bool
) -> bytes:
    """A framed ConnectResponse, with the readOnly byte only if the client sent one."""
    body_len = 4 + 4 + 8 + 4 + len(passwd) + (1 if with_read_only else 0)
    out = bytearray(_CONNECT_RESP_HEAD.pack(body_len, 0, timeout, session_id, len(passwd)))
    out += passwd
    if with_read_only:
        out.append(1 if read_only else 0)
    return bytes(out)


EXPIRED_PASSWORD = bytes(limits.session_password_bytes)


class Slot:
    """One entry of a connection's reply queue.

    A slot is `ready` once `reply` holds its bytes. A write's slot is filled when its txn is
    applied; a deferred read (`frame` set) is executed when it reaches the head of the queue,
    so that it sees the connection's earlier writes.
    """

    __slots__ = ("auth", "close_after", "frame", "op", "reply", "start_ms", "xid", "zxid")

    def __init__(
        self,
        zxid: int = 0,
        frame: bytes | None = None,
        op: int = 0,
        xid: int = 0,
        start_ms: int = 0,
        auth: AuthIds | None = None,
    ) -> None:
        self.zxid = zxid  # the txn this slot waits for (writes), else 0
        self.frame = frame  # a read to run when the slot reaches the head
        self.op = op
        self.xid = xid
        self.start_ms = start_ms  # when the request arrived (latency statistics)
        self.auth = auth  # a deferred read's auth ids as they were when it arrived
        self.reply: bytes | None = None
        self.close_after = False  # closeSession: close the connection once sent


class Connection:
    """The state of one client connection (ServerCnxn, without the socket)."""

    __slots__ = (
        "auth",
        "backlog",
        "backlog_bytes",
        "buf",
        "conn_id",
        "connect",
        "established_wall_ms",
        "last_cxid",
        "last_latency_ms",
        "last_op",
        "last_response_ms",
        "last_zxid",
        "lat_count",
        "lat_max",
        "lat_min",
        "lat_total",
        "max_frame",
        "out",
        "packets_received",
        "packets_sent",
        "paused",
        "queue",
        "remote_ip",
        "remote_port",
        "sasl",
        "secure_ids",
        "send_blocked",
        "session_id",
        "sniffed",
        "state",
        "timeout_ms",
        "unacked_bytes",
    )

    def __init__(
        self,
        conn_id: int,
        remote_ip: str,
        secure_ids: tuple[Id, ...] = (),
        max_frame: int = limits.jute_maxbuffer_bytes,
        remote_port: int = 0,
    ) -> None:
        self.conn_id = conn_id
        self.remote_ip = remote_ip
        self.remote_port = remote_port
        self.secure_ids = secure_ids
        self.max_frame = max_frame
        self.buf = bytearray()
        self.state = ConnState.FRESH
        self.sniffed = False
        self.connect: ConnectInfo | None = None
        self.session_id = 0
        self.timeout_ms = 0
        # Every connection carries its ip id, plus the TLS ids the runner found, as ZooKeeper.
        self.auth = AuthIds.added((ip_auth_id(remote_ip), *secure_ids))
        self.queue: deque[Slot] = deque()
        # Frames not yet processed: pipelined after the ConnectRequest, or beyond the
        # outstanding-request bound.
        self.backlog: deque[bytes] = deque()
        self.backlog_bytes = 0
        self.paused = False
        # Reply bytes handed to the runner since it last reported this connection's socket
        # drained; over the core's bound the connection is send_blocked: no new requests run
        # until the runner calls `drained` (a client that does not read cannot make us
        # produce replies without bound).
        self.unacked_bytes = 0
        self.send_blocked = False
        # Reply frames produced during the current core call (joined once at its end).
        self.out: list[bytes] = []
        self.sasl: object | None = None  # the SASL server mechanism state, once started
        # Statistics for the cons/stat four-letter words.
        self.packets_received = 0
        self.packets_sent = 0
        self.established_wall_ms = 0
        self.last_op = -100  # none yet
        self.last_cxid = -1
        self.last_zxid = -1
        self.last_response_ms = 0
        self.last_latency_ms = 0
        self.lat_min = 0
        self.lat_max = 0
        self.lat_total = 0
        self.lat_count = 0

    def reset_stats(self) -> None:
        self.packets_received = self.packets_sent = 0
        self.lat_min = self.lat_max = self.lat_total = self.lat_count = 0
        self.last_op = -100
        self.last_cxid = self.last_zxid = -1
        self.last_response_ms = self.last_latency_ms = 0

    def record_reply(self, op: int, xid: int, zxid: int, now_ms: int, latency_ms: int) -> None:
        """Note a request answered (what ZooKeeper's ServerCnxn.updateStatsForResponse keeps)."""
        self.last_op = op
        self.last_cxid = xid
        self.last_zxid = zxid
        self.last_response_ms = now_ms
        self.last_latency_ms = latency_ms
        if self.lat_count == 0 or latency_ms < self.lat_min:
            self.lat_min = latency_ms
        if latency_ms > self.lat_max:
            self.lat_max = latency_ms
        self.lat_total += latency_ms
        self.lat_count += 1

    def add_auth(self, ident: Id) -> None:
        """Add an auth id (ZooKeeper keeps a set: adding one twice is a no-op)."""
        self.auth = self.auth.with_id(ident)

    def feed(self, data: bytes) -> tuple[list[bytes], str | None]:
        """Append received bytes; return the complete frames and a four-letter word, if any.

        Raises FrameError for a length ZooKeeper rejects. A four-letter word can only be the
        first 4 bytes of a connection; once one is seen nothing else is parsed.
        """
        buf = self.buf
        if buf:
            buf += data
            src: bytes | bytearray = buf
        else:
            src = data
        frames: list[bytes] = []
        pos = 0
        end = len(src)
        max_frame = self.max_frame
        while end - pos >= 4:
            (length,) = _INT.unpack_from(src, pos)
            if not self.sniffed:
                self.sniffed = True
                word = _FOUR_LETTER_CODES.get(length)
                if word is not None:
                    buf.clear()
                    return frames, word
                if length == _TELNET_CLOSE:
                    raise FrameError("telnet close")
            if length < 0 or length > max_frame:
                raise FrameError(f"Len error {length}")
            start = pos + 4
            stop = start + length
            if stop > end:
                break
            frames.append(bytes(src[start:stop]))
            pos = stop
        if src is buf:
            del buf[:pos]
        elif pos < end:
            buf += data[pos:]
        return frames, None
