"""The election port's bytes against what Apache ZooKeeper 3.8.0 (Debian) really sends.

The golden bytes below were captured from a live QuorumPeerMain configured as one server of
a 3-server loopback ensemble, with the test playing the other two over sockets (the live
version of that exchange is tests/integration/test_election_zookeeper.py).
"""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.proto.jute import ProtocolError
from corral.quorum.election_wire import (
    FRAME_BYTES_MAX,
    PROTOCOL_VERSION_V1,
    PROTOCOL_VERSION_V2,
    FrameError,
    IncomingAction,
    InitialMessage,
    InitiationError,
    Notification,
    NotificationError,
    ServerState,
    decode_frame,
    decode_initial_message,
    decode_notification,
    encode_frame,
    encode_initial_message,
    encode_notification,
    incoming_connection_action,
    keep_outgoing_connection,
)
from corral.quorum.verifier import ConfigTextError, QuorumServer, QuorumVerifier

# Server 3 of server.1=127.0.0.1:36659:40001, server.2=...:44259:47377, server.3=...:51739:47605
# dialling server 1: its initiation message, then its first vote (LOOKING, itself, zxid 0,
# round 1, epoch 0) with the ensemble's config.
ZK_INIT_FROM_3 = bytes.fromhex(
    "ffffffffffff0000" "0000000000000003" "0000000f" "3132372e302e302e313a3437363035"
)
ZK_CONFIG_A = (
    b"server.1=127.0.0.1:36659:40001:participant\n"
    b"server.2=127.0.0.1:44259:47377:participant\n"
    b"server.3=127.0.0.1:51739:47605:participant\n"
    b"version=0"
)
ZK_LOOKING_FROM_3 = (
    bytes.fromhex(
        "00000000"  # state LOOKING
        "0000000000000003"  # leader
        "0000000000000000"  # zxid
        "0000000000000001"  # election epoch (round)
        "0000000000000000"  # peer epoch
        "00000002"  # version
        "0000008a"  # config length
    )
    + ZK_CONFIG_A
)
# Server 2 (currentEpoch 1) leading, answering a LOOKING peer: its final vote.
ZK_CONFIG_B = (
    b"server.1=127.0.0.1:49389:50975:participant\n"
    b"server.2=127.0.0.1:58131:37041:participant\n"
    b"server.3=127.0.0.1:58137:38515:participant\n"
    b"version=0"
)
ZK_LEADING_FROM_2 = (
    bytes.fromhex(
        "00000002"
        "0000000000000002"
        "0000000000000000"
        "0000000000000001"
        "0000000000000001"
        "00000002"
        "0000008a"
    )
    + ZK_CONFIG_B
)


def _verifier(ports: dict[int, tuple[int, int]]) -> QuorumVerifier:
    return QuorumVerifier(
        tuple(QuorumServer(sid, "127.0.0.1", q, e) for sid, (q, e) in ports.items())
    )


VERIFIER_A = _verifier({1: (36659, 40001), 2: (44259, 47377), 3: (51739, 47605)})
VERIFIER_B = _verifier({1: (49389, 50975), 2: (58131, 37041), 3: (58137, 38515)})


# -- golden bytes ---------------------------------------------------------------------------


def test_initiation_message_matches_zookeeper() -> None:
    got = decode_initial_message(ZK_INIT_FROM_3)
    assert got == (InitialMessage(3, (("127.0.0.1", 47605),)), len(ZK_INIT_FROM_3))
    server = VERIFIER_A.server(3)
    assert server is not None
    ours = InitialMessage(3, (("127.0.0.1", server.election_port),))
    assert encode_initial_message(ours) == ZK_INIT_FROM_3
    assert server.election_address() == "127.0.0.1:47605"


def test_config_text_matches_zookeeper() -> None:
    assert VERIFIER_A.config_string().encode() == ZK_CONFIG_A
    assert VERIFIER_B.config_string().encode() == ZK_CONFIG_B
    assert QuorumVerifier.from_config_string(ZK_CONFIG_A.decode()) == VERIFIER_A


def test_looking_notification_matches_zookeeper() -> None:
    n = decode_notification(ZK_LOOKING_FROM_3)
    assert n == Notification(ServerState.LOOKING, 3, 0, 1, 0, 2, ZK_CONFIG_A)
    ours = Notification(ServerState.LOOKING, 3, 0, 1, 0, config=VERIFIER_A.config_string().encode())
    assert encode_notification(ours) == ZK_LOOKING_FROM_3


