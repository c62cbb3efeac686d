"""The quorum hot paths' shortcuts say the same as the plain code: early sends keep FIFO, the
fast packet encoder writes ZooKeeper's bytes, a decoded txn travels with its entry."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from corral.proto import jute
from corral.proto.codes import OpCode
from corral.proto.records import Id, QuorumPacket, SetDataTxn, TxnDigest, TxnHeader
from corral.quorum import zab_packets as zp
from corral.quorum.ready import ReadyBuilder
from corral.quorum.zab_packets import PacketType
from corral.tree.txn import decode_txn


def plain_encode(pkt: QuorumPacket) -> bytes:
    """QuorumPacket as jute writes it, field by field (null buffer/vector: -1; a REQUEST's
    empty auth list: 0)."""
    out = struct.pack(">iq", pkt.type, pkt.zxid)
    out += struct.pack(">i", -1) if pkt.data is None else struct.pack(">i", len(pkt.data))
    out += pkt.data or b""
    if not pkt.authinfo and pkt.type != PacketType.REQUEST:
        return out + struct.pack(">i", -1)
    out += struct.pack(">i", len(pkt.authinfo))
    for ident in pkt.authinfo:
        out += jute.encode(ident)
    return out


@given(
    st.sampled_from(list(PacketType)),
    st.integers(-(2**63), 2**63 - 1),
    st.none() | st.binary(max_size=64),
    st.lists(st.builds(Id, st.text(max_size=5), st.text(max_size=5)), max_size=3),
)
def test_encode_packet_matches_plain_jute(
    type_: PacketType, zxid: int, data: bytes | None, ids: list[Id]
) -> None:
    pkt = zp.packet(type_, zxid, data, tuple(ids))
    raw = zp.encode_packet(pkt)
    assert raw == plain_encode(pkt)
    assert zp.decode_packet(raw) == (pkt, len(raw))
    # Cut anywhere: the decoder waits for the rest.
    for cut in range(len(raw)):
        assert zp.decode_packet(raw[:cut]) is None


def test_decoded_txn_travels_with_the_entry() -> None:
    hdr = TxnHeader(7, 3, zp.make_zxid(2, 9), 1000, int(OpCode.SET_DATA))
    txn = jute.encode(SetDataTxn("/a", b"xy", 4))
    entry = zp.TxnEntry(hdr, txn, TxnDigest(2, 0xABC))
    got = zp.decode_txn_entry(entry.payload())
    assert got.record == decode_txn(hdr.type, txn)[0]
    # Not part of the entry's identity: equal to one built without it.
    assert got == entry and hash(got) == hash(entry)


def test_take_sends_keeps_fifo_per_destination() -> None:
    b = ReadyBuilder()
    b.send(1, zp.packet(PacketType.COMMIT, 1))
    b.send(2, zp.packet(PacketType.COMMIT, 1))
    b.send(1, zp.packet(PacketType.COMMIT, 2))
    # Destination 2 still waits for an earlier Ready's after-persist message.
    early = b.take_sends(frozenset({2}))
    assert [(s.to, s.packet.zxid) for s in early] == [(1, 1), (1, 2)]
    b.send(2, zp.packet(PacketType.COMMIT, 2))
    b.send(1, zp.packet(PacketType.COMMIT, 3))
    r = b.take()
    assert [(s.to, s.packet.zxid) for s in r.send] == [(2, 1), (2, 2), (1, 3)]
    assert b.take_sends() == ()


def test_take_sends_leaves_after_persist_messages() -> None:
    b = ReadyBuilder()
    b.send_after_persist(1, zp.packet(PacketType.ACK, 5))
    b.send(1, zp.packet(PacketType.PING, 5))  # behind the ACK: not a plain send
    b.send(2, zp.packet(PacketType.PING, 5))
    assert [s.to for s in b.take_sends()] == [2]
    r = b.take()
    assert not r.send
    assert [s.packet.type for s in r.send_after_persist] == [PacketType.ACK, PacketType.PING]
