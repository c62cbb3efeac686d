"""Read-only mode (readonlymode.enabled) on a 3-server ensemble of real processes.

Two members are killed (SIGKILL by PID); the survivor, LOOKING for a quorum it cannot get,
starts serving read-only clients after ZooKeeper's grace period: kazoo with read_only=True
connects (KeeperState.CONNECTED_RO) and reads what was written before, a write fails with
NotReadOnlyCallError, and a client that did not ask for read-only is refused. `isro` says
ro, srvr/mntr say read-only. When the two come back, the survivor rejoins the quorum, drops
its read-only clients and says rw; the kazoo client ends up on a read-write server (its
read-only session was local, so it gets a new one) and writes. A member stopped (SIGTERM)
while read-only exits cleanly with its data.

The last test runs the same probe of the read-only server against Corral and against an
ensemble of Apache ZooKeeper 3.8 (with localSessionsEnabled=true, without which ZooKeeper
3.7+ creates no session in read-only mode at all) and compares the answers.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient  # type: ignore[import-untyped]
from kazoo.exceptions import NotReadOnlyCallError  # type: ignore[import-untyped]
from kazoo.protocol.states import KazooState, KeeperState  # type: ignore[import-untyped]
from kazoo.retry import KazooRetry  # type: ignore[import-untyped]

from corral.proto.codes import OpCode
from corral.proto.records import (
    CheckVersionRequest,
    GetChildrenRequest,
    GetDataRequest,
    ReconfigRequest,
    Stat,
)
from support import kazoo_client
from support import zookeeper as zookeeper_support
from support.corral_ensemble import LocalEnsemble
from support.procs import HOST
from support.rawclient import ConnectionClosed, RawClient

WAIT_S = 60.0
READ_ONLY = {"readonlymode.enabled": "true"}
MODE = re.compile(r"^Mode: (\S+)$", re.MULTILINE)
ZXID = re.compile(r"^Zxid: 0x([0-9a-f]+)$", re.MULTILINE)


def word(port: int, w: str) -> str:
    """A four-letter word's answer ("" if the port does not answer)."""
    try:
        with socket.create_connection((HOST, port), timeout=5.0) as sock:
            sock.sendall(w.encode())
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except OSError:
        return ""
    return b"".join(chunks).decode()


def wait_until(what: str, check: Callable[[], object], ens: LocalEnsemble) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{ens.logs()}")
        time.sleep(0.05)


def kazoo(hosts: str, *, read_only: bool = False, timeout: float = 4.0) -> KazooClient:
    retry = KazooRetry(max_tries=-1, delay=0.05, backoff=1.5, max_delay=0.5)
    return KazooClient(
        hosts=hosts,
        timeout=timeout,
        read_only=read_only,
        randomize_hosts=False,
        connection_retry=retry,
        command_retry=retry,
    )


def write_initial_data(ens: LocalEnsemble) -> None:
    zk = kazoo(ens.connect_string())
    zk.start(timeout=WAIT_S)
    try:
        zk.create("/ro", b"before")
        zk.create("/ro/child", b"c")
        zk.set("/ro", b"written-before")
        zk.sync("/")
    finally:
        kazoo_client.stop(zk)


def cut_off(ens: LocalEnsemble, survivor: int) -> list[int]:
    """Kill every member but `survivor`; wait until it serves read-only."""
    others = [s for s in ens.members if s != survivor]
    for sid in others:
        ens.kill(sid)
    port = ens.members[survivor].client_port
    wait_until("read-only service", lambda: word(port, "isro") == "ro", ens)
    return others


