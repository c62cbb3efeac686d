"""TLS for the client port, configured with ZooKeeper's ``ssl.*`` keys.

:func:`server_context` turns :class:`TlsSettings` (parsed from the same keys ZooKeeper's
``ClientX509Util`` reads) into an :class:`ssl.SSLContext` for ``asyncio`` servers:

- key store and trust store as PEM (key + certificate chain in one file, the key possibly
  encrypted with the store password, as ZooKeeper's PemReader takes them) or PKCS12
  (read with ``cryptography``); the type comes from ``ssl.*Store.type`` or, as in
  ZooKeeper, from the file name's extension (``.pem``, ``.p12``; ``.jks``, ``.bcfks``).
  JKS and BCFKS are Java-only formats: we refuse them with the ``keytool`` command that
  converts them;
- ``ssl.clientAuth`` need (default) / want / none;
- ``ssl.protocol`` and ``ssl.enabledProtocols`` become the minimum/maximum TLS version;
- ``ssl.ciphersuites`` takes Java/IANA names (``TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256``)
  and OpenSSL names alike;
- client-initiated renegotiation is refused, as ZooKeeper sets the JDK to do.

:func:`x509_subject_id` gives the ``x509`` ACL id of a verified client certificate: the
subject X.500 name in the RFC 2253 form that Java's ``X500Principal.getName()`` prints,
which is what ZooKeeper's X509AuthenticationProvider records.
"""

from __future__ import annotations

import enum
import logging
import secrets
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12

__all__ = [
    "ClientAuth",
    "StoreType",
    "TlsConfigError",
    "TlsSettings",
    "server_context",
    "x509_auth_ids",
    "x509_subject_id",
]

log = logging.getLogger(__name__)

# Key types OpenSSL can load from PKCS8 PEM (everything a key store realistically holds).
_SERIALIZABLE_KEYS = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    dsa.DSAPrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)


class TlsConfigError(ValueError):
    """A TLS setting is wrong or its store cannot be read; the message names the key."""


class ClientAuth(enum.Enum):
    """``ssl.clientAuth``: whether the server asks for and requires client certificates."""

    NONE = "none"
    WANT = "want"
    NEED = "need"


class StoreType(enum.Enum):
    JKS = "JKS"
    PEM = "PEM"
    PKCS12 = "PKCS12"
    BCFKS = "BCFKS"


# ZooKeeper's KeyStoreFileType: exact, case-sensitive extensions.
_EXTENSIONS = {
    ".jks": StoreType.JKS,
    ".pem": StoreType.PEM,
    ".p12": StoreType.PKCS12,
    ".bcfks": StoreType.BCFKS,
}

