"""Four-letter words: ZooKeeper's text admin commands on the client port.

A client that opens a connection and sends one of the known four-byte words (``ruok``,
``srvr``, ``stat``, ``mntr``, ...) instead of a ConnectRequest gets a text answer and the
connection is closed. This module renders those answers byte for byte in ZooKeeper 3.9's
formats from a plain :class:`ServerSnapshot` the core fills in, and implements the
``4lw.commands.whitelist`` rule. It does no IO; :func:`collect_environment` (for ``envi``)
reads only process facts.

What the caller does (ZooKeeper's NIOServerCnxn.checkFourLetterWord): sniff the first four
bytes of a fresh connection with :func:`command_for`; a known word counts as one packet
received; then send :func:`answer`'s bytes and close. Unknown words are not 4lw: the four
bytes are a frame length as usual.
"""

from __future__ import annotations

import getpass
import ipaddress
import os
import platform
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from corral import ZOOKEEPER_COMPAT_VERSION, __version__

__all__ = [
    "ALL_COMMANDS",
    "ZK_NOT_SERVING",
    "ConnectionStats",
    "LeaderStats",
    "ServerConf",
    "ServerSnapshot",
    "answer",
    "collect_environment",
    "command_for",
    "corral_full_version",
    "is_enabled",
    "java_double",
    "java_socket_address",
    "parse_whitelist",
    "render",
    "rounded_avg_latency",
]

ZK_NOT_SERVING = "This ZooKeeper instance is not currently serving requests"

# Every word ZooKeeper knows (FourLetterCommands.cmd2String); "*" in the whitelist enables
# all of them. "telnet close" is what telnet's Ctrl-C (IAC IP IAC DO) looks like.
TELNET_CLOSE = "telnet close"
_TELNET_CLOSE_BYTES = b"\xff\xf4\xff\xfd"
ALL_COMMANDS = frozenset(
    {
        "conf",
        "cons",
        "crst",
        "dirs",
        "dump",
        "envi",
        "gtmk",
        "ruok",
        "stmk",
        "srst",
        "srvr",
        "stat",
        "wchc",
        "wchp",
        "wchs",
        "mntr",
        "isro",
        "hash",
        TELNET_CLOSE,
    }
)
# Commands that need a running server; the others answer even while it is starting.
_NEED_SERVING = frozenset({"conf", "cons", "dirs", "mntr", "srvr", "stat", "wchs"})


def command_for(first4: bytes) -> str | None:
    """The four-letter word these first four bytes of a connection spell, if any."""
    if first4 == _TELNET_CLOSE_BYTES:
        return TELNET_CLOSE
    try:
        word = first4.decode("ascii")
    except UnicodeDecodeError:
        return None
    return word if word in ALL_COMMANDS else None


def parse_whitelist(value: str | None, *, readonly_mode_enabled: bool = False) -> frozenset[str]:
    """ZooKeeper's ``4lw.commands.whitelist`` (FourLetterCommands.isEnabled).

    Comma-separated names, trimmed; ``*`` enables every known word. ``srvr`` is always
    enabled (so the default, an unset key, means srvr only), and ``isro`` too when
    ``readonlymode.enabled`` is true. Unknown names are kept but never match a command.
    """
    enabled: set[str] = set()
    if value is not None:
        for item in value.split(","):
            name = item.strip()
            if name == "*":
                enabled |= ALL_COMMANDS
                break
            if name:
                enabled.add(name)
    if readonly_mode_enabled:
        enabled.add("isro")
    enabled.add("srvr")
    return frozenset(enabled)


def is_enabled(command: str, whitelist: frozenset[str]) -> bool:
    return command in whitelist


def corral_full_version() -> str:
    """The version string Corral reports where ZooKeeper prints Version.getFullVersion().

    It starts with the ZooKeeper version Corral is compatible with, because clients
    (kazoo's ``server_version()``, monitoring scripts) read the leading digits; the
    ``-corral-<version>`` suffix says what is really answering.
    """
    return f"{ZOOKEEPER_COMPAT_VERSION}-corral-{__version__}"


