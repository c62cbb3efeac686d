"""Read-only client service of an ensemble member while it is LOOKING (readonlymode.enabled).

ZooKeeper's QuorumPeer, on entering LOOKING with `readonlymode.enabled`, starts a thread that
waits max(2 s, tickTime) and then, if the peer is still LOOKING, starts a
ReadOnlyZooKeeperServer over the peer's database; when the election ends (whatever its
outcome) the read-only server is shut down and its clients are disconnected, before the
peer syncs with a leader. `ReadOnlyService` is that server's IO: a `ClientServer` over a
`ReadOnlyCore` (server/readonly_core.py) and the member's tree, on the member's client
port(s) (the not-serving port steps aside meanwhile). `Peer` starts it later and stops it
(peer_runner.py); the tree goes back to the next term untouched.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from corral.net.runner import FourLetterRenderer, ServerState, _listen, _Ticker, _x509_ids
from corral.net.server import ClientServer, monotonic_ms, wall_ms
from corral.proto.records import TxnHeader
from corral.server.readonly_core import ReadOnlyCore

if TYPE_CHECKING:
    from corral.net.peer_runner import Peer

__all__ = ["ReadOnlyService", "read_only_grace_ms"]

log = logging.getLogger(__name__)

# ZooKeeper waits at least this long in LOOKING before it decides it is partitioned.
READ_ONLY_GRACE_MIN_MS = 2000
# How long closing clients get when read-only service ends.
CLOSE_TIMEOUT_S = 5.0


def read_only_grace_ms(tick_ms: int) -> int:
    """How long a LOOKING member waits before serving read-only clients."""
    return max(READ_ONLY_GRACE_MIN_MS, tick_ms)


class _NoLog:
    """A read-only core never persists (TxnSink for ClientServer)."""

    def append(self, hdr: TxnHeader, txn: bytes) -> None:
        raise AssertionError("a read-only core asked to log a txn")


class ReadOnlyService:
    """One stretch of read-only service (ZooKeeper's roZk): `start`, later `stop`."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.core: ReadOnlyCore | None = None
        self.clients: ClientServer | None = None
        self.ticker: _Ticker | None = None

    async def start(self) -> None:
        peer = self.peer
        config = peer.config
        database = peer.database
        assert database is not None
        await peer.not_serving.close()  # the client port is ours now
        core = ReadOnlyCore(peer.core_config, peer.tree, monotonic_ms(), wall_ms(), peer.secret)
        render: FourLetterRenderer = _no_words
        clients = ClientServer(
            core,
            _NoLog(),
            lambda conn_id, word: render(conn_id, word),
            max_client_cnxns=config.max_client_cnxns,
            max_cnxns=config.max_cnxns,
            x509_ids=_x509_ids(config),
            # A core exception is a broken invariant: the server stops (DESIGN.md).
            on_crash=peer.fail,
        )
        if peer.four_letter is not None:
            render = peer.four_letter(ServerState(config, core, database, clients, wall_ms()))
        self.core, self.clients = core, clients
        try:
            await _listen(config, clients, peer.tls)
        except OSError as exc:
            log.warning("server %d: cannot serve read-only clients: %s", peer.my_sid, exc)
            await self.stop()
            await peer.not_serving.open()
            return
        self.ticker = _Ticker(peer.loop, clients, core, config.tick_time_ms)
        log.info(
            "server %d: read-only mode: serving read-only clients at %#x",
            peer.my_sid,
            peer.tree.last_zxid,
        )

    async def stop(self) -> None:
        """Disconnect every client and stop listening; the tree must be as it was."""
        core, clients = self.core, self.clients
        self.core = self.clients = None
        if self.ticker is not None:
            self.ticker.cancel()
            self.ticker = None
        if core is None or clients is None:
            return
        clients.stop_accepting()
        if not clients.crashed:
            # Closes every connection and drops its watches from the member's tree.
            clients.perform(core.shutdown())
        clients.close_all()
        await clients.wait_no_connections(CLOSE_TIMEOUT_S)
        with contextlib.suppress(Exception):
            await clients.wait_closed()
        if not core.tree_unchanged():
            self.peer.fail(AssertionError("the read-only core changed the tree"))
            return
        log.info("server %d: read-only mode ended", self.peer.my_sid)


def _no_words(_conn: int, _word: str) -> bytes:
    return b""