_TLS_VERSIONS = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
# What ZooKeeper enables for a given ssl.protocol when ssl.enabledProtocols is not set.
_PROTOCOL_DEFAULTS = {
    "TLSv1.3": ("TLSv1.3", "TLSv1.2"),
    "TLS": ("TLSv1.3", "TLSv1.2"),
    "TLSv1.2": ("TLSv1.2",),
    "TLSv1.1": ("TLSv1.1",),
    "TLSv1": ("TLSv1",),
}
_TLS13_SUITES = frozenset(
    {
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_256_GCM_SHA384",
        "TLS_CHACHA20_POLY1305_SHA256",
        "TLS_AES_128_CCM_SHA256",
        "TLS_AES_128_CCM_8_SHA256",
    }
)
# Java/IANA TLS 1.2 suite name parts -> OpenSSL's.
_KX_NAMES = {
    "ECDHE_ECDSA": "ECDHE-ECDSA-",
    "ECDHE_RSA": "ECDHE-RSA-",
    "DHE_RSA": "DHE-RSA-",
    "RSA": "",
}
_CIPHER_NAMES = (
    ("AES_128_GCM_", "AES128-GCM-"),
    ("AES_256_GCM_", "AES256-GCM-"),
    ("AES_128_CBC_", "AES128-"),
    ("AES_256_CBC_", "AES256-"),
)


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """The ``ssl.*`` keys of ZooKeeper's client TLS, parsed but not yet loaded."""

    key_store_location: str = ""
    key_store_password: str = field(default="", repr=False)
    key_store_type: str = ""
    trust_store_location: str = ""
    trust_store_password: str = field(default="", repr=False)
    trust_store_type: str = ""
    client_auth: ClientAuth = ClientAuth.NEED
    protocol: str = "TLSv1.3"
    enabled_protocols: tuple[str, ...] = ()
    cipher_suites: tuple[str, ...] = ()
    # Key prefix the values came from, so errors name the key the user wrote.
    prefix: str = "ssl."

    @classmethod
    def from_properties(cls, props: Mapping[str, str], prefix: str = "ssl.") -> TlsSettings:
        """Read ``<prefix>keyStore.location`` etc. (``zookeeper.<prefix>...`` also works).

        ``*.passwordPath`` (ZooKeeper 3.8+) reads the password from a file, minus one
        trailing newline, and wins over ``*.password``.
        """

        def get(key: str) -> str | None:
            for name in (prefix + key, "zookeeper." + prefix + key):
                if name in props:
                    # Passwords are taken verbatim; everything else is trimmed.
                    return props[name] if key.endswith(".password") else props[name].strip()
            return None

        def password(key: str) -> str:
            path = get(key + ".passwordPath")
            if path:
                try:
                    text = Path(path).read_text(encoding="utf-8")
                except OSError as e:
                    raise TlsConfigError(
                        f"{prefix}{key}.passwordPath: cannot read {path}: {e}"
                    ) from None
                return text.removesuffix("\n")
            return get(key + ".password") or ""

        auth_text = get("clientAuth") or "need"
        try:
            client_auth = ClientAuth(auth_text.lower())
        except ValueError:
            raise TlsConfigError(
                f"{prefix}clientAuth: {auth_text!r} is not one of need, want, none"
            ) from None
        enabled = get("enabledProtocols")
        suites = get("ciphersuites")
        return cls(
            key_store_location=get("keyStore.location") or "",
            key_store_password=password("keyStore"),
            key_store_type=get("keyStore.type") or "",
            trust_store_location=get("trustStore.location") or "",
            trust_store_password=password("trustStore"),
            trust_store_type=get("trustStore.type") or "",
            client_auth=client_auth,
            protocol=get("protocol") or "TLSv1.3",
            enabled_protocols=_split(enabled),
            cipher_suites=_split(suites),
            prefix=prefix,
        )


