"""The server's configuration: a standard ZooKeeper zoo.cfg plus Java system properties.

`load_config(path, sysprops)` reads a zoo.cfg (Java `.properties` syntax, see `javaprops`),
the `myid` in its dataDir and a `dynamicConfigFile` if named, and returns a frozen, validated
`ServerConfig`. `embedded_config(sysprops)` is the configuration of `corral server` without a
file. Bad values raise `ConfigError` naming the key. No environment reads here: the CLI turns
`-Dkey=value` arguments and SERVER_JVMFLAGS/JVMFLAGS into the `sysprops` dict.

How keys are resolved, as ZooKeeper's QuorumPeerConfig.parseProperties does:

- A zoo.cfg key that QuorumPeerConfig itself knows (dataDir, clientPort, tickTime, server.N, ...)
  is a config key.
- Any other zoo.cfg key becomes the system property `zookeeper.<key>`, overriding a `-D` of the
  same name (ZooKeeper calls System.setProperty while parsing, after the JVM started). So
  `extendedTypesEnabled=true`, `skipACL=yes`, `4lw.commands.whitelist=*`, `ssl.keyStore.location`,
  `authProvider.1=...` and `admin.serverPort=9090` in zoo.cfg all work, as they do in ZooKeeper.
- A key that is neither a config key nor a system property ZooKeeper knows is logged as a
  warning (it is still kept as `zookeeper.<key>`, which nothing reads).
- Properties ZooKeeper reads without the `zookeeper.` prefix (`jute.maxbuffer`,
  `readonlymode.enabled`, `znode.container.*`) are honoured from zoo.cfg as well (ZooKeeper
  silently ignores them there, a long-standing trap); the zoo.cfg value wins over `-D`.
- Keys starting with `corral.` are Corral's own and are kept under their own name.

Corral's own settings (system properties or zoo.cfg keys):

- `corral.sessionSecretFile`: the file holding the secret session passwords are derived from
  (HMAC-SHA256 of the session id). Default `<dataDir>/corral-session-secret`; the server creates
  it with 32 random bytes and mode 0600 on first start. Keep it with the data: a new secret
  invalidates the passwords of live sessions, so their clients cannot reconnect.
- `corral.sessionPasswordScheme`: `hmac` (default) or `zookeeper` (ZooKeeper's predictable
  java.util.Random scheme, only for mixing with ZooKeeper servers).

Defaults differing from ZooKeeper's, on purpose:

- The embedded default (no zoo.cfg) listens on 127.0.0.1:2181 only, keeps data in
  `./corral-data`, uses tickTime 2000 and whitelists the four-letter words
  ruok, srvr, stat, conf, envi, isro, mntr: a loopback-only development server is easier to
  inspect with them, and none of them changes state. With a zoo.cfg the whitelist default is
  ZooKeeper's: srvr only (plus isro when read-only mode is enabled); srvr is always allowed
  because zkServer.sh status needs it.
- Booleans that ZooKeeper compares loosely are strict here: `skipACL` must be yes or no
  (ZooKeeper treats `skipACL=true` as no, so accepting it either way would be a surprise),
  `forceSync` yes or no, the others true or false. Anything else is a ConfigError.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Final, TypeVar

from corral import limits
from corral.javaprops import PropertiesSyntaxError, parse_properties

__all__ = [
    "ALL_FOUR_LETTER_WORDS",
    "EMBEDDED_FOUR_LETTER_WORDS",
    "AdminConfig",
    "ConfigError",
    "EnsembleConfig",
    "QuorumAddress",
    "ServerConfig",
    "ServerSpec",
    "SslConfig",
    "embedded_config",
    "load_config",
    "parse_config",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

ALL_FOUR_LETTER_WORDS: Final = frozenset(
    {
        "conf", "cons", "crst", "dirs", "dump", "envi", "gtmk", "hash", "isro",
        "mntr", "ruok", "srst", "srvr", "stat", "stmk", "wchc", "wchp", "wchs",
    }
)  # fmt: skip
ZOOKEEPER_FOUR_LETTER_WORDS: Final = frozenset({"srvr"})
EMBEDDED_FOUR_LETTER_WORDS: Final = frozenset(
    {"ruok", "srvr", "stat", "conf", "envi", "isro", "mntr"}
)

EMBEDDED_DATA_DIR: Final = "./corral-data"
EMBEDDED_ADDRESS: Final = "127.0.0.1"
EMBEDDED_PORT: Final = 2181
EMBEDDED_TICK_MS: Final = 2000
SESSION_SECRET_NAME: Final = "corral-session-secret"

# ZooKeeper's defaults (ZooKeeperServer, FilePadding, PurgeTxnLog, QuorumPeerConfig).
_DEFAULT_TICK_MS: Final = 3000
_MIN_SNAP_RETAIN: Final = 3
_JAVA_INT_MAX: Final = 2**31 - 1
_JAVA_LONG_MAX: Final = 2**63 - 1
_HOUR_MS: Final = 3_600_000
_TIME_UNITS_MS: Final = {"s": 1000, "m": 60_000, "h": _HOUR_MS, "d": 24 * _HOUR_MS}

# Keys QuorumPeerConfig.parseProperties consumes itself (everything else becomes a system
# property). Prefix families are matched in _is_config_key.
_CONFIG_KEYS: Final = frozenset(
    {
        "dataDir", "dataLogDir", "clientPort", "clientPortAddress", "secureClientPort",
        "secureClientPortAddress", "observerMasterPort", "clientPortListenBacklog", "tickTime",
        "maxClientCnxns", "minSessionTimeout", "maxSessionTimeout", "initLimit", "syncLimit",
        "connectToLearnerMasterLimit", "electionAlg", "quorumListenOnAllIPs", "peerType",
        "syncEnabled", "dynamicConfigFile", "autopurge.snapRetainCount",
        "autopurge.purgeInterval", "standaloneEnabled", "reconfigEnabled", "sslQuorum",
        "portUnification", "sslQuorumReloadCertFiles", "localSessionsEnabled",
        "localSessionsUpgradingEnabled", "quorum.auth.enableSasl",
        "quorum.auth.serverRequireSasl", "quorum.auth.learnerRequireSasl",
        "quorum.auth.learner.saslLoginContext", "quorum.auth.server.saslLoginContext",
        "quorum.auth.kerberos.servicePrincipal", "quorum.cnxn.threads.size",
        "jvm.pause.info-threshold.ms", "jvm.pause.warn-threshold.ms", "jvm.pause.sleep.time.ms",
        "jvm.pause.monitor", "metricsProvider.className", "multiAddress.enabled",
        "multiAddress.reachabilityCheckTimeoutMs", "multiAddress.reachabilityCheckEnabled",
        "oraclePath",
    }
)  # fmt: skip
_CONFIG_PREFIXES: Final = ("server.", "group.", "weight.", "metricsProvider.")

# System properties (after "zookeeper.") ZooKeeper's server reads. A zoo.cfg key naming one of
# these is legitimate even where Corral ignores it; only keys outside this set get a warning.
_KNOWN_SYSPROPS: Final = frozenset(
    {
        "4lw.commands.whitelist", "DigestAuthenticationProvider.digestAlg",
        "DigestAuthenticationProvider.enabled", "DigestAuthenticationProvider.superDigest",
        "IPAuthenticationProvider.usexforwardedfor", "SASLAuthenticationProvider.superPassword",
        "X509AuthenticationProvider.superUser", "allowSaslFailedClients", "audit.enable",
        "audit.impl.class", "bitHashCacheSize", "client.certReload", "client.portUnification",
        "clientTcpKeepAlive", "closeSessionTxn.enabled", "cnxTimeout", "commitLogCount",
        "commitProcessor.maxCommitBatchSize", "commitProcessor.maxReadBatchSize",
        "commitProcessor.numWorkerThreads", "commitProcessor.shutdownTimeout",
        "connection_throttle_decrease_ratio", "connection_throttle_drop_decrease",
        "connection_throttle_drop_increase", "connection_throttle_fill_count",
        "connection_throttle_fill_time", "connection_throttle_freeze_time",
        "connection_throttle_global_session_weight", "connection_throttle_local_session_weight",
        "connection_throttle_renew_session_weight", "connection_throttle_tokens",
        "connection_throttle_weight_enabled", "datadir.autocreate", "db.autocreate",
        "digest.enabled", "electionPortBindRetry", "emulate353TTLNodes", "enableEagerACLCheck",
        "letAnySaslUserDoX",
        "enforce.auth.enabled", "enforce.auth.schemes", "enforceQuota", "ensembleAuthName",
        "extendedTypesEnabled", "fastleader.maxNotificationInterval",
        "fastleader.minNotificationInterval", "flushDelay", "forceSnapshotSync", "forceSync",
        "fsync.warningthresholdms", "globalOutstandingLimit", "jute.maxbuffer",
        "jute.maxbuffer.extrasize", "largeRequestMaxBytes", "largeRequestThreshold",
        "leader.ackLoggingFrequency", "leader.closeSocketAsync", "leader.maxConcurrentDiffSyncs",
        "leader.maxConcurrentSnapSyncs", "leader.maxTimeToWaitForEpoch", "leaderServes",
        "learner.asyncSending", "learner.closeSocketAsync", "maxBatchSize", "maxCnxns",
        "maxGetChildrenResponseCacheSize", "maxInProcessingDeadWatchers",
        "maxResponseCacheSize", "maxWriteQueuePollTime", "messageTracker.BufferSize",
        "messageTracker.Enabled", "nio.directBufferBytes", "nio.numSelectorThreads",
        "nio.numWorkerThreads", "nio.sessionlessCnxnTimeout", "nio.shutdownTimeout",
        "netty.advancedFlowControl.enabled", "netty.server.earlyDropSecureConnectionHandshakes",
        "netty.server.outstandingHandshake.limit", "observer.election.DelayMs",
        "observer.reconnectDelayMs", "observer.syncEnabled", "observerMaster.sizeLimit",
        "preAllocSize", "quorumCnxnTimeoutMs", "readonlymode.enabled",
        "request_stale_connection_check", "request_stale_latency_check",
        "request_throttle_drop_stale", "request_throttle_max_requests",
        "request_throttle_stall_time", "request_throttler.shutdownTimeout",
        "requireKerberosConfig", "sasl.serverconfig", "security.auth_to_local",
        "serializeLastProcessedZxid.enabled", "server.realm", "serverCnxnFactory",
        "sessionRequireClientSASLAuth", "skipACL", "snapCount", "snapSizeLimitInKb",
        "snapshot.compression.method", "snapshot.trust.empty", "snapshotSizeFactor",
        "superUser", "tcpKeepAlive", "throttled_op_wait_time", "txnLogSizeLimitInKb",
        "watchManagerName", "watcherCleanIntervalInSeconds", "watcherCleanThreadsNum",
        "watcherCleanThreshold", "znode.container.checkIntervalMs",
        "znode.container.maxNeverUsedIntervalMs", "znode.container.maxPerMinute",
    }
)  # fmt: skip
_KNOWN_SYSPROP_PREFIXES: Final = (
    "ssl.", "admin.", "authProvider.", "kerberos.", "pathStats.", "sasl.", "fips-mode",
)  # fmt: skip
# Read by ZooKeeper without the "zookeeper." prefix; honoured from zoo.cfg too (see above).
_UNPREFIXED_SYSPROPS: Final = frozenset(
    {
        "jute.maxbuffer", "readonlymode.enabled", "znode.container.checkIntervalMs",
        "znode.container.maxPerMinute", "znode.container.maxNeverUsedIntervalMs",
    }
)  # fmt: skip
_CORRAL_KEYS: Final = frozenset({"corral.sessionSecretFile", "corral.sessionPasswordScheme"})

_INT_RE: Final = re.compile(r"[+-]?[0-9]+")


class ConfigError(Exception):
    """A configuration problem; `key` names the offending key when there is one."""

    def __init__(self, key: str | None, message: str) -> None:
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


@dataclass(frozen=True, slots=True)
class QuorumAddress:
    """One `host:quorumPort:electionPort` of a server line (several with multiAddress)."""

    host: str
    quorum_port: int
    election_port: int


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """A `server.N=...` line: addresses, role and the optional client addresses after `;`."""

    sid: int
    addresses: tuple[QuorumAddress, ...]
    observer: bool = False
    client_address: tuple[str, int] | None = None
    secure_client_address: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class SslConfig:
    """The `ssl.*` keys (system properties `zookeeper.ssl.*`) for the client TLS listener."""

    key_store_location: str | None = None
    key_store_password: str | None = field(default=None, repr=False)
    key_store_password_path: str | None = None
    key_store_type: str | None = None
    trust_store_location: str | None = None
    trust_store_password: str | None = field(default=None, repr=False)
    trust_store_password_path: str | None = None
    trust_store_type: str | None = None
    protocol: str | None = None
    enabled_protocols: tuple[str, ...] = ()
    ciphersuites: tuple[str, ...] = ()
    client_auth: str = "need"
    hostname_verification: bool = True
    client_hostname_verification: bool | None = None
    crl: bool = False
    ocsp: bool = False
    auth_provider: str = "x509"
    handshake_detection_timeout_ms: int = 5000


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """The `admin.*` keys of ZooKeeper's AdminServer (the HTTP admin API)."""

    enable_server: bool = True
    server_address: str = "0.0.0.0"
    server_port: int = 8080
    idle_timeout_ms: int = 30_000
    command_url: str = "/commands"
    http_version: int = 11
    port_unification: bool = False
    force_https: bool = False
    need_client_auth: bool = False
    snapshot_enabled: bool = True
    restore_enabled: bool = True
    rate_limiter_interval_ms: int = 300_000