@dataclass(frozen=True, slots=True)
class ConnectionStats:
    """One client connection as ``stat`` (brief) and ``cons`` (full) print it."""

    remote_ip: str
    remote_port: int
    # Java NIO interest ops: 1 (read) for a normal connection, 0 for the one asking.
    interest_ops: int = 1
    outstanding_requests: int = 0
    packets_received: int = 0
    packets_sent: int = 0
    # The rest only shows in ``cons`` and only once a session exists (session_id != 0).
    session_id: int = 0
    last_operation: str = "NA"
    established_ms: int = 0  # wall clock, ms since the epoch
    session_timeout_ms: int = 0
    last_cxid: int = -1  # -1: no request yet (then lcxid is left out, as in ZooKeeper)
    last_zxid: int = -1
    last_response_ms: int = 0  # monotonic clock, ms, as ZooKeeper's currentElapsedTime
    last_latency_ms: int = 0
    min_latency_ms: int = 0
    avg_latency_ms: int = 0  # integer division total/count, as ZooKeeper's per-connection avg
    max_latency_ms: int = 0


@dataclass(frozen=True, slots=True)
class ServerConf:
    """What ``conf`` prints (ZooKeeperServer.dumpConf, plus the quorum lines if any)."""

    client_port: int
    data_dir: str  # the snapshot directory as ZooKeeper prints it (.../version-2)
    data_log_dir: str
    tick_time: int
    max_client_cnxns: int
    min_session_timeout: int
    max_session_timeout: int
    secure_client_port: int = -1
    data_dir_size: int = 0
    data_log_size: int = 0
    client_port_listen_backlog: int = -1
    server_id: int = 0
    # Quorum servers: initLimit, syncLimit, electionAlg, electionPort, quorumPort, peerType
    # (in that order), then "membership: " and the quorum verifier's text.
    quorum: tuple[tuple[str, str], ...] = ()
    membership: str | None = None


@dataclass(frozen=True, slots=True)
class LeaderStats:
    """Leader-only numbers for ``srvr``/``stat`` and ``mntr``."""

    learners: int = 0
    synced_followers: int = 0
    synced_non_voting_followers: int = 0
    synced_observers: int = 0
    pending_syncs: int = 0
    leader_uptime_ms: int = 0
    last_proposal_size: int = -1
    min_proposal_size: int = -1
    max_proposal_size: int = -1


@dataclass(frozen=True, slots=True)
class ServerSnapshot:
    """Everything the four-letter words print, filled in by the server core.

    ``serving`` false means ZooKeeper's "not running" (starting, or between roles).
    ``mode`` is ZooKeeper's server state: standalone, leader, follower, observer,
    read-only. Latencies are milliseconds; ``latency_avg_ms`` should come from
    :func:`rounded_avg_latency`. Watch numbers are the data-watch table ``wchs`` and
    ``mntr`` report.
    """

    mode: str
    zxid: int
    node_count: int
    conf: ServerConf
    version: str = field(default_factory=corral_full_version)
    serving: bool = True
    connections: tuple[ConnectionStats, ...] = ()
    latency_min_ms: int = 0
    latency_avg_ms: float = 0.0
    latency_max_ms: int = 0
    packets_received: int = 0
    packets_sent: int = 0
    outstanding_requests: int = 0
    watch_count: int = 0
    watched_paths: int = 0
    watching_connections: int = 0
    ephemerals_count: int = 0
    approximate_data_size: int = 0
    global_sessions: int = 0
    local_sessions: int = 0
    uptime_ms: int = 0
    open_file_descriptor_count: int = -1
    max_file_descriptor_count: int = -1
    connection_drop_probability: float = 0.0
    last_client_response_size: int = -1
    min_client_response_size: int = -1
    max_client_response_size: int = -1
    outstanding_tls_handshake: int = 0
    auth_failed_count: int = 0
    non_mtls_remote_conn_count: int = 0
    non_mtls_local_conn_count: int = 0
    leader: LeaderStats | None = None
    # ``envi`` lines after zookeeper.version (see collect_environment()).
    environment: tuple[tuple[str, str], ...] = ()
    # More ``mntr`` lines (counters, summaries) appended after the gauges, in order.
    extra_metrics: tuple[tuple[str, int | float | str], ...] = ()


