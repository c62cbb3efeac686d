"""An ensemble member's process: QuorumPeer's main loop over asyncio.

`run_peer(config)` recovers the data directory, then loops:

  LOOKING    FastLeaderElection over the election port (quorum_transport.ElectionTransport);
  LEADING    a Zab Leader on the quorum port (learners dial in);
  FOLLOWING  a Zab Learner dialled to the leader's quorum port (OBSERVING likewise);

and goes back to LOOKING whenever the Zab node stops (lost quorum, leader gone, timeouts).
With `readonlymode.enabled`, a member still LOOKING after ZooKeeper's grace period serves
read-only clients from its last tree until the election ends (net/readonly_serving.py).

A term (net/zab_term.py) runs the Zab node and, once established, serves clients. The Peer
keeps what outlives terms: the tree, the store, the epochs, the recent log window (the
leader's DIFF history and a learner's unapplied tail) and the election, which keeps
answering other peers whatever our state.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import ssl
from collections import deque
from collections.abc import Callable

from corral.config import ServerConfig
from corral.net.quorum_transport import (
    ElectionTransport,
)
from corral.net.readonly_serving import ReadOnlyService, read_only_grace_ms
from corral.net.runner import (
    DataDirError,
    FatalError,
    FourLetterFactory,
    FourLetterRenderer,
    _prepare_data_dir,
    _tls_context,
    core_config,
    prepare_process,
    store_config,
)
from corral.net.server import DEFAULT_LISTEN_BACKLOG, monotonic_ms, wall_ms
from corral.net.zab_term import LeaderTerm, LearnerTerm, Term
from corral.quorum.election import Decision, FastLeaderElection
from corral.quorum.election import Ready as ElectionReady
from corral.quorum.election_wire import Notification
from corral.quorum.election_wire import ServerState as PeerState
from corral.quorum.ready import (
    ZabConfig,
)
from corral.quorum.verifier import QuorumServer, QuorumVerifier
from corral.quorum.zab_packets import TxnEntry
from corral.server.connection import FOUR_LETTER_WORDS
from corral.store.database import Database
from corral.store.dynamic_config import (
    read_next_config,
    remove_next_config,
    write_active_config,
    write_next_config,
)
from corral.store.layout import StoreError
from corral.store.txnlog import read_log
from corral.tree.datatree import DataTree
from corral.tree.znode import ZNode

__all__ = ["ensemble_verifier", "run_peer", "serve_peer"]

log = logging.getLogger(__name__)

# Proposals a leader may have outstanding, whatever the core asks (a memory bound).
PROPOSALS_HARD_MAX = 100_000
# How often the election timer is looked at (deadlines are exact; this is the resolution).
TIMER_RESOLUTION_S = 0.05
# How long the not-serving client port waits for a four-letter word.
NOT_SERVING_READ_TIMEOUT_S = 5.0


def ensemble_verifier(config: ServerConfig) -> QuorumVerifier:
    """The membership of the `server.N` lines (the first address of each), with the client
    address a line carries and the dynamic file's version."""
    servers = []
    for spec in config.ensemble.servers:
        addr = spec.addresses[0]
        servers.append(
            QuorumServer(
                spec.sid,
                addr.host,
                addr.quorum_port,
                addr.election_port,
                observer=spec.observer,
                client=spec.client_address,
            )
        )
    return QuorumVerifier(tuple(servers), config.ensemble.config_version)


def zab_config(config: ServerConfig) -> ZabConfig:
    ens = config.ensemble
    return ZabConfig(
        tick_ms=config.tick_time_ms,
        init_limit=ens.init_limit or 10,
        sync_limit=ens.sync_limit or 5,
        # ZooKeeper's zookeeper.commitLogCount: committed txns kept for DIFF.
        commit_log_count=_positive_property(config, "zookeeper.commitLogCount", 500),
        # The hard bound; the core stops taking requests at globalOutstandingLimit, well
        # below it (zab_bridge.LeaderAdapter.soft_max).
        outstanding_max=max(PROPOSALS_HARD_MAX, 2 * config.global_outstanding_limit),
        reconfig_enabled=ens.reconfig_enabled,
        standalone_enabled=ens.standalone_enabled,
    )


def _positive_property(config: ServerConfig, key: str, default: int) -> int:
    try:
        value = int(config.properties.get(key, default))
    except ValueError:
        log.warning("%s: not an integer; using %d", key, default)
        return default
    return max(value, 1)