@dataclass(frozen=True, slots=True)
class EnsembleConfig:
    """Ensemble keys, parsed and kept for the quorum work; standalone ignores most of them."""

    servers: tuple[ServerSpec, ...] = ()
    server_id: int | None = None
    init_limit: int | None = None
    sync_limit: int | None = None
    connect_to_learner_master_limit: int | None = None
    election_alg: int = 3
    standalone_enabled: bool = True
    reconfig_enabled: bool = False
    dynamic_config_file: Path | None = None
    # The config's version: the hex suffix of the dynamic file's name (`zoo.cfg.dynamic.1a`),
    # 0 without one (QuorumPeerConfig.getVersionFromFilename).
    config_version: int = 0
    peer_type: str = "participant"
    local_sessions_enabled: bool = False
    local_sessions_upgrading_enabled: bool = False
    read_only_mode_enabled: bool = False
    quorum_listen_on_all_ips: bool = False
    sync_enabled: bool = True
    observer_master_port: int | None = None
    multi_address_enabled: bool = False
    groups: tuple[tuple[str, str], ...] = ()
    weights: tuple[tuple[str, str], ...] = ()

    @property
    def voting_members(self) -> tuple[ServerSpec, ...]:
        return tuple(s for s in self.servers if not s.observer)

    @property
    def distributed(self) -> bool:
        """ZooKeeper's isDistributed: a quorum is configured and standalone is not forced."""
        voters = len(self.voting_members)
        return voters > 1 or (voters >= 1 and not self.standalone_enabled)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything the server process needs, validated; times in ms, sizes in their unit."""

    data_dir: Path
    data_log_dir: Path
    config_file: Path | None = None
    embedded: bool = False
    tick_time_ms: int = _DEFAULT_TICK_MS
    # None address = all interfaces (IPv4 and IPv6), as ZooKeeper's wildcard bind.
    client_port: int | None = None
    client_port_address: str | None = None
    secure_client_port: int | None = None
    secure_client_port_address: str | None = None
    client_port_listen_backlog: int = -1
    max_client_cnxns: int = 60
    max_cnxns: int = 0
    # zookeeper.nio.sessionlessCnxnTimeout: how long a connection may take to send its
    # ConnectRequest before it is closed.
    sessionless_cnxn_timeout_ms: int = 10_000
    min_session_timeout_ms: int = 2 * _DEFAULT_TICK_MS
    max_session_timeout_ms: int = 20 * _DEFAULT_TICK_MS
    snap_count: int = 100_000
    snap_size_limit_kb: int = 4_194_304
    # 0 turns preallocation off, as in ZooKeeper's FilePadding.
    pre_alloc_size_kb: int = 65_536
    force_sync: bool = True
    fsync_warning_threshold_ms: int = 1000
    max_batch_size: int = 1000
    snapshot_trust_empty: bool = False
    # zookeeper.snapshot.compression.method: "", "gz" or "snappy" (what snapshots are written as).
    snapshot_compression: str = ""
    datadir_autocreate: bool = True
    autopurge_snap_retain_count: int = _MIN_SNAP_RETAIN
    autopurge_purge_interval_ms: int = 0
    jute_maxbuffer_bytes: int = limits.jute_maxbuffer_bytes
    # zookeeper.jute.maxbuffer.extrasize; None: jute.maxbuffer (ZooKeeper's default).
    jute_maxbuffer_extrasize_bytes: int | None = None
    extended_types_enabled: bool = False
    emulate353_ttl_nodes: bool = False
    skip_acl: bool = False
    digest_auth_enabled: bool = True
    super_digest: str | None = field(default=None, repr=False)
    x509_super_user: str | None = None
    global_outstanding_limit: int = 1000
    enforce_quota: bool = False
    # ContainerManager (znode.container.*): check interval, deletions per minute, and how
    # long a never-used container may live (0 = forever).
    container_check_interval_ms: int = 60_000
    container_max_per_minute: int = 10_000
    container_max_never_used_ms: int = 0
    # SASL: zookeeper.superUser, zookeeper.SASLAuthenticationProvider.superPassword,
    # zookeeper.letAnySaslUserDoX, zookeeper.kerberos.removeHost/RealmFromPrincipal.
    sasl_super_user: str | None = None
    sasl_super_password: str | None = field(default=None, repr=False)
    let_any_sasl_user: str | None = None
    # zookeeper.enforce.auth.* / sessionRequireClientSASLAuth: the schemes every connection
    # must have an id of (empty: not enforced); zookeeper.allowSaslFailedClients.
    enforce_auth_schemes: tuple[str, ...] = ()
    allow_sasl_failed_clients: bool = False
    kerberos_remove_host_from_principal: bool = False
    kerberos_remove_realm_from_principal: bool = False
    auth_providers: tuple[tuple[str, str], ...] = ()
    four_letter_words: frozenset[str] = ZOOKEEPER_FOUR_LETTER_WORDS
    ssl: SslConfig = field(default_factory=SslConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    jaas_config_file: Path | None = None
    sasl_server_section: str = "Server"
    session_secret_file: Path = Path(EMBEDDED_DATA_DIR) / SESSION_SECRET_NAME
    session_password_scheme: str = "hmac"
    # The effective Java system properties (after zoo.cfg's zookeeper.<key> additions):
    # for envi/conf output and for settings later modules read.
    properties: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, repr=False
    )

    def four_letter_allowed(self, word: str) -> bool:
        return word in self.four_letter_words


def load_config(path: str | Path, sysprops: Mapping[str, str] | None = None) -> ServerConfig:
    """Read a zoo.cfg file (plus myid and dynamicConfigFile) into a ServerConfig."""
    cfg_path = Path(path)
    try:
        raw = cfg_path.read_bytes()
    except OSError as exc:
        raise ConfigError(None, f"cannot read config file {cfg_path}: {exc.strerror}") from None
    try:
        props = parse_properties(_decode(raw))
    except PropertiesSyntaxError as exc:
        raise ConfigError(None, f"{cfg_path}: {exc}") from None
    return parse_config(props, sysprops or {}, config_file=cfg_path)


def embedded_config(sysprops: Mapping[str, str] | None = None) -> ServerConfig:
    """The no-config-file default: standalone on 127.0.0.1:2181, data in ./corral-data."""
    props = {
        "tickTime": str(EMBEDDED_TICK_MS),
        "dataDir": EMBEDDED_DATA_DIR,
        "clientPort": str(EMBEDDED_PORT),
        "clientPortAddress": EMBEDDED_ADDRESS,
    }
    return parse_config(props, sysprops or {}, embedded=True)


def parse_config(
    cfg: Mapping[str, str],
    sysprops: Mapping[str, str],
    *,
    config_file: Path | None = None,
    embedded: bool = False,
) -> ServerConfig:
    """Turn zoo.cfg properties and system properties into a validated ServerConfig.

    Reads `myid` from dataDir and the dynamic config file when they exist (filesystem reads
    only; nothing is created).
    """
    keys: dict[str, str] = {}
    props: dict[str, str] = dict(sysprops)
    for raw_key, raw_value in cfg.items():
        key, value = raw_key.strip(), raw_value.strip()
        if _is_config_key(key):
            keys[key] = value
        elif key.startswith("corral."):
            if key not in _CORRAL_KEYS:
                log.warning("unknown Corral setting %r in the config file (ignored)", key)
            props[key] = value
        else:
            _note_system_property(key)
            props["zookeeper." + key] = value
            if key in _UNPREFIXED_SYSPROPS:
                props[key] = value
    if "dynamicConfigFile" in keys:
        dynamic_in_static = [k for k in keys if k.startswith(("server.", "group.", "weight."))]
        if dynamic_in_static:
            raise ConfigError(
                dynamic_in_static[0], "must be in the dynamic config file (dynamicConfigFile)"
            )
    return _Builder(keys, props, config_file, embedded).build()


class _Builder:
    """Holds the split key sets while the ServerConfig is assembled field group by group."""

    def __init__(
        self,
        keys: dict[str, str],
        props: dict[str, str],
        config_file: Path | None,
        embedded: bool,
    ) -> None:
        self.keys = keys
        self.props = props
        self.config_file = config_file
        self.embedded = embedded

    # -- lookups ---------------------------------------------------------------------------

    def key(self, name: str, parse: Callable[[str, str], T], default: T) -> T:
        value = self.keys.get(name)
        return default if value is None else parse(name, value)

    def prop(self, name: str, parse: Callable[[str, str], T], default: T) -> T:
        """A `zookeeper.<name>` system property (a zoo.cfg key of the same name set it)."""
        full = "zookeeper." + name
        value = self.props.get(full)
        if value is None and name in _UNPREFIXED_SYSPROPS:
            value = self.props.get(name)
        return default if value is None else parse(full, value.strip())

    def jute_maxbuffer_extrasize(self) -> int | None:
        """As ZooKeeper's BinaryInputArchive: below 1024 counts as 1024."""
        extra = self.prop("jute.maxbuffer.extrasize", _int, None)
        return None if extra is None else max(extra, 1024)

    def enforce_auth_schemes(self) -> tuple[str, ...]:
        """ZooKeeper's AuthenticationHelper: sessionRequireClientSASLAuth=true enforces
        "sasl"; else enforce.auth.enabled=true enforces enforce.auth.schemes (required)."""
        if self.prop("sessionRequireClientSASLAuth", _true_false, False):
            return ("sasl",)
        if not self.prop("enforce.auth.enabled", _true_false, False):
            return ()
        none: tuple[str, ...] = ()
        schemes = self.prop("enforce.auth.schemes", _csv, none)
        if not schemes:
            raise ConfigError(
                "zookeeper.enforce.auth.schemes",
                "must be set when zookeeper.enforce.auth.enabled is true",
            )
        return schemes

    # -- assembly --------------------------------------------------------------------------

    def build(self) -> ServerConfig:
        data_dir = self.key("dataDir", _path, None)
        if data_dir is None:
            raise ConfigError("dataDir", "is not set")
        data_log_dir = self.key("dataLogDir", _path, data_dir)
        if not self.embedded:
            for name, p in (("dataDir", data_dir), ("dataLogDir", data_log_dir)):
                if not p.is_absolute():
                    log.warning("%s %s is relative to the working directory", name, p)
        tick = self.key("tickTime", _positive_int, _DEFAULT_TICK_MS)
        min_to = self.key("minSessionTimeout", _int, -1)
        max_to = self.key("maxSessionTimeout", _int, -1)
        min_to = tick * 2 if min_to == -1 else min_to
        max_to = tick * 20 if max_to == -1 else max_to
        if min_to < 0:
            raise ConfigError("minSessionTimeout", f"must not be negative, got {min_to}")
        if max_to < 0:
            raise ConfigError("maxSessionTimeout", f"must not be negative, got {max_to}")
        if min_to > max_to:
            raise ConfigError(
                "minSessionTimeout", f"({min_to}) must not be larger than maxSessionTimeout"
            )
        ensemble = self.ensemble(data_dir)
        client_port, client_addr, secure_port, secure_addr = self.client_ports(ensemble)
        read_only = ensemble.read_only_mode_enabled
        secret_default = data_dir / SESSION_SECRET_NAME
        return ServerConfig(
            data_dir=data_dir,
            data_log_dir=data_log_dir,
            config_file=self.config_file,
            embedded=self.embedded,
            tick_time_ms=tick,
            client_port=client_port,
            client_port_address=client_addr,
            secure_client_port=secure_port,
            secure_client_port_address=secure_addr,
            client_port_listen_backlog=self.key("clientPortListenBacklog", _int, -1),
            max_client_cnxns=self.key("maxClientCnxns", _non_negative_int, 60),
            max_cnxns=self.prop("maxCnxns", _non_negative_int, 0),
            sessionless_cnxn_timeout_ms=self.prop(
                "nio.sessionlessCnxnTimeout", _positive_int, 10_000
            ),
            min_session_timeout_ms=min_to,
            max_session_timeout_ms=max_to,
            snap_count=self.snap_count(),
            snap_size_limit_kb=self.prop("snapSizeLimitInKb", _long, 4_194_304),
            pre_alloc_size_kb=self.prop("preAllocSize", _non_negative_long, 65_536),
            force_sync=self.prop("forceSync", _yes_no, True),
            fsync_warning_threshold_ms=self.prop("fsync.warningthresholdms", _long, 1000),
            max_batch_size=self.prop("maxBatchSize", _positive_int, 1000),
            snapshot_trust_empty=self.prop("snapshot.trust.empty", _true_false, False),
            snapshot_compression=self.prop("snapshot.compression.method", _compression, ""),
            datadir_autocreate=self.prop("datadir.autocreate", _true_false, True),
            autopurge_snap_retain_count=self.snap_retain_count(),
            autopurge_purge_interval_ms=self.key("autopurge.purgeInterval", _purge_interval, 0),
            jute_maxbuffer_bytes=self.prop(
                "jute.maxbuffer", _positive_int, limits.jute_maxbuffer_bytes
            ),
            jute_maxbuffer_extrasize_bytes=self.jute_maxbuffer_extrasize(),
            extended_types_enabled=self.prop("extendedTypesEnabled", _true_false, False),
            emulate353_ttl_nodes=self.prop("emulate353TTLNodes", _true_false, False),
            skip_acl=self.prop("skipACL", _yes_no, False),
            digest_auth_enabled=self.prop(
                "DigestAuthenticationProvider.enabled", _true_false, True
            ),
            super_digest=self.prop("DigestAuthenticationProvider.superDigest", _digest, None),
            x509_super_user=self.prop("X509AuthenticationProvider.superUser", _text, None),
            global_outstanding_limit=self.prop("globalOutstandingLimit", _positive_int, 1000),
            enforce_quota=self.prop("enforceQuota", _true_false, False),
            container_check_interval_ms=self.prop(
                "znode.container.checkIntervalMs", _positive_int, 60_000
            ),
            container_max_per_minute=self.prop(
                "znode.container.maxPerMinute", _positive_int, 10_000
            ),
            container_max_never_used_ms=self.prop(
                "znode.container.maxNeverUsedIntervalMs", _non_negative_long, 0
            ),
            sasl_super_user=self.prop("superUser", _text, None),
            sasl_super_password=self.prop("SASLAuthenticationProvider.superPassword", _text, None),
            let_any_sasl_user=self.prop("letAnySaslUserDoX", _text, None),
            enforce_auth_schemes=self.enforce_auth_schemes(),
            allow_sasl_failed_clients=self.prop("allowSaslFailedClients", _true_false, False),
            kerberos_remove_host_from_principal=self.prop(
                "kerberos.removeHostFromPrincipal", _true_false, False
            ),
            kerberos_remove_realm_from_principal=self.prop(
                "kerberos.removeRealmFromPrincipal", _true_false, False
            ),
            auth_providers=self.auth_providers(),
            four_letter_words=self.four_letter_words(read_only),
            ssl=self.ssl(),
            admin=self.admin(),
            ensemble=ensemble,
            jaas_config_file=_optional_path(self.props.get("java.security.auth.login.config")),
            sasl_server_section=self.prop("sasl.serverconfig", _text, "Server"),
            session_secret_file=_path_or(
                self.props.get("corral.sessionSecretFile"), secret_default
            ),
            session_password_scheme=self.password_scheme(),
            properties=MappingProxyType(dict(self.props)),
        )

    def client_ports(
        self, ensemble: EnsembleConfig
    ) -> tuple[int | None, str | None, int | None, str | None]:
        port = self.key("clientPort", _port, None)
        addr = self.key("clientPortAddress", _text, None)
        secure_port = self.key("secureClientPort", _port, None)
        secure_addr = self.key("secureClientPortAddress", _text, None)
        if port is None and addr is not None:
            raise ConfigError("clientPortAddress", "is set but clientPort is not set")
        if secure_port is None and secure_addr is not None:
            raise ConfigError("secureClientPortAddress", "is set but secureClientPort is not set")
        # As QuorumPeerConfig.setupClientPort: this server's line may carry its client address.
        me = next((s for s in ensemble.servers if s.sid == ensemble.server_id), None)
        if me is not None and me.client_address is not None:
            line_host, line_port = me.client_address
            if port is not None and port != line_port:
                raise ConfigError(
                    "clientPort",
                    f"({port}) differs from the client port in server.{me.sid} ({line_port})",
                )
            port = line_port
            if addr is None and line_host != "0.0.0.0":
                addr = line_host
        if me is not None and me.secure_client_address is not None and secure_port is None:
            line_host, secure_port = me.secure_client_address
            if secure_addr is None and line_host != "0.0.0.0":
                secure_addr = line_host
        if port is None and secure_port is None:
            raise ConfigError("clientPort", "neither clientPort nor secureClientPort is set")
        return port, addr, secure_port, secure_addr

    def snap_count(self) -> int:
        count = self.prop("snapCount", _int, 100_000)
        if count < 2:
            log.warning("snapCount should be 2 or more, got %d; using 2", count)
            count = 2
        return count

    def snap_retain_count(self) -> int:
        count = self.key("autopurge.snapRetainCount", _int, _MIN_SNAP_RETAIN)
        if count < _MIN_SNAP_RETAIN:
            log.warning(
                "autopurge.snapRetainCount %d is below %d; using %d",
                count,
                _MIN_SNAP_RETAIN,
                _MIN_SNAP_RETAIN,
            )
            count = _MIN_SNAP_RETAIN
        return count

    def password_scheme(self) -> str:
        value = self.props.get("corral.sessionPasswordScheme", "hmac").strip().lower()
        if value not in ("hmac", "zookeeper"):
            raise ConfigError(
                "corral.sessionPasswordScheme", f"must be hmac or zookeeper, got {value!r}"
            )
        return value

    def auth_providers(self) -> tuple[tuple[str, str], ...]:
        prefix = "zookeeper.authProvider."
        found = [
            (name[len(prefix) :], value.strip())
            for name, value in self.props.items()
            if name.startswith(prefix)
        ]
        for name, value in found:
            if not value:
                raise ConfigError(prefix + name, "is empty (expected a provider class name)")
        return tuple(sorted(found))

    def four_letter_words(self, read_only: bool) -> frozenset[str]:
        default = EMBEDDED_FOUR_LETTER_WORDS if self.embedded else ZOOKEEPER_FOUR_LETTER_WORDS
        text = self.prop("4lw.commands.whitelist", _text, None)
        if text is None:
            words = set(default)
        else:
            words = set()
            for word in (w.strip() for w in text.split(",")):
                if word == "*":
                    words |= ALL_FOUR_LETTER_WORDS
                elif word in ALL_FOUR_LETTER_WORDS:
                    words.add(word)
                elif word:
                    log.warning("4lw.commands.whitelist: %r is not a four-letter word", word)
        words.add("srvr")  # zkServer.sh status depends on it, as ZooKeeper notes
        if read_only:
            words.add("isro")
        return frozenset(words)

    def ssl(self) -> SslConfig:
        def text(name: str) -> str | None:
            return self.prop("ssl." + name, _text, None)

        client_auth = self.prop("ssl.clientAuth", _client_auth, "need")
        return SslConfig(
            key_store_location=text("keyStore.location"),
            key_store_password=text("keyStore.password"),
            key_store_password_path=text("keyStore.passwordPath"),
            key_store_type=text("keyStore.type"),
            trust_store_location=text("trustStore.location"),
            trust_store_password=text("trustStore.password"),
            trust_store_password_path=text("trustStore.passwordPath"),
            trust_store_type=text("trustStore.type"),
            protocol=text("protocol"),
            enabled_protocols=self.prop("ssl.enabledProtocols", _csv, ()),
            ciphersuites=self.prop("ssl.ciphersuites", _csv, ()),
            client_auth=client_auth,
            hostname_verification=self.prop("ssl.hostnameVerification", _true_false, True),
            client_hostname_verification=self.prop(
                "ssl.clientHostnameVerification", _true_false, None
            ),
            crl=self.prop("ssl.crl", _true_false, False),
            ocsp=self.prop("ssl.ocsp", _true_false, False),
            auth_provider=self.prop("ssl.authProvider", _text, "x509"),
            handshake_detection_timeout_ms=self.prop(
                "ssl.handshakeDetectionTimeoutMillis", _positive_int, 5000
            ),
        )

    def admin(self) -> AdminConfig:
        return AdminConfig(
            enable_server=self.prop("admin.enableServer", _true_false, True),
            server_address=self.prop("admin.serverAddress", _text, "0.0.0.0"),
            server_port=self.prop("admin.serverPort", _port, 8080),
            idle_timeout_ms=self.prop("admin.idleTimeout", _non_negative_int, 30_000),
            command_url=self.prop("admin.commandURL", _text, "/commands"),
            http_version=self.prop("admin.httpVersion", _int, 11),
            port_unification=self.prop("admin.portUnification", _true_false, False),
            force_https=self.prop("admin.forceHttps", _true_false, False),
            need_client_auth=self.prop("admin.needClientAuth", _true_false, False),
            snapshot_enabled=self.prop("admin.snapshot.enabled", _true_false, True),
            restore_enabled=self.prop("admin.restore.enabled", _true_false, True),
            rate_limiter_interval_ms=self.prop(
                "admin.rateLimiterIntervalInMS", _non_negative_int, 300_000
            ),
        )

    def ensemble(self, data_dir: Path) -> EnsembleConfig:
        multi_address = self.key("multiAddress.enabled", _true_false, False)
        dynamic_file = self.key("dynamicConfigFile", _path, None)
        server_keys = dict(self.keys)
        if dynamic_file is not None:
            server_keys = _read_dynamic_file(dynamic_file)
        servers = tuple(
            sorted(
                (
                    _server_spec(k, v, multi_address)
                    for k, v in server_keys.items()
                    if k.startswith("server.")
                ),
                key=lambda s: s.sid,
            )
        )
        groups = tuple((k, v) for k, v in server_keys.items() if k.startswith("group."))
        weights = tuple((k, v) for k, v in server_keys.items() if k.startswith("weight."))
        election_alg = self.key("electionAlg", _int, 3)
        if election_alg != 3:
            # QuorumPeerConfig's words (algorithms 0-2 were removed in ZooKeeper 3.6).
            raise ConfigError("electionAlg", "Invalid electionAlg value. Only 3 is supported.")
        standalone_enabled = self.key("standaloneEnabled", _true_false, True)
        _check_membership(servers, standalone_enabled)
        peer_type = self.key("peerType", _peer_type, "participant")
        observer_master = self.key("observerMasterPort", _int, 0)
        return EnsembleConfig(
            servers=servers,
            server_id=_read_myid(data_dir),
            init_limit=self.key("initLimit", _positive_int, None),
            sync_limit=self.key("syncLimit", _positive_int, None),
            connect_to_learner_master_limit=self.key(
                "connectToLearnerMasterLimit", _positive_int, None
            ),
            election_alg=election_alg,
            standalone_enabled=standalone_enabled,
            reconfig_enabled=self.key("reconfigEnabled", _true_false, False),
            dynamic_config_file=dynamic_file,
            config_version=_version_from_filename(dynamic_file),
            peer_type=peer_type,
            local_sessions_enabled=self.key("localSessionsEnabled", _true_false, False),
            local_sessions_upgrading_enabled=self.key(
                "localSessionsUpgradingEnabled", _true_false, False
            ),
            read_only_mode_enabled=self.prop("readonlymode.enabled", _true_false, False),
            quorum_listen_on_all_ips=self.key("quorumListenOnAllIPs", _true_false, False),
            sync_enabled=self.key("syncEnabled", _true_false, True),
            observer_master_port=observer_master if observer_master > 0 else None,
            multi_address_enabled=multi_address,
            groups=groups,
            weights=weights,
        )


