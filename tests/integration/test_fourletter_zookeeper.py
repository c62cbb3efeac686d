"""Four-letter word texts: our renderer against a live Apache ZooKeeper 3.8.

Each answer of the live server is parsed into a ServerSnapshot (or its parts), rendered
again by Corral's renderer and compared byte for byte: the layout must be ZooKeeper's.
"""

from __future__ import annotations

import re
import socket
from typing import Any

from corral.admin.fourletter import (
    ConnectionStats,
    ServerConf,
    ServerSnapshot,
    answer,
    parse_whitelist,
    render,
)
from support import kazoo_client
from support.procs import ServerProcess, ServerSettings

_CONN = re.compile(
    r" /(?P<ip>[^\[\]]+|\[[^\]]+\]):(?P<port>\d+)\[(?P<ops>[0-9a-f]+)\]"
    r"\(queued=(?P<q>\d+),recved=(?P<r>\d+),sent=(?P<s>\d+)\)"
)


def ask(server: ServerProcess, word: str) -> str:
    with socket.create_connection(server.address, timeout=10) as s:
        s.sendall(word.encode())
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def _stats(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            out[key] = value
    return out


def _snapshot_from_srvr(text: str, connections: tuple[ConnectionStats, ...]) -> ServerSnapshot:
    st = _stats(text)
    lat_min, lat_avg, lat_max = st["Latency min/avg/max"].split("/")
    return ServerSnapshot(
        version=st["Zookeeper version"],
        mode=st["Mode"],
        zxid=int(st["Zxid"], 16),
        node_count=int(st["Node count"]),
        conf=ServerConf(0, "", "", 0, 0, 0, 0),
        connections=connections,
        latency_min_ms=int(lat_min),
        latency_avg_ms=float(lat_avg),
        latency_max_ms=int(lat_max),
        packets_received=int(st["Received"]),
        packets_sent=int(st["Sent"]),
        outstanding_requests=int(st["Outstanding"]),
    )


def test_srvr_and_stat_layout(zookeeper: ServerProcess) -> None:
    client = kazoo_client.start(zookeeper.address, start_timeout=30)
    try:
        client.ensure_path("/fourletter")
        srvr = ask(zookeeper, "srvr")
        n = int(_stats(srvr)["Connections"])
        snap = _snapshot_from_srvr(srvr, tuple(ConnectionStats("127.0.0.1", 1) for _ in range(n)))
        assert render("srvr", snap) == srvr

        stat = ask(zookeeper, "stat")
        conns = tuple(
            ConnectionStats(
                m["ip"], int(m["port"]), int(m["ops"], 16), int(m["q"]), int(m["r"]), int(m["s"])
            )
            for m in _CONN.finditer(stat)
        )
        assert len(conns) >= 2  # kazoo's session and this very connection
        assert render("stat", _snapshot_from_srvr(stat, conns)) == stat

        # kazoo reads the version from envi; ours must parse the same way.
        assert client.server_version() == (3, 8, 0)
    finally:
        kazoo_client.stop(client)


def test_conf_layout(zookeeper: ServerProcess) -> None:
    conf = ask(zookeeper, "conf")
    kv = dict(line.split("=", 1) for line in conf.splitlines())
    ours = ServerConf(
        client_port=int(kv["clientPort"]),
        secure_client_port=int(kv["secureClientPort"]),
        data_dir=kv["dataDir"],
        data_dir_size=int(kv["dataDirSize"]),
        data_log_dir=kv["dataLogDir"],
        data_log_size=int(kv["dataLogSize"]),
        tick_time=int(kv["tickTime"]),
        max_client_cnxns=int(kv["maxClientCnxns"]),
        min_session_timeout=int(kv["minSessionTimeout"]),
        max_session_timeout=int(kv["maxSessionTimeout"]),
        client_port_listen_backlog=int(kv["clientPortListenBacklog"]),
        server_id=int(kv["serverId"]),
    )
    snap = ServerSnapshot(mode="standalone", zxid=0, node_count=0, conf=ours)
    assert render("conf", snap) == conf


def test_mntr_gauges_layout(zookeeper: ServerProcess) -> None:
    live = ask(zookeeper, "mntr").splitlines()
    values = dict(line[3:].split("\t", 1) for line in live)
    snap = ServerSnapshot(
        version=values["version"],
        mode=values["server_state"],
        zxid=0,
        node_count=int(values["znode_count"]),
        conf=ServerConf(0, "", "", 0, 0, 0, 0),
        connections=tuple(
            ConnectionStats("127.0.0.1", 1) for _ in range(int(values["num_alive_connections"]))
        ),
        latency_min_ms=int(values["min_latency"]),
        latency_avg_ms=float(values["avg_latency"]),
        latency_max_ms=int(values["max_latency"]),
        packets_received=int(values["packets_received"]),
        packets_sent=int(values["packets_sent"]),
        outstanding_requests=int(values["outstanding_requests"]),
        watch_count=int(values["watch_count"]),
        ephemerals_count=int(values["ephemerals_count"]),
        approximate_data_size=int(values["approximate_data_size"]),
        global_sessions=int(values["global_sessions"]),
        local_sessions=int(values["local_sessions"]),
        uptime_ms=int(values["uptime"]),
        open_file_descriptor_count=int(values["open_file_descriptor_count"]),
        max_file_descriptor_count=int(values["max_file_descriptor_count"]),
        connection_drop_probability=float(values["connection_drop_probability"]),
        last_client_response_size=int(values["last_client_response_size"]),
        min_client_response_size=int(values["min_client_response_size"]),
        max_client_response_size=int(values["max_client_response_size"]),
        outstanding_tls_handshake=int(values["outstanding_tls_handshake"]),
        auth_failed_count=int(values["auth_failed_count"]),
        non_mtls_remote_conn_count=int(values["non_mtls_remote_conn_count"]),
        non_mtls_local_conn_count=int(values["non_mtls_local_conn_count"]),
    )
    ours = render("mntr", snap)
    assert ours is not None
    # Version, state and the 24 gauges come first, in ZooKeeper's order and format.
    assert ours.splitlines() == live[:26]


def test_small_words(zookeeper: ServerProcess) -> None:
    assert ask(zookeeper, "ruok") == render("ruok", None)
    assert ask(zookeeper, "isro") == "rw"
    envi = ask(zookeeper, "envi")
    assert envi.startswith("Environment:\nzookeeper.version=3.8.0")


def test_whitelist_refusal(zookeeper_pool: Any) -> None:
    server = zookeeper_pool.get(ServerSettings(four_letter_words="ruok"))
    refused = ask(server, "stat")
    wl = parse_whitelist("ruok")
    assert answer("stat", None, wl) == refused.encode()
    # srvr is on whatever the whitelist says.
    assert ask(server, "srvr").startswith("Zookeeper version: ")
