"""Each zoo.cfg setting changes what a real `corral server` process does, not only its config.

tests/unit/test_config.py shows that every key is parsed; these tests show the effect of the
ones whose effect is not shown elsewhere: maxClientCnxns (per client address),
clientPortAddress (the bind address), dataLogDir (where the txn logs go), preAllocSize (the
log's growth step, byte for byte as ZooKeeper 3.8), snapCount (ZooKeeper's randomised roll
point), autopurge.*, jute.maxbuffer (raised and lowered), forceSync (fdatasync or none), and
`corral server` without arguments (127.0.0.1:2181, ./corral-data).

Elsewhere: tickTime and min/maxSessionTimeout bound the negotiated timeout in
test_kazoo_sessions.py::test_timeout_negotiation_*; skipACL and the super digest in
test_auth.py; extendedTypesEnabled in test_kazoo_ops.py::test_ttl_nodes_*; the four-letter
whitelist in test_server_process.py::test_four_letter_words.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kazoo.exceptions import ConnectionLoss  # type: ignore[import-untyped]

from support import kazoo_client
from support.corral import CorralServer, corral_command
from support.procs import HOST, ServerProcess, ServerSettings
from support.rawclient import RawClient

WAIT_S = 60.0  # bound of every poll below (the machine is shared and loaded)
IO_TIMEOUT_S = 10.0


def poll(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Wait (bounded) until condition() holds; the pause only paces the polling."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)


def zxid_files(directory: Path, prefix: str) -> list[int]:
    """The zxids in the names of version-2's `log.<hex>` or `snapshot.<hex>` files, sorted."""
    return sorted(int(p.name.split(".", 1)[1], 16) for p in directory.glob(f"{prefix}.*"))


def handshake_from(source: str, address: tuple[str, int]) -> RawClient:
    """A session whose connection comes from the loopback address `source`."""
    sock = socket.create_connection(address, timeout=IO_TIMEOUT_S, source_address=(source, 0))
    client = RawClient(sock, IO_TIMEOUT_S)
    try:
        client.handshake()
    except BaseException:
        client.abort()
        raise
    return client


class CustomCorral(CorralServer):
    """Corral with a zoo.cfg written verbatim (ServerSettings always binds 127.0.0.1)."""

    def __init__(self, workdir: Path, cfg: str, host: str = HOST) -> None:
        super().__init__(ServerSettings(), workdir)
        self.cfg_text = cfg
        self.host = host

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / "zoo.cfg"
        text = self.cfg_text.format(data=self.data_dir, port=self.port)
        path.write_text(f"admin.enableServer=false\nforceSync=no\n{text}")
        return path


@contextlib.contextmanager
def custom(workdir: Path, cfg: str, host: str = HOST) -> Iterator[CustomCorral]:
    workdir.mkdir(parents=True, exist_ok=True)
    server = CustomCorral(workdir, cfg, host)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- maxClientCnxns --------------------------------------------------------------------------


