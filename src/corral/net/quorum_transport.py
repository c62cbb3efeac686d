"""The quorum's TCP connections: the election port (QuorumCnxManager) and the quorum port
(learner connections carrying QuorumPackets).

Election port, as ZooKeeper 3.8's QuorumCnxManager:
- every server listens on its election address; a connection starts with the dialler's
  initiation message (election_wire), then carries length-prefixed notification frames
  both ways;
- between two servers only the connection dialled by the larger sid is kept: a smaller
  dialler writes its initiation message and drops the connection, the larger receiver of
  a smaller dialler's attempt closes it and dials back;
- messages for a server without a connection wait (the newest few per peer) and a dial is
  started; FastLeaderElection's periodic resends drive reconnection;
- a server outside our config may connect (a joiner, before a reconfig adds it): it is
  kept like any other and, when we must dial it back, dialled at the election address its
  initiation message gave; `set_verifier`/`add_servers` follow config changes.

Quorum port: the leader accepts learner connections (`LearnerListener`, one connection id
each); a learner dials the leader (`connect_learner`, retried). Both sides carry
QuorumPackets back to back (zab_packets framing). After a SNAP packet the stream carries the
leader's snapshot and the "BenWasHere" signature, unframed: the store's incremental
SnapshotStreamReader finds where it ends, and the packet is delivered with the snapshot
bytes (`on_packet(conn, pkt, snapshot)`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from corral.proto.jute import ProtocolError
from corral.proto.records import QuorumPacket
from corral.quorum import election_wire as ew
from corral.quorum import zab_packets as zp
from corral.quorum.election_wire import IncomingAction, Notification
from corral.quorum.verifier import QuorumVerifier
from corral.store.snapstream import SnapshotStreamReader

__all__ = [
    "BatchHandler",
    "ElectionTransport",
    "LearnerListener",
    "PacketHandler",
    "PacketStream",
    "connect_learner",
]

log = logging.getLogger(__name__)

# QuorumCnxManager's cnxTimeout (connect and initiation read), in seconds.
CONNECT_TIMEOUT_S = 5.0
# Messages kept per peer while it has no connection (ZooKeeper keeps SEND_CAPACITY = 1;
# a few more costs nothing and loses fewer votes across a reconnect).
PENDING_PER_PEER_MAX = 4
_READ_CHUNK = 64 * 1024


# on_packet(conn, packet, snapshot bytes after a SNAP or None)
PacketHandler = Callable[[int, QuorumPacket, bytes | None], None]
# on_packets(conn, packets): every packet one read brought (none of them a SNAP), in order;
# given, it replaces on_packet for those (one call per read instead of one per packet).
BatchHandler = Callable[[int, list[QuorumPacket]], None]


class ElectionTransport:
    """Connections on the election port; `on_message(sid, notification)` gets every valid
    notification from a peer (malformed ones are skipped, as ZooKeeper does)."""

    def __init__(
        self,
        my_sid: int,
        verifier: QuorumVerifier,
        on_message: Callable[[int, Notification], None],
        *,
        listen_host: str | None = None,
    ) -> None:
        me = verifier.server(my_sid)
        if me is None:
            raise ValueError(f"server {my_sid} is not in the configuration")
        self.my_sid = my_sid
        self.verifier = verifier
        self.on_message = on_message
        self.listen_host = listen_host if listen_host is not None else me.host
        self._me = me
        # Election addresses of servers outside the config, from their initiation messages
        # or from a proposed config (QuorumCnxManager dials those too).
        self._extra: dict[int, tuple[str, int]] = {}
        self._writers: dict[int, asyncio.StreamWriter] = {}
        self._pending: dict[int, deque[bytes]] = {}
        self._dialing: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._closed = False

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accepted, self.listen_host, self._me.election_port, reuse_address=True
        )
        log.info("election port listening on %s:%d", self.listen_host, self._me.election_port)

    async def close(self) -> None:
        self._closed = True
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers.values()):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    def send(self, sid: int, n: Notification) -> None:
        """Send a notification to `sid`, connecting first if needed."""
        if self._closed or sid == self.my_sid:
            return
        frame = ew.encode_frame(ew.encode_notification(n))
        writer = self._writers.get(sid)
        if writer is not None and not writer.is_closing():
            writer.write(frame)
            return
        pending = self._pending.setdefault(sid, deque(maxlen=PENDING_PER_PEER_MAX))
        pending.append(frame)
        self._dial(sid)

    def connected(self) -> list[int]:
        return sorted(sid for sid, w in self._writers.items() if not w.is_closing())

    def set_verifier(self, verifier: QuorumVerifier) -> None:
        """The active config changed: its members are dialled at its addresses."""
        self.verifier = verifier

    def add_servers(self, verifier: QuorumVerifier) -> None:
        """QuorumPeer.connectNewPeers: remember (and reach) a proposed config's members."""
        for server in verifier.servers:
            if server.sid != self.my_sid and self.verifier.server(server.sid) is None:
                self._extra[server.sid] = (server.host, server.election_port)
                self._dial(server.sid)

    def _address(self, sid: int) -> tuple[str, int] | None:
        server = self.verifier.server(sid)
        if server is not None:
            return server.host, server.election_port
        return self._extra.get(sid)

    # -- dialling ---------------------------------------------------------------------------

    def _dial(self, sid: int) -> None:
        if sid in self._dialing or self._closed:
            return
        if self._address(sid) is None:
            return
        self._dialing.add(sid)
        self._spawn(self._dial_task(sid))

    async def _dial_task(self, sid: int) -> None:
        address = self._address(sid)
        if address is None:
            self._dialing.discard(sid)
            return
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(*address), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError) as exc:
            log.debug("cannot reach server %d's election port: %s", sid, exc)
            return
        finally:
            self._dialing.discard(sid)
        writer.write(
            ew.encode_initial_message(
                ew.InitialMessage(self.my_sid, ((self._me.host, self._me.election_port),))
            )
        )
        if not ew.keep_outgoing_connection(self.my_sid, sid):
            # The larger server dials back; our messages wait for that connection.
            with contextlib.suppress(Exception):
                await writer.drain()
            writer.close()
            return
        await self._run_connection(sid, reader, writer)

    # -- accepting --------------------------------------------------------------------------

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            buf = bytearray()
            msg = None
            while msg is None:
                chunk = await asyncio.wait_for(reader.read(_READ_CHUNK), CONNECT_TIMEOUT_S)
                if not chunk:
                    writer.close()
                    return
                buf += chunk
                got = ew.decode_initial_message(bytes(buf))
                if got is not None:
                    msg, end = got
                    del buf[:end]
        except (ProtocolError, OSError, TimeoutError) as exc:
            log.info("election connection refused: %s", exc)
            writer.close()
            return
        except asyncio.CancelledError:
            # Closing: end quietly (asyncio's server callback would log a cancelled task).
            writer.close()
            return
        finally:
            if task is not None:
                self._tasks.discard(task)
        action = ew.incoming_connection_action(self.my_sid, msg.sid)
        if self.verifier.server(msg.sid) is None and msg.addresses:
            # Not in our config (yet): answer it at the address it told us.
            self._extra[msg.sid] = msg.addresses[0]
        if action is IncomingAction.KEEP and self._address(msg.sid) is not None:
            await self._run_connection(msg.sid, reader, writer, bytes(buf))
            return
        writer.close()
        if action is IncomingAction.CLOSE_AND_DIAL_BACK:
            self._dial(msg.sid)
        elif action is IncomingAction.REJECT_OWN_ID:
            log.warning("a peer connected with our own id %d; closed", self.my_sid)

    # -- one live connection ------------------------------------------------------------------

    async def _run_connection(
        self,
        sid: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        buffered: bytes = b"",
    ) -> None:
        old = self._writers.get(sid)
        if old is not None and old is not writer:
            old.close()  # the newer connection wins (QuorumCnxManager replaces the worker)
        self._writers[sid] = writer
        for frame in self._pending.pop(sid, ()):
            writer.write(frame)
        log.info("election connection with server %d up", sid)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        buf = bytearray(buffered)
        try:
            while True:
                self._read_frames(sid, buf)
                chunk = await reader.read(_READ_CHUNK)
                if not chunk:
                    break
                buf += chunk
        except (ProtocolError, OSError) as exc:
            log.info("election connection with server %d failed: %s", sid, exc)
        except asyncio.CancelledError:
            pass  # closing
        finally:
            if task is not None:
                self._tasks.discard(task)
            if self._writers.get(sid) is writer:
                del self._writers[sid]
            writer.close()
            log.info("election connection with server %d down", sid)

    def _read_frames(self, sid: int, buf: bytearray) -> None:
        pos = 0
        while True:
            got = ew.decode_frame(bytes(buf), pos)  # FrameError closes the connection
            if got is None:
                break
            payload, pos = got
            try:
                n = ew.decode_notification(payload)
            except ew.NotificationError as exc:
                log.warning("skipping a bad notification from server %d: %s", sid, exc)
                continue
            self.on_message(sid, n)
        del buf[:pos]

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class PacketStream:
    """One quorum-port connection: QuorumPackets in (`on_packet`), out (`send`)."""

    def __init__(
        self,
        conn: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_packet: PacketHandler,
        on_closed: Callable[[int], None],
        on_packets: BatchHandler | None = None,
    ) -> None:
        self.conn = conn
        self.reader = reader
        self.writer = writer
        self.on_packet = on_packet
        self.on_packets = on_packets
        self.on_closed = on_closed
        self.task: asyncio.Task[None] | None = None
        # Encoded packets waiting for this loop turn's write (see send_bytes).
        self._out: list[bytes] = []

    def start(self) -> None:
        self.task = asyncio.ensure_future(self._read_loop())

    def send(self, pkt: QuorumPacket, snapshot: bytes | None = None) -> None:
        self.send_bytes(zp.encode_packet(pkt), snapshot)

    def send_bytes(self, raw: bytes, snapshot: bytes | None = None) -> None:
        """Queue one encoded packet (and a SNAP's trailer). Everything queued in one loop
        turn goes out in one transport write: a write per packet (a send syscall each, with
        PROPOSALs, COMMITs and ACKs of ~100 bytes) was the leader's largest single cost."""
        if self.writer.is_closing():
            return
        out = self._out
        if not out:
            asyncio.get_running_loop().call_soon(self.flush)
        out.append(raw)
        if snapshot is not None:
            out.append(zp.snapshot_trailer(snapshot))

    def flush(self) -> None:
        """Write what is queued (called once per loop turn, and before closing)."""
        out = self._out
        if not out:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        if not self.writer.is_closing():
            self.writer.write(data)

    def close(self) -> None:
        self.flush()
        self.writer.close()
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()

    def _deliver(self, batch: list[QuorumPacket]) -> None:
        if self.on_packets is not None:
            self.on_packets(self.conn, batch)
            return
        for pkt in batch:
            self.on_packet(self.conn, pkt, None)

    async def _read_loop(self) -> None:
        buf = bytearray()
        # A SNAP packet waiting for the end of its snapshot: (packet, reader, raw bytes).
        snap: tuple[QuorumPacket, SnapshotStreamReader, bytearray] | None = None
        try:
            while True:
                if snap is not None:
                    pkt, snap_reader, raw = snap
                    if buf:
                        raw += buf
                        snap_reader.feed(bytes(buf))
                        buf.clear()
                    if snap_reader.done:
                        stream = bytes(raw[: snap_reader.result().length])
                        buf += snap_reader.unused()
                        snap = None
                        self.on_packet(self.conn, pkt, stream)
                        continue
                else:
                    pos = 0
                    # One copy per read, not per packet (a copy of the whole buffer for
                    # every packet in it was quadratic in the packets per read).
                    data = bytes(buf)
                    batch: list[QuorumPacket] = []
                    while snap is None:
                        got = zp.decode_packet(data, pos)
                        if got is None:
                            break
                        pkt, pos = got
                        if pkt.type == zp.PacketType.SNAP:
                            snap = (pkt, SnapshotStreamReader(signature=True), bytearray())
                        else:
                            batch.append(pkt)
                    del buf[:pos]
                    if batch:
                        self._deliver(batch)
                    if snap is not None:
                        continue
                chunk = await self.reader.read(_READ_CHUNK)
                if not chunk:
                    break
                buf += chunk
        except (ProtocolError, OSError) as exc:
            log.warning("quorum connection %d: %s", self.conn, exc)
        except asyncio.CancelledError:
            pass
        finally:
            self.writer.close()
            self.on_closed(self.conn)