def _check_membership(servers: tuple[ServerSpec, ...], standalone_enabled: bool) -> None:
    """QuorumPeerConfig.parseDynamicConfig's checks of the server lines, in its words."""
    voters = [s for s in servers if not s.observer]
    observers = [s for s in servers if s.observer]
    if not voters:
        if not standalone_enabled:
            raise ConfigError(
                "standaloneEnabled",
                "standaloneEnabled = false then number of participants should be >0",
            )
        if observers:
            raise ConfigError(
                f"server.{observers[0].sid}",
                "Observers w/o participants is an invalid configuration",
            )
    elif len(voters) == 1 and standalone_enabled:
        # ZooKeeper runs standalone then (HBase writes one server line); so do we.
        log.warning(
            "Invalid configuration, only one server specified (ignoring): running standalone"
            " (standaloneEnabled=false runs a one-member ensemble)"
        )
        if observers:
            raise ConfigError(
                f"server.{observers[0].sid}", "Observers w/o quorum is an invalid configuration"
            )


# -- key classification ----------------------------------------------------------------------


def _is_known_sysprop(name: str) -> bool:
    return name in _KNOWN_SYSPROPS or name.startswith(_KNOWN_SYSPROP_PREFIXES)


def _is_config_key(key: str) -> bool:
    return key in _CONFIG_KEYS or key.startswith(_CONFIG_PREFIXES)


