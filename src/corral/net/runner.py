"""The standalone server process: recovery, listeners, timers, and a clean shutdown.

`run_server(config)` owns one event loop (uvloop when importable) and, in order:

1. checks the data directory and loads (or creates) the session secret;
2. recovers the tree from the store (newest snapshot + log replay) and starts the store's
   group-commit writer, whose durable-zxid callback is marshalled onto the loop;
3. builds the standalone core from the recovered tree;
4. opens the plain listener (clientPortAddress:clientPort) and the TLS one
   (secureClientPort) and starts the tick timer (at the core's next deadline, at least
   every tickTime/2);
5. on SIGTERM or SIGINT: stops accepting and reading, waits until every txn handed to the
   log is fsynced and its reply written, closes the connections, stops the store's threads
   and closes its files.

Four-letter words are rendered above this layer (admin/): the caller passes a factory that
receives the running `ServerState` and returns the renderer.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from corral.config import ConfigError, ServerConfig
from corral.net.secret import SecretError, load_or_create_secret
from corral.net.server import WRITE_BUFFER_HIGH_BYTES, ClientServer, monotonic_ms, wall_ms
from corral.proto.records import Id
from corral.server import acl
from corral.server.core import CoreConfig, StandaloneCore
from corral.server.jaas import JaasError, server_credentials
from corral.server.sasl_digest import DigestConfig
from corral.store.database import Database, StoreConfig
from corral.store.layout import StoreError
from corral.tree.datatree import DataTree
from corral.tree.znode import ZNode

__all__ = [
    "DataDirError",
    "FatalError",
    "FourLetterFactory",
    "ServerState",
    "auth_providers",
    "core_config",
    "run_server",
    "serve",
    "store_config",
]

log = logging.getLogger(__name__)

# The ticker's shortest sleep: a deadline in the past never turns it into a busy loop.
_MIN_WAKE_MS = 10
# How long shutdown waits for the log to become durable and for clients to take their bytes.
SHUTDOWN_DURABLE_TIMEOUT_S = 30.0
SHUTDOWN_CLOSE_TIMEOUT_S = 5.0
# ZooKeeper's auth provider classes and the schemes they provide.
_PROVIDER_SCHEMES = {
    "IPAuthenticationProvider": "ip",
    "DigestAuthenticationProvider": "digest",
    "SASLAuthenticationProvider": "sasl",
    "X509AuthenticationProvider": "x509",
}


class DataDirError(Exception):
    """The data directory (or the files the server keeps in it) cannot be used."""


class FatalError(Exception):
    """The server had to stop: the txn log failed or the core broke an invariant."""


@dataclass(slots=True)
class ServerState:
    """The running server's parts, for four-letter words and the admin API."""

    config: ServerConfig
    core: StandaloneCore
    database: Database
    clients: ClientServer
    started_wall_ms: int


FourLetterRenderer = Callable[[int, str], bytes]
FourLetterFactory = Callable[[ServerState], FourLetterRenderer]


# The collector's thresholds in a server process (see prepare_process).
GC_THRESHOLDS = (50_000, 50, 100)


def prepare_process() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """Process-wide settings of a server (standalone or ensemble member); returns the event
    loop factory: uvloop when importable (its transports, futures and callbacks are cheaper
    than asyncio's own loop), else None (asyncio's).

    The hot paths allocate many short-lived, acyclic objects (records, replies, packets):
    with the default gen0 threshold (700) the collector ran hundreds of times a second and
    its full passes stalled the loop for tens of ms (p99 of writes). What a server starts
    serving with is frozen once recovered (`freeze_startup_objects`), so full passes stay
    short."""
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        import uvloop
    except ImportError:  # optional: asyncio's own loop works, only slower
        log.debug("uvloop not installed; using asyncio's event loop")
        return None
    return uvloop.new_event_loop


def freeze_startup_objects() -> None:
    """Move what a server starts serving with (the recovered tree, modules) out of the
    collector's way; garbage first, so nothing dead is kept forever."""
    gc.collect()
    gc.freeze()


def run_server(config: ServerConfig, four_letter: FourLetterFactory | None = None) -> None:
    """Run until SIGTERM/SIGINT. Raises DataDirError, ConfigError, FatalError or OSError."""
    with asyncio.Runner(loop_factory=prepare_process()) as runner:
        runner.run(serve(config, four_letter))