class LearnerListener:
    """The leader's quorum port: each accepted learner connection becomes a PacketStream."""

    def __init__(
        self,
        host: str,
        port: int,
        on_packet: PacketHandler,
        on_closed: Callable[[int], None],
        on_packets: BatchHandler | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.on_packet = on_packet
        self.on_packets = on_packets
        self.on_closed = on_closed
        self.streams: dict[int, PacketStream] = {}
        self._next_conn = 1
        self._last_packet: QuorumPacket | None = None
        self._last_raw = b""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accepted, self.host, self.port, reuse_address=True
        )
        log.info("quorum port listening on %s:%d", self.host, self.port)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = self._next_conn
        self._next_conn += 1
        stream = PacketStream(
            conn, reader, writer, self.on_packet, self._closed, on_packets=self.on_packets
        )
        self.streams[conn] = stream
        stream.start()

    def _closed(self, conn: int) -> None:
        if self.streams.pop(conn, None) is not None:
            self.on_closed(conn)

    def send(self, conn: int, pkt: QuorumPacket, snapshot: bytes | None = None) -> None:
        stream = self.streams.get(conn)
        if stream is None:
            return
        # A PROPOSAL or COMMIT goes to every learner as the same (immutable) packet object:
        # encode it once.
        if pkt is not self._last_packet:
            self._last_packet = pkt
            self._last_raw = zp.encode_packet(pkt)
        stream.send_bytes(self._last_raw, snapshot)

    def drop(self, conn: int) -> None:
        stream = self.streams.pop(conn, None)
        if stream is not None:
            stream.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for stream in list(self.streams.values()):
            stream.close()
        self.streams.clear()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()


async def connect_learner(
    host: str,
    port: int,
    conn: int,
    on_packet: PacketHandler,
    on_closed: Callable[[int], None],
    *,
    attempts: int = 5,
    delay_s: float = 1.0,
    on_packets: BatchHandler | None = None,
) -> PacketStream | None:
    """Dial the leader's quorum port, `attempts` times `delay_s` apart (Learner.connectToLeader
    tries 5 times a second apart; the caller picks from its tick and initLimit)."""
    for attempt in range(attempts):
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError) as exc:
            log.info("cannot connect to the leader at %s:%d (try %d): %s", host, port, attempt, exc)
            await asyncio.sleep(delay_s)
            continue
        stream = PacketStream(conn, reader, writer, on_packet, on_closed, on_packets=on_packets)
        stream.start()
        return stream
    return None