def _note_system_property(key: str) -> None:
    if _is_known_sysprop(key):
        log.debug("config key %s set as system property zookeeper.%s", key, key)
    elif key.startswith("zookeeper.") and _is_known_sysprop(key[len("zookeeper.") :]):
        # ZooKeeper would set zookeeper.zookeeper.<name> here, which nothing reads.
        log.warning(
            "config key %r has no effect: in zoo.cfg write it without the zookeeper. prefix", key
        )
    else:
        log.warning(
            "unknown config key %r: kept as system property zookeeper.%s, which nothing reads",
            key,
            key,
        )


# -- value parsers: (key, value) -> typed value, raising ConfigError naming the key ----------


def _int_in(key: str, value: str, low: int, high: int, what: str) -> int:
    # Java's Integer.parseInt/decode: decimal with an optional sign, or 0x hex for properties.
    text = value.strip()
    if _INT_RE.fullmatch(text):
        number = int(text)
    elif re.fullmatch(r"[+-]?0[xX][0-9a-fA-F]+", text):
        number = int(text, 16)
    else:
        raise ConfigError(key, f"expected {what}, got {value!r}")
    if not low <= number <= high:
        raise ConfigError(key, f"expected {what} in [{low}, {high}], got {number}")
    return number


def _int(key: str, value: str) -> int:
    return _int_in(key, value, -_JAVA_INT_MAX - 1, _JAVA_INT_MAX, "an integer")


