"""The learner protocol on the quorum port: packet types and each packet's payload, as 3.8.

Every message on the quorum port is one jute `QuorumPacket(type, zxid, data, authinfo)`,
written back to back with no length prefix (BinaryOutputArchive.writeRecord). Its `data`
is a small hand-rolled big-endian layout that depends on the type; this module is the one
place that knows those layouts:

    FOLLOWERINFO/OBSERVERINFO  zxid = acceptedEpoch<<32, data = LearnerInfo (sid, protocol
                               version 0x10000, config version)
    LEADERINFO                 zxid = newEpoch<<32, data = int protocol version
    ACKEPOCH                   zxid = learner's last logged zxid, data = int currentEpoch
                               (-1: "I had already accepted this epoch", not a vote),
                               then (Corral only, ignored by ZooKeeper) int flags: 0x1
                               "my snapshot is ahead of what I can truncate: send SNAP"
    DIFF / TRUNC / SNAP        zxid only (SNAP is followed on the stream by the snapshot
                               itself and the string "BenWasHere", outside any packet)
    NEWLEADER                  zxid = newEpoch<<32, data = the leader's config (may be None)
    PROPOSAL / INFORM          zxid, data = TxnHeader + txn (+ TxnDigest)
    ACK / COMMIT               zxid only
    UPTODATE                   zxid -1
    REQUEST                    zxid -1, data = long sessionId, int cxid, int type, request
                               bytes; authinfo = the client's auth ids
    PING (leader -> learner)   zxid = leader's last proposed zxid, no data
    PING (learner -> leader)   same zxid, data = (long sessionId, int timeout)* touched sessions
    REVALIDATE (learner)       data = long sessionId, int timeout
    REVALIDATE (leader)        data = long sessionId, boolean valid
    SYNC (leader -> learner)   zxid 0, no data
    COMMITANDACTIVATE          data = long designated leader
    INFORMANDACTIVATE          data = long designated leader + the INFORM payload

Decoders are total: malformed bytes raise `jute.DecodeError` (a ProtocolError), nothing else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

from corral import limits
from corral.proto import jute
from corral.proto.records import Id, LearnerInfo, QuorumPacket, TxnDigest, TxnHeader
from corral.tree import txn as txn_codec

# Zab 1.0 (ZooKeeper 3.4+): the protocol version a learner and a leader announce.
PROTOCOL_VERSION = 0x10000
# What ends a snapshot sent after SNAP on the quorum stream (LearnerHandler / Learner).
SNAP_SIGNATURE = "BenWasHere"
# The zxid of packets that carry none (REQUEST, UPTODATE, REVALIDATE).
NO_ZXID = -1
COUNTER_MASK = 0xFFFFFFFF
# A leader never proposes this counter: reaching it forces a new epoch (ZOOKEEPER-1277).
COUNTER_MAX = 0xFFFFFFFF

_INT = struct.Struct(">i")
_LONG = struct.Struct(">q")
_TOUCH = struct.Struct(">qi")
_REQ_HEAD = struct.Struct(">qii")
_REVALIDATE_ASK = struct.Struct(">qi")
_REVALIDATE_ANSWER = struct.Struct(">q?")
# One QuorumPacket may not claim more than this many auth ids (ZooKeeper has no bound; a
# client's auth list is tiny, so this only stops a hostile peer from making us allocate).
_AUTHINFO_MAX = 64
_DIGEST_BYTES = 12
# A packet's head (type, zxid, data length), and a whole packet with neither data nor auth.
_HEAD = struct.Struct(">iqi")
_BARE = struct.Struct(">iqii")
_NULL_VECTOR = b"\xff\xff\xff\xff"
_DATA_MAX = limits.jute_maxbuffer_bytes + limits.jute_maxbuffer_extrasize_bytes


class PacketType(IntEnum):
    """Leader.java's packet type constants."""

    REQUEST = 1
    PROPOSAL = 2
    ACK = 3
    COMMIT = 4
    PING = 5
    REVALIDATE = 6
    SYNC = 7
    INFORM = 8
    COMMITANDACTIVATE = 9
    NEWLEADER = 10
    FOLLOWERINFO = 11
    UPTODATE = 12
    DIFF = 13
    TRUNC = 14
    SNAP = 15
    OBSERVERINFO = 16
    LEADERINFO = 17
    ACKEPOCH = 18
    INFORMANDACTIVATE = 19


# --- zxids -----------------------------------------------------------------------------


def make_zxid(epoch: int, counter: int) -> int:
    """ZxidUtils.makeZxid: epoch in the high 32 bits, counter in the low 32."""
    assert 0 <= epoch <= 0x7FFFFFFF, epoch
    return (epoch << 32) | (counter & COUNTER_MASK)


