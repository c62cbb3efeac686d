"""Counters and gauges of the standalone core, for four-letter words and metrics.

A plain snapshot record: the server layer sits below admin/, so the conversion into
admin.fourletter's ServerSnapshot lives in admin/core_snapshot.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from corral.proto.codes import OpCode
from corral.server.connection import ConnState

if TYPE_CHECKING:
    from corral.server.core import StandaloneCore

# ZooKeeper's short names for the last operation of a connection (FinalRequestProcessor).
OP_NAMES: dict[int, str] = {
    OpCode.PING: "PING",
    OpCode.CREATE_SESSION: "SESS",
    OpCode.MULTI: "MULT",
    OpCode.MULTI_READ: "MLTR",
    OpCode.CREATE: "CREA",
    OpCode.CREATE2: "CREA",
    OpCode.CREATE_TTL: "CREA",
    OpCode.CREATE_CONTAINER: "CREA",
    OpCode.DELETE: "DELE",
    OpCode.DELETE_CONTAINER: "DELE",
    OpCode.SET_DATA: "SETD",
    OpCode.RECONFIG: "RECO",
    OpCode.SET_ACL: "SETA",
    OpCode.CLOSE_SESSION: "CLOS",
    OpCode.SYNC: "SYNC",
    OpCode.CHECK: "CHEC",
    OpCode.EXISTS: "EXIS",
    OpCode.GET_DATA: "GETD",
    OpCode.SET_WATCHES: "SETW",
    OpCode.SET_WATCHES2: "STW2",
    OpCode.ADD_WATCH: "ADDW",
    OpCode.GET_ACL: "GETA",
    OpCode.GET_CHILDREN: "GETC",
    OpCode.GET_CHILDREN2: "GETC",
    OpCode.GET_ALL_CHILDREN_NUMBER: "GETACN",
    OpCode.CHECK_WATCHES: "CHKW",
    OpCode.REMOVE_WATCHES: "REMW",
    OpCode.WHO_AM_I: "HOMI",
    OpCode.GET_EPHEMERALS: "GETE",
}


@dataclass(frozen=True, slots=True)
class ConnStats:
    """One connection, as `cons` shows it (session fields are 0 before a session exists)."""

    conn_id: int
    remote_ip: str
    remote_port: int
    asking: bool  # the connection the four-letter word came in on
    outstanding_requests: int
    packets_received: int
    packets_sent: int
    session_id: int
    last_operation: str
    established_ms: int  # wall clock
    session_timeout_ms: int
    last_cxid: int
    last_zxid: int
    last_response_ms: int  # the core's monotonic clock
    last_latency_ms: int
    min_latency_ms: int
    avg_latency_ms: int
    max_latency_ms: int


@dataclass(frozen=True, slots=True)
class CoreStats:
    """The server-wide numbers the core knows."""

    zxid: int
    node_count: int
    approximate_data_size: int
    ephemerals_count: int
    global_sessions: int
    packets_received: int
    packets_sent: int
    latency_min_ms: int
    latency_total_ms: int
    latency_count: int
    latency_max_ms: int
    outstanding_requests: int
    watch_count: int
    watched_paths: int
    watching_connections: int
    connections: tuple[ConnStats, ...]
    local_sessions: int = 0  # sessions never logged (local or read-only ones)


def collect_stats(core: StandaloneCore, asking_conn_id: int | None = None) -> CoreStats:
    tree = core.tree
    conns = []
    for c in core.conns.values():
        if c.state is ConnState.CLOSED and c.conn_id != asking_conn_id:
            continue
        has_session = c.state is ConnState.ESTABLISHED
        conns.append(
            ConnStats(
                conn_id=c.conn_id,
                remote_ip=c.remote_ip,
                remote_port=c.remote_port,
                asking=c.conn_id == asking_conn_id,
                outstanding_requests=len(c.queue),
                packets_received=c.packets_received,
                packets_sent=c.packets_sent,
                session_id=c.session_id if has_session else 0,
                last_operation=OP_NAMES.get(c.last_op, "NA"),
                established_ms=c.established_wall_ms,
                session_timeout_ms=c.timeout_ms,
                last_cxid=c.last_cxid,
                last_zxid=c.last_zxid,
                last_response_ms=c.last_response_ms,
                last_latency_ms=c.last_latency_ms,
                min_latency_ms=c.lat_min,
                avg_latency_ms=c.lat_total // c.lat_count if c.lat_count else 0,
                max_latency_ms=c.lat_max,
            )
        )
    summary = tree.watches.summary()
    return CoreStats(
        zxid=tree.last_zxid,
        node_count=tree.count_nodes(),
        approximate_data_size=tree.approximate_data_size(),
        ephemerals_count=tree.ephemerals_count(),
        global_sessions=len(core.sessions),
        packets_received=core.packets_received,
        packets_sent=core.packets_sent,
        latency_min_ms=core.lat_min,
        latency_total_ms=core.lat_total,
        latency_count=core.lat_count,
        latency_max_ms=core.lat_max,
        outstanding_requests=core.outstanding_requests(),
        watch_count=tree.watches.watch_count(),
        watched_paths=summary.paths,
        watching_connections=summary.connections,
        connections=tuple(conns),
    )
