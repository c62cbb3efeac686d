"""TLS on secureClientPort beside the plain clientPort, configured with ZooKeeper's ssl.* keys,
with PEM and PKCS12 key and trust stores; kazoo connects with use_ssl=True and a client
certificate, whose subject becomes the connection's x509 ACL id.

The certificates come from support.pki: a CA, a server certificate for 127.0.0.1/localhost
and a client certificate for CN=alice,O=corral. test_tls_zookeeper.py runs the same kind of
clients against Debian's ZooKeeper too.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

import pytest
from kazoo.exceptions import NoAuthError  # type: ignore[import-untyped]
from kazoo.security import ACL, Id, Permissions  # type: ignore[import-untyped]

from conftest import ServerPool
from support import kazoo_client
from support.kazoo_calls import who_am_i
from support.pki import ALICE, Pki, make_pki
from support.procs import HOST, ServerProcess, ServerSettings, free_port

WAIT_S = 10.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _pem_settings(pki: Pki) -> ServerSettings:
    return ServerSettings(
        cfg=(
            ("secureClientPort", str(free_port())),
            # Loopback, like the plain port: binding every address would also collide with
            # sockets that other tests on this busy machine hold on other addresses.
            ("secureClientPortAddress", HOST),
            ("ssl.keyStore.location", str(pki.server_pem)),
            ("ssl.trustStore.location", str(pki.ca_pem)),
        )
    )


def _p12_settings(pki: Pki) -> ServerSettings:
    return ServerSettings(
        cfg=(
            ("secureClientPort", str(free_port())),
            ("secureClientPortAddress", HOST),
            *pki.server_store_keys("pkcs12"),
            ("ssl.clientAuth", "want"),
        ),
        # The certificate's subject may be a super user (X509AuthenticationProvider).
        properties=(("zookeeper.X509AuthenticationProvider.superUser", ALICE),),
    )


@pytest.fixture(scope="module")
def pem_server(corral_pool: ServerPool, pki: Pki) -> ServerProcess:
    return corral_pool.get(_pem_settings(pki))


@pytest.fixture(scope="module")
def p12_server(corral_pool: ServerPool, pki: Pki) -> ServerProcess:
    return corral_pool.get(_p12_settings(pki))


def secure_port(server: ServerProcess) -> int:
    return int(dict(server.settings.cfg)["secureClientPort"])


def tls_options(pki: Pki) -> dict[str, Any]:
    return {
        "use_ssl": True,
        "ca": str(pki.ca_pem),
        "certfile": str(pki.client_crt),
        "keyfile": str(pki.client_key),
    }


@pytest.mark.parametrize("store", ["pem", "pkcs12"])
def test_tls_and_plain_side_by_side_with_x509_acl(
    store: str, pki: Pki, request: pytest.FixtureRequest
) -> None:
    server: ServerProcess = request.getfixturevalue(f"{'pem' if store == 'pem' else 'p12'}_server")
    path = f"/tls-{store}"
    with (
        kazoo_client.session((HOST, secure_port(server)), **tls_options(pki)) as tls,
        kazoo_client.session(server.address) as plain,
    ):
        expected = {("ip", HOST), ("x509", ALICE)}
        if store == "pkcs12":
            expected.add(("super", ""))
        assert who_am_i(tls, WAIT_S) == expected
        assert who_am_i(plain, WAIT_S) == {("ip", HOST)}
        tls.create(path, b"secret", acl=[ACL(Permissions.ALL, Id("x509", ALICE))])
        assert tls.get(path)[0] == b"secret"
        with pytest.raises(NoAuthError):
            plain.get(path)
        # Both listeners serve one tree.
        plain.create(f"{path}-plain", b"open")
        assert tls.get(f"{path}-plain")[0] == b"open"


def test_client_auth_want_lets_a_client_without_certificate_in(
    pki: Pki, p12_server: ServerProcess
) -> None:
    no_cert = {"use_ssl": True, "ca": str(pki.ca_pem)}
    with (
        kazoo_client.session((HOST, secure_port(p12_server)), **no_cert) as anonymous,
        kazoo_client.session((HOST, secure_port(p12_server)), **tls_options(pki)) as alice,
    ):
        assert who_am_i(anonymous, WAIT_S) == {("ip", HOST)}
        anonymous.create("/want", b"w", acl=[ACL(Permissions.READ, Id("ip", "10.9.9.9"))])
        with pytest.raises(NoAuthError):
            anonymous.get("/want")
        # On this server alice's certificate makes her a super user; whoAmI shows no
        # user for "super", as no provider has that scheme (ZooKeeper's AuthUtil).
        assert who_am_i(alice, WAIT_S) == {("ip", HOST), ("x509", ALICE), ("super", "")}
        assert alice.get("/want")[0] == b"w"


def test_client_without_a_certificate_is_refused(pki: Pki, pem_server: ServerProcess) -> None:
    """ssl.clientAuth defaults to need, as in ZooKeeper."""
    ctx = ssl.create_default_context(cafile=str(pki.ca_pem))
    with (
        socket.create_connection((HOST, secure_port(pem_server)), timeout=WAIT_S) as sock,
        pytest.raises((ssl.SSLError, OSError)),
        ctx.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        # TLS 1.3 reports the missing certificate at the first read, not the handshake.
        tls.sendall(b"ruok")
        if not tls.recv(1):
            raise OSError("closed")


def test_plain_bytes_on_the_secure_port_get_nothing(pem_server: ServerProcess) -> None:
    with socket.create_connection((HOST, secure_port(pem_server)), timeout=WAIT_S) as sock:
        sock.sendall(b"\x00\x00\x00\x2c" + bytes(44))
        try:
            reply = sock.recv(64)
        except ConnectionResetError:
            reply = b""
        assert not reply.startswith(b"\x00\x00\x00")  # never a ConnectResponse frame