def _split(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(p.strip() for p in value.split(",") if p.strip())


def _store_type(key: str, declared: str, location: str) -> StoreType:
    if declared:
        try:
            return StoreType(declared.upper())
        except ValueError:
            raise TlsConfigError(f"Bad value for {key}: {declared}") from None
    dot = location.rfind(".")
    found = _EXTENSIONS.get(location[dot:]) if dot >= 0 else None
    if found is None:
        raise TlsConfigError(
            f"{key} not set and unable to auto-detect store file type from file name: {location}"
        )
    return found


def _refuse_java_only(key: str, kind: StoreType, location: str) -> None:
    if kind is StoreType.JKS:
        raise TlsConfigError(
            f"{key}: JKS stores are Java-only; convert {location} to PKCS12 with "
            f"'keytool -importkeystore -srckeystore {location} -destkeystore store.p12 "
            "-deststoretype PKCS12' and set the type to PKCS12"
        )
    if kind is StoreType.BCFKS:
        raise TlsConfigError(
            f"{key}: BCFKS stores (Bouncy Castle FIPS) are not supported; export the key and "
            "certificates to PKCS12 or PEM"
        )


def _read(key: str, location: str) -> bytes:
    try:
        return Path(location).read_bytes()
    except OSError as e:
        raise TlsConfigError(f"{key}: cannot read {location}: {e}") from None


def _load_key_store(s: TlsSettings) -> tuple[bytes, list[x509.Certificate]]:
    """Return (PEM private key, certificate chain leaf first) from the key store."""
    key = s.prefix + "keyStore.location"
    kind = _store_type(s.prefix + "keyStore.type", s.key_store_type, s.key_store_location)
    _refuse_java_only(key, kind, s.key_store_location)
    data = _read(key, s.key_store_location)
    password = s.key_store_password.encode("utf-8") or None
    private_key: PrivateKeyTypes | None
    try:
        if kind is StoreType.PEM:
            certs = x509.load_pem_x509_certificates(data) if b"CERTIFICATE" in data else []
            try:
                private_key = serialization.load_pem_private_key(data, password)
            except TypeError:
                if password is None:
                    raise
                # A store password with an unencrypted key: ZooKeeper refuses; we use the key.
                private_key = serialization.load_pem_private_key(data, None)
        else:
            private_key, leaf, extra = pkcs12.load_key_and_certificates(data, password)
            certs = ([leaf] if leaf is not None else []) + list(extra)
    except (ValueError, TypeError) as e:
        raise TlsConfigError(f"{key}: cannot load {kind.value} key store: {e}") from None
    if private_key is None or not certs:
        raise TlsConfigError(f"{key}: the key store needs a private key and its certificate")
    if not isinstance(private_key, _SERIALIZABLE_KEYS):
        raise TlsConfigError(f"{key}: unsupported private key type {type(private_key).__name__}")
    pem_key = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem_key, certs


def _load_trust_store(s: TlsSettings) -> list[x509.Certificate]:
    key = s.prefix + "trustStore.location"
    kind = _store_type(s.prefix + "trustStore.type", s.trust_store_type, s.trust_store_location)
    _refuse_java_only(key, kind, s.trust_store_location)
    data = _read(key, s.trust_store_location)
    try:
        if kind is StoreType.PEM:
            certs = x509.load_pem_x509_certificates(data)
        else:
            password = s.trust_store_password.encode("utf-8") or None
            _, leaf, extra = pkcs12.load_key_and_certificates(data, password)
            # Java trusts only the certificate entries of a trust store, not key entries.
            certs = list(extra)
            if leaf is not None and not certs:
                certs = [leaf]
    except (ValueError, TypeError) as e:
        raise TlsConfigError(f"{key}: cannot load {kind.value} trust store: {e}") from None
    if not certs:
        raise TlsConfigError(f"{key}: no certificates in {s.trust_store_location}")
    return certs


def _protocol_range(s: TlsSettings) -> tuple[ssl.TLSVersion, ssl.TLSVersion]:
    if s.enabled_protocols:
        key, names = s.prefix + "enabledProtocols", s.enabled_protocols
    else:
        key = s.prefix + "protocol"
        names = _PROTOCOL_DEFAULTS.get(s.protocol, ())
        if not names:
            raise TlsConfigError(f"{key}: unsupported protocol {s.protocol!r}")
    versions = []
    for name in names:
        if name not in _TLS_VERSIONS:
            raise TlsConfigError(f"{key}: unsupported protocol {name!r}")
        versions.append(_TLS_VERSIONS[name])
    # OpenSSL enables a contiguous range; a gap in the list is filled (rare in practice).
    return min(versions), max(versions)


def _openssl_cipher_name(name: str) -> str:
    """Map a Java/IANA TLS 1.2 suite name to OpenSSL's; other names pass through."""
    if not name.startswith("TLS_") or "_WITH_" not in name:
        return name
    kx, _, rest = name[4:].partition("_WITH_")
    prefix = _KX_NAMES.get(kx)
    if prefix is None:
        return name
    if rest.startswith("CHACHA20_POLY1305"):
        return prefix + "CHACHA20-POLY1305"
    for iana, openssl in _CIPHER_NAMES:
        if rest.startswith(iana):
            return prefix + openssl + rest[len(iana) :]
    return name


def _apply_cipher_suites(
    ctx: ssl.SSLContext, s: TlsSettings, lo: ssl.TLSVersion, hi: ssl.TLSVersion
) -> tuple[ssl.TLSVersion, ssl.TLSVersion]:
    """Restrict the TLS 1.2 suites; return the version range the suite list leaves."""
    key = s.prefix + "ciphersuites"
    tls12 = [n for n in s.cipher_suites if n not in _TLS13_SUITES]
    tls13 = [n for n in s.cipher_suites if n in _TLS13_SUITES]
    openssl_names = []
    for name in tls12:
        mapped = _openssl_cipher_name(name)
        probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            probe.set_ciphers(mapped)
        except ssl.SSLError:
            raise TlsConfigError(f"{key}: unsupported cipher suite {name!r}") from None
        openssl_names.append(mapped)
    if openssl_names:
        ctx.set_ciphers(":".join(openssl_names))
    if not tls13:
        # As with Java: listing no TLS 1.3 suite makes TLS 1.3 impossible.
        hi = min(hi, ssl.TLSVersion.TLSv1_2)
    elif set(tls13) != _TLS13_SUITES:
        # Python's ssl module has no SSL_CTX_set_ciphersuites.
        log.warning("%s: TLS 1.3 suites cannot be restricted here; all are enabled", key)
    if not tls12:
        lo = max(lo, ssl.TLSVersion.TLSv1_3)
    if lo > hi:
        raise TlsConfigError(f"{key}: no listed cipher suite fits the enabled protocols")
    return lo, hi


def server_context(settings: TlsSettings) -> ssl.SSLContext:
    """Build the server-side SSLContext ZooKeeper would build from these settings."""
    s = settings
    if not s.key_store_location:
        raise TlsConfigError(f"{s.prefix}keyStore.location is required for a TLS server")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    lo, hi = _protocol_range(s)
    if s.cipher_suites:
        lo, hi = _apply_cipher_suites(ctx, s, lo, hi)
    ctx.minimum_version, ctx.maximum_version = lo, hi
    # ZooKeeper sets jdk.tls.rejectClientInitiatedRenegotiation unless told otherwise.
    ctx.options |= ssl.OP_NO_RENEGOTIATION

    pem_key, chain = _load_key_store(s)
    _load_cert_chain(ctx, pem_key, chain)

    ctx.verify_mode = {
        ClientAuth.NONE: ssl.CERT_NONE,
        ClientAuth.WANT: ssl.CERT_OPTIONAL,
        ClientAuth.NEED: ssl.CERT_REQUIRED,
    }[s.client_auth]
    if s.trust_store_location:
        pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in _load_trust_store(s))
        ctx.load_verify_locations(cadata=pem.decode("ascii"))
    elif s.client_auth is not ClientAuth.NONE:
        # Java falls back to the JDK's default trust (cacerts); ours is the system's.
        log.warning("%strustStore.location not set: trusting the system CAs", s.prefix)
        ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    return ctx


