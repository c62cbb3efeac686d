"""A serving core's statistics as fourletter's ServerSnapshot (owner: core helper).

The server layer cannot import admin/, so `StandaloneCore.snapshot_for_4lw()` returns a plain
`CoreStats`; this adds what only the runner knows (the conf section, uptime, environment,
file descriptors) and renders the rest in fourletter's terms.
"""

from __future__ import annotations

from typing import Any

from corral.admin.fourletter import (
    ConnectionStats,
    ServerConf,
    ServerSnapshot,
    rounded_avg_latency,
)
from corral.server.stats import CoreStats


def server_snapshot(
    stats: CoreStats, conf: ServerConf, *, mode: str = "standalone", **extra: Any
) -> ServerSnapshot:
    """fourletter's ServerSnapshot of a serving core; `mode` is the core's (standalone, or
    an ensemble member's leader/follower/observer); `extra` sets the runner's fields
    (uptime_ms, environment, open_file_descriptor_count, ...)."""
    conns = tuple(
        ConnectionStats(
            remote_ip=c.remote_ip,
            remote_port=c.remote_port,
            # ZooKeeper shows the connection asking for the report as not reading.
            interest_ops=0 if c.asking else 1,
            outstanding_requests=c.outstanding_requests,
            packets_received=c.packets_received,
            packets_sent=c.packets_sent,
            session_id=c.session_id,
            last_operation=c.last_operation,
            established_ms=c.established_ms,
            session_timeout_ms=c.session_timeout_ms,
            last_cxid=c.last_cxid,
            last_zxid=c.last_zxid,
            last_response_ms=c.last_response_ms,
            last_latency_ms=c.last_latency_ms,
            min_latency_ms=c.min_latency_ms,
            avg_latency_ms=c.avg_latency_ms,
            max_latency_ms=c.max_latency_ms,
        )
        for c in stats.connections
    )
    return ServerSnapshot(
        mode=mode,
        zxid=stats.zxid,
        node_count=stats.node_count,
        conf=conf,
        connections=conns,
        latency_min_ms=stats.latency_min_ms,
        latency_avg_ms=rounded_avg_latency(stats.latency_total_ms, stats.latency_count),
        latency_max_ms=stats.latency_max_ms,
        packets_received=stats.packets_received,
        packets_sent=stats.packets_sent,
        outstanding_requests=stats.outstanding_requests,
        watch_count=stats.watch_count,
        watched_paths=stats.watched_paths,
        watching_connections=stats.watching_connections,
        ephemerals_count=stats.ephemerals_count,
        approximate_data_size=stats.approximate_data_size,
        global_sessions=stats.global_sessions,
        local_sessions=stats.local_sessions,
        **extra,
    )
