"""A Corral ensemble of real processes on loopback, for integration tests.

Each member gets free client, quorum and election ports, its own data directory with a
`myid`, and a zoo.cfg with every `server.N` line; all share one session secret (so sessions
move between servers). Members run `corral server zoo.cfg` (as `python -m corral.cli.main
server zoo.cfg`), exactly as a deployed member does.

`LocalEnsemble` is a context manager: leaving it stops every member (SIGTERM, then SIGKILL).
Waits are bounded polls of observable state (ports, the members' logs).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from support.procs import HOST, free_port, port_is_open

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


@dataclass
class Member:
    sid: int
    home: Path
    client_port: int
    quorum_port: int
    election_port: int
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)
    # Where the current process's part of the log starts (restarts append to it).
    log_start: int = 0
    zookeeper: bool = False  # an Apache ZooKeeper member (a mixed ensemble)

    def __post_init__(self) -> None:
        self.log_path = self.home / "server.log"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.client_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def serving_as(self) -> str | None:
        """The role of the newest term this member serves clients in (from its log)."""
        role = None
        for line in self.log_text()[self.log_start :].splitlines():
            if self.zookeeper:
                # QuorumPeer's "Peer state changed: following - broadcast" and friends.
                if "Peer state changed:" in line:
                    state = line.split("Peer state changed: ", 1)[1]
                    role = state.split()[0] if state.endswith("broadcast") else None
                    role = {"leading": "leader", "following": "follower"}.get(role or "", role)
                continue
            if "serving clients as " in line:
                role = line.split("serving clients as ", 1)[1].split()[0]
            elif "term ended" in line:
                role = None
        return role


class LocalEnsemble:
    def __init__(
        self,
        workdir: Path,
        size: int = 3,
        tick_ms: int = 200,
        properties: dict[str, str] | None = None,
        observers: tuple[int, ...] = (),
        peer_ports: Callable[[int, Member], tuple[int, int]] | None = None,
        cfg: tuple[str, ...] = (),
    ) -> None:
        """`peer_ports(sid, other)`: the (quorum, election) ports member `sid` lists for
        `other` in its zoo.cfg (default: other's real ports; support/tcpproxy.PeerNetwork
        puts proxies there). `cfg`: extra zoo.cfg lines for every member."""
        self.workdir = workdir
        self.observers = observers
        self.peer_ports = peer_ports
        self.cfg = cfg
        self.tick_ms = tick_ms
        self.properties = dict(properties or {})
        self.secret = workdir / "session-secret"
        self.members: dict[int, Member] = {}
        for sid in range(1, size + 1):
            self.members[sid] = Member(
                sid, workdir / f"server{sid}", free_port(), free_port(), free_port()
            )
        workdir.mkdir(parents=True, exist_ok=True)
        self.secret.write_bytes(os.urandom(32))
        self.secret.chmod(0o600)
        for m in self.members.values():
            self._write_config(m)

    def _write_config(self, m: Member) -> None:
        data = m.home / "data"
        data.mkdir(parents=True, exist_ok=True)
        (data / "myid").write_text(f"{m.sid}\n")
        lines = [
            f"tickTime={self.tick_ms}",
            "initLimit=10",
            "syncLimit=5",
            f"dataDir={data}",
            "4lw.commands.whitelist=*",
        ]
        lines.extend(self.cfg)
        if m.sid in self.observers:
            lines.append("peerType=observer")
        for o in self.members.values():
            role = ":observer" if o.sid in self.observers else ""
            qport, eport = o.quorum_port, o.election_port
            if self.peer_ports is not None and o.sid != m.sid:
                qport, eport = self.peer_ports(m.sid, o)
            lines.append(f"server.{o.sid}={HOST}:{qport}:{eport}{role};{HOST}:{o.client_port}")
        (m.home / "zoo.cfg").write_text("\n".join(lines) + "\n")

    def connect_string(self, sids: list[int] | None = None) -> str:
        chosen = sids if sids is not None else sorted(self.members)
        return ",".join(self.members[s].address for s in chosen)

    # -- processes --------------------------------------------------------------------------

    def start(self, sid: int) -> None:
        m = self.members[sid]
        assert not m.running
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")
        m.log_start = len(m.log_text())
        log = open(m.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            m.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "corral.cli.main",
                    "server",
                    str(m.home / "zoo.cfg"),
                    f"-Dcorral.sessionSecretFile={self.secret}",
                    *(f"-D{k}={v}" for k, v in self.properties.items()),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        finally:
            log.close()

    def start_zookeeper(self, sid: int) -> None:
        """Run member `sid` as Apache ZooKeeper (QuorumPeerMain) with the same zoo.cfg: a
        mixed ensemble. Corral members then need ZooKeeper's session password scheme
        (properties={"corral.sessionPasswordScheme": "zookeeper"})."""
        from support import zookeeper as zk

        m = self.members[sid]
        assert not m.running
        java = shutil.which("java") or "java"
        classpath = [str(zk.ZOOKEEPER_JAR)]
        if zk.LOGGER_JAR.is_file():
            classpath.append(str(zk.LOGGER_JAR))
        m.log_start = len(m.log_text())
        log = open(m.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            m.proc = subprocess.Popen(
                [
                    java,
                    *zk.JVM_FLAGS,
                    "-Dzookeeper.4lw.commands.whitelist=*",
                    "-cp",
                    os.pathsep.join(classpath),
                    "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                    str(m.home / "zoo.cfg"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()
        m.zookeeper = True

    def start_all(self) -> None:
        for sid in self.members:
            self.start(sid)
        self.wait_serving(sorted(self.members))

    def kill(self, sid: int) -> None:
        m = self.members[sid]
        if m.proc is not None and m.proc.poll() is None:
            m.proc.send_signal(signal.SIGKILL)
            m.proc.wait(STOP_TIMEOUT_S)

    def terminate(self, sid: int) -> int:
        """SIGTERM member `sid` (a clean shutdown) and wait for it; returns its exit code."""
        m = self.members[sid]
        assert m.proc is not None
        if m.proc.poll() is None:
            m.proc.send_signal(signal.SIGTERM)
        try:
            return m.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            m.proc.kill()
            m.proc.wait()
            raise AssertionError(f"server {sid} ignored SIGTERM:\n{m.log_text()[-4000:]}") from None

    def stop_all(self) -> None:
        for m in self.members.values():
            if m.proc is not None and m.proc.poll() is None:
                m.proc.terminate()
        for m in self.members.values():
            if m.proc is None:
                continue
            try:
                m.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                m.proc.kill()
                m.proc.wait()

    def __enter__(self) -> LocalEnsemble:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    # -- observation -------------------------------------------------------------------------

    def wait_serving(self, sids: list[int], timeout_s: float = START_TIMEOUT_S) -> None:
        """Until each member serves clients (its client port is open only then)."""
        deadline = time.monotonic() + timeout_s
        for sid in sids:
            m = self.members[sid]
            while not (port_is_open(m.client_port) and m.serving_as() is not None):
                if not m.running:
                    raise AssertionError(f"server {sid} exited:\n{m.log_text()[-4000:]}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"server {sid} not serving:\n{m.log_text()[-4000:]}")
                time.sleep(0.05)

    def leader(self, among: list[int] | None = None) -> int:
        sids = among if among is not None else sorted(self.members)
        leaders = [s for s in sids if self.members[s].serving_as() == "leader"]
        assert len(leaders) == 1, {s: self.members[s].serving_as() for s in sids}
        return leaders[0]

    def four_letter(self, sid: int, word: str, timeout_s: float = 5.0) -> str:
        """Send a four-letter word to member `sid`'s client port; its whole answer."""
        with socket.create_connection((HOST, self.members[sid].client_port), timeout_s) as s:
            s.sendall(word.encode())
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def logs(self) -> str:
        return "\n".join(
            f"== server {m.sid}\n{m.log_text()[-3000:]}" for m in self.members.values()
        )