def run_peer(
    config: ServerConfig,
    four_letter: FourLetterFactory | None = None,
    not_serving: FourLetterRenderer | None = None,
) -> None:
    """Run an ensemble member until SIGTERM/SIGINT (raises as net.runner.run_server).

    `not_serving` answers four-letter words while the member serves no clients (electing,
    syncing): ZooKeeper's "not currently serving requests" for most words, imok for ruok.
    """
    # uvloop and the collector's settings as the standalone runner; each term freezes what
    # it starts serving with (zab_term).
    with asyncio.Runner(loop_factory=prepare_process()) as runner:
        runner.run(serve_peer(config, four_letter, not_serving))


async def serve_peer(
    config: ServerConfig,
    four_letter: FourLetterFactory | None = None,
    not_serving: FourLetterRenderer | None = None,
    *,
    stop: asyncio.Event | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    stop = stop if stop is not None else asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        peer = Peer(config, four_letter, stop, not_serving)
        await peer.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    if peer.fatal:
        raise FatalError(f"stopped after a fatal error: {peer.fatal[0]!r}") from peer.fatal[0]
    log.info("stopped cleanly")


class Peer:
    """One ensemble member's state across terms (see the module docstring)."""

    def __init__(
        self,
        config: ServerConfig,
        four_letter: FourLetterFactory | None,
        stop: asyncio.Event,
        not_serving: FourLetterRenderer | None = None,
    ) -> None:
        ens = config.ensemble
        if ens.server_id is None:
            raise DataDirError(f"no myid file in {config.data_dir}")
        self.config = config
        self.my_sid = ens.server_id
        self.verifier = ensemble_verifier(config)
        me = self.verifier.server(self.my_sid)
        if me is None:
            raise DataDirError(f"myid {self.my_sid} has no server.{self.my_sid} line")
        self.me = me
        # Our learner type (QuorumPeer.learnerType): it outlives our place in the config.
        self.observer = me.observer
        # The last proposed config (QuorumPeer.lastSeenQuorumVerifier), from the
        # `.dynamic.next` file a restart mid-reconfig finds.
        self.last_seen = self.verifier
        if config.ensemble.reconfig_enabled and config.config_file is not None:
            pending = read_next_config(config.config_file)
            if pending is not None and pending.version > self.verifier.version:
                self.last_seen = pending
        self.four_letter = four_letter
        self.stop = stop
        self.fatal: list[BaseException] = []
        self.zab_config = zab_config(config)
        self.core_config = core_config(config)
        self.tls = _tls_context(config) if config.secure_client_port is not None else None
        self.loop = asyncio.get_running_loop()
        self.secret = b""
        self.database: Database | None = None
        self.tree = DataTree()
        self.current_epoch = 0
        self.accepted_epoch = 0
        # Logged txns kept in memory: the leader's DIFF window and a learner's unapplied tail.
        self.recent: deque[TxnEntry] = deque()
        self.recent_base = 0  # the zxid just before recent[0] (a real state point)
        self.durable_zxid = 0
        self._durable_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._store_ops: set[asyncio.Future[None]] = set()
        # The client listeners moving to an address a reconfig gave this server.
        self._listener_move: asyncio.Future[None] | None = None
        # A TRUNC below our snapshot: the next learner asks for a SNAP (Learner.needs_snapshot).
        self.needs_snapshot = False
        self.election: FastLeaderElection | None = None
        self.transport: ElectionTransport | None = None
        self._decision: asyncio.Future[Decision] | None = None
        self.state = PeerState.LOOKING
        self.term: Term | None = None
        self.not_serving = NotServingPort(config, not_serving, self.tls)
        # Read-only mode (readonlymode.enabled): the service while LOOKING, and the task
        # that starts it after ZooKeeper's grace period.
        self.read_only: ReadOnlyService | None = None
        self._read_only_task: asyncio.Task[None] | None = None

    # -- the main loop ------------------------------------------------------------------------

    async def run(self) -> None:
        self._recover()
        election = self.election = FastLeaderElection(
            self.my_sid,
            self.verifier,
            observer=self.observer,
            reconfig_enabled=self.config.ensemble.reconfig_enabled,
        )
        transport = self.transport = ElectionTransport(
            self.my_sid, self.verifier, self._on_notification
        )
        await transport.start()
        timer = asyncio.ensure_future(self._election_timer())
        try:
            while not self.stop.is_set() and not self.fatal:
                await self.not_serving.open()
                self._read_only_later()
                try:
                    decision = await self._elect(election)
                finally:
                    await self._end_read_only()
                if decision is None:
                    break
                self.state = decision.state
                if decision.state == PeerState.LEADING:
                    term: Term = LeaderTerm(self)
                else:
                    term = LearnerTerm(self, decision.leader)
                self.term = term
                try:
                    await term.run()
                finally:
                    self.term = None
                    await term.close()
                self.state = PeerState.LOOKING
        finally:
            timer.cancel()
            with contextlib.suppress(BaseException):
                await timer
            if self._listener_move is not None:
                self._listener_move.cancel()
                with contextlib.suppress(BaseException):
                    await self._listener_move
            await self.not_serving.close()
            await transport.close()
            assert self.database is not None
            await self.loop.run_in_executor(None, self.database.close)

    def _recover(self) -> None:
        config = self.config
        self.secret = _prepare_data_dir(config)
        try:
            db = Database(store_config(config))
            self.tree = db.recover(
                new_tree=DataTree, empty_for_load=DataTree.empty_for_load, make_node=ZNode
            )
        except (StoreError, OSError) as exc:
            raise DataDirError(f"cannot recover the data in {config.data_dir}: {exc}") from exc
        self.database = db
        self.init_config_node()
        self.durable_zxid = db.durable_zxid
        self._load_recent(db)
        try:
            epochs = db.read_epochs()
        except StoreError as exc:
            raise DataDirError(str(exc)) from exc
        current, accepted = epochs.current, epochs.accepted
        self.current_epoch, self.accepted_epoch = current, accepted
        loop = self.loop

        def on_durable(zxid: int) -> None:  # the writer thread
            loop.call_soon_threadsafe(self._durable, zxid)

        def on_fatal(exc: BaseException) -> None:  # the writer thread
            loop.call_soon_threadsafe(self.fail, exc)

        db.start(on_durable=on_durable, on_fatal=on_fatal)
        log.info(
            "server %d recovered to %#x (epochs: current %d, accepted %d)",
            self.my_sid,
            self.tree.last_zxid,
            current,
            accepted,
        )

    def _load_recent(self, db: Database) -> None:
        keep = self.zab_config.commit_log_count
        recent: deque[TxnEntry] = deque()
        base = self.tree.last_zxid
        first = True
        from corral.proto import jute  # local: only needed here

        for entry in read_log(db.log_dir, 0):
            if entry.txn is None:
                continue
            item = TxnEntry(entry.hdr, jute.encode(entry.txn), entry.digest)
            if first:
                # The log's first txn stands for "the state before what we keep": its
                # predecessor is unknown, so it is the base rather than a history entry.
                base, first = item.zxid, False
                continue
            recent.append(item)
            if len(recent) > keep:
                base = recent.popleft().zxid
        if not recent or base > self.tree.last_zxid:
            base = min(base, self.tree.last_zxid)
            recent = deque(e for e in recent if e.zxid > base)
        self.recent, self.recent_base = recent, base

    @property
    def snapshot_zxid(self) -> int:
        assert self.database is not None
        return self.database.stats.last_snapshot_zxid

    @property
    def last_logged(self) -> int:
        assert self.database is not None
        return self.database.last_logged_zxid

    def trim_recent(self) -> None:
        keep = self.zab_config.commit_log_count
        tree_zxid = self.tree.last_zxid
        while len(self.recent) > keep and self.recent[0].zxid <= tree_zxid:
            self.recent_base = self.recent.popleft().zxid

    # -- election --------------------------------------------------------------------------

    async def _elect(self, election: FastLeaderElection) -> Decision | None:
        self._decision = self.loop.create_future()
        log.info("server %d: LOOKING (last zxid %#x)", self.my_sid, self.last_logged)
        self._perform_election(election.start(monotonic_ms(), self.last_logged, self.current_epoch))
        stopper = asyncio.ensure_future(self.stop.wait())
        waits: set[asyncio.Future[object]] = {self._decision, stopper}  # type: ignore[arg-type]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if not self._decision.done():
            return None
        return self._decision.result()

    def _on_notification(self, sid: int, n: Notification) -> None:
        if self.election is not None:
            self._perform_election(self.election.receive(sid, n, monotonic_ms()))

    def _perform_election(self, ready: ElectionReady) -> None:
        assert self.transport is not None
        if ready.adopt is not None:
            # Before the sends: they go to the adopted config's voters.
            self.activate_config(ready.adopt, init_node=True)
        for sid, n in ready.sends:
            self.transport.send(sid, n)
        if ready.decision is not None:
            fut = self._decision
            if fut is not None and not fut.done():
                fut.set_result(ready.decision)

    async def _election_timer(self) -> None:
        while True:
            await asyncio.sleep(TIMER_RESOLUTION_S)
            election = self.election
            if election is None:
                continue
            deadline = election.next_deadline()
            now = monotonic_ms()
            if deadline is not None and now >= deadline:
                self._perform_election(election.tick(now))

    # -- read-only mode ----------------------------------------------------------------------

    def _read_only_later(self) -> None:
        """With readonlymode.enabled, serve read-only clients if still LOOKING after the
        grace period (ZooKeeper's roZkMgr thread)."""
        if not self.config.ensemble.read_only_mode_enabled:
            return
        self._read_only_task = asyncio.ensure_future(self._serve_read_only())

    async def _serve_read_only(self) -> None:
        await asyncio.sleep(read_only_grace_ms(self.config.tick_time_ms) / 1000)
        if self.state != PeerState.LOOKING or self.stop.is_set():
            return
        self.read_only = ReadOnlyService(self)
        await self.read_only.start()

    async def _end_read_only(self) -> None:
        """The election ended (or the server stops): stop read-only service before the tree
        is synced, and give the client port back to the not-serving answers."""
        task, self._read_only_task = self._read_only_task, None
        if task is not None:
            if self.read_only is None:
                task.cancel()  # still in the grace period
            # A start under way runs to its end (so no listener is left behind), then stops.
            with contextlib.suppress(asyncio.CancelledError):
                await task
        service, self.read_only = self.read_only, None
        if service is not None:
            await service.stop()
            if not self.stop.is_set():
                await self.not_serving.open()

    # -- configs (dynamic reconfig) ---------------------------------------------------------

    def init_config_node(self) -> None:
        """ZKDatabase.initConfigInZKDatabase: /zookeeper/config holds the active config."""
        v = self.verifier
        self.tree.init_config(v.config_string().encode(), v.version, wall_ms())

    def see_config(self, verifier: QuorumVerifier) -> None:
        """QuorumPeer.setLastSeenQuorumVerifier: a proposed config; dial its new members.
        Like ZooKeeper's, it replaces an older or newer one: NEWLEADER's config replaces a
        `.next` whose reconfig a TRUNC removed (corral.sim --reconfig, seed 1587)."""
        if not self.config.ensemble.reconfig_enabled or verifier.version == self.last_seen.version:
            return
        self.last_seen = verifier
        if self.transport is not None:
            self.transport.add_servers(verifier)
        if self.config.config_file is not None:
            try:
                write_next_config(self.config.config_file, verifier)
            except OSError as exc:
                log.error("cannot write the next dynamic config file: %s", exc)

    def activate_config(self, verifier: QuorumVerifier, init_node: bool = False) -> None:
        """QuorumPeer.processReconfig's local part: the config is active; write its dynamic
        file and zoo.cfg, switch the election and transport, keep our learner type (an
        observer outside the config becomes a non-voting participant)."""
        if verifier.version <= self.verifier.version:
            return  # known or older (also learned through election gossip)
        log.info(
            "server %d: config version %#x active: %s",
            self.my_sid,
            verifier.version,
            verifier.config_string().replace("\n", " "),
        )
        self.verifier = verifier
        if verifier.version >= self.last_seen.version:
            self.last_seen = verifier
        me = verifier.server(self.my_sid)
        if me is not None:
            self.me = me
            self._follow_client_address(me)
        self.observer = me is not None and me.observer
        if self.election is not None:
            self.election.set_verifier(verifier, self.observer)
        if self.transport is not None:
            self.transport.set_verifier(verifier)
        config_file = self.config.config_file
        if config_file is not None:
            try:
                write_active_config(config_file, verifier, self.my_sid)
                if verifier.version == self.last_seen.version:
                    remove_next_config(config_file)
            except OSError as exc:
                log.error("cannot write the dynamic config file: %s", exc)
        if init_node:
            self.init_config_node()

    def _follow_client_address(self, me: QuorumServer) -> None:
        """QuorumPeer.processReconfig: when the active config gives this server another
        client address, the plain client listener moves there (open connections stay) and
        later terms listen there too."""
        if me.client is None:
            return
        host, port = me.client
        address = None if host == "0.0.0.0" else host
        if (address, port) == (self.config.client_port_address, self.config.client_port):
            return
        log.info("server %d: client port moves to %s:%d", self.my_sid, host, port)
        self.config = dataclasses.replace(
            self.config, client_port=port, client_port_address=address
        )
        # One move at a time, in config order: each waits for the one before it.
        self._listener_move = asyncio.ensure_future(
            self._move_client_listeners(self._listener_move)
        )

    async def _move_client_listeners(self, before: asyncio.Future[None] | None) -> None:
        if before is not None:
            with contextlib.suppress(Exception):
                await before
        config = self.config
        assert config.client_port is not None
        await self.not_serving.move(config)
        serving = [self.term.clients if self.term is not None else None]
        serving.append(self.read_only.clients if self.read_only is not None else None)
        for clients in serving:
            if clients is None:
                continue
            try:
                await clients.move_plain_listener(
                    config.client_port_address,
                    config.client_port,
                    backlog=config.client_port_listen_backlog,
                )
            except OSError as exc:
                log.error("cannot listen on the new client port %d: %s", config.client_port, exc)

    # -- durability --------------------------------------------------------------------------

    def _durable(self, zxid: int) -> None:
        self.durable_zxid = max(self.durable_zxid, zxid)
        still = []
        for want, fut in self._durable_waiters:
            if want <= self.durable_zxid:
                if not fut.done():
                    fut.set_result(None)
            else:
                still.append((want, fut))
        self._durable_waiters = still

    async def wait_durable(self, zxid: int) -> None:
        if zxid <= self.durable_zxid:
            return
        fut: asyncio.Future[None] = self.loop.create_future()
        self._durable_waiters.append((zxid, fut))
        await fut

    def fail(self, exc: BaseException) -> None:
        """A fatal error: stop the server."""
        log.critical("fatal: %s", exc)
        self.fatal.append(exc)
        self.stop.set()
        for fut in [f for _, f in self._durable_waiters] + list(self._store_ops):
            if not fut.done():
                fut.set_exception(FatalError(str(exc)))

    def store_op(self) -> tuple[asyncio.Future[None], Callable[[], None]]:
        """A future for a store operation queued behind the appends, and the `on_done` the
        store's writer thread calls when it is durable."""
        fut: asyncio.Future[None] = self.loop.create_future()
        self._store_ops.add(fut)
        fut.add_done_callback(self._store_ops.discard)
        loop = self.loop

        def resolve() -> None:
            if not fut.done():
                fut.set_result(None)

        def on_done() -> None:  # the writer thread
            loop.call_soon_threadsafe(resolve)

        return fut, on_done

    def append(self, entry: TxnEntry) -> None:
        assert self.database is not None
        self.database.append(entry.hdr, entry.txn)
        self.recent.append(entry)


class NotServingPort:
    """The client port(s) while the member serves no clients: ZooKeeper still answers
    four-letter words then (srvr: "This ZooKeeper instance is not currently serving
    requests"; ruok: imok) and closes any other connection at once. Closed while a term
    serves clients (the term's own listener takes the port), reopened when it ends."""

    def __init__(
        self,
        config: ServerConfig,
        render: FourLetterRenderer | None,
        tls: ssl.SSLContext | None,
    ) -> None:
        self.config = config
        self.render = render
        self.tls = tls
        self.servers: list[asyncio.Server] = []

    async def open(self) -> None:
        if self.render is None or self.servers:
            return
        config = self.config
        ports: list[tuple[str | None, int, ssl.SSLContext | None]] = []
        if config.client_port is not None:
            ports.append((config.client_port_address, config.client_port, None))
        if config.secure_client_port is not None and self.tls is not None:
            ports.append((config.secure_client_port_address, config.secure_client_port, self.tls))
        for host, port, ctx in ports:
            try:
                server = await asyncio.start_server(
                    self._answer,
                    host or None,
                    port,
                    ssl=ctx,
                    backlog=max(config.client_port_listen_backlog, 0) or DEFAULT_LISTEN_BACKLOG,
                    reuse_address=True,
                )
            except OSError as exc:
                log.warning("cannot listen on client port %d while not serving: %s", port, exc)
                continue
            self.servers.append(server)

    async def move(self, config: ServerConfig) -> None:
        """Listen on the client addresses of `config` from now on (reopened if open)."""
        self.config = config
        if self.servers:
            await self.close()
            await self.open()

    async def close(self) -> None:
        servers, self.servers = self.servers, []
        for server in servers:
            server.close()
        for server in servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readexactly(4), NOT_SERVING_READ_TIMEOUT_S)
            word = head.decode("latin-1")
            if word in FOUR_LETTER_WORDS and self.render is not None:
                writer.write(self.render(0, word))
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