async def serve(
    config: ServerConfig,
    four_letter: FourLetterFactory | None = None,
    *,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until `stop` is set (default: until SIGTERM or SIGINT)."""
    loop = asyncio.get_running_loop()
    stop = stop if stop is not None else asyncio.Event()
    fatal: list[BaseException] = []
    # Early, so a signal during recovery is remembered rather than killing the process.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, sig, stop)
    try:
        await _run(config, four_letter, stop, fatal)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    if fatal:
        raise FatalError(f"stopped after a fatal error: {fatal[0]!r}") from fatal[0]
    log.info("stopped cleanly")


async def _run(
    config: ServerConfig,
    four_letter: FourLetterFactory | None,
    stop: asyncio.Event,
    fatal: list[BaseException],
) -> None:
    loop = asyncio.get_running_loop()
    # Settings errors first (TLS stores, JAAS file), before touching the data directory.
    tls_context = _tls_context(config) if config.secure_client_port is not None else None
    core_cfg = core_config(config)
    secret = _prepare_data_dir(config)
    try:
        database = Database(store_config(config))
        tree = database.recover(
            new_tree=DataTree, empty_for_load=DataTree.empty_for_load, make_node=ZNode
        )
    except (StoreError, OSError) as exc:
        raise DataDirError(f"cannot recover the data in {config.data_dir}: {exc}") from exc
    core = StandaloneCore(core_cfg, tree, monotonic_ms(), wall_ms(), secret)
    freeze_startup_objects()
    renderer: FourLetterRenderer | None = None

    def on_fatal(exc: BaseException) -> None:
        fatal.append(exc)
        stop.set()

    def render(conn_id: int, word: str) -> bytes:
        if renderer is None:
            return b""
        return renderer(conn_id, word)

    clients = ClientServer(
        core,
        database,
        render,
        max_client_cnxns=config.max_client_cnxns,
        max_cnxns=config.max_cnxns,
        x509_ids=_x509_ids(config),
        after_persisted=lambda: database.maybe_snapshot(tree),
        on_crash=on_fatal,
        durable_zxid=tree.last_zxid,
    )
    if four_letter is not None:
        renderer = four_letter(ServerState(config, core, database, clients, wall_ms()))

    def on_fatal_threadsafe(exc: BaseException) -> None:
        loop.call_soon_threadsafe(on_fatal, exc)

    database.start(on_durable=clients.durable, on_fatal=on_fatal_threadsafe)
    ticker: _Ticker | None = None
    try:
        await _listen(config, clients, tls_context)
        ticker = _Ticker(loop, clients, core, config.tick_time_ms)
        log.info(
            "serving (standalone) with data in %s, last zxid %#x; four-letter words: %s",
            config.data_dir,
            tree.last_zxid,
            ",".join(sorted(config.four_letter_words)),
        )
        await stop.wait()
    finally:
        if ticker is not None:
            ticker.cancel()
        await _shutdown(clients, database)


def _on_signal(sig: signal.Signals, stop: asyncio.Event) -> None:
    log.info("received %s: shutting down", sig.name)
    stop.set()


async def _listen(
    config: ServerConfig, clients: ClientServer, tls_context: ssl.SSLContext | None
) -> None:
    backlog = config.client_port_listen_backlog
    if config.client_port is not None:
        await clients.listen(config.client_port_address, config.client_port, backlog=backlog)
    if config.secure_client_port is not None:
        assert tls_context is not None
        await clients.listen(
            config.secure_client_port_address,
            config.secure_client_port,
            ssl_context=tls_context,
            backlog=backlog,
        )


class _Ticker:
    """Calls `clients.tick()` when the core next has work, and at least every tickTime/2.

    The core's deadline (session buckets, container checks, handshake timeouts) sets the
    wake-up; tickTime/2 bounds how late a deadline that appeared since (a new connection, a
    new session) is noticed. Never more often than every `_MIN_WAKE_MS`.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        clients: ClientServer,
        core: StandaloneCore,
        tick_ms: int,
    ) -> None:
        self.loop = loop
        self.clients = clients
        self.core = core
        self.interval_ms = max(tick_ms // 2, _MIN_WAKE_MS)
        self.handle = self._schedule()

    def _schedule(self) -> asyncio.TimerHandle:
        until_due = self.core.next_deadline_ms() - monotonic_ms()
        delay_ms = min(self.interval_ms, max(until_due, _MIN_WAKE_MS))
        return self.loop.call_later(delay_ms / 1000, self.fire)

    def fire(self) -> None:
        if monotonic_ms() >= self.core.next_deadline_ms():
            self.clients.tick()
        self.handle = self._schedule()

    def cancel(self) -> None:
        self.handle.cancel()


async def _shutdown(clients: ClientServer, database: Database) -> None:
    """Stop taking work, make everything logged durable and answered, then close."""
    loop = asyncio.get_running_loop()
    clients.stop_accepting()
    clients.pause_all_reading()
    target = database.last_logged_zxid
    if target > database.durable_zxid:
        durable = await loop.run_in_executor(
            None, database.wait_durable, target, SHUTDOWN_DURABLE_TIMEOUT_S
        )
        if not durable:
            log.error("txns up to %#x were not durable within the shutdown timeout", target)
    # Apply and answer what became durable (the thread's callback may still be queued).
    clients.deliver_durable(database.durable_zxid)
    clients.close_all()
    if not await clients.wait_no_connections(SHUTDOWN_CLOSE_TIMEOUT_S):
        log.warning("some client connections did not close in time")
    with contextlib.suppress(Exception):
        await clients.wait_closed()
    await loop.run_in_executor(None, database.close)


def _prepare_data_dir(config: ServerConfig) -> bytes:
    for directory in {config.data_dir, config.data_log_dir}:
        if not directory.exists():
            if not config.datadir_autocreate:
                raise DataDirError(
                    f"{directory} does not exist and zookeeper.datadir.autocreate is false"
                )
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DataDirError(f"cannot create {directory}: {exc.strerror}") from None
        elif not directory.is_dir():
            raise DataDirError(f"{directory} is not a directory")
    try:
        return load_or_create_secret(config.session_secret_file)
    except (SecretError, OSError) as exc:
        raise DataDirError(str(exc)) from None


# -- settings for the layers below ----------------------------------------------------------


def store_config(config: ServerConfig) -> StoreConfig:
    """The store's settings from the server configuration."""
    return StoreConfig(
        data_dir=config.data_dir,
        data_log_dir=config.data_log_dir,
        force_sync=config.force_sync,
        prealloc_bytes=config.pre_alloc_size_kb * 1024,
        snap_count=config.snap_count,
        snap_size_limit_bytes=config.snap_size_limit_kb * 1024,
        snap_retain_count=config.autopurge_snap_retain_count,
        purge_interval_ms=config.autopurge_purge_interval_ms,
        max_batch_txns=config.max_batch_size,
        fsync_warning_ms=config.fsync_warning_threshold_ms,
        trust_empty_snapshot=config.snapshot_trust_empty,
        snapshot_compression=_snapshot_compression(config),
    )


def _snapshot_compression(config: ServerConfig) -> str:
    if config.snapshot_compression != "snappy":
        return config.snapshot_compression
    # No snappy compressor here (the standard library has none; Corral only reads snappy).
    log.warning(
        "zookeeper.snapshot.compression.method=snappy: snapshots are written uncompressed"
        " (snappy snapshots are read); use gz for compressed snapshots"
    )
    return ""


def core_config(config: ServerConfig) -> CoreConfig:
    """The core's settings from the server configuration (reads the JAAS file if named)."""
    providers = auth_providers(config)
    for scheme in config.enforce_auth_schemes:
        # As ZooKeeper's AuthenticationHelper refuses to start.
        if scheme not in providers.schemes:
            raise ConfigError(
                "zookeeper.enforce.auth.schemes",
                f"authentication scheme {scheme} is not available",
            )
    return CoreConfig(
        tick_ms=config.tick_time_ms,
        min_session_timeout_ms=config.min_session_timeout_ms,
        max_session_timeout_ms=config.max_session_timeout_ms,
        # A standalone ZooKeeper puts 1 in the top byte of session ids whatever its myid.
        server_id=_session_server_id(config),
        zookeeper_passwords=config.session_password_scheme == "zookeeper",
        skip_acl=config.skip_acl,
        extended_types_enabled=config.extended_types_enabled,
        reconfig_enabled=config.ensemble.reconfig_enabled,
        enforce_quota=config.enforce_quota,
        providers=providers,
        super_digest=config.super_digest,
        sasl=_sasl_config(config),
        sasl_super_users=(config.sasl_super_user,) if config.sasl_super_user else (),
        enforce_auth_schemes=frozenset(config.enforce_auth_schemes),
        allow_sasl_failed_clients=config.allow_sasl_failed_clients,
        max_buffer_bytes=config.jute_maxbuffer_bytes,
        outstanding_max=config.global_outstanding_limit,
        container_check_interval_ms=config.container_check_interval_ms,
        container_max_per_minute=config.container_max_per_minute,
        container_max_never_used_ms=config.container_max_never_used_ms,
        # Replies handed to a connection before we wait for its socket to drain: the
        # transport's high-water mark, so a client that does not read costs us about 2x that.
        send_buffer_max_bytes=WRITE_BUFFER_HIGH_BYTES,
        sessionless_timeout_ms=config.sessionless_cnxn_timeout_ms,
        local_sessions_enabled=config.ensemble.local_sessions_enabled,
        local_sessions_upgrading_enabled=config.ensemble.local_sessions_upgrading_enabled,
    )


def _session_server_id(config: ServerConfig) -> int:
    ensemble = config.ensemble
    if ensemble.distributed and ensemble.server_id is not None:
        return ensemble.server_id
    return 1


def auth_providers(config: ServerConfig) -> acl.AuthProviders:
    """ZooKeeper's ProviderRegistry: ip always, digest unless disabled, authProvider.N."""
    schemes = {"ip"}
    if config.digest_auth_enabled:
        schemes.add("digest")
    for name, class_name in config.auth_providers:
        scheme = _PROVIDER_SCHEMES.get(class_name.rsplit(".", 1)[-1])
        if scheme is None:
            log.warning("authProvider.%s: %s is not supported; ignored", name, class_name)
        else:
            schemes.add(scheme)
    if config.secure_client_port is not None and config.ssl.auth_provider == "x509":
        schemes.add("x509")  # as QuorumPeerConfig.configureSSLAuth registers it
    return acl.AuthProviders(
        schemes=frozenset(schemes),
        x509_super_user=config.x509_super_user,
        sasl_any_user=config.let_any_sasl_user,
    )


def _sasl_config(config: ServerConfig) -> DigestConfig | None:
    path = config.jaas_config_file
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
        users = server_credentials(text, config.sasl_server_section, config.properties)
    except OSError as exc:
        raise ConfigError(
            "java.security.auth.login.config", f"cannot read {path}: {exc.strerror}"
        ) from None
    except JaasError as exc:
        raise ConfigError("java.security.auth.login.config", f"{path}: {exc}") from None
    if users is None:
        # As ZooKeeper: a well-formed file without the section leaves client SASL off.
        log.warning(
            "%s has no JAAS section %r: SASL authentication of clients is off",
            path,
            config.sasl_server_section,
        )
        return None
    return DigestConfig(
        credentials=users,
        super_password=config.sasl_super_password,
        remove_host_from_principal=config.kerberos_remove_host_from_principal,
        remove_realm_from_principal=config.kerberos_remove_realm_from_principal,
    )


def _tls_context(config: ServerConfig) -> ssl.SSLContext:
    # Imported only when a secure port is configured: it needs the cryptography package.
    from corral.net.tls import TlsConfigError, TlsSettings, server_context

    try:
        return server_context(TlsSettings.from_properties(config.properties))
    except TlsConfigError as exc:
        raise ConfigError("secureClientPort", f"TLS: {exc}") from None


def _x509_ids(config: ServerConfig) -> Callable[[bytes | None], tuple[Id, ...]] | None:
    if config.secure_client_port is None:
        return None
    from corral.net.tls import x509_auth_ids

    super_user = config.x509_super_user

    def ids(cert_der: bytes | None) -> tuple[Id, ...]:
        try:
            return tuple(Id(scheme, ident) for scheme, ident in x509_auth_ids(cert_der, super_user))
        except ValueError as exc:
            log.warning("client certificate not usable as an x509 id: %s", exc)
            return ()

    return ids
