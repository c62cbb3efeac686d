"""Server processes for tests: settings, free ports, start/readiness/stop, and a leak registry.

`ServerProcess` is the shared part of the Apache ZooKeeper and Corral launchers: it writes
a zoo.cfg into a private work directory, starts the server in the foreground as a direct
child (so it can be stopped by PID), waits boundedly until the server completes a client
handshake, and at `stop()` terminates it and checks that its port is closed again.

Every started process is recorded in `LIVE` until it has been stopped and reaped; the
fixtures in tests/conftest.py use `leaked()` to fail a test that leaves one behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

HOST = "127.0.0.1"

# How long a server may take to answer its first handshake (a cold JVM needs a few seconds).
START_TIMEOUT_S = 60.0
# How long a server may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT_S = 10.0


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """What a test asks of a server; both launchers turn it into zoo.cfg lines and -D flags.

    Frozen and hashable, so fixtures can share one server among tests asking for the same.
    """

    extended_types: bool = False
    four_letter_words: str | None = "*"  # 4lw.commands.whitelist; None: the server's default
    super_digest: str | None = None  # "super:<base64(sha1(super:password))>"
    # znode.container.checkIntervalMs: how often containers and TTL nodes are reaped. The
    # differential test sets it high so reaping never consumes zxids during a sequence.
    container_check_interval_ms: int | None = None
    tick_ms: int = 2000
    force_sync: bool = False  # forceSync=no keeps test writes fast; the tests never crash hosts
    properties: tuple[tuple[str, str], ...] = ()  # other -Dkey=value system properties
    cfg: tuple[tuple[str, str], ...] = ()  # other zoo.cfg keys

    def system_properties(self) -> dict[str, str]:
        """The -D properties both servers are given."""
        props: dict[str, str] = {}
        if self.extended_types:
            props["zookeeper.extendedTypesEnabled"] = "true"
        if self.super_digest is not None:
            props["zookeeper.DigestAuthenticationProvider.superDigest"] = self.super_digest
        if self.container_check_interval_ms is not None:
            props["znode.container.checkIntervalMs"] = str(self.container_check_interval_ms)
        props.update(self.properties)
        return props

    def cfg_lines(self, data_dir: Path, port: int) -> list[str]:
        """The zoo.cfg both servers are given."""
        lines = [
            f"tickTime={self.tick_ms}",
            f"dataDir={data_dir}",
            f"clientPort={port}",
            f"clientPortAddress={HOST}",
            # The AdminServer would listen on 8080 for every server we start: off.
            "admin.enableServer=false",
            f"forceSync={'yes' if self.force_sync else 'no'}",
        ]
        if self.four_letter_words is not None:
            lines.append(f"4lw.commands.whitelist={self.four_letter_words}")
        if self.extended_types:
            lines.append("extendedTypesEnabled=true")
        lines.extend(f"{k}={v}" for k, v in self.cfg)
        return lines


# Ports handed out in this test session, never handed out twice (a stopped server's port
# may linger in TIME_WAIT for clients that talked to it).
_GIVEN_PORTS: set[int] = set()


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        if port not in _GIVEN_PORTS:
            _GIVEN_PORTS.add(port)
            return port
    raise RuntimeError("no free loopback port")


def port_is_open(port: int) -> bool:
    """Whether something accepts TCP connections on HOST:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex((HOST, port)) == 0


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists (and is not a zombie we could reap)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); ask /proc for its state.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


class ServerStartError(RuntimeError):
    """The server exited or did not answer a handshake in time; the message has its log."""


# Started and not yet stopped, by PID.
LIVE: dict[int, ServerProcess] = {}
# Every server ever started in this test session (for the final port check).
STARTED: list[ServerProcess] = []


def leaked() -> list[str]:
    """Descriptions of processes started by helpers that were never stopped."""
    return [describe(p) for p in LIVE.values()]


def open_ports() -> list[str]:
    """Servers started in this session whose port still accepts connections, though
    none of them is running any more."""
    return [describe(p) for p in STARTED if p.pid not in LIVE and port_is_open(p.port)]


def describe(server: ServerProcess) -> str:
    return f"{server.kind} pid {server.pid} port {server.port} ({server.workdir})"


def reap_new(before: set[int], shared: set[int]) -> list[str]:
    """Kill the processes started since `before` that are not `shared`; describe them."""
    found = [p for pid, p in LIVE.items() if pid not in before and pid not in shared]
    for server in found:
        server.kill()
    return [describe(p) for p in found]


class ServerProcess:
    """One server process on a free loopback port with a private data directory."""

    kind: ClassVar[str] = "server"

    def __init__(self, settings: ServerSettings, workdir: Path) -> None:
        self.settings = settings
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "server.log"

    # --- to be provided by the concrete launcher ---

    def command(self, cfg_path: Path) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    # --- shared ---

    @property
    def address(self) -> tuple[str, int]:
        return (HOST, self.port)

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "zoo.cfg"
        cfg.write_text("\n".join(self.settings.cfg_lines(self.data_dir, self.port)) + "\n")
        return cfg

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the server and return once it completes a client handshake."""
        assert self.proc is None, "already started"
        if port_is_open(self.port):
            raise ServerStartError(f"port {self.port} is taken before {self.kind} started")
        cmd = self.command(self.write_config())
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.workdir,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group: a Ctrl-C on pytest must not race our own stop().
                start_new_session=True,
            )
        finally:
            log.close()
        LIVE[self.proc.pid] = self
        STARTED.append(self)
        try:
            self._wait_ready(time.monotonic() + timeout_s)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, deadline: float) -> None:
        # Imported here: rawclient imports corral.proto, which this module does not need.
        from support.rawclient import RawClient

        last_error: Exception | None = None
        delay = 0.02
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise ServerStartError(
                    f"{self.kind} exited with {self.proc.returncode}\n{self.log_tail()}"
                )
            try:
                client = RawClient.connect(self.address, io_timeout_s=5.0)
            except OSError as exc:
                last_error = exc
            else:
                client.close()
                return
            # Polling a port that is not up yet: a bounded backoff, not a synchronisation sleep.
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)
        raise ServerStartError(
            f"{self.kind} did not answer a handshake on port {self.port}: {last_error}\n"
            f"{self.log_tail()}"
        )

    def stop(self) -> None:
        """Terminate the process by PID (SIGTERM, then SIGKILL) and check its port is closed."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)
        LIVE.pop(proc.pid, None)
        if port_is_open(self.port):
            raise AssertionError(f"{self.kind} pid {proc.pid} stopped but port {self.port} is open")

    def kill(self) -> None:
        """SIGKILL (a crash), then reap; the data directory stays for a restart."""
        proc = self.proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)
        LIVE.pop(proc.pid, None)

    def restart(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Stop (if running) and start again on the same port and data directory."""
        self.stop()
        self.proc = None
        self.start(timeout_s)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running(server: ServerProcess) -> Iterator[ServerProcess]:
    """Start a server for the duration of a with-block."""
    server.start()
    try:
        yield server
    finally:
        server.stop()
