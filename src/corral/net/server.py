"""The client listeners: sockets in, the standalone core's `Output` performed out.

One asyncio event loop owns the core. Each accepted socket gets a connection id; its bytes
go to `core.receive` and whatever the core returns is performed here:

- `sends` are buffered per connection and written once per loop turn, so the replies of
  everything that happened in one turn leave in one `write` (one syscall) per connection;
- `persist` txns go to the durable log (`TxnSink.append`); its fsync thread reports the
  highest durable zxid through `durable()`, marshalled onto the loop with
  `call_soon_threadsafe`, and the loop hands it to `core.persisted` once per turn;
- `four_letter` words are answered with the text the `four_letter` callback renders, then
  the connection is closed after the answer is written (as ZooKeeper does);
- `closes` close the connection after its buffered bytes are written.

Flow control: when a transport's write buffer passes `WRITE_BUFFER_HIGH_BYTES` we stop
reading from that socket until it drains below `WRITE_BUFFER_LOW_BYTES`, so a client that
does not read its replies cannot make the server buffer without bound.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from typing import Protocol, cast

from corral.proto.records import Id, TxnHeader
from corral.server.core import Output, StandaloneCore

__all__ = [
    "WRITE_BUFFER_HIGH_BYTES",
    "WRITE_BUFFER_LOW_BYTES",
    "ClientServer",
    "TxnSink",
]

log = logging.getLogger(__name__)

# Bytes a transport may hold unsent before we stop reading from its socket.
WRITE_BUFFER_HIGH_BYTES = 4 * 1024 * 1024
WRITE_BUFFER_LOW_BYTES = 1024 * 1024
# A TLS client gets this long to finish its handshake (ZooKeeper's Netty default is 5 s on a
# quiet server; asyncio's is 60 s, far too generous for a half-open attacker).
TLS_HANDSHAKE_TIMEOUT_S = 10.0
# Java's ServerSocket default when clientPortListenBacklog is -1.
DEFAULT_LISTEN_BACKLOG = 50


class TxnSink(Protocol):
    """Where txns go to become durable (the store's database)."""

    def append(self, hdr: TxnHeader, txn: bytes) -> None: ...


def monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class ClientServer:
    """Owns the listeners and connections and performs the core's outputs."""

    def __init__(
        self,
        core: StandaloneCore,
        sink: TxnSink,
        four_letter: Callable[[int, str], bytes],
        *,
        max_client_cnxns: int,
        max_cnxns: int = 0,
        x509_ids: Callable[[bytes | None], tuple[Id, ...]] | None = None,
        after_persisted: Callable[[], object] | None = None,
        on_crash: Callable[[BaseException], None] | None = None,
        durable_zxid: int = 0,
    ) -> None:
        self.core = core
        self.sink = sink
        # A sink that takes a turn's txns at once (the Database) wakes its writer once.
        self._append_many: Callable[[list[tuple[TxnHeader, bytes]]], None] | None = getattr(
            sink, "append_many", None
        )
        self.four_letter = four_letter
        self.max_client_cnxns = max_client_cnxns
        self.max_cnxns = max_cnxns
        self.x509_ids = x509_ids
        # Called after durable txns were applied (the store's snapshot point check).
        self.after_persisted = after_persisted
        self.on_crash = on_crash
        self.crashed = False
        self.loop = asyncio.get_running_loop()
        self.conns: dict[int, _ClientProtocol] = {}
        self.per_ip: dict[tuple[bool, str], int] = {}
        self.servers: list[asyncio.Server] = []
        self._plain_servers: list[asyncio.Server] = []
        self._accepting = True
        # The port each listener bound (plain: False, TLS: True), for `conf` and logs.
        self.bound_ports: dict[bool, int] = {}
        # The highest zxid the core was told is durable (starts at the recovered one).
        self.durable_zxid = durable_zxid
        self.stopping = False
        self._next_id = 1
        self._pending: dict[int, bytearray] = {}
        self._to_close: list[int] = []
        self._flush_scheduled = False
        self._durable_seen = 0
        self._durable_scheduled = False
        self._idle = asyncio.Event()
        self._idle.set()
        # Connections the core stopped serving until their socket drains (Output.await_drain).
        self._await_drain: set[int] = set()

    # -- listeners -------------------------------------------------------------------------

    async def listen(
        self,
        host: str | None,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = -1,
    ) -> list[tuple[str, int]]:
        """Start a listener; returns the bound addresses (port 0 picks a free port)."""
        secure = ssl_context is not None
        server = await self.loop.create_server(
            lambda: _ClientProtocol(self, secure),
            host=host,
            port=port,
            backlog=backlog if backlog > 0 else DEFAULT_LISTEN_BACKLOG,
            reuse_address=True,
            ssl=ssl_context,
            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT_S if secure else None,
        )
        self.servers.append(server)
        if not secure:
            self._plain_servers.append(server)
        bound = [sock.getsockname()[:2] for sock in server.sockets]
        if bound:
            self.bound_ports[secure] = int(bound[0][1])
        for addr in bound:
            log.info("%s client port listening on %s:%d", "secure" if secure else "plain", *addr)
        return bound

    async def move_plain_listener(self, host: str | None, port: int, *, backlog: int = -1) -> None:
        """Listen for plain clients on a new address instead of the old one (a reconfig gave
        this server another client address): connections already open stay, as with
        ZooKeeper's NIOServerCnxnFactory.reconfigure. Raises OSError when the new address
        cannot be bound; the old listener is closed by then either way."""
        if not self._accepting:
            return  # shutting down: the move would leave a listener nobody closes
        old, self._plain_servers = self._plain_servers, []
        for server in old:
            server.close()  # the listening socket closes now; no wait for its connections
            self.servers.remove(server)
        self.bound_ports.pop(False, None)
        await self.listen(host, port, backlog=backlog)

    def stop_accepting(self) -> None:
        self._accepting = False
        for server in self.servers:
            server.close()

    def pause_all_reading(self) -> None:
        """Stop taking requests (shutdown): replies and durable acks still flow."""
        self.stopping = True
        for proto in self.conns.values():
            proto.apply_reading()

    def close_all(self) -> None:
        self.flush()
        for proto in list(self.conns.values()):
            proto.transport_close()

    async def wait_closed(self) -> None:
        for server in self.servers:
            await server.wait_closed()

    # -- core inputs -----------------------------------------------------------------------

    def accept(self, proto: _ClientProtocol, ip: str) -> int | None:
        """Admit a new connection or refuse it over the connection limits."""
        key = (proto.secure, ip)
        if self.max_client_cnxns > 0 and self.per_ip.get(key, 0) >= self.max_client_cnxns:
            log.warning("Too many connections from %s - max is %d", ip, self.max_client_cnxns)
            return None
        if self.max_cnxns > 0 and len(self.conns) >= self.max_cnxns:
            log.warning("Too many connections - max is %d", self.max_cnxns)
            return None
        conn_id = self._next_id
        self._next_id += 1
        self.conns[conn_id] = proto
        self.per_ip[key] = self.per_ip.get(key, 0) + 1
        return conn_id

    # Each core call is guarded: a core exception is a broken invariant, and the server must
    # stop rather than go on from an unknown state (DESIGN.md). The runner's on_crash does that.

    def opened(self, conn_id: int, remote: tuple[str, int], secure_ids: tuple[Id, ...]) -> None:
        if self.crashed:
            return
        try:
            out = self.core.open(conn_id, remote[0], secure_ids, remote[1], monotonic_ms())
        except Exception as exc:
            self._crash(exc)
            return
        self.perform(out)

    def received(self, conn_id: int, data: bytes) -> None:
        if self.crashed:
            return
        try:
            out = self.core.receive(conn_id, data, monotonic_ms(), wall_ms())
        except Exception as exc:
            self._crash(exc)
            return
        self.perform(out)

    def lost(self, proto: _ClientProtocol, conn_id: int, ip: str) -> None:
        self._await_drain.discard(conn_id)
        if self.conns.pop(conn_id, None) is None:
            return
        key = (proto.secure, ip)
        left = self.per_ip.get(key, 1) - 1
        if left:
            self.per_ip[key] = left
        else:
            self.per_ip.pop(key, None)
        self._pending.pop(conn_id, None)
        if not self.conns:
            self._idle.set()
        if self.crashed:
            return
        try:
            out = self.core.closed(conn_id, monotonic_ms())
        except Exception as exc:
            self._crash(exc)
            return
        self.perform(out)

    def writable(self, conn_id: int) -> None:
        """The connection's write buffer drained: if the core waits for that, tell it."""
        if conn_id not in self._await_drain or self.crashed:
            return
        self._await_drain.discard(conn_id)
        try:
            out = self.core.drained(conn_id, monotonic_ms(), wall_ms())
        except Exception as exc:
            self._crash(exc)
            return
        self.perform(out)

    def tick(self) -> None:
        if self.crashed:
            return
        try:
            out = self.core.tick(monotonic_ms(), wall_ms())
        except Exception as exc:
            self._crash(exc)
            return
        self.perform(out)

    def durable(self, zxid: int) -> None:
        """Called from the log's fsync thread: everything up to zxid is on disk."""
        self.loop.call_soon_threadsafe(self._durable_on_loop, zxid)

    def _durable_on_loop(self, zxid: int) -> None:
        if zxid > self._durable_seen:
            self._durable_seen = zxid
        if not self._durable_scheduled:
            # Several fsync batches may land in one turn: tell the core once, with the highest.
            self._durable_scheduled = True
            self.loop.call_soon(self._deliver_durable)

    def _deliver_durable(self) -> None:
        self._durable_scheduled = False
        self.deliver_durable(self._durable_seen)

    def deliver_durable(self, zxid: int) -> None:
        """Tell the core the log is durable up to zxid (once per zxid)."""
        if zxid <= self.durable_zxid or self.crashed:
            return
        self.durable_zxid = zxid
        try:
            out = self.core.persisted(zxid, monotonic_ms(), wall_ms())
        except Exception as exc:
            self._crash(exc)
            return
        self.perform(out)
        if self.after_persisted is not None:
            self.after_persisted()

    def _crash(self, exc: Exception) -> None:
        log.critical("the server core failed; stopping", exc_info=exc)
        self.crashed = True
        self.pause_all_reading()
        if self.on_crash is not None:
            self.on_crash(exc)

    # -- performing outputs ----------------------------------------------------------------

    def perform(self, out: Output) -> None:
        """Carry out an Output at once (it is the core's, reused by its next call)."""
        # Txns first: the fsync thread can start while the loop finishes this turn.
        persist = out.persist
        if persist:
            if len(persist) > 1 and self._append_many is not None:
                self._append_many(persist)
            else:
                for hdr, txn in persist:
                    self.sink.append(hdr, txn)
        pending = self._pending
        for conn_id, data in out.sends:
            if conn_id in self.conns:
                buf = pending.get(conn_id)
                if buf is None:
                    pending[conn_id] = bytearray(data)
                else:
                    buf += data
        for conn_id, word in out.four_letter:
            if conn_id in self.conns:
                pending.setdefault(conn_id, bytearray()).extend(self._render(conn_id, word))
                self._to_close.append(conn_id)
        self._to_close.extend(out.closes)
        for conn_id in out.pause_reading:
            self._set_core_paused(conn_id, True)
        for conn_id in out.resume_reading:
            self._set_core_paused(conn_id, False)
        self._await_drain.update(out.await_drain)
        if (pending or self._to_close or out.await_drain) and not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)

    def _render(self, conn_id: int, word: str) -> bytes:
        try:
            return self.four_letter(conn_id, word)
        except Exception:
            # A reporting bug must not take the server down: the asker gets nothing.
            log.exception("rendering the four-letter word %r failed", word)
            return b""

    def _set_core_paused(self, conn_id: int, paused: bool) -> None:
        proto = self.conns.get(conn_id)
        if proto is not None:
            proto.core_paused = paused
            proto.apply_reading()

    def flush(self) -> None:
        """Write each connection's bytes of this turn in one write; then do the closes."""
        self._flush_scheduled = False
        pending, self._pending = self._pending, {}
        for conn_id, data in pending.items():
            proto = self.conns.get(conn_id)
            if proto is not None:
                proto.write(bytes(data))
        for conn_id in list(self._await_drain):
            proto = self.conns.get(conn_id)
            if proto is None:
                self._await_drain.discard(conn_id)
            elif not proto.write_paused:
                # Under the high-water mark already: the client is reading; go on next turn.
                self.loop.call_soon(self.writable, conn_id)
        to_close, self._to_close = self._to_close, []
        for conn_id in to_close:
            proto = self.conns.get(conn_id)
            if proto is not None:
                # transport.close() still sends what is buffered before closing.
                proto.transport_close()

    async def wait_no_connections(self, timeout_s: float) -> bool:
        if not self.conns:
            return True
        self._idle.clear()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True


