"""The Ready record's construction rules: acks only after persist, per-connection FIFO kept."""

from __future__ import annotations

import pytest

from corral.quorum import zab_packets as zp
from corral.quorum.ready import (
    AppendTxn,
    ReadyBuilder,
    SetAcceptedEpoch,
    ZabConfig,
)
from corral.quorum.zab_packets import PacketType


def test_acks_cannot_go_out_before_persist() -> None:
    b = ReadyBuilder()
    with pytest.raises(AssertionError):
        b.send(1, zp.packet(PacketType.ACK, 5))
    with pytest.raises(AssertionError):
        b.send(1, zp.ack_epoch(1, 0))
    b.send_after_persist(1, zp.packet(PacketType.ACK, 5))
    r = b.take()
    assert not r.send and r.send_after_persist[0].packet.type == PacketType.ACK


def test_fifo_per_destination_is_kept_across_channels() -> None:
    b = ReadyBuilder()
    b.send(1, zp.packet(PacketType.PING, 0))
    b.persist(SetAcceptedEpoch(3))
    b.send_after_persist(1, zp.leader_info(3))
    b.send(1, zp.packet(PacketType.DIFF, 0))  # must not overtake LEADERINFO
    b.send(2, zp.packet(PacketType.PING, 0))  # another connection is not held back
    r = b.take()
    assert [(s.to, s.packet.type) for s in r.send] == [(1, PacketType.PING), (2, PacketType.PING)]
    assert [s.packet.type for s in r.send_after_persist] == [PacketType.LEADERINFO, PacketType.DIFF]
    # The next Ready starts afresh.
    b.send(1, zp.packet(PacketType.PING, 0))
    assert b.take().send


def test_ready_is_empty_and_stop_is_kept() -> None:
    b = ReadyBuilder()
    assert not b.has_output() and b.take().is_empty()
    b.close(4)
    b.close(4)
    b.stop("first")
    b.stop("second")
    r = b.take()
    assert r.close == (4,) and r.stop == "first" and not r.is_empty()


def test_persist_order_is_preserved() -> None:
    from corral.proto.records import TxnHeader

    b = ReadyBuilder()
    entries = [zp.TxnEntry(TxnHeader(1, i, i, 0, 5), b"") for i in (1, 2, 3)]
    for e in entries:
        b.persist(AppendTxn(e))
    b.persist(SetAcceptedEpoch(1))
    r = b.take()
    assert [type(op).__name__ for op in r.persist] == ["AppendTxn"] * 3 + ["SetAcceptedEpoch"]


def test_config_limits() -> None:
    c = ZabConfig(tick_ms=100, init_limit=10, sync_limit=5)
    assert c.init_ms == 1000 and c.sync_ms == 500
    with pytest.raises(AssertionError):
        ZabConfig(tick_ms=0)
