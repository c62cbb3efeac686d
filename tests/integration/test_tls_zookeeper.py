"""TLS on secureClientPort: Corral against Debian's ZooKeeper 3.8 with the same zoo.cfg.

Both servers get the same ssl.* keys (PEM and PKCS12 key and trust stores, ssl.clientAuth
need / want / none, an x509 super user) and the same clients: kazoo over TLS with and
without a client certificate, kazoo on the plain port beside it, and ZooKeeper's own Java
client (ZooKeeperMain, as zkCli.sh runs it) over TLS with a PEM key store. Whether each
client gets in, the ids whoAmI reports (the ``x509`` id is the certificate subject in
Java's RFC 2253 form) and who may read a node with an x509 ACL must be the same on both.

Debian's ZooKeeper needs its Netty connection factory for TLS, and the package's class path
lacks netty-codec and netty-resolver; the test adds them for the reference server only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import struct
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from kazoo.client import KazooClient  # type: ignore[import-untyped]
from kazoo.exceptions import NoAuthError  # type: ignore[import-untyped]
from kazoo.security import ACL, Id, Permissions  # type: ignore[import-untyped]

from support import kazoo_client
from support import zookeeper as zookeeper_support
from support.corral import start_corral
from support.kazoo_calls import who_am_i
from support.pki import ALICE, Pki, make_pki
from support.procs import HOST, ServerProcess, ServerSettings, free_port

WAIT_S = 15.0
NETTY_JARS = [Path("/usr/share/java/netty-codec.jar"), Path("/usr/share/java/netty-resolver.jar")]
NETTY_FACTORY = "org.apache.zookeeper.server.NettyServerCnxnFactory"

pytestmark = [
    pytest.mark.zookeeper,
    pytest.mark.skipif(
        zookeeper_support.available() is not None or not all(j.is_file() for j in NETTY_JARS),
        reason="needs Debian's ZooKeeper and its Netty jars",
    ),
]


class NettyZooKeeper(zookeeper_support.ZooKeeperServer):
    """Debian's ZooKeeper with the Netty jars its TLS needs on the class path."""

    kind: ClassVar[str] = "zookeeper"

    def command(self, cfg_path: Path) -> list[str]:
        cmd = super().command(cfg_path)
        at = cmd.index("-cp") + 1
        cmd[at] = os.pathsep.join([cmd[at], *map(str, NETTY_JARS)])
        return cmd


def start_netty_zookeeper(settings: ServerSettings, workdir: Path) -> ServerProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    server = NettyZooKeeper(settings, workdir)
    server.start()
    return server


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def settings_for(pki: Pki, store: str, client_auth: str) -> ServerSettings:
    props: tuple[tuple[str, str], ...] = (("zookeeper.serverCnxnFactory", NETTY_FACTORY),)
    if store == "pkcs12":
        props += (("zookeeper.X509AuthenticationProvider.superUser", ALICE),)
    return ServerSettings(
        cfg=(
            ("secureClientPort", str(free_port())),
            ("secureClientPortAddress", HOST),
            *pki.server_store_keys(store),
            ("ssl.clientAuth", client_auth),
        ),
        properties=props,
    )


@contextlib.contextmanager
def connected(port: int, **kwargs: Any) -> Iterator[KazooClient | None]:
    """A started kazoo client, or None when the server would not let it in."""
    client = KazooClient(hosts=f"{HOST}:{port}", timeout=5.0, **kwargs)
    try:
        client.start(timeout=8.0)
    except Exception:
        kazoo_client.stop(client)
        yield None
        return
    try:
        yield client
    finally:
        kazoo_client.stop(client)


def secure_port(server: ServerProcess) -> int:
    return int(dict(server.settings.cfg)["secureClientPort"])


def kazoo_view(server: ServerProcess, pki: Pki, tag: str) -> dict[str, Any]:
    """What kazoo clients see on this server's two ports."""
    with_cert = {
        "use_ssl": True,
        "ca": str(pki.ca_pem),
        "certfile": str(pki.client_crt),
        "keyfile": str(pki.client_key),
    }
    without_cert = {"use_ssl": True, "ca": str(pki.ca_pem)}
    view: dict[str, Any] = {}
    path = f"/x509-{tag}"
    with connected(secure_port(server), **with_cert) as alice, connected(server.port) as plain:
        assert plain is not None
        view["plain"] = who_am_i(plain, WAIT_S)
        if alice is None:
            view["alice"] = None
        else:
            view["alice"] = who_am_i(alice, WAIT_S)
            if ("x509", ALICE) in view["alice"]:
                alice.create(path, b"secret", acl=[ACL(Permissions.ALL, Id("x509", ALICE))])
                view["alice reads"] = alice.get(path)[0]
                try:
                    plain.get(path)
                except NoAuthError:
                    view["plain reads"] = "NOAUTH"
                alice.delete(path)
    if lets_in_without_certificate(secure_port(server), pki):
        with connected(secure_port(server), **without_cert) as anonymous:
            assert anonymous is not None
            view["no certificate"] = who_am_i(anonymous, WAIT_S)
    else:
        view["no certificate"] = None
    return view