def _load_cert_chain(ctx: ssl.SSLContext, pem_key: bytes, chain: list[x509.Certificate]) -> None:
    """Hand key and chain to OpenSSL, which only reads them from files.

    The files live in a private temporary directory for the duration of the call, and the
    key in them is encrypted with a one-time passphrase, so the plain key never hits disk.
    """
    passphrase = secrets.token_bytes(32)
    key = serialization.load_pem_private_key(pem_key, None)
    assert isinstance(key, _SERIALIZABLE_KEYS)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )
    with tempfile.TemporaryDirectory(prefix="corral-tls-") as tmp:
        cert_path = Path(tmp) / "chain.pem"
        key_path = Path(tmp) / "key.pem"
        cert_path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain))
        key_path.touch(mode=0o600)
        key_path.write_bytes(encrypted)
        try:
            ctx.load_cert_chain(str(cert_path), str(key_path), password=passphrase)
        except ssl.SSLError as e:
            raise TlsConfigError(f"key store: key and certificate do not match: {e}") from None


# ---------------------------------------------------------------------------------------
# x509 ACL ids


def x509_auth_ids(cert_der: bytes | None, super_user: str | None = None) -> list[tuple[str, str]]:
    """The (scheme, id) pairs ZooKeeper adds for a verified client certificate.

    ``cert_der`` is the peer's leaf certificate (``ssl_object.getpeercert(True)``), already
    verified by the handshake against the trust store; None (no certificate) gives no ids.
    ``super_user`` is ``zookeeper.X509AuthenticationProvider.superUser``: a matching
    subject also gets ``super``.
    """
    if not cert_der:
        return []
    subject = x509_subject_id(cert_der)
    ids = [("super", subject)] if super_user is not None and subject == super_user else []
    ids.append(("x509", subject))
    return ids


