"""Bad input over real TCP, each case sent byte for byte to Apache ZooKeeper 3.8 and Corral.

For every case the outcome is the list of (xid, err) reply headers the server sends and
whether it then closes the connection. After the bad bytes we send a ping: a server that
keeps the connection answers it (so "kept open" is observed, never waited for), a server
that closes it never does. The outcomes must be equal, except for the opcodes where Corral
deliberately differs (listed in DELIBERATE_DIFFERENCES with the reason). After each case a
long-lived kazoo client, connected before any of them, must still write and read.

Also here: connections that never finish a handshake are closed as ZooKeeper closes them
(sessionlessCnxnTimeout; a slowloris too, where we are stricter); 200 junk connections beside
a good client doing 500 writes and reads, with the server's RSS measured; and a client that
pipelines big reads without reading the replies.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient

from support import kazoo_client
from support.procs import ServerProcess, ServerSettings
from support.rawclient import ConnectionClosed, RawClient

MAXBUFFER = 0xFFFFF  # jute.maxbuffer default, the same in both servers
IO_TIMEOUT_S = 10.0


def _frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def _request(xid: int, op: int, body: bytes = b"") -> bytes:
    return _frame(struct.pack(">ii", xid, op) + body)


def _ustring(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">i", len(raw)) + raw


def _int(value: int) -> bytes:
    return struct.pack(">i", value)


_OPEN_ACL = _int(1) + _int(31) + _ustring("world") + _ustring("anyone")
PING = _request(-2, 11)
_BIG = b"x" * (MAXBUFFER + 10)
_NEAR_MAX = b"x" * (MAXBUFFER - 40)


@dataclasses.dataclass(frozen=True)
class Case:
    """Bytes to send; `handshake`: after a completed ConnectRequest, else on a fresh socket."""

    payload: bytes
    handshake: bool = True


# Sent after a completed handshake unless handshake=False.
CASES: dict[str, Case] = {
    # Frame lengths: over jute.maxbuffer (also by the record-overhead allowance), negative.
    "frame_over_maxbuffer": Case(_int(MAXBUFFER + 1) + b"x" * 64),
    "frame_over_maxbuffer_plus_extrasize": Case(_int(MAXBUFFER + 1024) + b"x" * 64),
    "frame_negative_length": Case(_int(-5)),
    "frame_shorter_than_request_header": Case(_frame(b"\x00\x00\x00\x01\x00")),
    # Truncated or malformed record bodies, several opcodes (reads, writes, multi, setWatches).
    "getData_truncated_path": Case(_request(1, 4, _ustring("/zookeeper")[:-3])),
    "getData_no_body": Case(_request(1, 4)),
    "exists_missing_watch_flag": Case(_request(1, 3, _ustring("/"))),
    "create_truncated_data": Case(_request(1, 1, _ustring("/x") + _int(3) + b"ab")),
    "create2_truncated_acl": Case(_request(1, 15, _ustring("/x") + _int(0) + _int(1) + b"\x00")),
    "setData_truncated": Case(_request(1, 5, _ustring("/zookeeper") + _int(10) + b"abc")),
    "delete_missing_version": Case(_request(1, 2, _ustring("/x"))),
    "multi_truncated_op": Case(_request(1, 14, struct.pack(">i?i", 1, False, -1) + _ustring("/x"))),
    "setWatches_truncated": Case(_request(-8, 101, struct.pack(">q", 0) + _int(1))),
    # Unknown opcodes, and the server-internal "error" opcode.
    "unknown_opcode": Case(_request(1, 999)),
    "unknown_negative_opcode": Case(_request(1, -55)),
    "error_opcode": Case(_request(1, -1)),
    # Server-internal opcodes a client must not send (deliberate difference, below).
    "createSession_opcode": Case(_request(1, -10, _int(30000))),
    "deleteContainer_opcode": Case(_request(1, 20, _ustring("/no-such-container"))),
    # Vector and string counts far beyond the bytes that follow.
    "huge_acl_vector_count": Case(_request(1, 1, _ustring("/hv") + _int(0) + _int(0x7FFFFFFF))),
    "huge_setWatches_vector_count": Case(
        _request(-8, 101, struct.pack(">q", 0) + _int(0x7FFFFFFF))
    ),
    "huge_vector_in_multi": Case(
        _request(
            1, 14, struct.pack(">i?i", 1, False, -1) + _ustring("/m") + _int(0) + _int(0x7FFFFFFF)
        )
    ),
    "huge_string_length": Case(_request(1, 4, _int(0x7FFFFFFF) + b"/")),
    # Invalid UTF-8 in paths: Java decodes it to U+FFFD, which path validation refuses.
    "invalid_utf8_create": Case(
        _request(1, 1, _int(3) + b"/\xff\xfe" + _int(0) + _OPEN_ACL + _int(0))
    ),
    "invalid_utf8_getData": Case(_request(1, 4, _int(3) + b"/\xc3\x28" + b"\x00")),
    # Bytes after a closeSession in the same segment: answered, then closed, the rest dropped.
    "bytes_after_closeSession": Case(_request(1, -11) + _request(2, 4, _ustring("/") + b"\x00")),
    # setData with data over jute.maxbuffer (so is the frame): closed on the length alone.
    "setData_over_maxbuffer": Case(
        _request(1, 5, _ustring("/zookeeper") + _int(len(_BIG)) + _BIG + _int(-1))
    ),
    # ... and just under it: served.
    "setData_just_under_maxbuffer": Case(
        _request(1, 5, _ustring("/zookeeper") + _int(len(_NEAR_MAX)) + _NEAR_MAX + _int(-1))
    ),
    # Odd but well-formed: the empty path is ZooKeeper's second key for the root. (This one
    # raised inside Corral's core, which stops the server: a remote kill switch.)
    "getAllChildrenNumber_empty_path": Case(_request(1, 104, _ustring(""))),
    "getData_empty_path": Case(_request(1, 4, _ustring("") + b"\x00")),
    # Garbage instead of a ConnectRequest.
    "connect_garbage": Case(_frame(b"hello garbage"), handshake=False),
    "connect_password_length_beyond_frame": Case(
        _frame(b"\x00" * 20 + _int(500) + b"zz"), handshake=False
    ),
    "connect_negative_password_length": Case(
        _frame(struct.pack(">iqiqi", 0, 0, 30000, 0, -7)), handshake=False
    ),
    "connect_frame_over_maxbuffer": Case(_int(MAXBUFFER + 1) + b"x" * 16, handshake=False),
    "connect_frame_negative_length": Case(_int(-1), handshake=False),
    "connect_telnet_interrupt": Case(b"\xff\xf4\xff\xfd", handshake=False),
}

# What Corral does instead of what ZooKeeper 3.8 does, and why.
DELIBERATE_DIFFERENCES: dict[str, tuple[str, tuple[tuple[int, int], ...]]] = {
    # ZooKeeper hands a client's createSession (-10) to prep and answers it as if it were a
    # handshake; a client could create sessions without connecting. Corral refuses it:
    # UNIMPLEMENTED (-6), then close, as for any opcode it does not serve.
    "createSession_opcode": ("closed", ((1, -6),)),
    # ZooKeeper lets a client run the reaper's deleteContainer (20); Corral refuses it.
    "deleteContainer_opcode": ("closed", ((1, -6),)),
}


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What the server did: reply headers (xid, err) in order, then "open" or "closed"."""

    state: str
    replies: tuple[tuple[int, int], ...]