def lets_in_without_certificate(port: int, pki: Pki) -> bool:
    """Whether a TLS client without a certificate gets a ConnectResponse (raw socket: kazoo
    leaks its socket when the server refuses the handshake)."""
    ctx = ssl.create_default_context(cafile=str(pki.ca_pem))
    # ConnectRequest: protocol 0, lastZxidSeen 0, timeout, session 0, 16-byte password, r/w.
    request = struct.pack(">iqiqi16s?", 0, 0, 30000, 0, 16, bytes(16), False)
    try:
        with (
            socket.create_connection((HOST, port), timeout=WAIT_S) as sock,
            ctx.wrap_socket(sock, server_hostname="localhost") as tls,
        ):
            tls.sendall(struct.pack(">i", len(request)) + request)
            return len(tls.recv(4)) == 4
    except (ssl.SSLError, OSError):
        return False


def java_client_view(server: ServerProcess, pki: Pki) -> list[str]:
    """ZooKeeper's Java client (ZooKeeperMain) over TLS with a PEM key store: whoami."""
    java = shutil.which("java") or "java"
    classpath = [str(zookeeper_support.ZOOKEEPER_JAR), *map(str, NETTY_JARS)]
    if zookeeper_support.LOGGER_JAR.is_file():
        classpath.append(str(zookeeper_support.LOGGER_JAR))
    props = {
        "zookeeper.client.secure": "true",
        "zookeeper.clientCnxnSocket": "org.apache.zookeeper.ClientCnxnSocketNetty",
        "zookeeper.ssl.keyStore.location": str(pki.client_pem),
        "zookeeper.ssl.keyStore.type": "PEM",
        "zookeeper.ssl.trustStore.location": str(pki.ca_pem),
        "zookeeper.ssl.trustStore.type": "PEM",
    }
    result = subprocess.run(
        [
            java,
            "-Xshare:auto",
            "-XX:TieredStopAtLevel=1",
            *(f"-D{k}={v}" for k, v in props.items()),
            "-cp",
            os.pathsep.join(classpath),
            "org.apache.zookeeper.ZooKeeperMain",
            "-server",
            f"{HOST}:{secure_port(server)}",
        ],
        input="whoami\nquit\n",
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert "Auth scheme: User" in lines, result.stdout + result.stderr
    start = lines.index("Auth scheme: User") + 1
    # Sorted: ZooKeeper keeps a connection's ids in a hash set, their order means nothing.
    return sorted(line for line in lines[start:] if line.startswith(("ip: ", "x509: ")))


CONFIGS = [("pem", "need"), ("pkcs12", "want"), ("pem", "none")]


@pytest.mark.parametrize(("store", "client_auth"), CONFIGS)
def test_tls_same_as_zookeeper(
    store: str,
    client_auth: str,
    pki: Pki,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    settings = settings_for(pki, store, client_auth)
    starters: dict[str, Callable[[ServerSettings, Path], ServerProcess]] = {
        "zookeeper": start_netty_zookeeper,
        "corral": start_corral,
    }
    views: dict[str, dict[str, Any]] = {}
    for kind, start in starters.items():
        server = start(settings, tmp_path / kind)
        try:
            views[kind] = kazoo_view(server, pki, f"{store}-{client_auth}")
            if (store, client_auth) == ("pem", "need"):
                views[kind]["java client"] = java_client_view(server, pki)
        finally:
            server.stop()
    assert views["corral"] == views["zookeeper"]

    # And what they agree on, so that agreeing on nonsense fails too.
    ours = views["corral"]
    assert ours["plain"] == {("ip", HOST)}
    if client_auth == "none":
        # No certificate is asked for, so there is no x509 id.
        assert ours["alice"] == {("ip", HOST)}
        assert ours["no certificate"] == {("ip", HOST)}
        return
    alice = {("ip", HOST), ("x509", ALICE)}
    if store == "pkcs12":
        alice.add(("super", ""))  # zookeeper.X509AuthenticationProvider.superUser
    assert ours["alice"] == alice
    assert ours["alice reads"] == b"secret" and ours["plain reads"] == "NOAUTH"
    if client_auth == "need":
        assert ours["no certificate"] is None
        assert ours["java client"] == ["ip: 127.0.0.1", f"x509: {ALICE}"]
    else:
        assert ours["no certificate"] == {("ip", HOST)}