# Java's RFC 2253 keywords (X500Principal.RFC2253); every other attribute prints as its
# dotted OID with the DER value in hex.
_RFC2253_KEYWORDS = {
    "2.5.4.3": "CN",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.9": "STREET",
    "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
}
# DER string types Java prints as text (AVA.isDerString, non-canonical); others go to hex.
_UTF8, _PRINTABLE, _T61, _IA5, _GENERAL, _UNIVERSAL, _BMP = 12, 19, 20, 22, 27, 28, 30
_STRING_TAGS = frozenset({_UTF8, _PRINTABLE, _T61, _IA5, _GENERAL, _BMP})
_ESCAPED = frozenset(',=+<>#;"\\')


def x509_subject_id(cert_der: bytes) -> str:
    """The subject of a DER certificate as ``X500Principal.getName()`` (RFC 2253) prints it."""
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except ValueError as e:
        raise ValueError(f"not a DER certificate: {e}") from None
    return rfc2253_name(cert.subject.public_bytes())


def rfc2253_name(name_der: bytes) -> str:
    """Format a DER X.500 Name as Java's RFC 2253 string (most specific RDN first)."""
    rdns: list[str] = []
    seq_tag, seq, _ = _der(name_der, 0)
    if seq_tag != 0x30:
        raise ValueError("X.500 name is not a SEQUENCE")
    pos = 0
    while pos < len(seq):
        set_tag, rdn, pos = _der(seq, pos)
        if set_tag != 0x31:
            raise ValueError("RDN is not a SET")
        avas: list[str] = []
        apos = 0
        while apos < len(rdn):
            _, ava, apos = _der(rdn, apos)
            oid_tag, oid, vpos = _der(ava, 0)
            if oid_tag != 0x06:
                raise ValueError("attribute type is not an OID")
            value_start = vpos
            value_tag, value, _ = _der(ava, vpos)
            dotted = _oid_text(oid)
            keyword = _RFC2253_KEYWORDS.get(dotted)
            if keyword is None or value_tag not in _STRING_TAGS:
                avas.append(f"{keyword or dotted}=#{ava[value_start:].hex()}")
            else:
                avas.append(f"{keyword}={_escape(_der_string(value_tag, value))}")
        rdns.append("+".join(avas))
    return ",".join(reversed(rdns))


def _der(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """Read one DER TLV at pos: (tag, contents, next position)."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, data[pos : pos + length], pos + length


def _oid_text(raw: bytes) -> str:
    arcs: list[int] = []
    value = 0
    for byte in raw:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs:
        raise ValueError("empty OID")
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])


def _der_string(tag: int, raw: bytes) -> str:
    if tag == _BMP:
        return raw.decode("utf-16-be", "replace")
    if tag == _UTF8:
        return raw.decode("utf-8", "replace")
    # Printable/IA5/T61/General: Java reads these bytes as ISO 8859-1.
    return raw.decode("latin-1")


def _escape(text: str) -> str:
    """Java's AVA.toRFC2253String escaping (all of ,=+<>#;"\\, NUL, edge spaces)."""
    out: list[str] = []
    for ch in text:
        if ch in _ESCAPED:
            out.append("\\" + ch)
        elif ch == "\x00":
            out.append("\\00")
        else:
            out.append(ch)
    body = "".join(out)
    lead = len(body) - len(body.lstrip(" \r"))
    trail = len(body.rstrip(" \r"))
    return "".join("\\" + c if i < lead or i >= trail else c for i, c in enumerate(body))