def _long(key: str, value: str) -> int:
    return _int_in(key, value, -_JAVA_LONG_MAX - 1, _JAVA_LONG_MAX, "an integer")


def _positive_int(key: str, value: str) -> int:
    return _int_in(key, value, 1, _JAVA_INT_MAX, "a positive integer")


def _non_negative_long(key: str, value: str) -> int:
    return _int_in(key, value, 0, _JAVA_LONG_MAX, "a non-negative integer")


def _non_negative_int(key: str, value: str) -> int:
    return _int_in(key, value, 0, _JAVA_INT_MAX, "a non-negative integer")


def _port(key: str, value: str) -> int:
    # 0 asks the OS for a free port, as Java's bind does (useful for tests).
    return _int_in(key, value, 0, 65535, "a port number")


def _true_false(key: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise ConfigError(key, f"expected true or false, got {value!r}")


def _yes_no(key: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("yes", "no"):
        return lowered == "yes"
    raise ConfigError(key, f"expected yes or no, got {value!r}")


def _compression(key: str, value: str) -> str:
    """As ZooKeeper's SnapStream.StreamMode: gz or snappy (any case), else none."""
    mode = value.lower()
    if mode in ("", "gz", "snappy"):
        return mode
    log.warning("%s=%s is not gz or snappy: snapshots are not compressed", key, value)
    return ""


def _text(key: str, value: str) -> str:
    del key
    return value


def _csv(key: str, value: str) -> tuple[str, ...]:
    del key
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _path(key: str, value: str) -> Path:
    if not value:
        raise ConfigError(key, "is empty")
    return Path(value)


def _optional_path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _path_or(value: str | None, default: Path) -> Path:
    return Path(value.strip()) if value and value.strip() else default


def _digest(key: str, value: str) -> str:
    user, sep, digest = value.partition(":")
    if not sep or not user or not digest:
        raise ConfigError(key, "expected user:base64digest (as DigestAuthenticationProvider)")
    return value


def _client_auth(key: str, value: str) -> str:
    lowered = value.strip().lower() or "need"
    if lowered not in ("none", "want", "need"):
        raise ConfigError(key, f"expected none, want or need, got {value!r}")
    return lowered


def _peer_type(key: str, value: str) -> str:
    lowered = value.lower()
    if lowered not in ("participant", "observer"):
        raise ConfigError(key, f"expected participant or observer, got {value!r}")
    return lowered


def _purge_interval(key: str, value: str) -> int:
    """ZooKeeper's autopurge.purgeInterval: bare number = hours, else ms/s/m/h/d suffix."""
    text = value.strip()
    if text and text[-1].isdigit():
        return _int(key, text) * _HOUR_MS
    lowered = text.lower()
    if lowered.endswith("ms"):
        return _int(key, text[:-2])
    unit = _TIME_UNITS_MS.get(lowered[-1:]) if text else None
    if unit is None:
        raise ConfigError(key, f"expected hours or a time with ms/s/m/h/d, got {value!r}")
    return _int(key, text[:-1]) * unit


# -- ensemble parsing ------------------------------------------------------------------------


def _server_spec(key: str, value: str, multi_address: bool) -> ServerSpec:
    """Parse `server.N=host:qport:eport[:role][|more...][;[host:]port[;[host:]secure]]`."""
    sid = _long(key, key[len("server.") :])
    if sid < 0:
        raise ConfigError(key, "server id must not be negative")
    parts = value.split(";")
    if len(parts) > 3:
        raise ConfigError(key, f"too many ';' parts in {value!r}")
    client = _client_part(key, parts[1]) if len(parts) >= 2 and parts[1] else None
    secure = _client_part(key, parts[2]) if len(parts) == 3 and parts[2] else None
    chunks = parts[0].split("|")
    if len(chunks) > 1 and not multi_address:
        raise ConfigError(key, "several addresses given but multiAddress.enabled is false")
    addresses: list[QuorumAddress] = []
    roles: set[bool] = set()
    for chunk in chunks:
        fields = _host_and_ports(key, chunk.strip())
        if len(fields) not in (3, 4):
            raise ConfigError(key, f"expected host:quorumPort:electionPort[:role], got {chunk!r}")
        quorum_port = _int_in(key, fields[1], 1, 65535, "a port number")
        election_port = _int_in(key, fields[2], 1, 65535, "a port number")
        if quorum_port == election_port:
            raise ConfigError(key, "quorum and election ports must differ")
        if len(fields) == 4:
            roles.add(_peer_type(key, fields[3].strip()) == "observer")
        addresses.append(QuorumAddress(fields[0], quorum_port, election_port))
    if len(roles) > 1:
        raise ConfigError(key, "addresses disagree on participant/observer")
    return ServerSpec(
        sid=sid,
        addresses=tuple(addresses),
        observer=roles.pop() if roles else False,
        client_address=client,
        secure_client_address=secure,
    )


def _client_part(key: str, text: str) -> tuple[str, int]:
    fields = _host_and_ports(key, text.strip())
    if len(fields) > 2:
        raise ConfigError(key, f"expected [host:]port after ';', got {text!r}")
    host = fields[0] if len(fields) == 2 else "0.0.0.0"
    return host, _port(key, fields[-1])


def _host_and_ports(key: str, text: str) -> list[str]:
    """Split `host:a:b`, where an IPv6 host is written in brackets: `[::1]:a:b`."""
    if not text.startswith("["):
        return text.split(":")
    close = text.rfind("]")
    if close < 0:
        raise ConfigError(key, f"{text!r} starts with '[' but has no ']'")
    host = text[1:close]
    if not host:
        raise ConfigError(key, f"empty IPv6 address in {text!r}")
    rest = text[close + 1 :]
    if not rest:
        return [host]
    if not rest.startswith(":"):
        raise ConfigError(key, f"{text!r} has no ':' after ']'")
    return [host, *rest[1:].split(":")]


def _read_dynamic_file(path: Path) -> dict[str, str]:
    try:
        props = parse_properties(_decode(path.read_bytes()))
    except OSError as exc:
        raise ConfigError("dynamicConfigFile", f"cannot read {path}: {exc.strerror}") from None
    except PropertiesSyntaxError as exc:
        raise ConfigError("dynamicConfigFile", f"{path}: {exc}") from None
    for key in props:
        if not key.startswith(("server.", "group.", "weight.")):
            raise ConfigError("dynamicConfigFile", f"{path}: unrecognised parameter {key!r}")
    return {k.strip(): v.strip() for k, v in props.items()}


def _version_from_filename(path: Path | None) -> int:
    """QuorumPeerConfig.getVersionFromFilename: the hex after the name's last '.', else 0."""
    if path is None:
        return 0
    _, dot, suffix = path.name.rpartition(".")
    if not dot or not suffix or suffix.strip("0123456789abcdefABCDEF"):
        return 0
    version = int(suffix, 16)
    return version if version < (1 << 63) else 0


def _read_myid(data_dir: Path) -> int | None:
    path = data_dir / "myid"
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError("myid", f"cannot read {path}: {exc.strerror}") from None
    first = text.splitlines()[0].strip() if text.strip() else ""
    return _long("myid", first)


def _decode(raw: bytes) -> str:
    # Java reads zoo.cfg as ISO-8859-1; UTF-8 is what editors write today, so try it first
    # (dropping a byte-order mark, which Java would make part of the first key).
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")
