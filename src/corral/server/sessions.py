"""Session bookkeeping: ids, passwords, timeout negotiation and expiry in tick buckets.

Mirrors ZooKeeper's SessionTrackerImpl + ExpiryQueue for a standalone server. Pure: the
time is always passed in (a monotonic `now_ms` for expiry, a wall-clock `wall_ms` only to
seed session ids), so tests and the simulator drive it deterministically.

Expiry works as ZooKeeper's: a touch puts a session in the bucket of
`round_up(now + timeout)` (rounded to the next multiple of the tick), and the buckets are
drained one tick at a time; so a session expires between `timeout` and `timeout + tick`
after its last touch.
"""

from __future__ import annotations

import hashlib
import hmac

from corral import limits

_MASK64 = (1 << 64) - 1
_MASK48 = (1 << 48) - 1
_SIGN64 = 1 << 63

# java.util.Random's LCG constants.
_JR_MULT = 0x5DEECE66D
_JR_ADD = 0xB
# ZooKeeper's fixed "superSecret" mixed into the seed of its session passwords.
_ZK_SUPER_SECRET = 0xB3415C00


def _signed64(value: int) -> int:
    value &= _MASK64
    return value - (1 << 64) if value & _SIGN64 else value


def initial_session_id(now_ms: int, server_id: int = 1) -> int:
    """The first session id a server hands out (SessionTrackerImpl.initializeNextSessionId).

    The low 40 bits of the clock, shifted to leave the top byte for the server id (1 on a
    standalone ZooKeeper). Java's `(now << 24) >>> 8` is a 64-bit shift, reproduced here
    with masks.
    """
    sid = ((now_ms << 24) & _MASK64) >> 8
    sid |= (server_id << 56) & _MASK64
    sid = _signed64(sid)
    if sid == -(1 << 63):  # the container owner marker; ZooKeeper steps over it too
        sid += 1
    return sid


def password_hmac(session_id: int, secret: bytes) -> bytes:
    """Corral's default session password: HMAC-SHA256(secret, session id)[:16].

    Unlike ZooKeeper's scheme it cannot be computed by someone who merely knows the id.
    """
    msg = (session_id & _MASK64).to_bytes(8, "big")
    return hmac.new(secret, msg, hashlib.sha256).digest()[: limits.session_password_bytes]


def password_zookeeper(session_id: int) -> bytes:
    """ZooKeeper's password: java.util.Random(sessionId ^ 0xB3415C00L).nextBytes(16).

    Needed when Corral shares an ensemble with Apache ZooKeeper servers, which must be able
    to validate each other's passwords on reconnect.
    """
    seed = ((session_id ^ _ZK_SUPER_SECRET) ^ _JR_MULT) & _MASK48
    out = bytearray()
    while len(out) < limits.session_password_bytes:
        seed = (seed * _JR_MULT + _JR_ADD) & _MASK48
        rnd = seed >> 16  # next(32): the top 32 of the 48 bits
        for _ in range(min(4, limits.session_password_bytes - len(out))):
            out.append(rnd & 0xFF)  # nextBytes takes the low byte first
            rnd >>= 8
    return bytes(out)


def password_for(session_id: int, secret: bytes, zookeeper_compatible: bool = False) -> bytes:
    """The 16-byte password of a session under the configured scheme."""
    if zookeeper_compatible:
        return password_zookeeper(session_id)
    return password_hmac(session_id, secret)


def negotiate_timeout(requested_ms: int, min_ms: int, max_ms: int) -> int:
    """Clamp a client's requested timeout into [min, max] as ZooKeeper does (min first)."""
    if requested_ms < min_ms:
        requested_ms = min_ms
    if requested_ms > max_ms:
        requested_ms = max_ms
    return requested_ms


