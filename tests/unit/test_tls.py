"""TLS server contexts from ZooKeeper's ssl.* keys, and the x509 ACL id of client certificates.

A CA, a server and two client certificates are made in the test; the stores are written as
PEM and PKCS12; a loopback asyncio echo server using our context proves the handshake and
reads the client's x509 id as the real server will.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from corral.net.tls import (
    ClientAuth,
    TlsConfigError,
    TlsSettings,
    rfc2253_name,
    server_context,
    x509_auth_ids,
    x509_subject_id,
)

NOW = datetime.datetime.now(datetime.UTC)
PEM = serialization.Encoding.PEM


def _name(cn: str, org: str = "Corral Test") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


@dataclass
class Issued:
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    cert: x509.Certificate


def _issue(
    subject: x509.Name,
    issuer: Issued | None,
    *,
    ca: bool = False,
    server: bool = False,
    rsa_key: bool = False,
) -> Issued:
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = (
        rsa.generate_private_key(65537, 2048)
        if rsa_key
        else ec.generate_private_key(ec.SECP256R1())
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    signer = issuer.key if issuer else key
    return Issued(key, builder.sign(signer, hashes.SHA256()))


@dataclass
class Pki:
    ca: Issued
    server: Issued
    client: Issued
    other_ca: Issued
    stranger: Issued  # a client certificate from a CA the server does not trust


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca = _issue(_name("Test CA"), None, ca=True)
    other_ca = _issue(_name("Other CA"), None, ca=True)
    return Pki(
        ca=ca,
        server=_issue(_name("localhost"), ca, server=True, rsa_key=True),
        client=_issue(_name("client, one", "Acme+Co"), ca),
        other_ca=other_ca,
        stranger=_issue(_name("stranger"), other_ca),
    )


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, password: str) -> bytes:
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, enc)


def write_pem_key_store(path: Path, who: Issued, chain: list[x509.Certificate], pw: str) -> Path:
    path.write_bytes(
        _pem_key(who.key, pw) + b"".join(c.public_bytes(PEM) for c in [who.cert, *chain])
    )
    return path


def write_p12_key_store(path: Path, who: Issued, chain: list[x509.Certificate], pw: str) -> Path:
    path.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"server",
            who.key,
            who.cert,
            chain,
            serialization.BestAvailableEncryption(pw.encode()),
        )
    )
    return path


def write_p12_trust_store(path: Path, certs: list[x509.Certificate], pw: str) -> Path:
    path.write_bytes(
        pkcs12.serialize_key_and_certificates(
            None, None, None, certs, serialization.BestAvailableEncryption(pw.encode())
        )
    )
    return path


def client_context(pki: Pki, who: Issued | None, tmp: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=pki.ca.cert.public_bytes(PEM).decode())
    if who is not None:
        cert = tmp / "client-cert.pem"
        key = tmp / "client-key.pem"
        cert.write_bytes(who.cert.public_bytes(PEM))
        key.write_bytes(_pem_key(who.key, ""))
        ctx.load_cert_chain(cert, key)
    return ctx


@dataclass
class EchoResult:
    echoed: bytes
    peer_ids: list[tuple[str, str]]
    version: str | None
    handled: bool  # the server's handler ran, i.e. its side of the handshake succeeded


async def _echo_once(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> EchoResult:
    seen: list[list[tuple[str, str]]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        assert isinstance(ssl_object, ssl.SSLObject)
        seen.append(x509_auth_ids(ssl_object.getpeercert(binary_form=True)))
        try:
            writer.write(await reader.readexactly(5))
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
        )
        writer.write(b"hello")
        await writer.drain()
        echoed = await reader.read(100)
        version = writer.get_extra_info("ssl_object").version()
        writer.close()
        await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()
    return EchoResult(echoed, seen[0] if seen else [], version, bool(seen))


def echo(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> EchoResult:
    return asyncio.run(asyncio.wait_for(_echo_once(server_ctx, client_ctx), timeout=20))


CLIENT_ID = "CN=client\\, one,O=Acme\\+Co,C=US"


def test_pem_stores_need_client_auth(pki: Pki, tmp_path: Path) -> None:
    ks = write_pem_key_store(tmp_path / "server.pem", pki.server, [pki.ca.cert], "kspass")
    ts = tmp_path / "trust.pem"
    ts.write_bytes(pki.ca.cert.public_bytes(PEM))
    settings = TlsSettings.from_properties(
        {
            "ssl.keyStore.location": str(ks),
            "ssl.keyStore.password": "kspass",
            "ssl.trustStore.location": str(ts),
        }
    )
    assert settings.client_auth is ClientAuth.NEED  # ZooKeeper's default
    ctx = server_context(settings)
    result = echo(ctx, client_context(pki, pki.client, tmp_path))
    assert result.echoed == b"hello"
    assert result.peer_ids == [("x509", CLIENT_ID)]
    assert result.version == "TLSv1.3"


def test_pkcs12_stores_and_zookeeper_prefixed_keys(pki: Pki, tmp_path: Path) -> None:
    ks = write_p12_key_store(tmp_path / "server.p12", pki.server, [pki.ca.cert], "p12pass")
    ts = write_p12_trust_store(tmp_path / "trust.p12", [pki.ca.cert], "tspass")
    pw_file = tmp_path / "ts.pw"
    pw_file.write_text("tspass\n")
    ctx = server_context(
        TlsSettings.from_properties(
            {
                "zookeeper.ssl.keyStore.location": str(ks),
                "zookeeper.ssl.keyStore.password": "p12pass",
                "zookeeper.ssl.trustStore.location": str(ts),
                "zookeeper.ssl.trustStore.passwordPath": str(pw_file),
                "zookeeper.ssl.trustStore.password": "ignored",
            }
        )
    )
    result = echo(ctx, client_context(pki, pki.client, tmp_path))
    assert result.peer_ids == [("x509", CLIENT_ID)]


def _settings(pki: Pki, tmp_path: Path, **props: str) -> TlsSettings:
    ks = write_pem_key_store(tmp_path / "server.pem", pki.server, [pki.ca.cert], "")
    ts = tmp_path / "trust.pem"
    ts.write_bytes(pki.ca.cert.public_bytes(PEM))
    base = {"ssl.keyStore.location": str(ks), "ssl.trustStore.location": str(ts)}
    base.update({"ssl." + k: v for k, v in props.items()})
    return TlsSettings.from_properties(base)


def test_need_rejects_missing_and_untrusted_certificates(pki: Pki, tmp_path: Path) -> None:
    ctx = server_context(_settings(pki, tmp_path))
    for who in (None, pki.stranger):
        try:
            result = echo(ctx, client_context(pki, who, tmp_path))
        except (ssl.SSLError, ConnectionError):
            continue
        # With TLS 1.3 the client's handshake ends before the server checks its
        # certificate: it learns of the rejection as an end of stream.
        assert (result.echoed, result.handled) == (b"", False)


def test_want_accepts_anonymous_clients(pki: Pki, tmp_path: Path) -> None:
    ctx = server_context(_settings(pki, tmp_path, clientAuth="want"))
    assert echo(ctx, client_context(pki, None, tmp_path)).peer_ids == []
    assert echo(ctx, client_context(pki, pki.client, tmp_path)).peer_ids == [("x509", CLIENT_ID)]


def test_none_does_not_ask_for_certificates(pki: Pki, tmp_path: Path) -> None:
    ctx = server_context(_settings(pki, tmp_path, clientAuth="NONE"))
    assert ctx.verify_mode == ssl.CERT_NONE
    assert echo(ctx, client_context(pki, pki.client, tmp_path)).peer_ids == []


def test_protocols(pki: Pki, tmp_path: Path) -> None:
    ctx = server_context(_settings(pki, tmp_path, protocol="TLSv1.2"))
    assert (ctx.minimum_version, ctx.maximum_version) == (
        ssl.TLSVersion.TLSv1_2,
        ssl.TLSVersion.TLSv1_2,
    )
    assert echo(ctx, client_context(pki, pki.client, tmp_path)).version == "TLSv1.2"
    ctx = server_context(_settings(pki, tmp_path, enabledProtocols="TLSv1.3, TLSv1.2"))
    assert (ctx.minimum_version, ctx.maximum_version) == (
        ssl.TLSVersion.TLSv1_2,
        ssl.TLSVersion.TLSv1_3,
    )
    ctx = server_context(_settings(pki, tmp_path, enabledProtocols="TLSv1.3"))
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    with pytest.raises(TlsConfigError, match="ssl.enabledProtocols"):
        server_context(_settings(pki, tmp_path, enabledProtocols="SSLv3"))
    with pytest.raises(TlsConfigError, match="ssl.protocol"):
        server_context(_settings(pki, tmp_path, protocol="SSL"))


def test_cipher_suites_java_names(pki: Pki, tmp_path: Path) -> None:
    suite = "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
    ctx = server_context(_settings(pki, tmp_path, ciphersuites=suite))
    # Only TLS 1.2 suites listed: TLS 1.3 is off, as in Java.
    assert ctx.maximum_version == ssl.TLSVersion.TLSv1_2
    tls12 = [c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12 == ["ECDHE-RSA-AES256-GCM-SHA384"]
    assert echo(ctx, client_context(pki, pki.client, tmp_path)).version == "TLSv1.2"

    ctx = server_context(_settings(pki, tmp_path, ciphersuites="TLS_AES_128_GCM_SHA256"))
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    mixed = "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,TLS_RSA_WITH_AES_128_CBC_SHA256"
    ctx = server_context(_settings(pki, tmp_path, ciphersuites=mixed))
    names = {c["name"] for c in ctx.get_ciphers()}
    assert {"ECDHE-ECDSA-CHACHA20-POLY1305", "AES128-SHA256"} <= names
    with pytest.raises(TlsConfigError, match="ssl.ciphersuites: no listed cipher suite fits"):
        server_context(
            _settings(pki, tmp_path, protocol="TLSv1.2", ciphersuites="TLS_AES_128_GCM_SHA256")
        )
    with pytest.raises(TlsConfigError, match="ssl.ciphersuites: no listed cipher suite fits"):
        server_context(_settings(pki, tmp_path, enabledProtocols="TLSv1.3", ciphersuites=suite))
    with pytest.raises(TlsConfigError, match="ssl.ciphersuites.*TLS_FOO"):
        server_context(_settings(pki, tmp_path, ciphersuites="TLS_FOO_WITH_BAR_SHA"))


def test_store_types_and_errors(pki: Pki, tmp_path: Path) -> None:
    ks = write_pem_key_store(tmp_path / "server.pem", pki.server, [], "secret")
    key_only = tmp_path / "keyonly.pem"
    key_only.write_bytes(_pem_key(pki.server.key, ""))
    jks = tmp_path / "server.jks"
    jks.write_bytes(b"\xfe\xed\xfe\xed")
    no_ext = tmp_path / "server.key"
    no_ext.write_bytes(ks.read_bytes())

    def build(**props: str) -> ssl.SSLContext:
        return server_context(
            TlsSettings.from_properties({"ssl." + k: v for k, v in props.items()})
        )

    build(
        **{
            "keyStore.location": str(no_ext),
            "keyStore.type": "pem",
            "keyStore.password": "secret",
            "clientAuth": "none",
        }
    )
    with pytest.raises(TlsConfigError, match="auto-detect"):
        build(**{"keyStore.location": str(no_ext)})
    with pytest.raises(TlsConfigError, match="keytool -importkeystore"):
        build(**{"keyStore.location": str(jks)})
    with pytest.raises(TlsConfigError, match="BCFKS"):
        build(**{"keyStore.location": str(ks), "keyStore.type": "BCFKS"})
    with pytest.raises(TlsConfigError, match="Bad value for ssl.keyStore.type"):
        build(**{"keyStore.location": str(ks), "keyStore.type": "XML"})
    with pytest.raises(TlsConfigError, match="ssl.keyStore.location: cannot load PEM"):
        build(**{"keyStore.location": str(ks), "keyStore.password": "wrong"})
    plain = write_pem_key_store(tmp_path / "plain.pem", pki.server, [], "")
    build(**{"keyStore.location": str(plain), "keyStore.password": "unused"})
    with pytest.raises(TlsConfigError, match="ssl.keyStore.location: cannot load PEM"):
        build(**{"keyStore.location": str(ks)})  # encrypted key, no password
    with pytest.raises(TlsConfigError, match="needs a private key and its certificate"):
        build(**{"keyStore.location": str(key_only)})
    with pytest.raises(TlsConfigError, match="cannot read"):
        build(**{"keyStore.location": str(tmp_path / "missing.pem")})
    with pytest.raises(TlsConfigError, match="ssl.keyStore.location is required"):
        build(**{"trustStore.location": str(ks)})
    with pytest.raises(TlsConfigError, match="ssl.clientAuth"):
        build(**{"keyStore.location": str(ks), "clientAuth": "maybe"})
    with pytest.raises(TlsConfigError, match="ssl.keyStore.passwordPath"):
        build(**{"keyStore.location": str(ks), "keyStore.passwordPath": str(tmp_path / "nope")})
    with pytest.raises(
        TlsConfigError, match="ssl.trustStore.location: cannot load PEM trust store"
    ):
        build(
            **{
                "keyStore.location": str(ks),
                "keyStore.password": "secret",
                "trustStore.location": str(key_only),
            }
        )


def test_settings_repr_hides_passwords() -> None:
    s = TlsSettings.from_properties({"ssl.keyStore.password": "hunter2"})
    assert "hunter2" not in repr(s)


def test_super_user_id(pki: Pki) -> None:
    der = pki.client.cert.public_bytes(serialization.Encoding.DER)
    assert x509_auth_ids(der, super_user=CLIENT_ID) == [("super", CLIENT_ID), ("x509", CLIENT_ID)]
    assert x509_auth_ids(der, super_user="CN=other") == [("x509", CLIENT_ID)]
    assert x509_auth_ids(None) == []
    with pytest.raises(ValueError):
        x509_subject_id(b"junk")


# Subjects and what Java's X500Principal.getName() prints for them (checked with JDK 25;
# JDK 17 differs only for BMPString/T61String values, which it misdecodes as UTF-8).
A = x509.NameAttribute
R = x509.RelativeDistinguishedName
JAVA_NAMES = [
    (
        x509.Name([A(NameOID.COMMON_NAME, ' #lead=+<>;"\\ trail ')]),
        'CN=\\ \\#lead\\=\\+\\<\\>\\;\\"\\\\ trail\\ ',
    ),
    (
        x509.Name(
            [
                A(NameOID.COMMON_NAME, "héllo wörld ✓"),
                A(NameOID.EMAIL_ADDRESS, "a@b.c"),
                A(NameOID.SERIAL_NUMBER, "1234"),
            ]
        ),
        "2.5.4.5=#130431323334,1.2.840.113549.1.9.1=#16056140622e63,CN=héllo wörld ✓",
    ),
    (
        x509.Name(
            [
                A(NameOID.DOMAIN_COMPONENT, "example"),
                A(NameOID.DOMAIN_COMPONENT, "com"),
                A(NameOID.USER_ID, "u1"),
                A(NameOID.STREET_ADDRESS, "1 Main"),
                A(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
                A(NameOID.LOCALITY_NAME, "SF"),
                A(NameOID.ORGANIZATIONAL_UNIT_NAME, "ops"),
            ]
        ),
        "OU=ops,L=SF,ST=CA,STREET=1 Main,UID=u1,DC=com,DC=example",
    ),
    (
        x509.Name(
            [
                R([A(NameOID.COMMON_NAME, "a"), A(NameOID.ORGANIZATIONAL_UNIT_NAME, "b")]),
                R([A(NameOID.GIVEN_NAME, "g"), A(NameOID.TITLE, "t")]),
            ]
        ),
        "2.5.4.12=#0c0174+2.5.4.42=#0c0167,CN=a+OU=b",
    ),
    (
        x509.Name(
            [
                A(NameOID.COMMON_NAME, "bmp é", _type=_ASN1Type.BMPString),
                A(NameOID.ORGANIZATION_NAME, "ia5", _type=_ASN1Type.IA5String),
                A(NameOID.ORGANIZATIONAL_UNIT_NAME, "t61", _type=_ASN1Type.T61String),
                A(NameOID.LOCALITY_NAME, "univ", _type=_ASN1Type.UniversalString),
            ]
        ),
        "L=#1c10000000750000006e0000006900000076,OU=t61,O=ia5,CN=bmp é",
    ),
    (x509.Name([A(NameOID.COMMON_NAME, "   ")]), "CN=\\ \\ \\ "),
    (x509.Name([A(NameOID.COMMON_NAME, "a\x00b\rc\r")]), "CN=a\\00b\rc\\\r"),
]


@pytest.mark.parametrize(("name", "expected"), JAVA_NAMES)
def test_rfc2253_matches_java(name: x509.Name, expected: str) -> None:
    assert rfc2253_name(name.public_bytes()) == expected


def test_rfc2253_rejects_garbage() -> None:
    for bad in (b"", b"\x31\x00", b"\x30\x05\x31\x03", b"\x30\x84\xff\xff\xff\xff"):
        with pytest.raises(ValueError):
            rfc2253_name(bad)