def epoch_of(zxid: int) -> int:
    """The epoch of a zxid (ZxidUtils.getEpochFromZxid; -1 stays -1 like Java's shift)."""
    return zxid >> 32


def counter_of(zxid: int) -> int:
    """The counter of a zxid (its low 32 bits)."""
    return zxid & COUNTER_MASK


def zxid_str(zxid: int) -> str:
    """A zxid as ZooKeeper logs it: 0x<epoch><counter> in hex."""
    return hex(zxid)


# --- the packet itself ---------------------------------------------------------------


def packet(
    type_: PacketType, zxid: int, data: bytes | None = None, authinfo: tuple[Id, ...] = ()
) -> QuorumPacket:
    """A QuorumPacket of this type."""
    return QuorumPacket(int(type_), zxid, data, authinfo)


def encode_packet(pkt: QuorumPacket) -> bytes:
    """The wire bytes of one packet, as Java writes it.

    No auth ids is a null vector (-1), as on every packet Java builds itself, except on a
    REQUEST, whose auth list Java always has (and would fail on if null): there it is 0.
    """
    data = pkt.data
    if not pkt.authinfo and pkt.type != PacketType.REQUEST:
        # The broadcast path (PROPOSAL, COMMIT, ACK, PING): no auth ids, one pack or join.
        if data is None:
            return _BARE.pack(pkt.type, pkt.zxid, -1, -1)
        return b"".join((_HEAD.pack(pkt.type, pkt.zxid, len(data)), data, _NULL_VECTOR))
    out = bytearray()
    out += _HEAD.pack(pkt.type, pkt.zxid, -1 if data is None else len(data))
    if data is not None:
        out += data
    out += _INT.pack(len(pkt.authinfo))
    for ident in pkt.authinfo:
        jute.encode_into(out, ident)
    return bytes(out)


def decode_packet(buf: bytes, pos: int = 0) -> tuple[QuorumPacket, int] | None:
    """One packet from a stream buffer: (packet, end), or None if more bytes are needed.

    Bounded: a data length beyond jute.maxbuffer or an auth list beyond a small maximum is a
    DecodeError before anything is allocated. Note that a SNAP packet is followed by the
    snapshot stream, which is not a packet: the caller reads it with the snapshot reader.
    """
    size = len(buf)
    p = pos + 16
    if size < p:
        return None
    type_, zxid, n = _HEAD.unpack_from(buf, pos)
    data: bytes | None = None
    if n != -1:
        if n < -1 or n > _DATA_MAX:
            raise jute.DecodeError(f"quorum packet data length {n}")
        if size - p < n:
            return None
        data = bytes(buf[p : p + n])
        p += n
    if size - p < 4:
        return None
    (count,) = _INT.unpack_from(buf, p)
    p += 4
    if count <= 0:
        if count < -1:
            raise jute.DecodeError(f"quorum packet authinfo count {count}")
        # Nearly every packet (all but a client's REQUEST with auth ids).
        return QuorumPacket(type_, zxid, data, ()), p
    if count > _AUTHINFO_MAX:
        raise jute.DecodeError(f"quorum packet authinfo count {count}")
    ids: list[Id] = []
    for _ in range(count):
        try:
            ident, p = jute.decode(Id, buf, p)
        except (jute.DecodeError, struct.error):
            # Either truncated (wait for more) or bad; tell them apart by what a complete
            # Id would need: two length-prefixed strings inside the bytes we have.
            if _id_incomplete(buf, p):
                return None
            raise jute.DecodeError("bad auth id in quorum packet") from None
        ids.append(ident)
    return QuorumPacket(type_, zxid, data, tuple(ids)), p


def _id_incomplete(buf: bytes, p: int) -> bool:
    for _ in range(2):
        if len(buf) - p < 4:
            return True
        (n,) = _INT.unpack_from(buf, p)
        p += 4
        if n < -1 or n > limits.jute_maxbuffer_bytes:
            return False
        if n > 0:
            if len(buf) - p < n:
                return True
            p += n
    return False


# --- discovery -----------------------------------------------------------------------


def encode_learner_info(
    sid: int, config_version: int, protocol_version: int = PROTOCOL_VERSION
) -> bytes:
    """FOLLOWERINFO/OBSERVERINFO data: the jute LearnerInfo record."""
    return jute.encode(LearnerInfo(sid, protocol_version, config_version))


