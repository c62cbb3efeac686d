"""A small PKI for TLS tests, made with `cryptography`: a CA, a server certificate for
127.0.0.1/localhost and a client certificate for CN=alice,O=corral, written as the stores
ZooKeeper's ssl.* keys name (PEM: key and certificate in one file; PKCS12 with a password).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from support.procs import HOST

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
    client_pem: Path  # key + certificate, one file (a Java client's PEM key store)
    client_p12: Path

    def server_store_keys(self, store: str) -> tuple[tuple[str, str], ...]:
        """The ssl.* keys of the server's key and trust stores, "pem" or "pkcs12"."""
        if store == "pem":
            return (
                ("ssl.keyStore.location", str(self.server_pem)),
                ("ssl.keyStore.type", "PEM"),
                ("ssl.trustStore.location", str(self.ca_pem)),
                ("ssl.trustStore.type", "PEM"),
            )
        return (
            ("ssl.keyStore.location", str(self.server_p12)),
            ("ssl.keyStore.password", STORE_PASSWORD),
            ("ssl.keyStore.type", "PKCS12"),
            ("ssl.trustStore.location", str(self.ca_p12)),
            ("ssl.trustStore.password", STORE_PASSWORD),
            ("ssl.trustStore.type", "PKCS12"),
        )


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


def make_pki(out: Path) -> Pki:
    """Write the CA, server and client stores under `out`."""
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
        client_pem=out / "client.pem",
        client_p12=out / "client.p12",
    )
    pki.ca_pem.write_bytes(_pem_cert(ca))
    pki.server_pem.write_bytes(_pem_key(server_key) + _pem_cert(server))
    pki.server_p12.write_bytes(
        pkcs12.serialize_key_and_certificates(b"server", server_key, server, [ca], encryption)
    )
    # A trust store as keytool writes it: Java trusts only certificates carrying its
    # "trusted key usage" attribute (a bare certificate bag leaves it without anchors).
    pki.ca_p12.write_bytes(
        pkcs12.serialize_java_truststore([pkcs12.PKCS12Certificate(ca, b"ca")], encryption)
    )
    pki.client_crt.write_bytes(_pem_cert(client))
    pki.client_key.write_bytes(_pem_key(client_key))
    pki.client_pem.write_bytes(_pem_key(client_key) + _pem_cert(client))
    pki.client_p12.write_bytes(
        pkcs12.serialize_key_and_certificates(b"client", client_key, client, [ca], encryption)
    )
    return pki
