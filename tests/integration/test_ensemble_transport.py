"""The quorum transport over real loopback sockets, in one process: FastLeaderElection over
ElectionTransport (the larger-sid connection rule), and the quorum port's packet streams
(including the unframed snapshot after SNAP, fed in small pieces)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from corral.net.quorum_transport import ElectionTransport, LearnerListener, connect_learner
from corral.proto.records import QuorumPacket
from corral.quorum import zab_packets as zp
from corral.quorum.election import Decision, FastLeaderElection, Ready
from corral.quorum.election_wire import Notification, ServerState
from corral.quorum.verifier import QuorumServer, QuorumVerifier
from corral.store.snapstream import serialize_snapshot
from corral.tree.datatree import DataTree

WAIT_S = 10.0


def free_ports(n: int) -> list[int]:
    socks = [socket.create_server(("127.0.0.1", 0)) for _ in range(n)]
    ports = [int(s.getsockname()[1]) for s in socks]
    for s in socks:
        s.close()
    return ports


def verifier(size: int) -> QuorumVerifier:
    ports = free_ports(2 * size)
    servers = tuple(
        QuorumServer(sid, "127.0.0.1", ports[2 * (sid - 1)], ports[2 * (sid - 1) + 1])
        for sid in range(1, size + 1)
    )
    return QuorumVerifier(servers)


def test_three_peers_elect_the_largest_over_real_sockets() -> None:
    async def scenario() -> dict[int, Decision]:
        v = verifier(3)
        loop = asyncio.get_running_loop()
        decided: dict[int, asyncio.Future[Decision]] = {s: loop.create_future() for s in (1, 2, 3)}
        elections = {s: FastLeaderElection(s, v) for s in (1, 2, 3)}
        transports: dict[int, ElectionTransport] = {}

        def perform(sid: int, ready: Ready) -> None:
            for to, n in ready.sends:
                transports[sid].send(to, n)
            if ready.decision is not None and not decided[sid].done():
                decided[sid].set_result(ready.decision)

        def handler(sid: int) -> Callable[[int, Notification], None]:
            def on_message(frm: int, n: Notification) -> None:
                now = int(loop.time() * 1000)
                perform(sid, elections[sid].receive(frm, n, now))

            return on_message

        for sid in (1, 2, 3):
            transports[sid] = ElectionTransport(sid, v, handler(sid))
            await transports[sid].start()

        async def ticker() -> None:
            while True:
                await asyncio.sleep(0.02)
                now = int(loop.time() * 1000)
                for sid, e in elections.items():
                    d = e.next_deadline()
                    if d is not None and now >= d:
                        perform(sid, e.tick(now))

        tick = asyncio.ensure_future(ticker())
        try:
            for sid in (1, 2, 3):
                perform(sid, elections[sid].start(int(loop.time() * 1000), 0, 0))
            results = await asyncio.wait_for(asyncio.gather(*decided.values()), WAIT_S)
            # Each pair ends up with exactly the connection the larger sid dialled.
            for sid in (1, 2, 3):
                assert transports[sid].connected() == [s for s in (1, 2, 3) if s != sid]
            return dict(zip((1, 2, 3), results, strict=True))
        finally:
            tick.cancel()
            for t in transports.values():
                await t.close()

    decisions = asyncio.run(scenario())
    assert {d.leader for d in decisions.values()} == {3}
    assert decisions[3].state == ServerState.LEADING
    assert decisions[1].state == decisions[2].state == ServerState.FOLLOWING


def test_packet_stream_reads_a_snapshot_after_snap_in_small_pieces() -> None:
    tree = DataTree()
    snapshot = serialize_snapshot({0x1234: 5000}, tree.nodes)

    async def scenario() -> list[tuple[QuorumPacket, bytes | None]]:
        (port,) = free_ports(1)
        got: list[tuple[QuorumPacket, bytes | None]] = []
        done = asyncio.get_running_loop().create_future()

        def on_packet(conn: int, pkt: QuorumPacket, snap: bytes | None) -> None:
            got.append((pkt, snap))
            if pkt.type == zp.PacketType.UPTODATE and not done.done():
                done.set_result(None)

        listener = LearnerListener("127.0.0.1", port, on_packet, lambda conn: None)
        await listener.start()
        # The "leader" side here is a raw socket writing a byte at a time.
        stream = await connect_learner("127.0.0.1", port, 7, lambda *a: None, lambda c: None)
        assert stream is not None
        try:
            data = (
                zp.encode_packet(zp.packet(zp.PacketType.SNAP, 0x100000005))
                + zp.snapshot_trailer(snapshot)
                + zp.encode_packet(zp.packet(zp.PacketType.NEWLEADER, 0x200000000))
                + zp.encode_packet(zp.packet(zp.PacketType.UPTODATE, zp.NO_ZXID))
            )
            for i in range(0, len(data), 7):
                stream.writer.write(data[i : i + 7])
                await stream.writer.drain()
            await asyncio.wait_for(done, WAIT_S)
            return got
        finally:
            stream.close()
            await listener.close()

    got = asyncio.run(scenario())
    assert [p.type for p, _ in got] == [
        zp.PacketType.SNAP,
        zp.PacketType.NEWLEADER,
        zp.PacketType.UPTODATE,
    ]
    assert got[0][1] == snapshot and got[0][0].zxid == 0x100000005
    assert got[1][1] is None


def test_messages_wait_for_a_peer_that_comes_up_later() -> None:
    from corral.quorum.election_wire import Notification

    def note(n: int) -> Notification:
        return Notification(ServerState.LOOKING, n, 0, 1, 0)

    async def scenario() -> list[tuple[int, int]]:
        v = verifier(2)
        got: list[tuple[int, int]] = []
        arrived = asyncio.Event()

        def on_two(frm: int, n: Notification) -> None:
            got.append((frm, n.leader))
            if len(got) == 2:
                arrived.set()

        one = ElectionTransport(1, v, lambda frm, n: None)
        await one.start()
        one.send(2, note(101))  # server 2 is down: the dial fails, the message waits
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while one._dialing:  # until that dial has failed
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        two = ElectionTransport(2, v, on_two)
        await two.start()
        try:
            # The next message dials again: the smaller id dials, the larger closes and
            # dials back, and both messages arrive in order over server 2's connection.
            one.send(2, note(102))
            await asyncio.wait_for(arrived.wait(), WAIT_S)
            return got
        finally:
            await one.close()
            await two.close()

    got = asyncio.run(scenario())
    assert got[:2] == [(1, 101), (1, 102)]