def decode_learner_info(data: bytes | None) -> LearnerInfo | None:
    """FOLLOWERINFO/OBSERVERINFO data, read as leniently as LearnerHandler does.

    Pre-3.4 learners sent only the sid (8 bytes), 3.4 added the protocol version and 3.5 the
    config version; missing fields read as 0x1 and -1. None when there is no sid at all.
    """
    if data is None or len(data) < 8:
        return None
    (sid,) = _LONG.unpack_from(data, 0)
    version = _INT.unpack_from(data, 8)[0] if len(data) >= 12 else 0x1
    config_version = _LONG.unpack_from(data, 12)[0] if len(data) >= 20 else -1
    return LearnerInfo(sid, version, config_version)


def encode_int(value: int) -> bytes:
    """A 4-byte big-endian int payload (LEADERINFO's protocol version, ACKEPOCH's epoch)."""
    return _INT.pack(value)


def decode_long(data: bytes | None) -> int:
    """The leading long of a packet's data (COMMITANDACTIVATE's designated leader)."""
    if data is None or len(data) < 8:
        raise jute.DecodeError("packet data too short for a long")
    return int(_LONG.unpack_from(data, 0)[0])


def decode_int(data: bytes | None) -> int:
    """The leading 4-byte int of a payload (LEADERINFO, ACKEPOCH)."""
    if data is None or len(data) < 4:
        raise jute.DecodeError("payload shorter than an int")
    return int(_INT.unpack_from(data, 0)[0])


def leader_info(new_epoch: int) -> QuorumPacket:
    """LEADERINFO: the epoch the leader proposes, and its protocol version."""
    return packet(PacketType.LEADERINFO, make_zxid(new_epoch, 0), encode_int(PROTOCOL_VERSION))


# ACKEPOCH flag (a second int after currentEpoch, which ZooKeeper's leader never reads):
# the learner's snapshot holds txns past a point a leader asked it to truncate to, so only a
# SNAP can bring it in line. It still reports its real history, so it can count in discovery.
ACKEPOCH_WANTS_SNAPSHOT = 0x1


def ack_epoch(
    current_epoch: int, last_logged_zxid: int, wants_snapshot: bool = False
) -> QuorumPacket:
    """ACKEPOCH: the learner's current epoch (-1: already accepted) and last logged zxid."""
    data = encode_int(current_epoch)
    if wants_snapshot:
        data += encode_int(ACKEPOCH_WANTS_SNAPSHOT)
    return packet(PacketType.ACKEPOCH, last_logged_zxid, data)


def decode_ack_epoch(data: bytes | None) -> tuple[int, bool]:
    """ACKEPOCH data: (currentEpoch, wants a SNAP)."""
    epoch = decode_int(data)
    assert data is not None
    flags = _INT.unpack_from(data, 4)[0] if len(data) >= 8 else 0
    return epoch, bool(flags & ACKEPOCH_WANTS_SNAPSHOT)


# --- txns: PROPOSAL, INFORM ----------------------------------------------------------


@jute.fast_frozen_init  # one or more per txn on every server
@dataclass(frozen=True, slots=True)
class TxnEntry:
    """One logged txn as it travels in PROPOSAL/INFORM and sits in the log.

    `txn` is the encoded txn record (what prep produced), kept as bytes: Zab never looks
    inside it. `digest` is 3.6+'s optional TxnDigest.
    """

    hdr: TxnHeader
    txn: bytes
    digest: TxnDigest | None = None
    # The txn record decoded from `txn`, when a decoder already had it (a learner's PROPOSAL
    # or INFORM): applying it then need not decode the same bytes again. Not part of the
    # entry's identity.
    record: txn_codec.TxnRecord | None = field(default=None, compare=False, repr=False)

    @property
    def zxid(self) -> int:
        return self.hdr.zxid

    def payload(self) -> bytes:
        """The PROPOSAL/INFORM data: TxnHeader + txn (+ digest), as Util.marshallTxnEntry."""
        out = bytearray()
        jute.encode_into(out, self.hdr)
        out += self.txn
        if self.digest is not None:
            jute.encode_into(out, self.digest)
        return bytes(out)


def decode_txn_entry(data: bytes | None) -> TxnEntry:
    """PROPOSAL/INFORM data back into header, txn bytes and digest (SerializeUtils)."""
    if data is None:
        raise jute.DecodeError("txn packet without data")
    try:
        hdr, pos = jute.decode(TxnHeader, data)
        record, end = txn_codec.decode_txn(hdr.type, data, pos)
    except (txn_codec.TxnTypeError, struct.error) as exc:
        raise jute.DecodeError(f"bad txn in quorum packet: {exc}") from None
    # Java reads a digest when one fits and ignores anything after it.
    digest: TxnDigest | None = None
    if len(data) - end >= _DIGEST_BYTES:
        digest, _ = jute.decode(TxnDigest, data, end)
    return TxnEntry(hdr, bytes(data[pos:end]), digest, record)