def test_leading_notification_matches_zookeeper() -> None:
    n = decode_notification(ZK_LEADING_FROM_2)
    assert (n.state, n.leader, n.zxid, n.election_epoch, n.peer_epoch) == (
        ServerState.LEADING,
        2,
        0,
        1,
        1,
    )
    assert encode_notification(n) == ZK_LEADING_FROM_2


def test_frame_is_length_prefixed() -> None:
    framed = encode_frame(ZK_LOOKING_FROM_3)
    assert framed[:4] == struct.pack(">i", 182)  # what ZooKeeper wrote before the vote
    assert decode_frame(framed) == (ZK_LOOKING_FROM_3, len(framed))


# -- older notification forms ZooKeeper still accepts -------------------------------------


def _head(state: int = 1, leader: int = 7, zxid: int = 0x300000009, round_: int = 4) -> bytes:
    return struct.pack(">iqqq", state, leader, zxid, round_)


def test_28_byte_notification_takes_the_epoch_from_the_zxid() -> None:
    n = decode_notification(_head())
    assert n == Notification(ServerState.FOLLOWING, 7, 0x300000009, 4, 3, 0, b"")


def test_40_byte_notification_has_no_version() -> None:
    n = decode_notification(_head() + struct.pack(">qi", 5, 1))
    assert (n.peer_epoch, n.version, n.config) == (5, 0, b"")


def test_version_1_notification_has_no_config() -> None:
    # 44 bytes with version 1: ZooKeeper reads the version and stops (no config).
    n = decode_notification(_head() + struct.pack(">qii", 5, 1, 99))
    assert (n.peer_epoch, n.version, n.config) == (5, 1, b"")


def test_trailing_bytes_are_ignored_as_zookeeper_does() -> None:
    n = decode_notification(ZK_LOOKING_FROM_3 + b"extra")
    assert n.config == ZK_CONFIG_A


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        _head()[:27],  # shorter than any form
        _head() + b"\0" * 4,  # 32: a partial peer epoch
        _head() + b"\0" * 10,  # 38: a partial version
        _head() + struct.pack(">qi", 5, 2) + b"\0",  # version 2, a partial config length
        _head() + struct.pack(">qii", 5, 2, -1),  # negative config length
        _head() + struct.pack(">qii", 5, 2, 10) + b"short",  # config cut short
        _head(state=4) + struct.pack(">qii", 5, 2, 0),  # unknown state
        _head(state=-1),
    ],
)
def test_malformed_notifications_raise_notification_error(payload: bytes) -> None:
    with pytest.raises(NotificationError):
        decode_notification(payload)


# -- initiation message ---------------------------------------------------------------------


def test_v2_initiation_carries_several_addresses_and_ipv6() -> None:
    msg = InitialMessage(9, (("10.0.0.1", 3888), ("::1", 3889)), PROTOCOL_VERSION_V2)
    data = encode_initial_message(msg)
    assert data.endswith(b"10.0.0.1:3888|[::1]:3889")
    assert decode_initial_message(data) == (msg, len(data))


def test_pre_35_initiation_is_a_bare_sid() -> None:
    data = struct.pack(">q", 5) + b"rest"
    assert decode_initial_message(data) == (InitialMessage(5, (), None), 8)
    assert encode_initial_message(InitialMessage(5, (), None)) == data[:8]


def test_initiation_waits_for_all_its_bytes() -> None:
    for cut in range(len(ZK_INIT_FROM_3)):
        assert decode_initial_message(ZK_INIT_FROM_3[:cut]) is None


def _init(version: int, sid: int, text: bytes, length: int | None = None) -> bytes:
    return struct.pack(">qqi", version, sid, len(text) if length is None else length) + text


@pytest.mark.parametrize(
    "data",
    [
        _init(-65534, 1, b"h:1"),  # unknown protocol version
        _init(PROTOCOL_VERSION_V1, 1, b"", 0),  # empty address
        _init(PROTOCOL_VERSION_V1, 1, b"", 2049),  # longer than ZooKeeper's 2048
        _init(PROTOCOL_VERSION_V1, 1, b"", -5),
        _init(PROTOCOL_VERSION_V1, 1, b"hostonly"),
        _init(PROTOCOL_VERSION_V1, 1, b"h:1:2"),
        _init(PROTOCOL_VERSION_V1, 1, b"h:port"),
        _init(PROTOCOL_VERSION_V1, 1, b"h:70000"),
        _init(PROTOCOL_VERSION_V1, 1, b"[::1:5"),
        _init(PROTOCOL_VERSION_V1, 1, b"\xff:1"),
        _init(PROTOCOL_VERSION_V2, 1, b"a:1|b"),
    ],
)
def test_bad_initiation_raises_initiation_error(data: bytes) -> None:
    with pytest.raises(InitiationError):
        decode_initial_message(data)