def rounded_avg_latency(total_ms: int, count: int) -> float:
    """ZooKeeper's server-wide average latency: total/count rounded half-up to 4 places."""
    if count <= 0:
        return 0.0
    # BigDecimal(double).setScale(4, HALF_UP): round the exact binary value of the quotient.
    exact = Decimal(total_ms / count)
    return float(exact.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))


def java_double(value: float) -> str:
    """Format a float as Java's ``Double.toString`` does (shortest digits, Java's layout)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0.0" if str(value).startswith("-") else "0.0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    point = len(text) + exponent  # position of the decimal point within the digits
    prefix = "-" if sign else ""
    if 1e-3 <= abs(value) < 1e7:
        if point <= 0:
            return f"{prefix}0.{'0' * -point}{text}"
        if point >= len(text):
            return f"{prefix}{text}{'0' * (point - len(text))}.0"
        return f"{prefix}{text[:point]}.{text[point:]}"
    mantissa = text[0] + "." + (text[1:] or "0")
    return f"{prefix}{mantissa}E{point - 1}"


def java_socket_address(ip: str, port: int) -> str:
    """``InetSocketAddress.toString()`` for a resolved address without a host name."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    scope = "%" + ip.split("%", 1)[1] if "%" in ip else ""
    if isinstance(addr, ipaddress.IPv6Address):
        mapped = addr.ipv4_mapped
        if mapped is not None:  # Java turns IPv4-mapped addresses into Inet4Address
            return f"/{mapped}:{port}"
        groups = ":".join(f"{int(g, 16):x}" for g in addr.exploded.split(":"))
        return f"/[{groups}{scope}]:{port}"
    return f"/{addr}:{port}"


def _connection_line(c: ConnectionStats, brief: bool) -> str:
    ops = "0" if c.interest_ops == 0 else f"{c.interest_ops:x}"
    line = (
        f" {java_socket_address(c.remote_ip, c.remote_port)}[{ops}]"
        f"(queued={c.outstanding_requests},recved={c.packets_received},sent={c.packets_sent}"
    )
    if not brief and c.session_id != 0:
        line += (
            f",sid=0x{c.session_id & 0xFFFFFFFFFFFFFFFF:x},lop={c.last_operation}"
            f",est={c.established_ms},to={c.session_timeout_ms}"
        )
        if c.last_cxid >= 0:
            line += f",lcxid=0x{c.last_cxid:x}"
        line += (
            f",lzxid=0x{c.last_zxid & 0xFFFFFFFFFFFFFFFF:x},lresp={c.last_response_ms}"
            f",llat={c.last_latency_ms},minlat={c.min_latency_ms},avglat={c.avg_latency_ms}"
            f",maxlat={c.max_latency_ms}"
        )
    return line + ")"


def render_stat(s: ServerSnapshot, *, with_clients: bool) -> str:
    """``srvr`` (with_clients False) and ``stat`` (True): StatCommand + ServerStats."""
    out = [f"Zookeeper version: {s.version}\n"]
    if s.mode == "read-only":
        out.append("READ-ONLY mode; serving only read-only clients\n")
    if with_clients:
        out.append("Clients:\n")
        out.extend(_connection_line(c, brief=True) + "\n" for c in s.connections)
        out.append("\n")
    out.append(
        f"Latency min/avg/max: {s.latency_min_ms}/{java_double(s.latency_avg_ms)}/"
        f"{s.latency_max_ms}\n"
        f"Received: {s.packets_received}\n"
        f"Sent: {s.packets_sent}\n"
        f"Connections: {len(s.connections)}\n"
        f"Outstanding: {s.outstanding_requests}\n"
        f"Zxid: 0x{s.zxid & 0xFFFFFFFFFFFFFFFF:x}\n"
        f"Mode: {s.mode}\n"
        f"Node count: {s.node_count}\n"
    )
    if s.mode == "leader" and s.leader is not None:
        lead = s.leader
        out.append(
            "Proposal sizes last/min/max: "
            f"{lead.last_proposal_size}/{lead.min_proposal_size}/{lead.max_proposal_size}\n"
        )
    return "".join(out)


