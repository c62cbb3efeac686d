"""SessionTracker and the session id / password schemes."""

from __future__ import annotations

import pytest

from corral.server.sessions import (
    SessionTracker,
    initial_session_id,
    negotiate_timeout,
    password_for,
    password_hmac,
    password_zookeeper,
)

# java.util.Random(sid ^ 0xB3415C00L).nextBytes(16), computed with OpenJDK's jshell.
JAVA_PASSWORDS = {
    0x1000000000001: "054cc74a37327db215e702e20c73f005",
    -5: "d47144b5e45e45c49c3b7fdcd66257ba",
    0x0123456789ABCDEF: "f7cd1b8b3f946c477425d41be3f667c6",
    72057594037927936: "f22acd4a97e69d6d20a49bb638eadb38",
}


@pytest.mark.parametrize(("sid", "hexpw"), sorted(JAVA_PASSWORDS.items()))
def test_zookeeper_password_matches_java(sid: int, hexpw: str) -> None:
    assert password_zookeeper(sid).hex() == hexpw
    assert password_for(sid, b"ignored", zookeeper_compatible=True).hex() == hexpw


def test_hmac_password_is_16_bytes_and_keyed() -> None:
    a = password_hmac(42, b"k1")
    assert len(a) == 16
    assert a == password_for(42, b"k1")
    assert a != password_hmac(42, b"k2")
    assert a != password_hmac(43, b"k1")
    assert len(password_hmac(-1, b"k1")) == 16  # negative ids are fine (two's complement)


def test_initial_session_id_is_javas_shift() -> None:
    # (now << 24) >>> 8 in Java for now = 1764146907123 (checked with jshell).
    assert initial_session_id(1764146907123, server_id=0) == 43557537667284992
    # A standalone ZooKeeper uses server id 1: ids look like 0x01...
    assert initial_session_id(1764146907123) == 43557537667284992 | (1 << 56)
    # The top byte is the server id, the clock only fills 40 bits.
    assert initial_session_id(2**45, server_id=0) >> 56 == 0


def test_negotiate_timeout_clamps() -> None:
    assert negotiate_timeout(1, 4000, 40000) == 4000
    assert negotiate_timeout(10**9, 4000, 40000) == 40000
    assert negotiate_timeout(5000, 4000, 40000) == 5000


def test_session_ids_increment_and_skip_taken() -> None:
    t = SessionTracker(2000, now_ms=0, wall_ms=1764146907123, server_id=0)
    first = t.next_session_id()
    assert first == 43557537667284992
    assert t.next_session_id({first + 1: 10}) == first + 2


def test_expiry_in_tick_buckets() -> None:
    t = SessionTracker(2000, now_ms=1000, wall_ms=0)
    t.add(7, 5000, now_ms=1000)  # 6000 rounds up to the bucket at 8000
    assert t.expiry_of(7) == 8000
    assert t.expired(7999) == []
    assert t.expired(8000) == [7]
    assert not t.is_live(7)  # closing now
    assert not t.touch(7, 5000, 8000)
    t.remove(7)
    assert len(t) == 0


def test_touch_moves_the_bucket() -> None:
    t = SessionTracker(1000, now_ms=0, wall_ms=0)
    t.add(1, 3000, now_ms=0)
    t.add(2, 3000, now_ms=0)
    assert t.touch(1, 3000, 2500)
    assert t.expired(4000) == [2]
    assert t.expired(6000) == [1]
    assert not t.touch(99, 3000, 0)


def test_expired_drains_missed_ticks() -> None:
    t = SessionTracker(1000, now_ms=0, wall_ms=0)
    for sid, timeout in ((3, 1000), (1, 5000), (2, 9000)):
        t.add(sid, timeout, now_ms=0)
    assert t.expired(100_000) == [3, 1, 2]
    assert t.next_expiration_ms() == 101_000


def test_removed_session_never_expires() -> None:
    t = SessionTracker(1000, now_ms=0, wall_ms=0)
    t.add(1, 1000, now_ms=0)
    t.remove(1)
    assert t.expired(10_000) == []


def test_a_closing_session_is_not_expired_again() -> None:
    t = SessionTracker(1000, now_ms=0, wall_ms=0)
    t.add(1, 1000, now_ms=0)
    t.set_closing(1)
    assert t.expired(10_000) == []
