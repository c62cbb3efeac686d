"""`corral server zoo.cfg` as a real process: kazoo CRUD, four-letter words, SIGTERM, restart.

Each server runs on a free loopback port with its own data directory; readiness is awaited by
connecting (bounded), teardown kills the process by its PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError, NoNodeError
from kazoo.security import ACL, Id, Permissions

from support import kazoo_client

CORRAL = Path(sys.executable).parent / "corral"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One `corral server` process with its config, data directory and log file."""

    def __init__(self, base: Path, extra_cfg: str = "") -> None:
        self.base = base
        self.port = free_port()
        self.data = base / "data"
        self.cfg = base / "zoo.cfg"
        self.cfg.write_text(
            f"tickTime=2000\ndataDir={self.data}\nclientPort={self.port}\n"
            "clientPortAddress=127.0.0.1\n4lw.commands.whitelist=ruok,srvr,stat,conf,srst\n"
            + extra_cfg
        )
        self.log = base / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(CORRAL), "server", str(self.cfg)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base,
            )
        self.wait_ready()

    def wait_ready(self, port: int | None = None) -> None:
        """Connect until the listener answers; fail fast if the process dies."""
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port or self.port), timeout=1.0):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"server not listening after {START_TIMEOUT_S}s\n{self.logs()}"
                )
            try:
                code = self.proc.wait(timeout=0.05)  # paces the retries; returns if it died
            except subprocess.TimeoutExpired:
                continue
            raise AssertionError(f"server exited with {code} during start\n{self.logs()}")

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=STOP_TIMEOUT_S)
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        self.proc = None

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def four_letter(self, word: str) -> str:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10.0) as s:
            s.sendall(word.encode("ascii"))
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def client(self) -> KazooClient:
        return kazoo_client.start(self.hosts)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path)
    srv.start()
    try:
        yield srv
    finally:
        srv.kill()


def test_kazoo_create_get_set_delete(server: Server) -> None:
    zk = server.client()
    try:
        assert zk.create("/corral", b"hello") == "/corral"
        data, stat_ = zk.get("/corral")
        assert data == b"hello" and stat_.version == 0
        stat_ = zk.set("/corral", b"world")
        assert stat_.version == 1
        assert zk.get("/corral")[0] == b"world"
        zk.create("/corral/child", b"")
        assert zk.get_children("/corral") == ["child"]
        assert set(zk.get_children("/")) >= {"corral", "zookeeper"}
        zk.delete("/corral/child")
        zk.delete("/corral")
        assert zk.exists("/corral") is None
        with pytest.raises(NoNodeError):
            zk.get("/corral")
    finally:
        kazoo_client.stop(zk)


def test_ephemeral_node_goes_with_its_session(server: Server) -> None:
    owner = server.client()
    watcher = server.client()
    try:
        owner.create("/eph", b"", ephemeral=True)
        assert watcher.exists("/eph") is not None
        owner.stop()  # closes the session
        assert watcher.exists("/eph") is None
    finally:
        owner.close()
        kazoo_client.stop(watcher)


def test_four_letter_words(server: Server) -> None:
    assert server.four_letter("ruok") == "imok"
    srvr = server.four_letter("srvr")
    assert "Zookeeper version:" in srvr
    assert "Mode: standalone" in srvr
    assert "Zxid: 0x" in srvr
    conf = server.four_letter("conf")
    assert f"clientPort={server.port}" in conf
    assert server.four_letter("srst") == "Server stats reset.\n"
    assert (
        server.four_letter("dump") == "dump is not executed because it is not in the whitelist.\n"
    )


def test_max_client_cnxns_per_ip(tmp_path: Path) -> None:
    srv = Server(tmp_path, "maxClientCnxns=2\n")
    srv.start()
    held: list[socket.socket] = []
    try:
        for _ in range(2):
            held.append(socket.create_connection(("127.0.0.1", srv.port), timeout=10.0))
        # The listener accepts in order, so the third is the one over the limit.
        third = socket.create_connection(("127.0.0.1", srv.port), timeout=10.0)
        with third, contextlib.suppress(ConnectionResetError):
            assert third.recv(1) == b""
        for s in held:
            s.close()
    finally:
        srv.kill()