def render_cons(s: ServerSnapshot) -> str:
    return "".join(_connection_line(c, brief=False) + "\n" for c in s.connections) + "\n"


def render_conf(s: ServerSnapshot) -> str:
    c = s.conf
    lines = [
        ("clientPort", c.client_port),
        ("secureClientPort", c.secure_client_port),
        ("dataDir", c.data_dir),
        ("dataDirSize", c.data_dir_size),
        ("dataLogDir", c.data_log_dir),
        ("dataLogSize", c.data_log_size),
        ("tickTime", c.tick_time),
        ("maxClientCnxns", c.max_client_cnxns),
        ("minSessionTimeout", c.min_session_timeout),
        ("maxSessionTimeout", c.max_session_timeout),
        ("clientPortListenBacklog", c.client_port_listen_backlog),
        ("serverId", c.server_id),
        *c.quorum,
    ]
    text = "".join(f"{k}={v}\n" for k, v in lines)
    if c.membership is not None:
        text += "membership: \n" + c.membership
    return text


def render_envi(s: ServerSnapshot) -> str:
    lines = [("zookeeper.version", s.version), *s.environment]
    return "Environment:\n" + "".join(f"{k}={v}\n" for k, v in lines)


def _mntr_value(value: int | float | str | None) -> str:
    # MonitorCommand.print: integers as is, other numbers as doubles, the rest as text.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return java_double(value)
    return value


def _mntr_gauges(s: ServerSnapshot) -> list[tuple[str, int | float | str]]:
    # The order ZooKeeper 3.8/3.9's DefaultMetricsProvider prints its gauges in.
    gauges: list[tuple[str, int | float | str]] = [
        ("ephemerals_count", s.ephemerals_count),
        ("num_alive_connections", len(s.connections)),
        ("avg_latency", float(s.latency_avg_ms)),
        ("outstanding_requests", s.outstanding_requests),
        ("znode_count", s.node_count),
        ("global_sessions", s.global_sessions),
        ("non_mtls_remote_conn_count", s.non_mtls_remote_conn_count),
        ("last_client_response_size", s.last_client_response_size),
        ("packets_sent", s.packets_sent),
        ("packets_received", s.packets_received),
        ("max_client_response_size", s.max_client_response_size),
        ("connection_drop_probability", float(s.connection_drop_probability)),
        ("watch_count", s.watch_count),
        ("auth_failed_count", s.auth_failed_count),
        ("min_latency", s.latency_min_ms),
        ("max_file_descriptor_count", s.max_file_descriptor_count),
        ("approximate_data_size", s.approximate_data_size),
        ("open_file_descriptor_count", s.open_file_descriptor_count),
        ("local_sessions", s.local_sessions),
        ("uptime", s.uptime_ms),
        ("max_latency", s.latency_max_ms),
        ("outstanding_tls_handshake", s.outstanding_tls_handshake),
        ("min_client_response_size", s.min_client_response_size),
        ("non_mtls_local_conn_count", s.non_mtls_local_conn_count),
    ]
    if s.leader is not None:
        lead = s.leader
        gauges += [
            ("learners", lead.learners),
            ("synced_followers", lead.synced_followers),
            ("synced_non_voting_followers", lead.synced_non_voting_followers),
            ("synced_observers", lead.synced_observers),
            ("pending_syncs", lead.pending_syncs),
            ("leader_uptime", lead.leader_uptime_ms),
            ("last_proposal_size", lead.last_proposal_size),
            ("max_proposal_size", lead.max_proposal_size),
            ("min_proposal_size", lead.min_proposal_size),
        ]
    return gauges


