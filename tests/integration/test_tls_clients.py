"""TLS on secureClientPort beside the plain clientPort, configured with ZooKeeper's ssl.* keys,
with PEM and PKCS12 key and trust stores; kazoo connects with use_ssl=True and a client
certificate, whose subject becomes the connection's x509 ACL id.

The certificates are made here with `cryptography`: a CA, a server certificate for
127.0.0.1/localhost and a client certificate for CN=alice,O=corral.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from kazoo.client import KazooClient  # type: ignore[import-untyped]
from kazoo.exceptions import NoAuthError  # type: ignore[import-untyped]
from kazoo.security import ACL, Id, Permissions  # type: ignore[import-untyped]

from conftest import ServerPool
from corral.proto import jute
from corral.proto.records import WhoAmIResponse
from support.procs import HOST, ServerProcess, ServerSettings, free_port

WAIT_S = 10.0
STORE_PASSWORD = "storepass"
ALICE = "CN=alice,O=corral"  # Java's RFC 2253 form of the client certificate's subject


@dataclass(frozen=True)
class Pki:
    ca_pem: Path
    server_pem: Path  # key + certificate, one file (ZooKeeper's PEM key store)
    server_p12: Path
    ca_p12: Path
    client_crt: Path
    client_key: Path


def _name(**parts: str) -> x509.Name:
    oids = {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME}
    return x509.Name([x509.NameAttribute(oids[k], v) for k, v in parts.items()])


def _certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    san: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    out = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(CN="corral-test-ca")
    ca = _certificate(ca_name, ca_key, ca_name, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _certificate(_name(CN="localhost"), server_key, ca_name, ca_key, san=True)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _certificate(_name(O="corral", CN="alice"), client_key, ca_name, ca_key)
    encryption = serialization.BestAvailableEncryption(STORE_PASSWORD.encode())
    pki = Pki(
        ca_pem=out / "ca.pem",
        server_pem=out / "server.pem",
        server_p12=out / "server.p12",
        ca_p12=out / "ca.p12",
        client_crt=out / "client.crt",
        client_key=out / "client.key",
    )
    pki.ca_pem.write_bytes(_pem_cert(ca))
    pki.server_pem.write_bytes(_pem_key(server_key) + _pem_cert(server))
    pki.server_p12.write_bytes(
        pkcs12.serialize_key_and_certificates(b"server", server_key, server, [ca], encryption)
    )
    pki.ca_p12.write_bytes(
        pkcs12.serialize_key_and_certificates(b"ca", None, None, [ca], encryption)
    )
    pki.client_crt.write_bytes(_pem_cert(client))
    pki.client_key.write_bytes(_pem_key(client_key))
    return pki


def _pem_settings(pki: Pki) -> ServerSettings:
    return ServerSettings(
        cfg=(
            ("secureClientPort", str(free_port())),
            ("ssl.keyStore.location", str(pki.server_pem)),
            ("ssl.trustStore.location", str(pki.ca_pem)),
        )
    )


def _p12_settings(pki: Pki) -> ServerSettings:
    return ServerSettings(
        cfg=(
            ("secureClientPort", str(free_port())),
            ("ssl.keyStore.location", str(pki.server_p12)),
            ("ssl.keyStore.password", STORE_PASSWORD),
            ("ssl.keyStore.type", "PKCS12"),
            ("ssl.trustStore.location", str(pki.ca_p12)),
            ("ssl.trustStore.password", STORE_PASSWORD),
            ("ssl.trustStore.type", "PKCS12"),
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


@contextlib.contextmanager
def connected(port: int, **kwargs: Any) -> Iterator[KazooClient]:
    client = KazooClient(hosts=f"{HOST}:{port}", timeout=10.0, **kwargs)
    client.start(timeout=15.0)
    try:
        yield client
    finally:
        client.stop()
        client.close()


def tls_options(pki: Pki) -> dict[str, Any]:
    return {
        "use_ssl": True,
        "ca": str(pki.ca_pem),
        "certfile": str(pki.client_crt),
        "keyfile": str(pki.client_key),
    }


class WhoAmI:
    """whoAmI (op 107) in the shape kazoo's connection sends and decodes requests in."""

    type = 107

    def serialize(self) -> bytes:
        return b""

    def deserialize(self, buffer: bytes, offset: int) -> set[tuple[str, str]]:
        reply, _ = jute.decode(WhoAmIResponse, bytes(buffer), offset)
        return {(info.auth_scheme, info.user) for info in reply.client_info}


def who_am_i(zk: KazooClient) -> set[tuple[str, str]]:
    result = zk.handler.async_result()
    zk._call(WhoAmI(), result)
    return result.get(timeout=WAIT_S)  # type: ignore[no-any-return]


@pytest.mark.parametrize("store", ["pem", "pkcs12"])
def test_tls_and_plain_side_by_side_with_x509_acl(
    store: str, pki: Pki, request: pytest.FixtureRequest
) -> None:
    server: ServerProcess = request.getfixturevalue(f"{'pem' if store == 'pem' else 'p12'}_server")
    path = f"/tls-{store}"
    with (
        connected(secure_port(server), **tls_options(pki)) as tls,
        connected(server.port) as plain,
    ):
        expected = {("ip", HOST), ("x509", ALICE)}
        if store == "pkcs12":
            expected.add(("super", ""))
        assert who_am_i(tls) == expected
        assert who_am_i(plain) == {("ip", HOST)}
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
        connected(secure_port(p12_server), **no_cert) as anonymous,
        connected(secure_port(p12_server), **tls_options(pki)) as alice,
    ):
        assert who_am_i(anonymous) == {("ip", HOST)}
        anonymous.create("/want", b"w", acl=[ACL(Permissions.READ, Id("ip", "10.9.9.9"))])
        with pytest.raises(NoAuthError):
            anonymous.get("/want")
        # On this server alice's certificate makes her a super user; whoAmI shows no
        # user for "super", as no provider has that scheme (ZooKeeper's AuthUtil).
        assert who_am_i(alice) == {("ip", HOST), ("x509", ALICE), ("super", "")}
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
