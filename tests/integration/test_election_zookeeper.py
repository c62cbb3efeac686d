"""Corral's election against a real Apache ZooKeeper 3.8 peer (Debian's package).

One ZooKeeper QuorumPeerMain runs as server 2 of a 3-server ensemble on loopback; this test
plays servers 1 and 3 with Corral's pure FastLeaderElection cores over real sockets: it
accepts ZooKeeper's connection on server 1's election port, dials ZooKeeper's election port
as server 3 (the larger sid keeps the connection it dials), and relays notifications.

The evidence of wire compatibility is ZooKeeper's own behaviour: it decides the role our
cores expect, and as a follower it dials the chosen leader's quorum port and sends
FOLLOWERINFO, which we read and decode. Processes are killed by PID; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import selectors
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from corral.proto import jute
from corral.proto.records import LearnerInfo, QuorumPacket
from corral.quorum.election import FastLeaderElection, Ready, ServerState
from corral.quorum.election_wire import (
    InitialMessage,
    Notification,
    decode_frame,
    decode_initial_message,
    decode_notification,
    encode_frame,
    encode_initial_message,
    encode_notification,
)
from corral.quorum.verifier import QuorumServer, QuorumVerifier
from support.procs import HOST, free_port

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
LOGGER_JAR = Path("/usr/share/java/slf4j-simple.jar")
FOLLOWERINFO = 11
DEADLINE_S = 40.0

pytestmark = [
    pytest.mark.zookeeper,
    pytest.mark.skipif(
        not ZOOKEEPER_JAR.is_file() or shutil.which("java") is None,
        reason="Debian's ZooKeeper (and java) are not installed",
    ),
]


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


@dataclass
class Conn:
    sock: socket.socket
    peer: int | None  # known once the initiation message is read (or when we dialled)
    inbuf: bytearray = field(default_factory=bytearray)


class Ensemble:
    """ZooKeeper as server 2; our cores as 1 and 3, relayed over real sockets."""

    def __init__(self, workdir: Path, zxids: dict[int, tuple[int, int]]) -> None:
        self.workdir = workdir
        self.zxids = zxids  # our cores' (last zxid, current epoch)
        self.ports = {sid: (free_port(), free_port()) for sid in (1, 2, 3)}
        self.verifier = QuorumVerifier(
            tuple(QuorumServer(sid, HOST, q, e) for sid, (q, e) in self.ports.items())
        )
        self.cores = {sid: FastLeaderElection(sid, self.verifier) for sid in (1, 3)}
        self.decisions: dict[int, Ready] = {}
        self.sel = selectors.DefaultSelector()
        self.conns: dict[int, Conn] = {}  # ours -> the connection to ZooKeeper
        self.sockets: list[socket.socket] = []  # every socket opened, closed at stop()
        self.followerinfo: dict[int, LearnerInfo] = {}  # leader sid -> what ZooKeeper sent
        self.proc: subprocess.Popen[bytes] | None = None
        self.received: list[tuple[int, object]] = []
        self.raw: list[bytes] = []  # ZooKeeper's notification payloads, as sent

    # -- ZooKeeper ----------------------------------------------------------------------

    def start_zookeeper(self) -> None:
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        (data / "myid").write_text("2\n")
        lines = [
            "tickTime=500",
            "initLimit=20",
            "syncLimit=5",
            f"dataDir={data}",
            f"clientPort={free_port()}",
            f"clientPortAddress={HOST}",
            "admin.enableServer=false",
        ]
        lines += [f"server.{sid}={HOST}:{q}:{e}" for sid, (q, e) in self.ports.items()]
        cfg = self.workdir / "zoo.cfg"
        cfg.write_text("\n".join(lines) + "\n")
        classpath = f"{ZOOKEEPER_JAR}:{LOGGER_JAR}" if LOGGER_JAR.is_file() else str(ZOOKEEPER_JAR)
        cmd = [
            shutil.which("java") or "java",
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.net.preferIPv4Stack=true",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
            "-cp",
            classpath,
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            str(cfg),
        ]
        log = (self.workdir / "zookeeper.log").open("wb")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def log_text(self) -> str:
        path = self.workdir / "zookeeper.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # by PID: the Popen we started
            self.proc.wait(timeout=10)
        self.sel.close()
        for sock in self.sockets:
            sock.close()

    # -- our side -------------------------------------------------------------------------

    def listen(self) -> None:
        """Election ports of 1 and 3, and quorum ports of 1 and 3 (for FOLLOWERINFO)."""
        for sid in (1, 3):
            q, e = self.ports[sid]
            for port, kind in ((e, "election"), (q, "quorum")):
                s = socket.create_server((HOST, port))
                s.setblocking(False)
                self.sockets.append(s)
                self.sel.register(s, selectors.EVENT_READ, (kind, sid, None))

    def start_cores(self) -> None:
        now = _now_ms()
        for sid, core in self.cores.items():
            zxid, epoch = self.zxids[sid]
            self.perform(sid, core.start(now, zxid, epoch))

    def dial_zookeeper(self, sid: int) -> bool:
        """Server 3 dials ZooKeeper (2 < 3, so ZooKeeper keeps this connection)."""
        if sid in self.conns:
            return True
        try:
            sock = socket.create_connection((HOST, self.ports[2][1]), timeout=1.0)
        except OSError:
            return False
        self.sockets.append(sock)
        addr = [(HOST, self.ports[sid][1])]
        sock.sendall(encode_initial_message(InitialMessage(sid, tuple(addr))))
        sock.setblocking(False)
        conn = Conn(sock, 2)
        self.conns[sid] = conn
        self.sel.register(sock, selectors.EVENT_READ, ("peer", sid, conn))
        return True

    def perform(self, sid: int, ready: Ready) -> None:
        for dst, n in ready.sends:
            if dst == 2:
                conn = self.conns.get(sid)
                if conn is not None:
                    with contextlib.suppress(OSError):
                        conn.sock.sendall(encode_frame(encode_notification(n)))
            else:  # between our two cores: no socket needed
                self.perform(dst, self.cores[dst].receive(sid, n, _now_ms()))
        if ready.decision is not None:
            self.decisions[sid] = ready

    def on_readable(self, key: selectors.SelectorKey) -> None:
        kind, sid, conn = key.data
        if kind in ("election", "quorum"):
            sock, _ = key.fileobj.accept()  # type: ignore[union-attr]
            self.sockets.append(sock)
            sock.setblocking(False)
            new = Conn(sock, None)
            self.sel.register(sock, selectors.EVENT_READ, (kind + "-conn", sid, new))
            return
        assert isinstance(conn, Conn)
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.sel.unregister(conn.sock)
            conn.sock.close()
            if self.conns.get(sid) is conn:
                del self.conns[sid]
            return
        conn.inbuf += data
        if kind == "quorum-conn":
            self.read_followerinfo(sid, conn)
        else:
            self.read_election(sid, conn)

    def read_election(self, sid: int, conn: Conn) -> None:
        if conn.peer is None:
            got = decode_initial_message(bytes(conn.inbuf))
            if got is None:
                return
            init, end = got
            del conn.inbuf[:end]
            self.received.append((sid, init))
            conn.peer = init.sid
            assert init.sid == 2, init
            if sid == 3:
                # 2 < 3: the larger sid closes this and dials back.
                self.sel.unregister(conn.sock)
                conn.sock.close()
                self.dial_zookeeper(3)
                return
            old = self.conns.get(sid)
            if old is not None and old is not conn:
                self.sel.unregister(old.sock)
                old.sock.close()
            self.conns[sid] = conn
        while True:
            got_frame = decode_frame(bytes(conn.inbuf))
            if got_frame is None:
                return
            payload, end = got_frame
            del conn.inbuf[:end]
            self.raw.append(payload)
            n = decode_notification(payload)
            self.received.append((sid, n))
            self.perform(sid, self.cores[sid].receive(2, n, _now_ms()))

    def restart_core(self, sid: int, zxid: int, epoch: int) -> None:
        """A new process for one of ours: logical clock 0, LOOKING with these credentials."""
        self.cores[sid] = FastLeaderElection(sid, self.verifier)
        self.decisions.pop(sid, None)
        self.perform(sid, self.cores[sid].start(_now_ms(), zxid, epoch))

    def read_followerinfo(self, leader: int, conn: Conn) -> None:
        try:
            packet, _ = jute.decode(QuorumPacket, bytes(conn.inbuf))
        except jute.ProtocolError:
            return  # not all there yet
        assert packet.type == FOLLOWERINFO, packet
        info, _ = jute.decode(LearnerInfo, packet.data or b"")
        self.followerinfo[leader] = info

    def run(self, until: Callable[[], bool], deadline_s: float = DEADLINE_S) -> None:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if until():
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError("ZooKeeper exited:\n" + self.log_text()[-3000:])
            if 3 not in self.conns:
                self.dial_zookeeper(3)
            for key, _ in self.sel.select(timeout=0.05):
                self.on_readable(key)
            now = _now_ms()
            for sid, core in self.cores.items():
                deadline = core.next_deadline()
                if deadline is not None and now >= deadline:
                    self.perform(sid, core.tick(now))
        raise AssertionError(
            f"timed out; decisions={self.decisions} followerinfo={self.followerinfo}\n"
            + self.log_text()[-4000:]
        )


@pytest.fixture
def ensemble_factory(tmp_path: Path) -> Iterator[list[Ensemble]]:
    made: list[Ensemble] = []
    yield made
    for ens in made:
        ens.stop()


def _make(made: list[Ensemble], tmp_path: Path, zxids: dict[int, tuple[int, int]]) -> Ensemble:
    ens = Ensemble(tmp_path, zxids)
    made.append(ens)
    ens.listen()
    return ens


def test_fresh_ensemble_elects_the_highest_sid_and_zookeeper_follows_it(
    ensemble_factory: list[Ensemble], tmp_path: Path
) -> None:
    ens = _make(ensemble_factory, tmp_path, {1: (0, 0), 3: (0, 0)})
    ens.start_zookeeper()
    ens.start_cores()
    ens.run(lambda: 3 in ens.followerinfo and len(ens.decisions) == 2)
    assert ens.decisions[3].decision is not None
    assert ens.decisions[3].decision.state == ServerState.LEADING
    assert ens.decisions[1].decision is not None
    assert ens.decisions[1].decision.leader == 3
    assert ens.followerinfo[3].serverid == 2
    # What ZooKeeper sent us parsed with our decoder: its initiation message and votes.
    inits = [m for _, m in ens.received if isinstance(m, InitialMessage)]
    assert inits and all(m.sid == 2 for m in inits)
    votes = [m for _, m in ens.received if not isinstance(m, InitialMessage)]
    config = ens.verifier.config_string().encode()
    assert votes and all(getattr(v, "config", None) == config for v in votes)
    # ...and ZooKeeper parsed ours: it logs each notification it accepted from 1 and 3.
    log = ens.log_text()
    assert "n.sid:1" in log and "n.sid:3" in log


def test_zookeeper_follows_a_peer_with_a_higher_zxid(
    ensemble_factory: list[Ensemble], tmp_path: Path
) -> None:
    ens = _make(ensemble_factory, tmp_path, {1: (0x5, 0), 3: (0, 0)})
    ens.start_zookeeper()
    ens.start_cores()
    ens.run(lambda: 1 in ens.followerinfo and len(ens.decisions) == 2)
    assert ens.decisions[1].decision is not None
    assert ens.decisions[1].decision.state == ServerState.LEADING
    assert ens.followerinfo[1].serverid == 2


def test_zookeeper_joins_our_established_leader_out_of_election(
    ensemble_factory: list[Ensemble], tmp_path: Path
) -> None:
    # Our two cores elect 3 first (a quorum of 3 without ZooKeeper); ZooKeeper starts late
    # and must join through the FOLLOWING/LEADING answers, although its own vote is fresh.
    ens = _make(ensemble_factory, tmp_path, {1: (0x100000002, 1), 3: (0x100000001, 1)})
    ens.start_cores()
    ens.run(lambda: len(ens.decisions) == 2, deadline_s=5)
    leader = ens.decisions[1].decision
    assert leader is not None and leader.leader == 1
    ens.cores[1].update_peer_epoch(2)
    ens.cores[3].update_peer_epoch(2)
    ens.start_zookeeper()
    ens.run(lambda: 1 in ens.followerinfo)
    assert ens.followerinfo[1].serverid == 2


def test_we_follow_zookeeper_and_a_restarted_peer_rejoins_it_out_of_election(
    ensemble_factory: list[Ensemble], tmp_path: Path
) -> None:
    # ZooKeeper (server 2) has the newest data: it must lead, and we follow it.
    ens = _make(ensemble_factory, tmp_path, {1: (0, 0), 3: (0, 0)})
    data = tmp_path / "data" / "version-2"
    data.mkdir(parents=True)
    (data / "currentEpoch").write_text("1")  # epoch 1 beats our zxid 0 / epoch 0
    (data / "acceptedEpoch").write_text("1")
    ens.start_zookeeper()
    # Our two would agree among themselves within the finalize wait: hear ZooKeeper first.
    ens.run(lambda: {sid for sid, m in ens.received if isinstance(m, Notification)} == {1, 3})
    ens.start_cores()
    ens.run(lambda: len(ens.decisions) == 2)
    for sid in (1, 3):
        decided = ens.decisions[sid].decision
        assert decided is not None
        assert (decided.state, decided.leader) == (ServerState.FOLLOWING, 2)
    # ZooKeeper leads (until initLimit passes without followers syncing: 10 s).
    ens.run(lambda: "Peer state changed: leading" in ens.log_text())
    # Server 3 restarts with a higher zxid than anyone; ZooKeeper answers LEADING and 1
    # answers FOLLOWING: 3 joins the established leader instead of starting a new race.
    ens.restart_core(3, 0x100000007, 1)
    ens.run(lambda: 3 in ens.decisions, deadline_s=4)
    rejoined = ens.decisions[3].decision
    assert rejoined is not None
    assert (rejoined.state, rejoined.leader) == (ServerState.FOLLOWING, 2)
    states = {decode_notification(p).state for p in ens.raw}
    assert ServerState.LEADING in states