def send_case(address: tuple[str, int], case: Case) -> Outcome:
    """Send the case's bytes (then a ping if after a handshake) and observe the server."""
    if case.handshake:
        client = RawClient.connect(address, timeout_ms=10000, io_timeout_s=IO_TIMEOUT_S)
        tail = PING
    else:
        client = RawClient.open(address, io_timeout_s=IO_TIMEOUT_S)
        # Before a handshake a ping would be read as a ConnectRequest: the server has to
        # close by itself (every pre-handshake case here is one it must close on).
        tail = b""
    replies: list[tuple[int, int]] = []
    try:
        # The server may close while we are still sending (oversize frames).
        with contextlib.suppress(OSError):
            client.send_raw(case.payload + tail)
        pings = 0
        while True:
            try:
                frame = client.recv_frame()
            except ConnectionClosed:
                return Outcome("closed", tuple(replies))
            xid, _zxid, err = struct.unpack_from(">iqi", frame)
            if xid != -2:
                replies.append((xid, err))
                continue
            pings += 1
            if pings == 2:
                return Outcome("open", tuple(replies))
            # ZooKeeper closes asynchronously (sendCloseSession queues the close): a ping
            # sent with the bad bytes may be answered just before. A second ping, sent after
            # that answer, sees whether the connection really stays.
            try:
                client.send_raw(PING)
            except OSError:
                return Outcome("closed", tuple(replies))
    finally:
        client.abort()


