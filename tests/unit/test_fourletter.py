"""Four-letter word rendering, checked against text captured from Apache ZooKeeper 3.8.0."""

from __future__ import annotations

import re

import pytest
from kazoo.client import KazooClient  # type: ignore[import-untyped]

from corral import ZOOKEEPER_COMPAT_VERSION, __version__
from corral.admin.fourletter import (
    ALL_COMMANDS,
    ZK_NOT_SERVING,
    ConnectionStats,
    LeaderStats,
    ServerConf,
    ServerSnapshot,
    answer,
    collect_environment,
    command_for,
    corral_full_version,
    java_double,
    java_socket_address,
    parse_whitelist,
    render,
    rounded_avg_latency,
)

ZK_VERSION = "3.8.0-${mvngit.commit.id}, built on 2024-12-29 17:54 UTC"

CONF = ServerConf(
    client_port=56501,
    data_dir="/tmp/zk1/data/version-2",
    data_dir_size=457,
    data_log_dir="/tmp/zk1/data/version-2",
    data_log_size=457,
    tick_time=2000,
    max_client_cnxns=60,
    min_session_timeout=4000,
    max_session_timeout=40000,
)

SESSION_CONN = ConnectionStats(
    remote_ip="127.0.0.1",
    remote_port=56494,
    interest_ops=1,
    packets_received=6,
    packets_sent=6,
    session_id=0x1000009B3260000,
    last_operation="EXIS",
    established_ms=1795683186809,
    session_timeout_ms=10000,
    last_cxid=5,
    last_zxid=3,
    last_response_ms=673460,
    last_latency_ms=1,
    min_latency_ms=0,
    avg_latency_ms=9,
    max_latency_ms=42,
)
FOURLW_CONN = ConnectionStats("127.0.0.1", 56518, interest_ops=0, packets_received=1)

# State of the ZooKeeper 3.8.0 server the texts below were captured from.
LIVE = ServerSnapshot(
    version=ZK_VERSION,
    mode="standalone",
    zxid=3,
    node_count=7,
    conf=CONF,
    connections=(ConnectionStats("127.0.0.1", 56542, 0, 0, 1, 0), SESSION_CONN),
    latency_min_ms=1,
    latency_avg_ms=rounded_avg_latency(19, 2),
    latency_max_ms=42,
    packets_received=17,
    packets_sent=17,
)


def test_srvr_matches_zookeeper() -> None:
    assert render("srvr", LIVE) == (
        f"Zookeeper version: {ZK_VERSION}\n"
        "Latency min/avg/max: 1/9.5/42\n"
        "Received: 17\n"
        "Sent: 17\n"
        "Connections: 2\n"
        "Outstanding: 0\n"
        "Zxid: 0x3\n"
        "Mode: standalone\n"
        "Node count: 7\n"
    )


def test_stat_matches_zookeeper() -> None:
    assert render("stat", LIVE) == (
        f"Zookeeper version: {ZK_VERSION}\n"
        "Clients:\n"
        " /127.0.0.1:56542[0](queued=0,recved=1,sent=0)\n"
        " /127.0.0.1:56494[1](queued=0,recved=6,sent=6)\n"
        "\n"
        "Latency min/avg/max: 1/9.5/42\n"
        "Received: 17\n"
        "Sent: 17\n"
        "Connections: 2\n"
        "Outstanding: 0\n"
        "Zxid: 0x3\n"
        "Mode: standalone\n"
        "Node count: 7\n"
    )


def test_fresh_server_srvr() -> None:
    fresh = ServerSnapshot(
        version=ZK_VERSION,
        mode="standalone",
        zxid=0,
        node_count=5,
        conf=CONF,
        connections=(FOURLW_CONN,),
        packets_received=2,
        packets_sent=1,
    )
    assert render("srvr", fresh) == (
        f"Zookeeper version: {ZK_VERSION}\nLatency min/avg/max: 0/0.0/0\nReceived: 2\nSent: 1\n"
        "Connections: 1\nOutstanding: 0\nZxid: 0x0\nMode: standalone\nNode count: 5\n"
    )


def test_cons_matches_zookeeper() -> None:
    snap = ServerSnapshot(
        mode="standalone", zxid=3, node_count=7, conf=CONF, connections=(SESSION_CONN, FOURLW_CONN)
    )
    assert render("cons", snap) == (
        " /127.0.0.1:56494[1](queued=0,recved=6,sent=6,sid=0x1000009b3260000,lop=EXIS,"
        "est=1795683186809,to=10000,lcxid=0x5,lzxid=0x3,lresp=673460,llat=1,minlat=0,"
        "avglat=9,maxlat=42)\n"
        " /127.0.0.1:56518[0](queued=0,recved=1,sent=0)\n"
        "\n"
    )