def test_a_member_cut_off_from_its_quorum_serves_read_only_clients(tmp_path: Path) -> None:
    with LocalEnsemble(tmp_path / "ro", size=3, tick_ms=200, properties=READ_ONLY) as ens:
        ens.start_all()
        write_initial_data(ens)
        leader = ens.leader()
        survivor = next(s for s in ens.members if s != leader)
        port = ens.members[survivor].client_port
        assert word(port, "isro") == "rw"

        others = cut_off(ens, survivor)
        srvr = word(port, "srvr")
        assert "READ-ONLY mode; serving only read-only clients" in srvr
        mode = MODE.search(srvr)
        assert mode is not None and mode[1] == "read-only", srvr
        assert "zk_server_state\tread-only\n" in word(port, "mntr")

        # A client that does not ask for read-only service is closed at once.
        with pytest.raises(ConnectionClosed):
            RawClient.connect((HOST, port), read_only=False, io_timeout_s=10)

        # kazoo, read_only=True, with every member in its list: it lands on the survivor.
        ro = kazoo(ens.connect_string([*others, survivor]), read_only=True)
        states: list[str] = []
        ro.add_listener(states.append)
        ro.start(timeout=WAIT_S)
        try:
            assert ro.client_state == KeeperState.CONNECTED_RO
            assert ro.state == KazooState.CONNECTED
            assert ro.get("/ro")[0] == b"written-before"
            assert ro.get_children("/ro") == ["child"]
            assert ro.exists("/ro/child") is not None
            with pytest.raises(NotReadOnlyCallError):
                ro.create("/during", b"x")
            with pytest.raises(NotReadOnlyCallError):
                ro.set("/ro", b"no")
            assert ro.get("/ro")[0] == b"written-before"
            ro_session = ro.client_id[0]

            # The quorum comes back: the survivor leaves read-only mode, its read-only
            # clients are disconnected, and kazoo ends up on a read-write server.
            for sid in others:
                ens.start(sid)
            ens.wait_serving(sorted(ens.members), timeout_s=WAIT_S)
            wait_until("isro rw", lambda: word(port, "isro") == "rw", ens)
            wait_until(
                "kazoo on a read-write server",
                lambda: ro.client_state == KeeperState.CONNECTED,
                ens,
            )
            assert ro.client_id[0] != ro_session  # a read-only session is local to its server
            ro.retry(ro.create, "/after", b"rw again")
            ro.sync("/")
            assert ro.get("/after")[0] == b"rw again"
            assert ro.get("/ro")[0] == b"written-before"
            assert KazooState.SUSPENDED in states
        finally:
            kazoo_client.stop(ro)
        # The survivor's tree went back into the quorum intact and in step.
        zk = kazoo(ens.connect_string([survivor]))
        zk.start(timeout=WAIT_S)
        try:
            zk.sync("/")
            assert zk.get("/after")[0] == b"rw again"
            assert zk.get("/ro")[0] == b"written-before"
        finally:
            kazoo_client.stop(zk)


def test_a_read_only_member_stops_cleanly_and_keeps_its_data(tmp_path: Path) -> None:
    with LocalEnsemble(tmp_path / "stop", size=3, tick_ms=200, properties=READ_ONLY) as ens:
        ens.start_all()
        write_initial_data(ens)
        survivor = next(s for s in ens.members if s != ens.leader())
        cut_off(ens, survivor)
        client = RawClient.connect((HOST, ens.members[survivor].client_port), read_only=True)
        try:
            proc = ens.members[survivor].proc
            assert proc is not None
            proc.terminate()  # SIGTERM while serving read-only clients
            assert proc.wait(WAIT_S) == 0, ens.logs()
            assert client.connection_closed(WAIT_S)
        finally:
            client.abort()
        assert "stopped cleanly" in ens.members[survivor].log_text()
        for sid in sorted(ens.members):
            ens.start(sid)
        ens.wait_serving(sorted(ens.members), timeout_s=WAIT_S)
        zk = kazoo(ens.connect_string([survivor]))
        zk.start(timeout=WAIT_S)
        try:
            zk.sync("/")
            assert zk.get("/ro")[0] == b"written-before"
        finally:
            kazoo_client.stop(zk)


# -- the same probe against Apache ZooKeeper 3.8 ---------------------------------------------


def probe_read_only_server(ens: LocalEnsemble, survivor: int) -> dict[str, Any]:
    """What a read-only server answers, normalised to compare implementations."""
    port = ens.members[survivor].client_port
    address = (HOST, port)
    srvr = word(port, "srvr")
    zxid_match = ZXID.search(srvr)
    assert zxid_match is not None, srvr
    zxid = int(zxid_match[1], 16)
    mode = MODE.search(srvr)
    out: dict[str, Any] = {
        "isro": word(port, "isro"),
        "srvr mode": mode[1] if mode else None,
        "srvr read-only line": "READ-ONLY mode; serving only read-only clients" in srvr,
        "mntr state": "zk_server_state\tread-only\n" in word(port, "mntr"),
    }
    for name, kw in (
        ("rw client", {"read_only": False}),
        ("44-byte ConnectRequest", {"legacy": True}),
        ("zxid ahead", {"read_only": True, "last_zxid_seen": zxid + (1 << 32)}),
    ):
        try:
            RawClient.connect(address, io_timeout_s=10, **kw).abort()  # type: ignore[arg-type]
            out[name] = "connected"
        except ConnectionClosed:
            out[name] = "closed"
    with RawClient.connect(address, read_only=True, timeout_ms=4000, io_timeout_s=10) as c:
        assert c.connect_response is not None
        out["connect"] = (c.connect_response.read_only, c.connect_response.timeout)

        def reply(name: str, rep: Any) -> None:
            assert rep.zxid == zxid, (name, hex(rep.zxid), hex(zxid))
            out[name] = (rep.err, normalise(rep.result))

        reply("getData", c.get_data("/ro", watch=True))
        reply("exists", c.exists("/ro/child", watch=True))
        reply("exists missing", c.exists("/nope", watch=True))
        reply("getChildren", c.get_children("/ro", watch=True))
        reply("getChildren2", c.get_children2("/ro"))
        reply("getACL", c.get_acl("/ro"))
        reads: list[tuple[int, Any]] = [
            (OpCode.GET_DATA, GetDataRequest("/ro/child", False)),
            (OpCode.GET_CHILDREN, GetChildrenRequest("/ro", False)),
        ]
        reply("multiRead", c.multi_read(reads))
        reply("getAllChildrenNumber", c.get_all_children_number("/ro"))
        reply("sync", c.sync("/ro"))
        reply("create", c.create("/x", b""))
        reply("create2", c.create2("/x", b""))
        reply("createContainer", c.create_container("/x", b""))
        reply("createTTL", c.create_ttl("/x", 1000))
        reply("delete", c.delete("/ro/child"))
        reply("setData", c.set_data("/ro", b"z"))
        reply("setACL", c.set_acl("/ro", ()))
        reply("check", c.check("/ro", 1))
        reply("multi", c.multi([(OpCode.CHECK, CheckVersionRequest("/ro", 1))]))
        reply("reconfig", c.request(OpCode.RECONFIG, ReconfigRequest("", "", "", -1)))
        reply("setWatches", c.set_watches(0, ["/ro"], [], []))
        out["events"] = [(e.type, e.path) for e in c.take_events()]
        out["ping"] = c.ping().err
        out["getData after"] = c.get_data("/ro").result.data
    return out