@pytest.fixture(scope="module")
def kazoo_on_corral(corral: ServerProcess) -> Iterator[KazooClient]:
    """A good client that lives through every case (its session must never break)."""
    with kazoo_client.session(corral.address) as client:
        client.ensure_path("/good")
        yield client


def assert_serves(client: KazooClient, name: str) -> None:
    path = client.create(f"/good/{name}-", name.encode(), sequence=True)
    data, stat = client.get(path)
    assert data == name.encode()
    client.set(path, b"again", version=stat.version)
    client.delete(path, version=stat.version + 1)


# Cases where ZooKeeper's own answer depends on timing: after a closeSession it may still
# answer a request already read from the socket (SESSIONEXPIRED) before it closes. Both
# servers must give one of the allowed outcomes.
TIMING_DEPENDENT: dict[str, tuple[Outcome, ...]] = {
    "bytes_after_closeSession": (
        Outcome("closed", ((1, 0),)),
        Outcome("closed", ((1, 0), (2, -112))),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_like_zookeeper(
    name: str,
    zookeeper: ServerProcess,
    corral: ServerProcess,
    kazoo_on_corral: KazooClient,
) -> None:
    case = CASES[name]
    reference = send_case(zookeeper.address, case)
    ours = send_case(corral.address, case)
    if name in DELIBERATE_DIFFERENCES:
        state, replies = DELIBERATE_DIFFERENCES[name]
        assert ours == Outcome(state, replies), f"{name}: Corral {ours}"
        assert reference != ours, f"{name}: ZooKeeper now agrees with Corral; drop the exception"
    elif name in TIMING_DEPENDENT:
        assert reference in TIMING_DEPENDENT[name], f"{name}: ZooKeeper {reference}"
        assert ours in TIMING_DEPENDENT[name], f"{name}: Corral {ours}"
    else:
        assert ours == reference, f"{name}: ZooKeeper {reference}, Corral {ours}"
    # Whatever happened to that connection, every other client is served.
    assert kazoo_on_corral.connected
    assert_serves(kazoo_on_corral, name)
    # A fresh connection is served too.
    with RawClient.connect(corral.address, io_timeout_s=IO_TIMEOUT_S) as fresh:
        assert fresh.exists("/good").err == 0


def test_expected_outcomes_are_zookeepers(zookeeper: ServerProcess) -> None:
    """Pin a few reference outcomes, so a changed reference server shows up here by name."""
    assert send_case(zookeeper.address, CASES["frame_over_maxbuffer"]) == Outcome("closed", ())
    assert send_case(zookeeper.address, CASES["getData_truncated_path"]) == Outcome(
        "open", ((1, -5),)
    )
    assert send_case(zookeeper.address, CASES["unknown_opcode"]) == Outcome("closed", ((1, -6),))
    assert (
        send_case(zookeeper.address, CASES["bytes_after_closeSession"])
        in TIMING_DEPENDENT["bytes_after_closeSession"]
    )


# --- connections that never complete a handshake ------------------------------------------

# ZooKeeper closes a connection without a session after zookeeper.nio.sessionlessCnxnTimeout
# (10 s by default; its expiry queue closes it between 1x and 2x that). Both servers get 1 s.
SESSIONLESS = ServerSettings(properties=(("zookeeper.nio.sessionlessCnxnTimeout", "1000"),))
SESSIONLESS_CLOSE_WAIT_S = 10.0

STALLED: dict[str, bytes] = {
    "idle": b"",
    "partial_frame": struct.pack(">i", 1000) + b"x" * 10,
    "half_connect_request": struct.pack(">iiqiq", 44, 0, 0, 30000, 0)[:12],
}


def closes_within(sock: socket.socket, timeout_s: float, drip: bool = False) -> float | None:
    """Seconds until the server closes `sock` (None: still open after timeout_s).

    With drip=True a byte is sent every 0.2 s meanwhile (a slowloris).
    """
    started = time.monotonic()
    sock.settimeout(0.2)  # the drip rhythm and the granularity of the measurement
    while (elapsed := time.monotonic() - started) < timeout_s:
        try:
            if drip:
                sock.sendall(b"z")
            if sock.recv(4096) == b"":
                return elapsed
        except TimeoutError:
            continue
        except OSError:
            return elapsed  # reset
    return None


@pytest.mark.parametrize("kind", list(STALLED))
def test_stalled_handshake_is_closed_like_zookeeper(
    kind: str,
    zookeeper_pool: Any,
    corral_pool: Any,
) -> None:
    closed: dict[str, float | None] = {}
    for name, pool in (("zookeeper", zookeeper_pool), ("corral", corral_pool)):
        server = pool.get(SESSIONLESS)
        with socket.create_connection(server.address, timeout=IO_TIMEOUT_S) as sock:
            if STALLED[kind]:
                sock.sendall(STALLED[kind])
            closed[name] = closes_within(sock, SESSIONLESS_CLOSE_WAIT_S)
    print(f"{kind}: closed after {closed}")
    assert closed["zookeeper"] is not None, "ZooKeeper kept a stalled connection"
    assert closed["corral"] is not None, "Corral kept a connection that never completed a handshake"


def test_slowloris_handshake_is_closed(corral_pool: Any) -> None:
    """Deliberately stricter than ZooKeeper, which restarts the sessionless timeout on every
    byte (so a slowloris holds its connection forever): Corral counts from the accept."""
    server = corral_pool.get(SESSIONLESS)
    with socket.create_connection(server.address, timeout=IO_TIMEOUT_S) as sock:
        sock.sendall(struct.pack(">i", MAXBUFFER))
        elapsed = closes_within(sock, SESSIONLESS_CLOSE_WAIT_S, drip=True)
    assert elapsed is not None, "a slowloris kept its connection"


# --- 200 junk connections beside a good client --------------------------------------------

JUNK_PER_KIND = 50
# Junk comes from other loopback addresses, 50 per address: under ZooKeeper's default
# maxClientCnxns (60 per address), so the per-address limit is not what saves the server.
JUNK_SOURCES = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
GOOD_OPS = 500
# The storm may cost the server this much resident memory at most. The junk holds about
# 50 x 64 KiB of partial frames; the rest is headroom for allocator noise.
RSS_GROWTH_MAX_KIB = 48 * 1024


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def four_letter(address: tuple[str, int], word: str) -> str:
    with socket.create_connection(address, timeout=IO_TIMEOUT_S) as s:
        s.sendall(word.encode())
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def alive_connections(address: tuple[str, int]) -> int:
    """The server's count of open client connections (mntr counts the asking one too)."""
    for line in four_letter(address, "mntr").splitlines():
        key, _, value = line.partition("\t")
        if key == "zk_num_alive_connections":
            return int(value) - 1
    raise AssertionError("mntr has no zk_num_alive_connections")


class Junk:
    """The junk connections and the thread that drips bytes into the slowloris ones."""

    def __init__(self, address: tuple[str, int], rng: random.Random) -> None:
        self.address = address
        self.rng = rng
        self.socks: list[socket.socket] = []
        self.slow: list[socket.socket] = []
        self.stop = threading.Event()
        self.dripper = threading.Thread(target=self._drip, daemon=True)

    def _open(self, i: int) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(IO_TIMEOUT_S)
        s.bind((JUNK_SOURCES[i % len(JUNK_SOURCES)], 0))
        s.connect(self.address)
        self.socks.append(s)
        return s

    def _send(self, s: socket.socket, data: bytes) -> None:
        with contextlib.suppress(OSError):  # the server closed it: that is its right
            s.sendall(data)

    def open_all(self) -> None:
        rng = self.rng
        i = 0
        for _ in range(JUNK_PER_KIND):  # random bytes, once
            self._send(self._open(i), rng.randbytes(rng.randint(1, 4096)))
            i += 1
        for k in range(JUNK_PER_KIND):  # a partial frame, then nothing
            s = self._open(i)
            if k % 2:
                # A frame claiming up to jute.maxbuffer, 64 KiB of it sent.
                self._send(s, struct.pack(">i", rng.randint(70000, MAXBUFFER)) + b"j" * 65536)
            else:
                # Half a ConnectRequest.
                self._send(s, struct.pack(">iiqiq", 44, 0, 0, 30000, 0)[:12])
            i += 1
        for _ in range(JUNK_PER_KIND):  # connected, never a byte
            self._open(i)
            i += 1
        for _ in range(JUNK_PER_KIND):  # slowloris: a huge frame, one byte at a time
            s = self._open(i)
            self._send(s, struct.pack(">i", MAXBUFFER))
            self.slow.append(s)
            i += 1
        self.dripper.start()

    def _drip(self) -> None:
        # Event.wait paces the drip (it is the attack's rhythm, not a synchronisation).
        while not self.stop.wait(0.05):
            for s in self.slow:
                self._send(s, b"z")

    def close_all(self) -> None:
        self.stop.set()
        self.dripper.join(IO_TIMEOUT_S)
        for s in self.socks:
            s.close()


@pytest.fixture
def junk_server(corral_factory: Callable[..., ServerProcess]) -> ServerProcess:
    """A Corral of its own (memory is measured), with mntr allowed."""
    return corral_factory(ServerSettings(four_letter_words="*"))


def test_junk_connections_do_not_disturb_a_good_client(junk_server: ServerProcess) -> None:
    seed = int(os.environ.get("CORRAL_JUNK_SEED") or random.SystemRandom().randrange(1 << 32))
    print(f"CORRAL_JUNK_SEED={seed}")
    server = junk_server
    assert server.pid is not None
    good = kazoo_client.start(server.address)
    junk = Junk(server.address, random.Random(seed))
    try:
        # Warm up (imports, first allocations) before the baseline.
        good.ensure_path("/storm")
        for i in range(50):
            good.set("/storm", b"w%d" % i)
        baseline = rss_kib(server.pid)
        started = time.monotonic()
        junk.open_all()
        for i in range(GOOD_OPS):
            value = b"v%d" % i
            stat = good.set("/storm", value)
            data, read_stat = good.get("/storm")
            assert (data, read_stat.version) == (value, stat.version)
        elapsed = time.monotonic() - started
        during = rss_kib(server.pid)
        # Still serving new clients while the junk is open.
        with RawClient.connect(server.address, io_timeout_s=IO_TIMEOUT_S) as fresh:
            assert fresh.get_data("/storm").result.data == b"v%d" % (GOOD_OPS - 1)
        held = alive_connections(server.address)
        print(
            f"{GOOD_OPS} writes + reads beside {4 * JUNK_PER_KIND} junk connections in "
            f"{elapsed:.2f}s; server RSS {baseline} KiB before, {during} KiB during "
            f"(+{during - baseline} KiB); {held} connections open"
        )
        assert during - baseline < RSS_GROWTH_MAX_KIB
    finally:
        junk.close_all()
    # Once the junk is gone, so are its connections (bounded poll of the server's count).
    deadline = time.monotonic() + 10.0
    while (left := alive_connections(server.address)) > 1:
        assert time.monotonic() < deadline, f"{left} connections still open after the junk left"
        time.sleep(0.05)  # polling the server's count, bounded by the deadline above
    after = rss_kib(server.pid)
    print(f"server RSS after the junk left: {after} KiB")
    assert good.connected
    kazoo_client.stop(good)


# --- a client that pipelines big reads and does not read the replies ------------------------

BIG_NODE_BYTES = 1_000_000
FLOOD_REQUESTS = 5000  # 5 GB of replies asked for with 120 KB of requests
FLOOD_RSS_GROWTH_MAX_KIB = 96 * 1024


def _get_data_requests(n: int, path: str) -> bytes:
    return b"".join(_request(i + 1, 4, _ustring(path) + b"\x00") for i in range(n))


def test_unread_replies_do_not_grow_the_server(junk_server: ServerProcess) -> None:
    """Found by this test: every request of a received chunk is answered at once, so 120 KB
    of pipelined getData of a 1 MB node make the server build gigabytes of replies (RSS
    past 1.4 GB within 3 s, no other client served). ZooKeeper 3.8 stays at ~86 MB RSS.
    The core holds requests back while a connection's unsent replies exceed
    CoreConfig.send_buffer_max_bytes, and the runner reports drained sockets (core.drained)."""
    server = junk_server
    assert server.pid is not None
    with RawClient.connect(server.address, io_timeout_s=IO_TIMEOUT_S) as setup:
        assert setup.create("/big", b"b" * BIG_NODE_BYTES).err == 0
    baseline = rss_kib(server.pid)
    flooder = RawClient.connect(server.address, io_timeout_s=IO_TIMEOUT_S)
    try:
        flooder.send_raw(_get_data_requests(FLOOD_REQUESTS, "/big"))
        # Another client is served meanwhile (its round trips give the server time to work).
        with RawClient.connect(server.address, io_timeout_s=5.0) as good:
            for _ in range(200):
                assert good.exists("/big").err == 0
                assert good.get_data("/zookeeper").err == 0
        during = rss_kib(server.pid)
        assert during - baseline < FLOOD_RSS_GROWTH_MAX_KIB, f"+{during - baseline} KiB"
    except BaseException:
        server.kill()  # it may be busy building replies for minutes: no clean stop
        raise
    finally:
        flooder.abort()
    print(f"server RSS {baseline} KiB before, {during} KiB with 5 GB of replies unread")


def test_pipelined_big_reads_are_all_answered(junk_server: ServerProcess) -> None:
    """The send bound must not stall a client that does read: every reply arrives, in order."""
    n = 300
    with RawClient.connect(server_address := junk_server.address, io_timeout_s=IO_TIMEOUT_S) as c:
        assert c.create("/big2", b"c" * BIG_NODE_BYTES).err == 0
        c.send_raw(_get_data_requests(n, "/big2"))
        for xid in range(1, n + 1):
            frame = c.recv_frame()
            got_xid, _zxid, err = struct.unpack_from(">iqi", frame)
            assert (got_xid, err) == (xid, 0)
            assert len(frame) > BIG_NODE_BYTES
    with RawClient.connect(server_address, io_timeout_s=IO_TIMEOUT_S) as c:
        assert c.exists("/big2").err == 0