def test_sigterm_exits_cleanly_and_restart_keeps_data(tmp_path: Path) -> None:
    srv = Server(tmp_path)
    srv.start()
    try:
        zk = srv.client()
        try:
            zk.create("/keep", b"v1")
            zk.set("/keep", b"v2")
            for i in range(50):
                zk.create("/keep/n-", str(i).encode(), sequence=True)
            zk.create("/gone", b"")
            zk.delete("/gone")
            zxid_before = zk.exists("/keep").mzxid
        finally:
            kazoo_client.stop(zk)
        assert srv.terminate() == 0, srv.logs()
        assert "Traceback" not in srv.logs()

        secret = srv.data / "corral-session-secret"
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert list((srv.data / "version-2").glob("log.*")), "no txn log written"

        srv.start()
        zk = srv.client()
        try:
            data, stat_ = zk.get("/keep")
            assert data == b"v2" and stat_.version == 1 and stat_.mzxid == zxid_before
            children = zk.get_children("/keep")
            assert len(children) == 50
            assert sorted(children)[-1] == "n-0000000049"
            assert zk.exists("/gone") is None
            # New writes continue after the recovered zxid.
            assert zk.create("/after", b"").startswith("/after")
            assert zk.exists("/after").czxid > zxid_before
        finally:
            kazoo_client.stop(zk)
        assert srv.terminate() == 0, srv.logs()
    finally:
        srv.kill()


def test_writes_acknowledged_before_sigterm_survive(tmp_path: Path) -> None:
    """SIGTERM under load: every create the client saw succeed is there after a restart."""
    srv = Server(tmp_path)
    srv.start()
    try:
        zk = srv.client()
        try:
            zk.create("/load", b"")
            pending = [zk.create_async(f"/load/n{i}", b"x" * 100) for i in range(300)]
            pending[20].get(timeout=30.0)  # some are acknowledged, many still in flight
            assert srv.terminate() == 0, srv.logs()
            acknowledged = set()
            for i, result in enumerate(pending):
                result.wait(timeout=30.0)
                if result.successful():
                    acknowledged.add(f"n{i}")
        finally:
            kazoo_client.stop(zk)
        assert len(acknowledged) >= 21
        srv.start()
        zk = srv.client()
        try:
            assert acknowledged <= set(zk.get_children("/load"))
        finally:
            kazoo_client.stop(zk)
    finally:
        srv.kill()


def test_sigint_also_exits_cleanly(server: Server) -> None:
    assert server.proc is not None
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(timeout=STOP_TIMEOUT_S) == 0, server.logs()
    server.proc = None


def test_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "zoo.cfg"
    cfg.write_text(f"dataDir={tmp_path}\nclientPort=2181\ntickTime=soon\n")
    result = subprocess.run(
        [str(CORRAL), "server", str(cfg)], capture_output=True, timeout=STOP_TIMEOUT_S
    )
    assert result.returncode == 2
    assert b"tickTime" in result.stderr


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_cert(cwd: Path, name: str, subject: str, ca: bool = False) -> None:
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    if ca:
        _openssl("req", "-x509", *ec, "-keyout", f"{name}.key", "-out", f"{name}.crt",
                 "-days", "2", "-subj", subject, cwd=cwd)  # fmt: skip
        return
    _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject,
             cwd=cwd)  # fmt: skip
    (cwd / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "2",
             "-extfile", f"{name}.ext", cwd=cwd)  # fmt: skip


@pytest.mark.skipif(not Path("/usr/bin/openssl").exists(), reason="needs the openssl tool")
def test_tls_listener_and_x509_acl(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    _make_cert(pki, "ca", "/CN=corral-test-ca", ca=True)
    _make_cert(pki, "server", "/CN=localhost")
    _make_cert(pki, "client", "/O=corral/CN=alice")
    keystore = pki / "server.pem"
    keystore.write_bytes((pki / "server.key").read_bytes() + (pki / "server.crt").read_bytes())
    # ZooKeeper (and Corral) infer the store type from .pem/.p12; .crt needs ssl.*.type.
    truststore = pki / "ca.pem"
    truststore.write_bytes((pki / "ca.crt").read_bytes())
    secure_port = free_port()
    srv = Server(
        tmp_path,
        f"secureClientPort={secure_port}\nssl.keyStore.location={keystore}\n"
        f"ssl.trustStore.location={truststore}\nssl.clientAuth=need\n",
    )
    srv.start()
    try:
        srv.wait_ready(secure_port)
        tls = KazooClient(
            hosts=f"127.0.0.1:{secure_port}",
            timeout=10.0,
            use_ssl=True,
            ca=str(pki / "ca.crt"),
            certfile=str(pki / "client.crt"),
            keyfile=str(pki / "client.key"),
        )
        tls.start(timeout=15.0)
        plain = srv.client()
        try:
            # The certificate's subject, as Java's RFC 2253 form, is the x509 ACL id.
            only_alice = [ACL(Permissions.ALL, Id("x509", "CN=alice,O=corral"))]
            tls.create("/tls", b"secret", acl=only_alice)
            assert tls.get("/tls")[0] == b"secret"
            with pytest.raises(NoAuthError):
                plain.get("/tls")
        finally:
            for zk in (tls, plain):
                kazoo_client.stop(zk)
    finally:
        srv.kill()


def test_version() -> None:
    result = subprocess.run([str(CORRAL), "--version"], capture_output=True, timeout=30)
    assert result.returncode == 0
    assert result.stdout.startswith(b"corral ")
