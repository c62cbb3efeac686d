"""Server launchers for the benchmark: Apache ZooKeeper 3.8 (Debian's) and Corral.

A `Deployment` is what a workload runs against: a connect string plus the server processes
whose CPU and memory are measured. `Standalone` is one `ServerProcess`; `Ensemble` is three
on loopback (every member's zoo.cfg has the same server.N lines, each data directory its
myid; ZooKeeper runs QuorumPeerMain, Corral `corral server` with a shared session secret),
measured as the sum over its members.

Both servers get the same zoo.cfg (forceSync on, same tickTime, initLimit/syncLimit, data
under one directory on one disk) and run pinned to the same cores: all of a deployment's
processes share `Settings.cpus`. ZooKeeper gets a production-like JVM (a fixed
heap, the JIT's defaults), unlike the tests' launcher (tests/support/zookeeper.py), which
trades peak speed for a fast start; that is why this module does not reuse it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[1]
ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
LOGGER_JAR = Path("/usr/share/java/slf4j-simple.jar")
ZOOKEEPER_MAIN = "org.apache.zookeeper.server.ZooKeeperServerMain"
ZOOKEEPER_QUORUM_MAIN = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
# A reasonable fixed heap (the benchmark's 1M-znode rows need well under 2 GiB); the rest
# is the JVM's default for the cores it is pinned to.
ZOOKEEPER_JVM_FLAGS = ("-Xms2g", "-Xmx2g", "-Djava.net.preferIPv4Stack=true")
START_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 30.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass(frozen=True)
class Settings:
    """What both servers are configured with."""

    tick_ms: int = 2000
    init_limit: int = 10
    sync_limit: int = 5
    force_sync: bool = True
    cpus: str | None = "0"  # taskset CPU list for the server processes; None: unpinned
    # Thousands of sessions come from one address: lift the per-address cap on both.
    max_client_cnxns: int = 0
    # Txns between snapshots (both servers snapshot after a random count in [n/2+1, n]);
    # None: the default 100,000. The memory rows move it to place snapshots where they want.
    snap_count: int | None = None

    def cfg_lines(self, data_dir: Path, port: int, peers: list[str] | None = None) -> list[str]:
        """zoo.cfg; `peers` are an ensemble's server.N lines (with the client address)."""
        lines = [
            f"tickTime={self.tick_ms}",
            f"dataDir={data_dir}",
            "admin.enableServer=false",
            f"forceSync={'yes' if self.force_sync else 'no'}",
            f"maxClientCnxns={self.max_client_cnxns}",
            "4lw.commands.whitelist=*",
        ]
        if self.snap_count is not None:
            lines.append(f"snapCount={self.snap_count}")
        if peers:
            lines += [f"initLimit={self.init_limit}", f"syncLimit={self.sync_limit}", *peers]
        else:
            lines += [f"clientPort={port}", f"clientPortAddress={HOST}"]
        return lines


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command name: state is fields[0], utime is field 14 of stat, so index 11.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def thread_cpu_s(pid: int) -> dict[str, float]:
    """User + system CPU seconds of each thread of a process, by "name/tid" ("main" for the
    process's first thread: Python does not name its threads for the OS)."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        if task.name == str(pid):
            name = "main"
        out[f"{name}/{task.name}"] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return out


def proc_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class ServerStartError(RuntimeError):
    pass


class ServerProcess:
    """One server process with its own zoo.cfg and data directory under `workdir`."""

    kind: ClassVar[str] = "server"

    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.settings = settings
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        # Ensemble membership (Ensemble sets these): every member's server.N lines, its N.
        self.peers: list[str] | None = None
        self.myid: int | None = None
        self.session_secret: Path | None = None

    def command(self, cfg: Path) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    @property
    def snap_dir(self) -> Path:
        """Where both servers write snapshots and txn logs (ZooKeeper's layout)."""
        return self.data_dir / "version-2"

    def write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.myid is not None:
            (self.data_dir / "myid").write_text(f"{self.myid}\n")
        cfg = self.workdir / "zoo.cfg"
        lines = self.settings.cfg_lines(self.data_dir, self.port, self.peers)
        cfg.write_text("\n".join(lines) + "\n")
        return cfg

    def launch(self) -> None:
        """Start the process without waiting for it to serve."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        cmd = self.command(self.write_config())
        if self.settings.cpus is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", self.settings.cpus, *cmd]  # taskset execs: same pid
        with (self.workdir / "server.log").open("ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start(self) -> float:
        """Start and wait until it serves a read; returns the seconds that took."""
        started = time.monotonic()
        self.launch()
        try:
            wait_serving(self, started + START_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise
        return time.monotonic() - started

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)

    def live_heap_kb(self) -> int | None:
        """Managed heap in use, where the runtime can say (a JVM); None elsewhere."""
        return None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = (self.workdir / "server.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class ZooKeeperServer(ServerProcess):
    kind: ClassVar[str] = "zookeeper"

    def live_heap_kb(self) -> int | None:
        """Bytes of the Java heap's live objects (its RSS is mostly the fixed heap).

        `GC.class_histogram` counts live objects only (it runs a full GC first); GC.heap_info
        after GC.run would also count what was allocated since, jcmd's own attach included."""
        jcmd = shutil.which("jcmd")
        if jcmd is None:
            return None
        out = subprocess.run(
            [jcmd, str(self.pid), "GC.class_histogram"],
            capture_output=True,
            text=True,
            check=False,
            timeout=STOP_TIMEOUT_S * 4,
        ).stdout
        for line in reversed(out.splitlines()):
            if line.startswith("Total"):  # "Total   <instances>   <bytes>"
                return int(line.split()[2]) // 1024
        return None

    def command(self, cfg: Path) -> list[str]:
        java = shutil.which("java") or "java"
        classpath = [str(ZOOKEEPER_JAR)]
        if LOGGER_JAR.is_file():
            classpath.append(str(LOGGER_JAR))
        cp = os.pathsep.join(classpath)
        main = ZOOKEEPER_QUORUM_MAIN if self.peers else ZOOKEEPER_MAIN
        return [java, *ZOOKEEPER_JVM_FLAGS, "-cp", cp, main, str(cfg)]


class CorralServer(ServerProcess):
    kind: ClassVar[str] = "corral"

    def command(self, cfg: Path) -> list[str]:
        exe = REPO / ".venv" / "bin" / "corral"
        if not exe.is_file():
            exe = Path(sys.executable).with_name("corral")
        cmd = [str(exe), "server", str(cfg)]
        if self.session_secret is not None:
            # One secret for all members: a session's password verifies on every server.
            cmd.append(f"-Dcorral.sessionSecretFile={self.session_secret}")
        return cmd

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        return env


SERVER_KINDS: dict[str, type[ServerProcess]] = {
    "zookeeper": ZooKeeperServer,
    "corral": CorralServer,
}


def unavailable(kind: str) -> str | None:
    """Why a server kind cannot run here, or None."""
    if kind == "zookeeper" and (not ZOOKEEPER_JAR.is_file() or shutil.which("java") is None):
        return "Debian's zookeeper is not installed (bench/setup.sh installs it)"
    return None


class Deployment:
    """What a workload runs against: a connect string and the processes to measure."""

    kind: str
    shape: str  # "standalone" | "ensemble"

    @property
    def connect_string(self) -> str:
        raise NotImplementedError

    @property
    def processes(self) -> list[ServerProcess]:
        raise NotImplementedError

    def start(self) -> float:
        raise NotImplementedError

    def stop(self) -> None:
        for p in self.processes:
            p.stop()

    def restart(self) -> float:
        """Stop, start again on the same data; seconds from start until a read is served."""
        self.stop()
        return self.start()

    def cpu_s(self) -> float:
        return sum(proc_cpu_s(p.pid) for p in self.processes)

    def rss_kb(self) -> int:
        return sum(proc_rss_kb(p.pid) for p in self.processes)

    def live_heap_kb(self) -> int | None:
        heaps = [p.live_heap_kb() for p in self.processes]
        return None if None in heaps else sum(h for h in heaps if h is not None)

    def reconfigure(self, settings: Settings) -> None:
        """Use `settings` from the next (re)start on."""
        for p in self.processes:
            p.settings = settings


class Standalone(Deployment):
    shape = "standalone"

    def __init__(self, kind: str, settings: Settings, workdir: Path) -> None:
        self.kind = kind
        workdir.mkdir(parents=True, exist_ok=True)
        self.server = SERVER_KINDS[kind](settings, workdir)

    @property
    def connect_string(self) -> str:
        return f"{HOST}:{self.server.port}"

    @property
    def processes(self) -> list[ServerProcess]:
        return [self.server]

    def start(self) -> float:
        return self.server.start()


class Ensemble(Deployment):
    """`size` members of one kind on loopback, all pinned to `settings.cpus`."""

    shape = "ensemble"

    def __init__(self, kind: str, settings: Settings, workdir: Path, size: int = 3) -> None:
        self.kind = kind
        workdir.mkdir(parents=True, exist_ok=True)
        self.members = [SERVER_KINDS[kind](settings, workdir / f"server{n}") for n in range(size)]
        peers = [
            f"server.{n}={HOST}:{free_port()}:{free_port()};{HOST}:{m.port}"
            for n, m in enumerate(self.members, start=1)
        ]
        secret = workdir / "session-secret"
        secret.write_bytes(os.urandom(32))
        secret.chmod(0o600)
        for n, m in enumerate(self.members, start=1):
            m.workdir.mkdir(parents=True, exist_ok=True)
            m.peers, m.myid = peers, n
            m.session_secret = secret if kind == "corral" else None

    @property
    def connect_string(self) -> str:
        return ",".join(f"{HOST}:{m.port}" for m in self.members)

    @property
    def processes(self) -> list[ServerProcess]:
        return list(self.members)

    def start(self) -> float:
        """Start every member, then wait until each serves a read (it has joined a quorum)."""
        started = time.monotonic()
        try:
            for m in self.members:
                m.launch()
            for m in self.members:
                wait_serving(m, started + START_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise
        return time.monotonic() - started


def deployment(shape: str, kind: str, settings: Settings, workdir: Path) -> Deployment:
    if shape == "ensemble":
        return Ensemble(kind, settings, workdir)
    return Standalone(kind, settings, workdir)


# --- readiness: a handshake and a getData, spoken with corral.proto ---


def _frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


def _read_frame(sock: socket.socket) -> bytes:
    head = _read_exact(sock, 4)
    return _read_exact(sock, int.from_bytes(head, "big"))


def _read_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed by server")
        buf += chunk
    return bytes(buf)


def serves_read(port: int) -> bool:
    """Whether the server completes a handshake and answers getData("/zookeeper")."""
    from corral.proto import jute
    from corral.proto.codes import OpCode
    from corral.proto.records import ConnectRequest, GetDataRequest, ReplyHeader, RequestHeader

    try:
        with socket.create_connection((HOST, port), timeout=5.0) as sock:
            sock.sendall(_frame(jute.encode(ConnectRequest(0, 0, 30000, 0, b"\0" * 16, False))))
            _read_frame(sock)
            req = jute.encode(RequestHeader(1, int(OpCode.GET_DATA)))
            req += jute.encode(GetDataRequest("/zookeeper", False))
            sock.sendall(_frame(req))
            while True:
                reply = _read_frame(sock)
                header, _ = jute.decode(ReplyHeader, reply)
                if header.xid == 1:
                    return bool(header.err == 0)
    except (OSError, ConnectionError):
        return False


def four_letter(port: int, command: str) -> str:
    """A four-letter word's answer ("" when the server does not answer)."""
    try:
        with socket.create_connection((HOST, port), timeout=10.0) as sock:
            sock.sendall(command.encode())
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except OSError:
        return ""
    return b"".join(chunks).decode(errors="replace")


def wait_serving(server: ServerProcess, deadline: float) -> None:
    delay = 0.01
    while time.monotonic() < deadline:
        assert server.proc is not None
        if server.proc.poll() is not None:
            raise ServerStartError(f"{server.kind} exited\n{server.log_tail()}")
        if serves_read(server.port):
            return
        # Polling a port that is not up yet: a bounded backoff.
        time.sleep(delay)
        delay = min(delay * 1.5, 0.1)
    raise ServerStartError(f"{server.kind} did not serve in time\n{server.log_tail()}")
