"""The election port's bytes, exactly as ZooKeeper 3.8's QuorumCnxManager and
FastLeaderElection write and accept them.

A connection starts with the dialling peer's *initiation message*:

    long protocolVersion   -65536 (V1, one address) or -65535 (V2, `a|b|...`, multiAddress)
    long sid
    int  n                 0 < n <= 2048
    n bytes                the dialler's election address(es), `host:port` joined by '|'

(before 3.5 the first long was the sid itself and nothing followed; ZooKeeper still accepts
that, and so do we). After it, both directions carry frames: a 4-byte big-endian length
(1..512 KiB) and that many bytes. Each frame is one FastLeaderElection *notification*:

    int  state             0 LOOKING, 1 FOLLOWING, 2 LEADING, 3 OBSERVING
    long leader            the proposed (or followed) leader's sid
    long zxid              that leader's last zxid
    long electionEpoch     the sender's election round (its logical clock)
    long peerEpoch         the proposed leader's epoch
    int  version           2 since 3.5 (dynamic reconfig)
    int  n, n bytes        the sender's membership in QuorumMaj.toString form

Older, shorter forms are still accepted as ZooKeeper accepts them: 28 bytes (no peerEpoch:
it is taken from the zxid), 40 bytes (no version), and any version below 2 (no config).
Every decoder is total and bounded and raises only `ProtocolError` subclasses. ZooKeeper
skips a malformed notification and keeps the connection; a bad initiation message closes
the connection.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from corral.proto.jute import ProtocolError

PROTOCOL_VERSION_V1 = -65536  # one election address (ZOOKEEPER-107, 3.5.0)
PROTOCOL_VERSION_V2 = -65535  # several addresses joined by '|' (ZOOKEEPER-3188, 3.6.0)
INITIATION_ADDRESS_BYTES_MAX = 2048  # QuorumCnxManager.maxBuffer
FRAME_BYTES_MAX = 512 * 1024  # QuorumCnxManager.PACKETMAXSIZE
NOTIFICATION_VERSION = 2  # FastLeaderElection.Notification.CURRENTVERSION
# An observer that has no sid of its own connects with this one (QuorumPeer.OBSERVER_ID).
OBSERVER_ID = (1 << 63) - 1
LONG_MIN = -(1 << 63)  # what a non-voter proposes as leader, zxid and epoch

_LONG = struct.Struct(">q")
_INT = struct.Struct(">i")
_HEAD = struct.Struct(">qqi")  # protocol version, sid, address length
_NOTIFICATION = struct.Struct(">iqqqqi")  # 40 bytes up to and including the version
_NOTIFICATION_28 = struct.Struct(">iqqq")  # the pre-ZOOKEEPER-107 form


class ServerState(enum.IntEnum):
    """QuorumPeer.ServerState; the wire carries its ordinal."""

    LOOKING = 0
    FOLLOWING = 1
    LEADING = 2
    OBSERVING = 3


class ElectionWireError(ProtocolError):
    """Bytes on the election port that ZooKeeper would not accept either."""


class InitiationError(ElectionWireError):
    """A bad connection initiation message: ZooKeeper closes such a connection."""


class FrameError(ElectionWireError):
    """A frame length outside 1..512 KiB: ZooKeeper's receiver drops the connection."""


class NotificationError(ElectionWireError):
    """A short, malformed or unknown-state notification: ZooKeeper skips it."""


# -- connection initiation ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InitialMessage:
    """Who dialled: its sid and election address(es) as `(host, port)`.

    `protocol_version` is None for the pre-3.5 form (a bare sid, no addresses).
    """

    sid: int
    addresses: tuple[tuple[str, int], ...]
    protocol_version: int | None = PROTOCOL_VERSION_V1


def encode_initial_message(msg: InitialMessage) -> bytes:
    """The bytes a dialling peer writes first (V1 unless the message says V2)."""
    if msg.protocol_version is None:
        return _LONG.pack(msg.sid)
    if msg.protocol_version not in (PROTOCOL_VERSION_V1, PROTOCOL_VERSION_V2):
        raise ValueError(f"unknown protocol version {msg.protocol_version}")
    one = msg.protocol_version == PROTOCOL_VERSION_V1
    if not msg.addresses or (one and len(msg.addresses) > 1):
        raise ValueError("V1 sends exactly one address, V2 at least one")
    text = "|".join(_format_address(host, port) for host, port in msg.addresses).encode()
    if len(text) > INITIATION_ADDRESS_BYTES_MAX:
        raise ValueError("address text longer than ZooKeeper accepts")
    return _HEAD.pack(msg.protocol_version, msg.sid, len(text)) + text


def _format_address(host: str, port: int) -> str:
    # NetUtils.formatInetAddr: an IPv6 literal goes in brackets.
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def decode_initial_message(data: bytes, pos: int = 0) -> tuple[InitialMessage, int] | None:
    """The initiation message at `pos` and the offset after it, or None if more bytes are
    needed. Raises InitiationError where ZooKeeper's InitialMessage.parse refuses."""
    if len(data) - pos < 8:
        return None
    (first,) = _LONG.unpack_from(data, pos)
    if first >= 0:  # pre-3.5: the first long is the sid and nothing else follows
        return InitialMessage(first, (), None), pos + 8
    if first not in (PROTOCOL_VERSION_V1, PROTOCOL_VERSION_V2):
        raise InitiationError(f"unrecognized protocol version {first}")
    if len(data) - pos < _HEAD.size:
        return None
    _, sid, n = _HEAD.unpack_from(data, pos)
    if n <= 0 or n > INITIATION_ADDRESS_BYTES_MAX:
        raise InitiationError(f"unreasonable address length {n}")
    start = pos + _HEAD.size
    if len(data) - start < n:
        return None
    try:
        text = bytes(data[start : start + n]).decode()
    except UnicodeDecodeError:
        raise InitiationError("address is not UTF-8") from None
    addresses = tuple(_parse_address(part) for part in text.split("|"))
    return InitialMessage(sid, addresses, first), start + n