def render_mntr(s: ServerSnapshot) -> str:
    """``mntr``: ``zk_<key>\\t<value>`` lines (MonitorCommand)."""
    pairs: Iterable[tuple[str, int | float | str]] = [
        ("version", s.version),
        ("server_state", s.mode),
        *_mntr_gauges(s),
        *s.extra_metrics,
    ]
    return "".join(f"zk_{k}\t{_mntr_value(v)}\n" for k, v in pairs)


def render_wchs(s: ServerSnapshot) -> str:
    return (
        f"{s.watching_connections} connections watching {s.watched_paths} paths\n"
        f"Total watches:{s.watch_count}\n"
    )


def render_dirs(s: ServerSnapshot) -> str:
    return f"datadir_size: {s.conf.data_dir_size}\nlogdir_size: {s.conf.data_log_size}\n"


def render(command: str, snapshot: ServerSnapshot | None) -> str | None:
    """The text of ``command`` (already allowed by the whitelist), or None if Corral does
    not render that word (dump, wchc, wchp, hash, gtmk, stmk, srst, crst, telnet close).

    ``snapshot`` None means no server is running yet.
    """
    if command == "ruok":
        return "imok"
    if command == "isro":
        if snapshot is None or not snapshot.serving:
            return "null"
        return "ro" if snapshot.mode == "read-only" else "rw"
    if command == "envi":
        if snapshot is not None:
            return render_envi(snapshot)
        return render_envi(_placeholder_snapshot())
    if command not in _NEED_SERVING:
        return None
    if snapshot is None or not snapshot.serving:
        return ZK_NOT_SERVING + "\n"
    if command == "srvr":
        return render_stat(snapshot, with_clients=False)
    if command == "stat":
        return render_stat(snapshot, with_clients=True)
    if command == "conf":
        return render_conf(snapshot)
    if command == "cons":
        return render_cons(snapshot)
    if command == "mntr":
        return render_mntr(snapshot)
    if command == "wchs":
        return render_wchs(snapshot)
    return render_dirs(snapshot)


def answer(
    command: str, snapshot: ServerSnapshot | None, whitelist: frozenset[str]
) -> bytes | None:
    """What to write back for ``command`` before closing (None: not rendered here).

    A word outside the whitelist gets ZooKeeper's refusal line instead.
    """
    if not is_enabled(command, whitelist):
        return f"{command} is not executed because it is not in the whitelist.\n".encode()
    text = render(command, snapshot)
    return None if text is None else text.encode("utf-8")


def _placeholder_snapshot() -> ServerSnapshot:
    return ServerSnapshot(
        mode="",
        zxid=0,
        node_count=0,
        conf=ServerConf(0, "", "", 0, 0, 0, 0),
        environment=collect_environment(),
    )


def collect_environment() -> tuple[tuple[str, str], ...]:
    """The ``envi`` lines after zookeeper.version, in the spirit of ZooKeeper's list.

    ZooKeeper reports its JVM (java.version, java.home, class path ...); Corral reports
    its own version and the Python runtime under python.* keys instead, then the same
    host, os.* and user.* keys ZooKeeper prints.
    """

    def user() -> str:
        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return "?"

    return (
        ("corral.version", __version__),
        ("host.name", socket.gethostname()),
        ("python.version", platform.python_version()),
        ("python.implementation", platform.python_implementation()),
        ("python.executable", sys.executable),
        ("os.name", platform.system()),
        ("os.arch", platform.machine()),
        ("os.version", platform.release()),
        ("user.name", user()),
        ("user.home", os.path.expanduser("~")),
        ("user.dir", os.getcwd()),
        ("process.id", str(os.getpid())),
    )