class _ClientProtocol(asyncio.Protocol):
    """One client socket: feeds bytes to the server, applies write backpressure."""

    def __init__(self, server: ClientServer, secure: bool) -> None:
        self.server = server
        self.secure = secure
        self.transport: asyncio.Transport | None = None
        self.conn_id = 0
        self.ip = ""
        self._write_paused = False
        self._reading_paused = False
        # The core's outstanding-request bound for this connection was reached.
        self.core_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        remote: tuple[str, int] = (str(peer[0]), int(peer[1])) if peer else ("unknown", 0)
        self.ip = remote[0]
        if self.server.stopping:
            transport.abort()
            return
        conn_id = self.server.accept(self, self.ip)
        if conn_id is None:
            transport.abort()
            return
        self.conn_id = conn_id
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH_BYTES, low=WRITE_BUFFER_LOW_BYTES)
        secure_ids: tuple[Id, ...] = ()
        if self.secure and self.server.x509_ids is not None:
            ssl_object = transport.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            secure_ids = self.server.x509_ids(der)
        log.debug("connection %d from %s:%d", conn_id, *remote)
        self.server.opened(conn_id, remote, secure_ids)

    def data_received(self, data: bytes) -> None:
        if self.conn_id:
            self.server.received(self.conn_id, data)

    def eof_received(self) -> bool | None:
        return None  # close our side too: a ZooKeeper client never half-closes

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn_id:
            log.debug("connection %d closed%s", self.conn_id, f": {exc}" if exc else "")
            self.server.lost(self, self.conn_id, self.ip)
        self.transport = None

    def pause_writing(self) -> None:
        self._write_paused = True
        self.apply_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self.apply_reading()
        if self.conn_id:
            self.server.writable(self.conn_id)

    @property
    def write_paused(self) -> bool:
        return self._write_paused

    def apply_reading(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        want_paused = self._write_paused or self.core_paused or self.server.stopping
        if want_paused and not self._reading_paused:
            transport.pause_reading()
            self._reading_paused = True
        elif not want_paused and self._reading_paused:
            transport.resume_reading()
            self._reading_paused = False

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def transport_close(self) -> None:
        if self.transport is not None:
            self.transport.close()
