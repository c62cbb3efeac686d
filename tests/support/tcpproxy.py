"""Controllable TCP proxies on loopback, for cutting links between real processes.

A `ProxyHub` runs one asyncio event loop in a background thread and owns any number of
`TcpProxy`s. Each proxy listens on its own loopback port and forwards every connection it
accepts to one target port. A test changes a proxy's `Mode` at any time (thread-safe,
returns once the change is in effect):

- `PASS`: connect to the target and forward both ways.
- `REFUSE`: reset every new connection at once (as a closed port or a firewall's reject);
  existing connections are left alone (`cut()` ends them).
- `BLACKHOLE`: accept new connections but connect them nowhere and forward nothing
  (bytes read from them are discarded); existing connections stop forwarding: the proxy
  stops reading, so their bytes wait in the kernel's buffers, as packets do on a
  partitioned network that TCP keeps retransmitting.
- `STALL_TO_TARGET` / `STALL_FROM_TARGET`: a one-way cut. New connections are made; bytes
  in the named direction stall as in `BLACKHOLE` (connection closes included), the other
  direction flows.

Back to `PASS`: stalled connections resume (their waiting bytes are delivered late, in
order, as TCP does when a network heals before a timeout), and the connections accepted
while black-holed are reset (they never reached the target).

A proxy accepts before it connects to its target (the kernel completes the handshake), so
when the target is down the dialler sees its connection reset just after connecting,
rather than refused.

`cut()` resets (RST) every existing connection of a proxy in both directions.

`PeerNetwork` builds the proxies for an ensemble: one per (dialler, target, port) so that a
test can cut any set of links (isolate a server, or a single pair for a partial partition).
Used through `LocalEnsemble(peer_ports=net.route)`: each member's zoo.cfg then lists every
other member at the proxies dedicated to it, and its own line at its real ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

HOST = "127.0.0.1"
# How long a control call waits for the proxy thread (it only flips flags and closes sockets).
CONTROL_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0
_CHUNK = 64 * 1024

log = logging.getLogger(__name__)
T = TypeVar("T")


class Mode(enum.Enum):
    PASS = "pass"
    REFUSE = "refuse"
    BLACKHOLE = "blackhole"
    # One-way: bytes towards the target (or back from it) stall, the other direction flows.
    STALL_TO_TARGET = "stall-to-target"
    STALL_FROM_TARGET = "stall-from-target"


def _flows(mode: Mode) -> tuple[bool, bool]:
    """Whether an established connection forwards (towards the target, back from it)."""
    return (
        mode not in (Mode.BLACKHOLE, Mode.STALL_TO_TARGET),
        mode not in (Mode.BLACKHOLE, Mode.STALL_FROM_TARGET),
    )


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), so the other end sees the connection fail at once."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Link:
    """One accepted connection and (unless black-holed at accept) its upstream connection."""

    def __init__(self, down: asyncio.StreamWriter, up: asyncio.StreamWriter | None) -> None:
        self.down = down
        self.up = up
        # Set while bytes may pass towards the target / back from it.
        self.to_target = asyncio.Event()
        self.from_target = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    def set_flow(self, mode: Mode) -> None:
        for event, flows in zip((self.to_target, self.from_target), _flows(mode), strict=True):
            if flows:
                event.set()
            else:
                event.clear()

    def reset(self) -> None:
        _reset(self.down)
        if self.up is not None:
            _reset(self.up)
        for t in self.tasks:
            t.cancel()


class TcpProxy:
    """Forwards HOST:port to HOST:target_port according to its mode (see the module doc)."""

    def __init__(self, hub: ProxyHub, target_port: int, name: str) -> None:
        self.hub = hub
        self.target_port = target_port
        self.name = name
        self.port = 0
        self._mode = Mode.PASS
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._held: set[_Link] = set()  # accepted while black-holed: no upstream
        self.accepted = 0  # counters, for tests that check the proxy was really used
        self.forwarded_bytes = 0

    @property
    def mode(self) -> Mode:
        return self._mode

    def __repr__(self) -> str:
        return f"TcpProxy({self.name} :{self.port}->:{self.target_port} {self._mode.value})"

    # -- control (any thread) ----------------------------------------------------------------

    def set_mode(self, mode: Mode) -> None:
        self.hub.call(self._set_mode(mode))

    def cut(self) -> None:
        """Reset every connection through this proxy now."""
        self.hub.call(self._cut())

    # -- in the hub's loop ------------------------------------------------------------------

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accepted, HOST, 0, reuse_address=True)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _close(self) -> None:
        await self._cut()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _set_mode(self, mode: Mode) -> None:
        self._mode = mode
        if mode is not Mode.BLACKHOLE:
            held, self._held = self._held, set()
            for link in held:
                link.reset()
        for link in self._links:
            link.set_flow(mode)

    async def _cut(self) -> None:
        links = self._links | self._held
        self._links, self._held = set(), set()
        for link in links:
            link.reset()

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._mode is Mode.REFUSE:
            _reset(writer)
            return
        if self._mode is Mode.BLACKHOLE:
            await self._hold(reader, writer)
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(HOST, self.target_port), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            _reset(writer)  # the target is down: the dialler sees its connect fail
            return
        if self._mode in (Mode.REFUSE, Mode.BLACKHOLE):  # changed while connecting
            _reset(up_writer)
            if self._mode is Mode.BLACKHOLE:
                await self._hold(reader, writer)
            else:
                _reset(writer)
            return
        link = _Link(writer, up_writer)
        link.set_flow(self._mode)
        self._links.add(link)
        link.tasks = [
            asyncio.ensure_future(self._pump(link, link.to_target, reader, up_writer)),
            asyncio.ensure_future(self._pump(link, link.from_target, up_reader, writer)),
        ]
        await asyncio.gather(*link.tasks, return_exceptions=True)
        self._links.discard(link)
        for w in (writer, up_writer):
            w.close()

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(writer, None)
        self._held.add(link)
        try:
            while await reader.read(_CHUNK):
                pass  # discarded: nothing gets through a black hole
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._held.discard(link)
            writer.transport.abort()

    async def _pump(
        self,
        link: _Link,
        flowing: asyncio.Event,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
    ) -> None:
        try:
            while True:
                await flowing.wait()  # stalled: stop reading, bytes wait in the kernel
                chunk = await src.read(_CHUNK)
                if not chunk:
                    break
                await flowing.wait()
                dst.write(chunk)
                self.forwarded_bytes += len(chunk)
                await dst.drain()
            # An orderly close passes on as one (after every byte before it).
            if dst.can_write_eof():
                dst.write_eof()
            await dst.drain()
        except asyncio.CancelledError:
            pass  # cut: the canceller reset the sockets
        except OSError:
            link.reset()  # a reset passes on as one


async def _cancel_all() -> None:
    """End every task but this one (connection handlers), so the loop closes clean."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class ProxyHub:
    """An event loop thread that runs proxies; `close()` resets and stops all of them."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="tcpproxy", daemon=True)
        self._thread.start()
        self.proxies: list[TcpProxy] = []

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CONTROL_TIMEOUT_S)

    def add(self, target_port: int, name: str = "") -> TcpProxy:
        proxy = TcpProxy(self, target_port, name or f"->{target_port}")
        self.call(proxy._start())
        self.proxies.append(proxy)
        return proxy

    def close(self) -> None:
        if not self._loop.is_running():
            return
        for proxy in self.proxies:
            with contextlib.suppress(Exception):
                self.call(proxy._close())
        with contextlib.suppress(Exception):
            self.call(_cancel_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CONTROL_TIMEOUT_S)
        self._loop.close()

    def __enter__(self) -> ProxyHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _HasPorts(Protocol):
    sid: int
    quorum_port: int
    election_port: int


@dataclass(frozen=True)
class _Route:
    quorum: TcpProxy
    election: TcpProxy


class PeerNetwork:
    """Proxies for every (dialler, target) pair of an ensemble's peer links.

    `route(dialler_sid, target)` is LocalEnsemble's `peer_ports` hook: it creates the two
    proxies (quorum and election port) that `dialler` uses to reach `target`, and returns
    their ports. Links are then cut per pair (both directions: each side dials the other
    through its own proxies) or per server.
    """

    def __init__(self, hub: ProxyHub) -> None:
        self.hub = hub
        self.routes: dict[tuple[int, int], _Route] = {}

    def route(self, dialler: int, target: _HasPorts) -> tuple[int, int]:
        key = (dialler, target.sid)
        if key not in self.routes:
            self.routes[key] = _Route(
                self.hub.add(target.quorum_port, f"{dialler}->{target.sid}/quorum"),
                self.hub.add(target.election_port, f"{dialler}->{target.sid}/election"),
            )
        r = self.routes[key]
        return r.quorum.port, r.election.port

    def _set(self, keys: list[tuple[int, int]], mode: Mode) -> None:
        for key in keys:
            r = self.routes.get(key)
            for proxy in () if r is None else (r.quorum, r.election):
                proxy.set_mode(mode)
                if mode is Mode.REFUSE:
                    proxy.cut()

    def cut_pair(self, a: int, b: int, mode: Mode = Mode.REFUSE) -> None:
        """Cut the link between a and b both ways: new connections get `mode`; with REFUSE
        existing ones are reset too, with BLACKHOLE they stall."""
        self._set([(a, b), (b, a)], mode)

    def isolate(self, sid: int, mode: Mode = Mode.REFUSE) -> None:
        """Cut every peer link of `sid` (its clients connect directly: they are not cut)."""
        self._set([k for k in self.routes if sid in k], mode)

    def mute(self, sid: int) -> None:
        """A one-way cut: every byte `sid` sends to a peer stalls; bytes to it still flow."""
        self._set([k for k in self.routes if k[0] == sid], Mode.STALL_TO_TARGET)
        self._set([k for k in self.routes if k[1] == sid], Mode.STALL_FROM_TARGET)

    def heal(self) -> None:
        """Every link back to PASS (stalled connections resume)."""
        for r in self.routes.values():
            r.quorum.set_mode(Mode.PASS)
            r.election.set_mode(Mode.PASS)

    def proxies(self) -> list[TcpProxy]:
        return [p for r in self.routes.values() for p in (r.quorum, r.election)]