def hold_session(source: str, address: tuple[str, int], what: str) -> RawClient:
    """A session from `source`, retried (bounded) while the server still counts a connection
    that was just closed against the limit."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            return handshake_from(source, address)
        except ConnectionError:  # closed or reset by the server: over the limit
            assert time.monotonic() < deadline, what
            time.sleep(0.05)  # paces the retries


def test_max_client_cnxns_limits_each_client_address(
    corral_factory: Callable[..., ServerProcess],
) -> None:
    server = corral_factory(ServerSettings(cfg=(("maxClientCnxns", "2"),)))
    # The readiness probe's connection may not be gone yet, hence hold_session's retries.
    held = [hold_session("127.0.0.1", server.address, "could not hold 2 sessions")]
    try:
        held.append(hold_session("127.0.0.1", server.address, "could not hold 2 sessions"))
        # A third connection from the same address is closed before any handshake...
        with pytest.raises(ConnectionError):
            handshake_from("127.0.0.1", server.address).close()
        # ...while another address still gets its own two.
        others = [handshake_from("127.0.0.2", server.address) for _ in range(2)]
        for client in others:
            assert client.ping().err == 0
            client.close()
        # A slot freed is a slot to take again.
        held.pop().close()
        held.append(hold_session("127.0.0.1", server.address, "a freed slot was not reusable"))
    finally:
        for client in held:
            client.close()


def test_max_client_cnxns_zero_is_unlimited(corral_factory: Callable[..., ServerProcess]) -> None:
    server = corral_factory(ServerSettings(cfg=(("maxClientCnxns", "0"),)))
    clients: list[RawClient] = []
    try:
        # More than ZooKeeper's default of 60 from one address.
        for _ in range(70):
            clients.append(handshake_from("127.0.0.1", server.address))
        assert all(c.ping().err == 0 for c in clients)
    finally:
        for client in clients:
            client.close()


# -- clientPortAddress -----------------------------------------------------------------------


def test_client_port_address_is_the_only_address_bound(tmp_path: Path) -> None:
    cfg = "dataDir={data}\nclientPort={port}\nclientPortAddress=127.0.0.2\n"
    with custom(tmp_path, cfg, host="127.0.0.2") as server:
        with kazoo_client.session(server.address) as zk:
            assert zk.create("/bound", b"") == "/bound"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT_S).close()


def test_without_client_port_address_every_address_is_bound(tmp_path: Path) -> None:
    cfg = "dataDir={data}\nclientPort={port}\n"
    with custom(tmp_path, cfg) as server:
        for source_and_target in ("127.0.0.1", "127.0.0.3"):
            handshake_from("127.0.0.1", (source_and_target, server.port)).close()
        if socket.has_ipv6 and _ipv6_loopback():
            with socket.create_connection(("::1", server.port), timeout=IO_TIMEOUT_S) as sock:
                RawClient(sock, IO_TIMEOUT_S).handshake()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


# -- dataLogDir, preAllocSize, snapCount, autopurge ------------------------------------------


def test_data_log_dir_holds_the_txn_logs(
    tmp_path: Path, corral_factory: Callable[..., ServerProcess]
) -> None:
    log_dir = tmp_path / "txnlogs"
    server = corral_factory(ServerSettings(cfg=(("dataLogDir", str(log_dir)),)))
    with kazoo_client.session(server.address) as zk:
        for i in range(20):
            zk.create(f"/n{i}", b"v")
    server.stop()
    # As ZooKeeper's FileTxnSnapLog: logs in dataLogDir/version-2, snapshots in dataDir's.
    assert zxid_files(log_dir / "version-2", "log")
    assert not zxid_files(log_dir / "version-2", "snapshot")
    assert zxid_files(server.data_dir / "version-2", "snapshot")
    assert not zxid_files(server.data_dir / "version-2", "log")
    server.proc = None
    server.start()
    with kazoo_client.session(server.address) as zk:
        assert len([c for c in zk.get_children("/") if c.startswith("n")]) == 20


def test_pre_alloc_size_is_the_log_growth_step(
    corral_factory: Callable[..., ServerProcess],
) -> None:
    # Sizes measured with Debian's ZooKeeper 3.8 running the same writes with preAllocSize=64:
    # 65552 after the first txn (16 header bytes + 64 KiB), 131072 after 120 KB more.
    server = corral_factory(ServerSettings(cfg=(("preAllocSize", "64"),)))
    logs = server.data_dir / "version-2"

    def log_sizes() -> list[int]:
        return [p.stat().st_size for p in sorted(logs.glob("log.*"))]

    with kazoo_client.session(server.address) as zk:
        zk.create("/a", b"x")
        assert log_sizes() == [65552]
        for i in range(3):
            zk.create(f"/b{i}", b"y" * 40_000)
        assert log_sizes() == [131072]


def test_pre_alloc_size_zero_turns_preallocation_off(
    corral_factory: Callable[..., ServerProcess],
) -> None:
    # As ZooKeeper 3.8 with preAllocSize=0, the log holds just what was written (there 299
    # bytes, then 120599: its entries also carry a txn digest; Corral's 251, then 120515).
    server = corral_factory(ServerSettings(cfg=(("preAllocSize", "0"),)))
    logs = server.data_dir / "version-2"

    def log_size() -> int:
        [path] = logs.glob("log.*")
        return path.stat().st_size

    with kazoo_client.session(server.address) as zk:
        zk.create("/a", b"x")
        assert log_size() < 4096
        for i in range(3):
            zk.create(f"/b{i}", b"y" * 40_000)
        assert 120_000 < log_size() < 121_000


def test_default_pre_alloc_size_is_64_mib(corral_factory: Callable[..., ServerProcess]) -> None:
    server = corral_factory(ServerSettings())
    with kazoo_client.session(server.address) as zk:
        zk.create("/a", b"x")
    assert [p.stat().st_size for p in (server.data_dir / "version-2").glob("log.*")] == [
        64 * 1024 * 1024 + 16
    ]


def test_snap_count_rolls_the_log_at_zookeepers_random_points(
    corral_factory: Callable[..., ServerProcess],
) -> None:
    snap_count = 20
    server = corral_factory(ServerSettings(cfg=(("snapCount", str(snap_count)),)))
    version2 = server.data_dir / "version-2"
    with kazoo_client.session(server.address) as zk:
        for i in range(200):  # one at a time: every txn is its own commit
            zk.create(f"/n{i}", b"")
    # ZooKeeper rolls the log (and snapshots) once more than snapCount/2 + rand(snapCount/2)
    # txns were logged since the last roll: every log file but the open one holds 11..20.
    starts = zxid_files(version2, "log")
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(gaps) >= 200 // snap_count - 1, starts
    assert all(snap_count // 2 + 1 <= g <= snap_count for g in gaps), gaps
    # A snapshot follows each roll (one still being written may be skipped and taken later).
    poll(lambda: len(zxid_files(version2, "snapshot")) >= len(gaps), "the snapshots")
    server.stop()
    server.proc = None
    server.start()
    with kazoo_client.session(server.address) as zk:
        assert len([c for c in zk.get_children("/") if c.startswith("n")]) == 200


def test_default_snap_count_takes_no_snapshot_for_200_txns(
    corral_factory: Callable[..., ServerProcess],
) -> None:
    server = corral_factory(ServerSettings())
    with kazoo_client.session(server.address) as zk:
        for i in range(200):
            zk.create(f"/n{i}", b"")
    version2 = server.data_dir / "version-2"
    assert zxid_files(version2, "log") == [1]
    assert zxid_files(version2, "snapshot") == [0]  # the startup snapshot only


def test_autopurge_keeps_the_newest_snapshots_and_the_logs_they_need(
    corral_factory: Callable[..., ServerProcess],
) -> None:
    cfg = (
        ("snapCount", "20"),
        ("autopurge.snapRetainCount", "3"),
        ("autopurge.purgeInterval", "1s"),  # ZooKeeper 3.9's unit syntax (3.8: hours only)
    )
    server = corral_factory(ServerSettings(cfg=cfg))
    version2 = server.data_dir / "version-2"
    with kazoo_client.session(server.address) as zk:
        for i in range(200):
            zk.create(f"/n{i}", b"")
        final_zxid = zk.exists("/n199").czxid
    # Every snapshot and log older than the newest 3 snapshots need is deleted.
    poll(lambda: len(zxid_files(version2, "snapshot")) == 3, "autopurge to keep 3 snapshots")
    snapshots = zxid_files(version2, "snapshot")
    assert snapshots[0] > 0, snapshots
    poll(
        lambda: len([z for z in zxid_files(version2, "log") if z <= snapshots[0]]) == 1,
        "autopurge to delete the logs before the oldest kept snapshot",
    )
    # PurgeTxnLog keeps the newest log starting at or before the oldest kept snapshot (it
    # holds the txns after it) and every later one. The client's closeSession (the txn after
    # the last create) may have started a log of its own at a random snapshot point.
    assert zxid_files(version2, "log")[-1] <= final_zxid + 1
    server.stop()
    server.proc = None
    server.start()
    with kazoo_client.session(server.address) as zk:
        assert len([c for c in zk.get_children("/") if c.startswith("n")]) == 200


# -- jute.maxbuffer --------------------------------------------------------------------------


def test_raised_jute_maxbuffer_admits_bigger_data_through_log_and_snapshot(
    corral_factory: Callable[..., ServerProcess],
) -> None:
    # As ZooKeeper 3.8 with -Djute.maxbuffer=4194304: 2 and 4 MB nodes are stored, a
    # request over 4 MiB closes the connection.
    settings = ServerSettings(cfg=(("jute.maxbuffer", "4194304"), ("snapCount", "4")))
    server = corral_factory(settings)
    big = bytes(range(256)) * 8000  # 2,048,000 bytes
    with kazoo_client.session(server.address) as zk:
        zk.create("/big", big)
        zk.create("/bigger", b"z" * 4_000_000)
        bigger_zxid = zk.exists("/bigger").czxid
        assert zk.get("/big")[0] == big
        with pytest.raises(ConnectionLoss):
            zk.create("/too-big", b"z" * 4_200_000)
    for i in range(10):  # more txns, so that a snapshot holding /big is written
        with kazoo_client.session(server.address) as zk:
            zk.create(f"/n{i}", b"")
    version2 = server.data_dir / "version-2"
    poll(lambda: zxid_files(version2, "snapshot")[-1] > bigger_zxid, "a snapshot with /bigger")
    server.stop()
    server.proc = None
    server.start()  # recovery reads the big nodes back from the snapshot and the log
    with kazoo_client.session(server.address) as zk:
        assert zk.get("/big")[0] == big
        assert len(zk.get("/bigger")[0]) == 4_000_000
        assert zk.exists("/too-big") is None


def test_lowered_jute_maxbuffer_closes_bigger_requests_only(
    corral_factory: Callable[..., ServerProcess],
) -> None:
    # As ZooKeeper 3.8 with -Djute.maxbuffer=4096: 4000 bytes stored, 5000 refused.
    server = corral_factory(ServerSettings(properties=(("jute.maxbuffer", "4096"),)))
    with kazoo_client.session(server.address) as zk:
        zk.create("/small", b"s" * 4000)
        with pytest.raises(ConnectionLoss):
            zk.create("/large", b"l" * 5000)
    with kazoo_client.session(server.address) as zk:  # the server serves on
        assert len(zk.get("/small")[0]) == 4000
        assert zk.exists("/large") is None


# -- forceSync -------------------------------------------------------------------------------


def _fdatasyncs_during_writes(server: ServerProcess, tmp_path: Path, writes: int) -> int:
    """fdatasync calls the server makes while a client creates `writes` nodes (strace)."""
    assert server.pid is not None
    out = tmp_path / f"strace-{server.pid}.txt"
    errors = tmp_path / f"strace-{server.pid}.err"
    with errors.open("wb") as err:
        tracer = subprocess.Popen(
            ["strace", "-f", "-qq", "-e", "trace=fdatasync", "-o", str(out), "-p", str(server.pid)],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    tasks = Path(f"/proc/{server.pid}/task")

    def attached() -> bool:
        # Every thread of the server names strace as its tracer once strace has attached.
        if tracer.poll() is not None:
            pytest.skip(f"strace cannot attach here: {errors.read_text(errors='replace')}")
        with contextlib.suppress(OSError):
            statuses = [(t / "status").read_text() for t in tasks.iterdir()]
            return all(f"TracerPid:\t{tracer.pid}\n" in s for s in statuses)
        return False

    try:
        poll(attached, "strace to attach")
        with kazoo_client.session(server.address) as zk:
            for i in range(writes):
                zk.create(f"/w{i}", b"")
    finally:
        tracer.send_signal(signal.SIGINT)  # detaches from the server
        tracer.wait(timeout=WAIT_S)
    return out.read_text().count("fdatasync(")


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_force_sync_yes_fsyncs_commits_and_no_never_does(
    tmp_path: Path, corral_factory: Callable[..., ServerProcess]
) -> None:
    synced = corral_factory(ServerSettings(force_sync=True))
    assert _fdatasyncs_during_writes(synced, tmp_path, 10) >= 10  # one commit per create
    unsynced = corral_factory(ServerSettings(force_sync=False))
    assert _fdatasyncs_during_writes(unsynced, tmp_path, 10) == 0


# -- `corral server` without arguments -------------------------------------------------------

# Runs inside a private network namespace (port 2181 is surely free there): starts
# `corral server` in an empty directory, checks where it listens and keeps its data, stops it
# with SIGTERM. Prints OK or raises.
_DEFAULTS_CHECK = r"""
import os, signal, socket, subprocess, sys, time
corral = sys.argv[1:]
def word(w, host="127.0.0.1"):
    with socket.create_connection((host, 2181), timeout=10) as s:
        s.sendall(w.encode())
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out.decode()
log = open("server.log", "wb")
proc = subprocess.Popen([*corral, "server"], stdout=log, stderr=subprocess.STDOUT)
try:
    deadline = time.monotonic() + 60
    while True:
        try:
            if word("ruok") == "imok":
                break
        except OSError:
            pass
        assert proc.poll() is None, open("server.log").read()
        assert time.monotonic() < deadline, "no imok within 60 s"
        time.sleep(0.1)
    conf = word("conf")
    assert "clientPort=2181" in conf, conf
    data_dir = [l for l in conf.splitlines() if l.startswith("dataDir=")]
    assert data_dir and data_dir[0].endswith("corral-data/version-2"), conf
    assert "Mode: standalone" in word("srvr")
    try:  # loopback only: 127.0.0.2 is on lo too, but nothing listens there
        word("ruok", "127.0.0.2")
        raise AssertionError("listening beyond 127.0.0.1")
    except ConnectionRefusedError:
        pass
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, open("server.log").read()
    assert os.listdir("corral-data/version-2"), "nothing in ./corral-data/version-2"
    print("OK")
finally:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)
"""


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _in_private_network(argv: list[str]) -> list[str] | None:
    """argv run in a new network namespace with loopback up, if this machine allows it."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return None
    probe = subprocess.run(
        ["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True, timeout=30
    )
    if probe.returncode != 0:
        return None
    script = 'ip link set lo up && exec "$@"'
    return ["unshare", "-n", "sh", "-c", script, "sh", *argv]


def test_corral_server_without_arguments(tmp_path: Path) -> None:
    script = tmp_path / "check_defaults.py"
    script.write_text(_DEFAULTS_CHECK)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    argv = [sys.executable, str(script), *corral_command()]
    wrapped = _in_private_network(argv)
    if wrapped is None:
        if not _port_free(2181):
            pytest.skip("no network namespaces here and port 2181 is taken")
        wrapped = argv
    proc = subprocess.Popen(
        wrapped,
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    text = out.decode(errors="replace")
    assert proc.returncode == 0 and text.strip().endswith("OK"), text
    assert (workdir / "corral-data" / "corral-session-secret").exists()