def proposal(entry: TxnEntry) -> QuorumPacket:
    return packet(PacketType.PROPOSAL, entry.zxid, entry.payload())


def inform(entry: TxnEntry) -> QuorumPacket:
    return packet(PacketType.INFORM, entry.zxid, entry.payload())


# --- REQUEST -------------------------------------------------------------------------


@jute.fast_frozen_init  # one or more per txn on every server
@dataclass(frozen=True, slots=True)
class ForwardedRequest:
    """A client request a learner forwards to the leader (REQUEST), or a sync."""

    session_id: int
    cxid: int
    type: int
    request: bytes
    authinfo: tuple[Id, ...] = ()


def request_packet(req: ForwardedRequest) -> QuorumPacket:
    data = _REQ_HEAD.pack(req.session_id, req.cxid, req.type) + req.request
    return packet(PacketType.REQUEST, NO_ZXID, data, req.authinfo)


def decode_request(pkt: QuorumPacket) -> ForwardedRequest:
    data = pkt.data
    if data is None or len(data) < _REQ_HEAD.size:
        raise jute.DecodeError("REQUEST shorter than its header")
    session_id, cxid, type_ = _REQ_HEAD.unpack_from(data, 0)
    return ForwardedRequest(session_id, cxid, type_, bytes(data[_REQ_HEAD.size :]), pkt.authinfo)


# --- PING ----------------------------------------------------------------------------


def encode_touches(touches: dict[int, int] | list[tuple[int, int]]) -> bytes:
    """The learner's PING reply data: (sessionId, timeout) for each session it kept alive."""
    items = touches.items() if isinstance(touches, dict) else touches
    return b"".join(_TOUCH.pack(sid, timeout) for sid, timeout in items)


def decode_touches(data: bytes | None) -> list[tuple[int, int]]:
    """PING data as (sessionId, timeout) pairs; an empty or absent payload is no touches."""
    if not data:
        return []
    if len(data) % _TOUCH.size:
        raise jute.DecodeError(f"PING data of {len(data)} bytes is not a touch table")
    return [(int(s), int(t)) for s, t in _TOUCH.iter_unpack(data)]


# --- REVALIDATE ----------------------------------------------------------------------


def revalidate_request(session_id: int, timeout_ms: int) -> QuorumPacket:
    return packet(PacketType.REVALIDATE, NO_ZXID, _REVALIDATE_ASK.pack(session_id, timeout_ms))


def decode_revalidate_request(data: bytes | None) -> tuple[int, int]:
    if data is None or len(data) < _REVALIDATE_ASK.size:
        raise jute.DecodeError("REVALIDATE request too short")
    session_id, timeout = _REVALIDATE_ASK.unpack_from(data, 0)
    return int(session_id), int(timeout)


def revalidate_answer(session_id: int, valid: bool, zxid: int = NO_ZXID) -> QuorumPacket:
    """The leader's answer; it echoes the request's zxid (Java reuses the packet)."""
    return packet(PacketType.REVALIDATE, zxid, _REVALIDATE_ANSWER.pack(session_id, valid))


def decode_revalidate_answer(data: bytes | None) -> tuple[int, bool]:
    if data is None or len(data) < _REVALIDATE_ANSWER.size:
        raise jute.DecodeError("REVALIDATE answer too short")
    session_id, valid = _REVALIDATE_ANSWER.unpack_from(data, 0)
    return int(session_id), bool(valid)


# --- reconfig packets: a committed reconfig, with the leader named for the new config ----


def commit_and_activate(zxid: int, designated_leader: int) -> QuorumPacket:
    return packet(PacketType.COMMITANDACTIVATE, zxid, _LONG.pack(designated_leader))


def inform_and_activate(entry: TxnEntry, designated_leader: int) -> QuorumPacket:
    data = _LONG.pack(designated_leader) + entry.payload()
    return packet(PacketType.INFORMANDACTIVATE, entry.zxid, data)


def decode_inform_and_activate(data: bytes | None) -> tuple[int, TxnEntry]:
    if data is None or len(data) < 8:
        raise jute.DecodeError("INFORMANDACTIVATE too short")
    (leader,) = _LONG.unpack_from(data, 0)
    return int(leader), decode_txn_entry(data[8:])


# --- SNAP ------------------------------------------------------------------------------


def snapshot_trailer(snapshot: bytes) -> bytes:
    """What follows a SNAP packet on the stream: the serialized snapshot and the signature."""
    sig = SNAP_SIGNATURE.encode()
    return snapshot + _INT.pack(len(sig)) + sig