def test_conf_matches_zookeeper() -> None:
    assert render("conf", LIVE) == (
        "clientPort=56501\nsecureClientPort=-1\ndataDir=/tmp/zk1/data/version-2\n"
        "dataDirSize=457\ndataLogDir=/tmp/zk1/data/version-2\ndataLogSize=457\n"
        "tickTime=2000\nmaxClientCnxns=60\nminSessionTimeout=4000\nmaxSessionTimeout=40000\n"
        "clientPortListenBacklog=-1\nserverId=0\n"
    )


def test_conf_quorum_lines() -> None:
    conf = ServerConf(
        client_port=2181,
        data_dir="/d/version-2",
        data_log_dir="/d/version-2",
        tick_time=2000,
        max_client_cnxns=60,
        min_session_timeout=4000,
        max_session_timeout=40000,
        server_id=2,
        quorum=(
            ("initLimit", "10"),
            ("syncLimit", "5"),
            ("electionAlg", "3"),
            ("electionPort", "3888"),
            ("quorumPort", "2888"),
            ("peerType", "0"),
        ),
        membership="server.1=h1:2888:3888:participant;0.0.0.0:2181\nversion=0",
    )
    snap = ServerSnapshot(mode="follower", zxid=0, node_count=4, conf=conf)
    text = render("conf", snap)
    assert text is not None
    assert text.endswith(
        "serverId=2\ninitLimit=10\nsyncLimit=5\nelectionAlg=3\nelectionPort=3888\n"
        "quorumPort=2888\npeerType=0\nmembership: \n"
        "server.1=h1:2888:3888:participant;0.0.0.0:2181\nversion=0"
    )


def test_mntr_matches_zookeeper_gauges() -> None:
    snap = ServerSnapshot(
        version=ZK_VERSION,
        mode="standalone",
        zxid=0,
        node_count=5,
        conf=CONF,
        connections=(FOURLW_CONN,),
        packets_received=7,
        packets_sent=6,
        approximate_data_size=44,
        uptime_ms=6984,
        open_file_descriptor_count=38,
        max_file_descriptor_count=20000,
        extra_metrics=(("proposal_count", 0), ("avg_fsynctime", 0.0), ("p50_readlatency", 0)),
    )
    assert render("mntr", snap) == (
        f"zk_version\t{ZK_VERSION}\nzk_server_state\tstandalone\nzk_ephemerals_count\t0\n"
        "zk_num_alive_connections\t1\nzk_avg_latency\t0.0\nzk_outstanding_requests\t0\n"
        "zk_znode_count\t5\nzk_global_sessions\t0\nzk_non_mtls_remote_conn_count\t0\n"
        "zk_last_client_response_size\t-1\nzk_packets_sent\t6\nzk_packets_received\t7\n"
        "zk_max_client_response_size\t-1\nzk_connection_drop_probability\t0.0\n"
        "zk_watch_count\t0\nzk_auth_failed_count\t0\nzk_min_latency\t0\n"
        "zk_max_file_descriptor_count\t20000\nzk_approximate_data_size\t44\n"
        "zk_open_file_descriptor_count\t38\nzk_local_sessions\t0\nzk_uptime\t6984\n"
        "zk_max_latency\t0\nzk_outstanding_tls_handshake\t0\nzk_min_client_response_size\t-1\n"
        "zk_non_mtls_local_conn_count\t0\n"
        "zk_proposal_count\t0\nzk_avg_fsynctime\t0.0\nzk_p50_readlatency\t0\n"
    )


def test_leader_extras() -> None:
    leader = LeaderStats(
        learners=2,
        synced_followers=2,
        last_proposal_size=90,
        min_proposal_size=36,
        max_proposal_size=120,
    )
    snap = ServerSnapshot(mode="leader", zxid=0x100000002, node_count=4, conf=CONF, leader=leader)
    srvr = render("srvr", snap)
    assert srvr is not None
    assert srvr.endswith(
        "Zxid: 0x100000002\nMode: leader\nNode count: 4\n"
        "Proposal sizes last/min/max: 90/36/120\n"
    )
    mntr = render("mntr", snap)
    assert mntr is not None
    assert "zk_learners\t2\nzk_synced_followers\t2\n" in mntr
    assert "zk_max_proposal_size\t120\nzk_min_proposal_size\t36\n" in mntr


def test_read_only_mode() -> None:
    snap = ServerSnapshot(mode="read-only", zxid=0, node_count=4, conf=CONF)
    text = render("srvr", snap)
    assert text is not None
    assert text.splitlines()[1] == "READ-ONLY mode; serving only read-only clients"
    assert "Mode: read-only\n" in text
    assert render("isro", snap) == "ro"
    assert render("isro", LIVE) == "rw"


def test_not_serving() -> None:
    down = ServerSnapshot(mode="standalone", zxid=0, node_count=0, conf=CONF, serving=False)
    for cmd in ("srvr", "stat", "conf", "cons", "mntr", "wchs", "dirs"):
        assert render(cmd, down) == ZK_NOT_SERVING + "\n"
        assert render(cmd, None) == ZK_NOT_SERVING + "\n"
    assert render("isro", down) == "null"
    assert render("ruok", None) == "imok"
    envi = render("envi", None)
    assert envi is not None and envi.startswith("Environment:\nzookeeper.version=")