def test_encoder_refuses_what_zookeeper_would_refuse() -> None:
    with pytest.raises(ValueError):
        encode_initial_message(InitialMessage(1, ()))
    with pytest.raises(ValueError):
        encode_initial_message(InitialMessage(1, (("a", 1), ("b", 2))))  # V1: one address
    with pytest.raises(ValueError):
        encode_initial_message(InitialMessage(1, (("a" * 2048, 1),)))


def test_the_larger_sid_keeps_the_connection() -> None:
    assert incoming_connection_action(2, 3) == IncomingAction.KEEP
    assert incoming_connection_action(3, 2) == IncomingAction.CLOSE_AND_DIAL_BACK
    assert incoming_connection_action(3, 3) == IncomingAction.REJECT_OWN_ID
    assert keep_outgoing_connection(3, 2) and not keep_outgoing_connection(2, 3)


# -- frames ---------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, -1, FRAME_BYTES_MAX + 1])
def test_frame_length_outside_limits_is_an_error(length: int) -> None:
    with pytest.raises(FrameError):
        decode_frame(struct.pack(">i", length) + b"x")


def test_frame_waits_for_its_payload() -> None:
    framed = encode_frame(b"abc")
    assert [decode_frame(framed[:i]) for i in range(len(framed))] == [None] * len(framed)
    assert decode_frame(framed + framed, len(framed)) == (b"abc", 2 * len(framed))


# -- verifier -------------------------------------------------------------------------------


def test_majority_counts_voters_only() -> None:
    qv = QuorumVerifier.of_ids([1, 2, 3, 4, 5], observers=[6, 7])
    assert qv.contains_quorum([1, 2, 3])
    assert not qv.contains_quorum([1, 2, 6, 7])
    assert QuorumVerifier.of_ids([1, 2, 3, 4]).contains_quorum([1, 2, 3])
    assert not QuorumVerifier.of_ids([1, 2, 3, 4]).contains_quorum([1, 2])


def test_config_text_with_observer_client_address_and_ipv6_round_trips() -> None:
    qv = QuorumVerifier(
        (
            QuorumServer(1, "::1", 2888, 3888, client=("::1", 2181)),
            QuorumServer(2, "h2", 2888, 3888, observer=True, client=("0.0.0.0", 2182)),
        ),
        version=0x100000003,
    )
    text = qv.config_string()
    assert text == (
        "server.1=[::1]:2888:3888:participant;[::1]:2181\n"
        "server.2=h2:2888:3888:observer;0.0.0.0:2182\n"
        "version=100000003"
    )
    assert QuorumVerifier.from_config_string(text) == qv


@pytest.mark.parametrize(
    "text",
    ["server.1", "server.x=h:1:2", "server.1=h", "server.1=h:1:2:boss", "version=zz",
     "server.1=h:1:99999", "server.1=h:1:2\nserver.1=h:3:4", "server.1=[::1:1:2"],
)  # fmt: skip
def test_bad_config_text_raises_a_protocol_error(text: str) -> None:
    with pytest.raises(ConfigTextError):
        QuorumVerifier.from_config_string(text)


# -- decoders are total ---------------------------------------------------------------------


@given(st.binary(max_size=200))
def test_decoders_raise_only_protocol_errors(data: bytes) -> None:
    for decode in (decode_notification, decode_initial_message, decode_frame):
        with contextlib.suppress(ProtocolError):
            decode(data)
    with contextlib.suppress(ProtocolError):
        QuorumVerifier.from_config_string(data.decode(errors="replace"))


@given(
    st.sampled_from(list(ServerState)),
    *[st.integers(-(1 << 63), (1 << 63) - 1) for _ in range(4)],
    st.binary(max_size=300),
)
def test_notification_round_trips(
    state: ServerState, leader: int, zxid: int, round_: int, epoch: int, config: bytes
) -> None:
    n = Notification(state, leader, zxid, round_, epoch, 2, config)
    assert decode_notification(encode_notification(n)) == n
