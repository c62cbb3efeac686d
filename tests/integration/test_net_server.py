"""net/server.py in-process: output performing, write coalescing, durable marshalling,
flow control and connection limits, against a scripted core on loopback sockets."""

from __future__ import annotations

import asyncio
import functools
import socket
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from corral.net import server as net_server
from corral.net.server import ClientServer
from corral.proto.records import Id, TxnHeader
from corral.server.core import Output


class ScriptedCore:
    """Stands in for StandaloneCore: records calls, answers with a scripted Output."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.on_receive: Callable[[int, bytes], Output] = lambda conn_id, data: Output()
        self.on_persisted: Callable[[int], Output] = lambda zxid: Output()
        self.opened = asyncio.Event()
        self.closed_ids: list[int] = []

    def open(
        self,
        conn_id: int,
        remote_ip: str,
        secure_ids: tuple[Id, ...] = (),
        remote_port: int = 0,
        now_ms: int | None = None,
    ) -> Output:
        self.calls.append(("open", conn_id, remote_ip))
        self.opened.set()
        return Output()

    def receive(self, conn_id: int, data: bytes, now_ms: int, wall_ms: int) -> Output:
        self.calls.append(("receive", conn_id, data))
        return self.on_receive(conn_id, data)

    def closed(self, conn_id: int, now_ms: int | None = None) -> Output:
        self.closed_ids.append(conn_id)
        return Output()

    def persisted(self, zxid: int, now_ms: int, wall_ms: int) -> Output:
        self.calls.append(("persisted", zxid))
        return self.on_persisted(zxid)

    def tick(self, now_ms: int, wall_ms: int) -> Output:
        return Output()


class RecordingSink:
    def __init__(self) -> None:
        self.appended: list[tuple[TxnHeader, bytes]] = []

    def append(self, hdr: TxnHeader, txn: bytes) -> None:
        self.appended.append((hdr, txn))


class FakeProto:
    """A connection without a socket: records writes and closes."""

    secure = False

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.core_paused = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def transport_close(self) -> None:
        self.closed = True

    def apply_reading(self) -> None:
        pass


def make_server(
    core: ScriptedCore, sink: RecordingSink | None = None, **kwargs: Any
) -> ClientServer:
    return ClientServer(
        core,  # type: ignore[arg-type]
        sink or RecordingSink(),
        lambda conn_id, word: f"answer to {word}".encode(),
        max_client_cnxns=kwargs.pop("max_client_cnxns", 60),
        **kwargs,
    )


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in a fresh event loop (no pytest-asyncio here)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(test(*args, **kwargs), 30))

    return run


async def next_turn() -> None:
    """Let the loop run the callbacks scheduled so far (call_soon is FIFO)."""
    await asyncio.sleep(0)


@in_loop
async def test_sends_of_one_turn_leave_in_one_write() -> None:
    core = ScriptedCore()
    server = make_server(core)
    proto = FakeProto()
    server.conns[1] = proto  # type: ignore[assignment]
    server.perform(Output(sends=[(1, b"a")]))
    server.perform(Output(sends=[(1, b"b"), (2, b"unknown connection")]))
    assert proto.writes == []
    await next_turn()
    assert proto.writes == [b"ab"]


@in_loop
async def test_persist_goes_to_the_sink_at_once_and_closes_follow_sends() -> None:
    core = ScriptedCore()
    sink = RecordingSink()
    server = make_server(core, sink)
    proto = FakeProto()
    server.conns[1] = proto  # type: ignore[assignment]
    hdr = TxnHeader(1, 1, 5, 0, 1)
    server.perform(Output(sends=[(1, b"bye")], closes=[1], persist=[(hdr, b"txn")]))
    assert sink.appended == [(hdr, b"txn")]
    await next_turn()
    assert proto.writes == [b"bye"] and proto.closed


@in_loop
async def test_four_letter_answer_then_close() -> None:
    core = ScriptedCore()
    server = make_server(core)
    proto = FakeProto()
    server.conns[7] = proto  # type: ignore[assignment]
    server.perform(Output(four_letter=[(7, "ruok")]))
    await next_turn()
    assert proto.writes == [b"answer to ruok"] and proto.closed


@in_loop
async def test_durable_from_another_thread_reaches_the_core_once_with_the_highest() -> None:
    core = ScriptedCore()
    applied: list[int] = []
    server = make_server(core, after_persisted=lambda: applied.append(1))

    def writer_thread() -> None:
        for zxid in (3, 4, 5):
            server.durable(zxid)

    # Joined without awaiting: the loop is busy, so all three reports land in one turn.
    thread = threading.Thread(target=writer_thread)
    thread.start()
    thread.join(10)
    await next_turn()
    await next_turn()
    assert [c for c in core.calls if c[0] == "persisted"] == [("persisted", 5)]
    assert applied == [1]
    server.durable(4)  # older than what the core knows: nothing to do
    await next_turn()
    await next_turn()
    assert [c for c in core.calls if c[0] == "persisted"] == [("persisted", 5)]


@in_loop
async def test_core_pause_and_resume_reading() -> None:
    core = ScriptedCore()
    server = make_server(core)
    proto = FakeProto()
    server.conns[1] = proto  # type: ignore[assignment]
    server.perform(Output(pause_reading=[1]))
    assert proto.core_paused
    server.perform(Output(resume_reading=[1]))
    assert not proto.core_paused


@in_loop
async def test_connections_over_the_per_ip_limit_are_refused() -> None:
    core = ScriptedCore()
    server = make_server(core, max_client_cnxns=1)
    (host, port), *_ = await server.listen("127.0.0.1", 0)
    first_r, first_w = await asyncio.open_connection(host, port)
    await asyncio.wait_for(core.opened.wait(), 10)
    second_r, second_w = await asyncio.open_connection(host, port)
    # The second is closed by the server without ever reaching the core.
    assert await asyncio.wait_for(second_r.read(), 10) == b""
    assert [c[0] for c in core.calls] == ["open"]
    for w in (first_w, second_w):
        w.close()
    server.stop_accepting()
    server.close_all()
    assert await server.wait_no_connections(10)
    assert core.closed_ids == [1]


@in_loop
async def test_a_client_that_does_not_read_stops_being_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(net_server, "WRITE_BUFFER_HIGH_BYTES", 256 * 1024)
    monkeypatch.setattr(net_server, "WRITE_BUFFER_LOW_BYTES", 64 * 1024)
    core = ScriptedCore()
    # The first request is answered with more than any socket buffer holds.
    core.on_receive = lambda conn_id, data: Output(
        sends=[(conn_id, bytes(32 << 20))] if data == b"x" else []
    )
    server = make_server(core)
    paused = asyncio.Event()
    original = net_server._ClientProtocol.pause_writing

    def pause_writing(self: net_server._ClientProtocol) -> None:
        original(self)
        paused.set()

    monkeypatch.setattr(net_server._ClientProtocol, "pause_writing", pause_writing)
    (host, port), *_ = await server.listen("127.0.0.1", 0)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: small window
    sock.connect((host, port))
    try:
        sock.sendall(b"x")
        await asyncio.wait_for(paused.wait(), 10)
        (proto,) = server.conns.values()
        assert proto.transport is not None and not proto.transport.is_reading()
        received = sum(len(c[2]) for c in core.calls if c[0] == "receive")
        sock.sendall(b"y" * 1000)
        await next_turn()
        # Paused: nothing more is taken from the socket while the replies are stuck.
        assert sum(len(c[2]) for c in core.calls if c[0] == "receive") == received
    finally:
        sock.close()
        server.stop_accepting()
        server.close_all()
        await server.wait_no_connections(10)