def test_wchs_and_dirs() -> None:
    snap = ServerSnapshot(
        mode="standalone",
        zxid=0,
        node_count=0,
        conf=CONF,
        watch_count=2,
        watched_paths=2,
        watching_connections=1,
    )
    assert render("wchs", snap) == "1 connections watching 2 paths\nTotal watches:2\n"
    assert render("dirs", snap) == "datadir_size: 457\nlogdir_size: 457\n"


def test_unrendered_commands() -> None:
    for cmd in ("dump", "wchc", "wchp", "hash", "gtmk", "stmk", "srst", "crst"):
        assert render(cmd, LIVE) is None


def test_envi_and_kazoo_server_version() -> None:
    snap = ServerSnapshot(
        mode="standalone", zxid=0, node_count=4, conf=CONF, environment=collect_environment()
    )
    text = render("envi", snap)
    assert text is not None
    lines = text.splitlines()
    assert lines[0] == "Environment:"
    assert lines[1] == f"zookeeper.version={ZOOKEEPER_COMPAT_VERSION}-corral-{__version__}"
    assert f"corral.version={__version__}" in lines
    assert all("=" in line for line in lines[1:])

    # kazoo's server_version() asks for envi and parses it; feed it ours.
    client = KazooClient(hosts="127.0.0.1:1")
    client.command = lambda cmd=b"ruok": text
    expected = tuple(int(d) for d in ZOOKEEPER_COMPAT_VERSION.split("."))
    assert client.server_version(retries=0) == expected


def test_corral_version_string() -> None:
    version = corral_full_version()
    assert re.match(r"^\d+\.\d+\.\d+-", version)
    assert "corral" in version
    assert render("srvr", ServerSnapshot(mode="standalone", zxid=0, node_count=4, conf=CONF))


def test_whitelist_semantics() -> None:
    assert parse_whitelist(None) == {"srvr"}  # ZooKeeper's default
    assert parse_whitelist("") == {"srvr"}
    assert parse_whitelist(None, readonly_mode_enabled=True) == {"srvr", "isro"}
    assert parse_whitelist(" stat , ruok,,") == {"stat", "ruok", "srvr"}
    assert parse_whitelist("*") == ALL_COMMANDS
    assert parse_whitelist("ruok, *, bogus") == ALL_COMMANDS | {"ruok"}
    assert parse_whitelist("ruok") >= {"srvr"}  # srvr cannot be switched off


def test_answer_applies_whitelist() -> None:
    wl = parse_whitelist("ruok")
    assert answer("ruok", LIVE, wl) == b"imok"
    assert answer("srvr", LIVE, wl) is not None
    assert answer("stat", LIVE, wl) == b"stat is not executed because it is not in the whitelist.\n"
    assert answer("dump", LIVE, parse_whitelist("*")) is None


def test_command_for() -> None:
    assert command_for(b"ruok") == "ruok"
    assert command_for(b"mntr") == "mntr"
    assert command_for(b"\xff\xf4\xff\xfd") == "telnet close"
    assert command_for(b"\x00\x00\x00\x2c") is None  # a ConnectRequest's length
    assert command_for(b"RUOK") is None
    assert command_for(b"\xff\xff\xff\xff") is None


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0.0"),
        (9.5, "9.5"),
        (100.0, "100.0"),
        (1e7, "1.0E7"),
        (12345678.9, "1.23456789E7"),
        (0.0001, "1.0E-4"),
        (0.001, "0.001"),
        (0.002, "0.002"),
        (1e21, "1.0E21"),
        (-2.5, "-2.5"),
        (9999999.99, "9999999.99"),
        (0.3333333333333333, "0.3333333333333333"),
        (3.0e10, "3.0E10"),
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
    ],
)
def test_java_double(value: float, text: str) -> None:
    # Expected values printed by Java's Double.toString (JDK 17).
    assert java_double(value) == text


def test_rounded_avg_latency() -> None:
    assert rounded_avg_latency(0, 0) == 0.0
    assert rounded_avg_latency(19, 2) == 9.5
    assert rounded_avg_latency(1, 3) == 0.3333
    assert rounded_avg_latency(2, 3) == 0.6667
    assert rounded_avg_latency(1, 8) == 0.125


def test_java_socket_address() -> None:
    assert java_socket_address("127.0.0.1", 5) == "/127.0.0.1:5"
    assert java_socket_address("::1", 2181) == "/[0:0:0:0:0:0:0:1]:2181"
    assert java_socket_address("fe80::1%eth0", 1) == "/[fe80:0:0:0:0:0:0:1%eth0]:1"
    assert java_socket_address("::ffff:10.0.0.1", 7) == "/10.0.0.1:7"