def normalise(value: Any) -> Any:
    """A reply body without what differs between two runs (times, zxids, session ids)."""
    if isinstance(value, Stat):
        return ("Stat", value.version, value.cversion, value.aversion, value.data_length,
                value.num_children)  # fmt: skip
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = (normalise(getattr(value, f.name)) for f in dataclasses.fields(value))
        return (type(value).__name__, *fields)
    if isinstance(value, list | tuple):
        return tuple(normalise(v) for v in value)
    return value


def start_zookeeper_member(ens: LocalEnsemble, sid: int) -> None:
    """Member `sid` as Apache ZooKeeper (QuorumPeerMain) with readonlymode.enabled (a system
    property: ZooKeeper does not read it from zoo.cfg)."""
    m = ens.members[sid]
    classpath = [str(zookeeper_support.ZOOKEEPER_JAR)]
    if zookeeper_support.LOGGER_JAR.is_file():
        classpath.append(str(zookeeper_support.LOGGER_JAR))
    m.log_start = len(m.log_text())
    with open(m.log_path, "ab") as log:
        m.proc = subprocess.Popen(
            [
                shutil.which("java") or "java",
                *zookeeper_support.JVM_FLAGS,
                "-Dreadonlymode.enabled=true",
                "-Dzookeeper.admin.enableServer=false",
                "-cp",
                os.pathsep.join(classpath),
                "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                str(m.home / "zoo.cfg"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    m.zookeeper = True


def probe(tmp_path: Path, zookeeper: bool) -> dict[str, Any]:
    with LocalEnsemble(tmp_path, size=3, tick_ms=200, properties=READ_ONLY) as ens:
        for m in ens.members.values():
            cfg = m.home / "zoo.cfg"
            cfg.write_text(cfg.read_text() + "localSessionsEnabled=true\n")
        for sid in ens.members:
            if zookeeper:
                start_zookeeper_member(ens, sid)
            else:
                ens.start(sid)
        ens.wait_serving(sorted(ens.members), timeout_s=90)
        write_initial_data(ens)
        survivor = next(s for s in ens.members if s != ens.leader())
        others = cut_off(ens, survivor)
        result = probe_read_only_server(ens, survivor)
        # Back to read-write: the read-only client is disconnected, isro says rw.
        port = ens.members[survivor].client_port
        client = RawClient.connect((HOST, port), read_only=True, io_timeout_s=10)
        try:
            for sid in others:
                if zookeeper:
                    start_zookeeper_member(ens, sid)
                else:
                    ens.start(sid)
            result["ro client disconnected"] = client.connection_closed(WAIT_S)
        finally:
            client.abort()
        wait_until("isro rw", lambda: word(port, "isro") == "rw", ens)
        return result


@pytest.mark.zookeeper
@pytest.mark.timeout(400)
def test_read_only_answers_match_zookeeper(tmp_path: Path) -> None:
    why = zookeeper_support.available()
    if why is not None:
        pytest.skip(why)
    ours = probe(tmp_path / "corral", zookeeper=False)
    theirs = probe(tmp_path / "zookeeper", zookeeper=True)
    assert ours == theirs
    # Not vacuous: ZooKeeper's own answers are what the module docstring says.
    assert theirs["isro"] == "ro" and theirs["rw client"] == "closed"
    assert theirs["connect"] == (True, 4000)
    assert theirs["getData"][0] == 0 and theirs["getData after"] == b"written-before"
    assert theirs["sync"] == theirs["create"] == theirs["multi"] == (-119, None)
    assert theirs["events"] and theirs["ro client disconnected"]