class SessionTracker:
    """Live sessions and their expiry buckets (ZooKeeper's SessionTrackerImpl + ExpiryQueue).

    A session is tracked from the moment its id is handed out (before its createSession txn
    is durable, as ZooKeeper does) until it is removed when its closeSession txn applies.
    `closing` sessions stay tracked but can no longer be touched or revalidated.
    """

    def __init__(self, tick_ms: int, now_ms: int, wall_ms: int, server_id: int = 1) -> None:
        if tick_ms <= 0:
            raise ValueError("tick_ms must be positive")
        self.tick_ms = tick_ms
        self.timeouts: dict[int, int] = {}  # session id -> timeout ms
        self.closing: set[int] = set()
        self._expiry_of: dict[int, int] = {}  # session id -> its bucket
        self._buckets: dict[int, set[int]] = {}  # bucket time -> session ids
        self._next_expiration = self._round_up(now_ms)
        self._next_id = initial_session_id(wall_ms, server_id)

    def _round_up(self, t: int) -> int:
        return (t // self.tick_ms + 1) * self.tick_ms

    def next_session_id(self, taken: dict[int, int] | None = None) -> int:
        """Hand out a fresh id: ZooKeeper's counter, stepping over ids in use (`taken`).

        Ids restored from a snapshot could collide with a counter seeded by a clock that went
        backwards; ZooKeeper would reuse them, we skip them.
        """
        while True:
            sid = self._next_id
            self._next_id = _signed64(sid + 1)
            if sid != 0 and sid not in self.timeouts and (taken is None or sid not in taken):
                return sid

    def add(self, session_id: int, timeout_ms: int, now_ms: int) -> None:
        """Track a session (new, or restored from the durable session table) and touch it."""
        self.timeouts.setdefault(session_id, timeout_ms)
        self._update(session_id, timeout_ms, now_ms)

    def touch(self, session_id: int, timeout_ms: int, now_ms: int) -> bool:
        """Push back the expiry of a live session; False if unknown or closing."""
        if session_id not in self.timeouts or session_id in self.closing:
            return False
        # The common case, inlined (a touch per request): the session stays in its bucket.
        tick = self.tick_ms
        new = ((now_ms + timeout_ms) // tick + 1) * tick
        if new < self._next_expiration:
            new = self._next_expiration
        if self._expiry_of.get(session_id) != new:
            self._update(session_id, timeout_ms, now_ms)
        return True

    def _update(self, session_id: int, timeout_ms: int, now_ms: int) -> None:
        # Never behind the drain cursor, or the bucket would never be polled.
        new = max(self._round_up(now_ms + timeout_ms), self._next_expiration)
        old = self._expiry_of.get(session_id)
        if old == new:
            return
        bucket = self._buckets.get(new)
        if bucket is None:
            bucket = self._buckets[new] = set()
        bucket.add(session_id)
        self._expiry_of[session_id] = new
        if old is not None:
            prev = self._buckets.get(old)
            if prev is not None:
                prev.discard(session_id)

    def is_live(self, session_id: int) -> bool:
        return session_id in self.timeouts and session_id not in self.closing

    def set_closing(self, session_id: int) -> None:
        if session_id in self.timeouts:
            self.closing.add(session_id)

    def remove(self, session_id: int) -> None:
        """Forget a session (its closeSession txn has been applied)."""
        self.timeouts.pop(session_id, None)
        self.closing.discard(session_id)
        when = self._expiry_of.pop(session_id, None)
        if when is not None:
            bucket = self._buckets.get(when)
            if bucket is not None:
                bucket.discard(session_id)

    def expired(self, now_ms: int) -> list[int]:
        """Sessions whose bucket time has come, now marked closing (drains whole ticks only).

        Sorted so that the closeSession txns they lead to are deterministic.
        """
        out: list[int] = []
        while self._next_expiration <= now_ms:
            bucket = self._buckets.pop(self._next_expiration, None)
            self._next_expiration += self.tick_ms
            if bucket:
                for sid in sorted(bucket):
                    self._expiry_of.pop(sid, None)
                    # A session already closing (closeSession sent) needs no second close.
                    if sid not in self.closing:
                        self.closing.add(sid)
                        out.append(sid)
        return out

    def next_expiration_ms(self) -> int:
        """When `expired` can next return something (for the runner's timer)."""
        return self._next_expiration

    def expiry_of(self, session_id: int) -> int | None:
        return self._expiry_of.get(session_id)

    def __len__(self) -> int:
        return len(self.timeouts)