def _parse_address(text: str) -> tuple[str, int]:
    """ConfigUtils.getHostAndPort plus the port check: `host:port` or `[v6]:port`."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1 : close + 2] != ":":
            raise InitiationError(f"badly formed address {text!r}")
        host, rest = text[1:close], text[close + 2 :]
        if ":" in rest:
            raise InitiationError(f"badly formed address {text!r}")
    else:
        parts = text.split(":")
        if len(parts) != 2:
            raise InitiationError(f"badly formed address {text!r}")
        host, rest = parts
    if not rest.isascii() or not rest.isdigit() or len(rest) > 5 or int(rest) > 65535:
        raise InitiationError(f"bad port number in {text!r}")
    return host, int(rest)


class IncomingAction(enum.Enum):
    """What to do with an accepted connection once its initiation message is read."""

    KEEP = "keep"  # the dialler has the larger sid: this is the connection we use
    CLOSE_AND_DIAL_BACK = "close_and_dial_back"  # we are larger: close it and dial them
    REJECT_OWN_ID = "reject_own_id"  # a peer claiming our own sid (ZOOKEEPER-2164)


def incoming_connection_action(my_sid: int, their_sid: int) -> IncomingAction:
    """QuorumCnxManager's rule: the connection between two peers is the one the larger sid
    dialled. A smaller dialler is closed and dialled back; the larger one is kept."""
    if their_sid < my_sid:
        return IncomingAction.CLOSE_AND_DIAL_BACK
    if their_sid == my_sid:
        return IncomingAction.REJECT_OWN_ID
    return IncomingAction.KEEP


def keep_outgoing_connection(my_sid: int, their_sid: int) -> bool:
    """After writing our initiation message: keep the connection only if we are larger
    (a smaller dialler drops its own attempt and waits for the larger peer to dial)."""
    return their_sid < my_sid


# -- frames ---------------------------------------------------------------------------------


def encode_frame(payload: bytes) -> bytes:
    """A 4-byte length and the payload, as SendWorker writes it."""
    if not 0 < len(payload) <= FRAME_BYTES_MAX:
        raise ValueError(f"frame of {len(payload)} bytes")
    return _INT.pack(len(payload)) + payload


def decode_frame(data: bytes, pos: int = 0) -> tuple[bytes, int] | None:
    """The frame payload at `pos` and the offset after it, or None if incomplete."""
    if len(data) - pos < 4:
        return None
    (n,) = _INT.unpack_from(data, pos)
    if n <= 0 or n > FRAME_BYTES_MAX:
        raise FrameError(f"invalid frame length {n}")
    if len(data) - pos - 4 < n:
        return None
    return bytes(data[pos + 4 : pos + 4 + n]), pos + 4 + n


# -- notifications --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Notification:
    """One FastLeaderElection notification (the vote a peer sends, with its state).

    `config` is the sender's membership text (QuorumMaj.toString, UTF-8) and is empty for
    versions below 2.
    """

    state: ServerState
    leader: int
    zxid: int
    election_epoch: int
    peer_epoch: int
    version: int = NOTIFICATION_VERSION
    config: bytes = b""


def encode_notification(n: Notification) -> bytes:
    """The frame payload, in the version-2 form every 3.5+ peer sends (44 + config bytes)."""
    head = _NOTIFICATION.pack(
        int(n.state), n.leader, n.zxid, n.election_epoch, n.peer_epoch, NOTIFICATION_VERSION
    )
    return head + _INT.pack(len(n.config)) + n.config


def decode_notification(payload: bytes) -> Notification:
    """Parse a frame payload as FastLeaderElection's WorkerReceiver does (trailing bytes
    are ignored there too). Raises NotificationError for what it skips."""
    size = len(payload)
    if size < _NOTIFICATION_28.size:
        raise NotificationError(f"short notification of {size} bytes")
    if size == _NOTIFICATION_28.size:
        rstate, leader, zxid, election_epoch = _NOTIFICATION_28.unpack(payload)
        return Notification(_state(rstate), leader, zxid, election_epoch, zxid >> 32, 0)
    if size < 36:
        raise NotificationError(f"partial notification of {size} bytes")
    if size == 40:  # peerEpoch but no version was read: the 3.4 form
        rstate, leader, zxid, election_epoch, peer_epoch, _ = _NOTIFICATION.unpack(payload)
        return Notification(_state(rstate), leader, zxid, election_epoch, peer_epoch, 0)
    if size < _NOTIFICATION.size:
        raise NotificationError(f"partial notification of {size} bytes")
    rstate, leader, zxid, election_epoch, peer_epoch, version = _NOTIFICATION.unpack_from(payload)
    config = b""
    if version > 1:
        if size < _NOTIFICATION.size + 4:
            raise NotificationError(f"notification of {size} bytes has no config length")
        (n,) = _INT.unpack_from(payload, _NOTIFICATION.size)
        start = _NOTIFICATION.size + 4
        if n < 0 or n > size - start:
            raise NotificationError(f"invalid config length {n} in {size} bytes")
        config = bytes(payload[start : start + n])
    return Notification(_state(rstate), leader, zxid, election_epoch, peer_epoch, version, config)


def _state(value: int) -> ServerState:
    try:
        return ServerState(value)
    except ValueError:
        raise NotificationError(f"unknown server state {value}") from None
