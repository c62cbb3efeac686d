"""Connection framing, the four-letter-word sniff and the ConnectRequest formats."""

from __future__ import annotations

import struct

import pytest

from corral.proto import jute
from corral.proto.jute import DecodeError
from corral.proto.records import ConnectRequest, ConnectResponse, Id
from corral.server.connection import (
    Connection,
    FrameError,
    connect_response_frame,
    parse_connect,
)


def framed(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


def test_frames_whole_split_and_byte_by_byte() -> None:
    stream = framed(b"abc") + framed(b"") + framed(b"x" * 300)
    c = Connection(1, "10.0.0.1")
    c.sniffed = True
    assert c.feed(stream) == ([b"abc", b"", b"x" * 300], None)
    c2 = Connection(2, "10.0.0.1")
    c2.sniffed = True
    got: list[bytes] = []
    for i in range(len(stream)):
        frames, word = c2.feed(stream[i : i + 1])
        assert word is None
        got.extend(frames)
    assert got == [b"abc", b"", b"x" * 300]
    assert not c2.buf


@pytest.mark.parametrize("length", [-1, -(2**31), 0xFFFFF + 1])
def test_bad_lengths_raise(length: int) -> None:
    c = Connection(1, "10.0.0.1")
    with pytest.raises(FrameError):
        c.feed(struct.pack(">i", length))


def test_max_frame_is_allowed() -> None:
    c = Connection(1, "10.0.0.1")
    frames, _ = c.feed(struct.pack(">i", 0xFFFFF))
    assert frames == []


def test_four_letter_word_only_first() -> None:
    c = Connection(1, "10.0.0.1")
    assert c.feed(b"ru") == ([], None)
    assert c.feed(b"ok") == ([], "ruok")
    c2 = Connection(2, "10.0.0.1")
    c2.feed(framed(b"hello"))
    # "stat" later on is a (huge) length, not a command.
    with pytest.raises(FrameError):
        c2.feed(b"stat")


def test_telnet_close_closes() -> None:
    with pytest.raises(FrameError):
        Connection(1, "10.0.0.1").feed(b"\xff\xf4\xff\xfd")


def test_connect_request_45_and_44_bytes() -> None:
    full = jute.encode(ConnectRequest(0, 7, 30000, 0x1234, b"p" * 16, True))
    assert len(full) == 45
    info = parse_connect(full)
    assert (info.last_zxid_seen, info.timeout, info.session_id, info.passwd) == (
        7,
        30000,
        0x1234,
        b"p" * 16,
    )
    assert info.read_only and info.has_read_only
    old = parse_connect(full[:44])
    assert not old.read_only and not old.has_read_only
    assert parse_connect(full + b"extra").has_read_only
    with pytest.raises(DecodeError):
        parse_connect(full[:20])
    with pytest.raises(DecodeError):
        parse_connect(full[:24] + struct.pack(">i", 99) + b"short")


def test_connect_response_formats() -> None:
    with_ro = connect_response_frame(4000, 9, b"k" * 16, False, True)
    assert jute.decode_exact(ConnectResponse, with_ro[4:]) == ConnectResponse(
        0, 4000, 9, b"k" * 16, False
    )
    assert struct.unpack_from(">i", with_ro)[0] == len(with_ro) - 4 == 37
    without = connect_response_frame(4000, 9, b"k" * 16, False, False)
    assert without == with_ro[:-1].replace(b"\x00\x00\x00\x25", b"\x00\x00\x00\x24", 1)


def test_auth_ids_start_with_ip_and_tls_ids() -> None:
    c = Connection(1, "::ffff:10.1.2.3", (Id("x509", "CN=a"),))
    # Kept in ZooKeeper's hash-set order (server/auth_order.py), not the order added.
    assert set(c.auth.ids) == {Id("ip", "10.1.2.3"), Id("x509", "CN=a")}
    c.add_auth(Id("digest", "u:h"))
    c.add_auth(Id("digest", "u:h"))
    assert Id("digest", "u:h") in c.auth.ids and len(c.auth.ids) == 3


def test_known_words_match_the_four_letter_module() -> None:
    from corral.admin.fourletter import ALL_COMMANDS
    from corral.server.connection import FOUR_LETTER_WORDS

    assert ALL_COMMANDS - {"telnet close"} == FOUR_LETTER_WORDS
