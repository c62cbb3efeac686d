"""Server side of SASL DIGEST-MD5 (RFC 2831) as ZooKeeper's client port speaks it.

ZooKeeper does not implement the mechanism itself: it asks the JDK for a DIGEST-MD5
``SaslServer`` with protocol ``zookeeper`` and server name ``zk-sasl-md5`` and hands it a
callback handler backed by the JAAS ``Server`` section (``user_<name>="<password>"``).
This module reproduces what that pair does on the wire:

1. The client's first token is empty; we answer with the JDK's challenge, byte for byte
   in layout: ``realm="zk-sasl-md5",nonce="<40 chars>",charset=utf-8,algorithm=md5-sess``
   (no ``qop`` directive, which means ``auth`` only, the JDK's default).
2. The client's digest-response is checked in the JDK's order (charset, qop, username,
   realm, nonce, cnonce, nonce-count, digest-uri, response value); on success we answer
   ``rspauth=<hex>`` and the exchange is complete.
3. The authorization id (the ``sasl`` ACL id) is derived from the authentication id the
   way ZooKeeper's ``SaslServerCallbackHandler`` canonicalises it (a Kerberos-style short
   name with the default rules only), not from the ``authzid`` the client asked for.

Only ``qop=auth`` is offered, as ZooKeeper does by default: ZooKeeper never wraps client
traffic, so integrity/confidentiality layers would have nothing to protect.

Why our own module: no maintained Python library implements the *server* side of
DIGEST-MD5. pure-sasl (what kazoo uses), aiosasl and the Cyrus bindings (``sasl``,
``sasl3``) are client-only; pysasl serves PLAIN, LOGIN, CRAM-MD5, EXTERNAL and XOAUTH2 but
not DIGEST-MD5; ``gssapi`` is Kerberos only. The mechanism is small (one challenge, one
verified response, ``qop=auth`` only as ZooKeeper negotiates it), so it lives here, pure,
and is tested against pure-sasl, the JDK's client, ZooKeeper's Java client and Debian's
ZooKeeper (tests/unit/test_sasl_digest.py, tests/integration/test_sasl_*.py, test_zkcli.py).

The module is pure: the nonce comes from an injected source (``random.Random``-like object
with ``randbytes`` or a fixed byte string), there is no IO and no clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "DEFAULT_REALM",
    "MECHANISM",
    "SASL_PROTOCOL",
    "SASL_SERVER_NAME",
    "DigestConfig",
    "DigestMD5Server",
    "NonceSource",
    "SaslError",
    "canonical_sasl_id",
    "is_sasl_super_user",
    "parse_directives",
]

log = logging.getLogger(__name__)

MECHANISM = "DIGEST-MD5"
# ZooKeeper hard-codes these when it creates the SaslServer (SecurityUtils.createSaslServer);
# kazoo and the Java client put them in the digest-uri as "zookeeper/zk-sasl-md5".
SASL_PROTOCOL = "zookeeper"
SASL_SERVER_NAME = "zk-sasl-md5"
# The JDK uses the server name as the only realm when none is configured.
DEFAULT_REALM = SASL_SERVER_NAME

# The JDK's limits: a digest-response longer than this is refused before parsing, and the
# nonce is 30 random bytes, base64-encoded into 40 characters.
RESPONSE_BYTES_MAX = 4096
NONCE_RAW_BYTES = 30
# The JDK answers a single round: the nonce-count it accepts is exactly 1.
NONCE_COUNT = 1
# What the JDK's server accepts for the qop directive when it offered the default (auth).
_QOP_AUTH = "auth"
# A2 gets this suffix for auth-int/auth-conf (RFC 2831 2.1.2.1); kept for completeness.
_A2_INTEGRITY_SUFFIX = b":00000000000000000000000000000000"

# KerberosName's principal pattern: service[/host]@realm.
_KERBEROS_NAME = re.compile(r"([^/@]*)(/([^/@]*))?@([^/@]*)")


class SaslError(Exception):
    """The exchange failed; the connection gets AUTHFAILED (or -124) and is closed."""


class NonceSource(Protocol):
    """Anything with ``randbytes`` (``random.Random``, ``random.SystemRandom``)."""

    def randbytes(self, n: int, /) -> bytes: ...


@dataclass(frozen=True, slots=True)
class DigestConfig:
    """What ZooKeeper's JAAS ``Server`` section and system properties configure.

    ``credentials``: user -> password from the JAAS ``user_<name>`` options.
    ``super_password``: ``zookeeper.SASLAuthenticationProvider.superPassword``, which
    overrides the password of the user named ``super``.
    ``realms``: the JDK's ``com.sun.security.sasl.digest.realm`` (default: the server name).
    ``remove_host_from_principal`` / ``remove_realm_from_principal``:
    ``zookeeper.kerberos.removeHostFromPrincipal`` / ``removeRealmFromPrincipal``.
    ``kerberos_default_realm``: the krb5 default realm ("" when Kerberos is not set up,
    as ZooKeeper falls back to).
    """

    # Passwords stay out of reprs (and so out of logs).
    credentials: Mapping[str, str] = field(repr=False, hash=False)
    super_password: str | None = field(default=None, repr=False)
    realms: tuple[str, ...] = (DEFAULT_REALM,)
    protocol: str = SASL_PROTOCOL
    server_name: str = SASL_SERVER_NAME
    remove_host_from_principal: bool = False
    remove_realm_from_principal: bool = False
    kerberos_default_realm: str = ""

    def password_for(self, user: str) -> str | None:
        """The password ZooKeeper's callback handler would hand the JDK, or None."""
        if user == "super" and self.super_password is not None:
            return self.super_password
        return self.credentials.get(user)


def parse_directives(data: bytes) -> dict[str, bytes]:
    """Parse an RFC 2831 directive list (``key=value`` or ``key="quoted"``, comma separated).

    Keys are returned lower-cased (the JDK compares them ignoring case); values are the raw
    bytes with quoting and backslash escapes removed. A repeated key is an error, as in
    the JDK (realm may repeat only in a challenge, which a server never parses).
    """
    out: dict[str, bytes] = {}
    pos = 0
    end = len(data)
    while pos < end:
        # Skip separators and linear white space between directives.
        while pos < end and data[pos] in b" \t\r\n,":
            pos += 1
        if pos >= end:
            break
        eq = data.find(b"=", pos)
        if eq < 0:
            raise SaslError("DIGEST-MD5: directive without a value")
        key = data[pos:eq].strip().decode("ascii", "replace").lower()
        if not key or any(c in key for c in ' \t",'):
            raise SaslError("DIGEST-MD5: malformed directive name")
        pos = eq + 1
        while pos < end and data[pos] in b" \t\r\n":
            pos += 1
        value = bytearray()
        if pos < end and data[pos] == 0x22:  # opening quote
            pos += 1
            closed = False
            while pos < end:
                ch = data[pos]
                if ch == 0x5C and pos + 1 < end:  # backslash escapes the next byte
                    value.append(data[pos + 1])
                    pos += 2
                    continue
                if ch == 0x22:
                    closed = True
                    pos += 1
                    break
                value.append(ch)
                pos += 1
            if not closed:
                raise SaslError("DIGEST-MD5: unterminated quoted string")
            while pos < end and data[pos] in b" \t\r\n":
                pos += 1
            if pos < end and data[pos] != 0x2C:
                raise SaslError("DIGEST-MD5: garbage after quoted string")
        else:
            comma = data.find(b",", pos)
            stop = end if comma < 0 else comma
            value += data[pos:stop].strip()
            pos = stop
        if key in out:
            raise SaslError(f"DIGEST-MD5: peer sent more than one {key} directive")
        out[key] = bytes(value)
    return out


def _latin1_or_utf8(text: str) -> bytes:
    """RFC 2831's rule for hashing user/realm/password under charset=utf-8.

    Strings that fit ISO 8859-1 are hashed in it; others in UTF-8 (the JDK does the same).
    """
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def _md5(data: bytes) -> bytes:
    # DIGEST-MD5 is defined over MD5; this is protocol compatibility, not our choice.
    return hashlib.md5(data, usedforsecurity=False).digest()


def _hex_md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).hexdigest().encode("ascii")


def canonical_sasl_id(
    authentication_id: str,
    authorization_id: str,
    *,
    default_realm: str = "",
    remove_host: bool = False,
    remove_realm: bool = False,
) -> str:
    """The ``sasl`` ACL id ZooKeeper records for a successful exchange.

    ZooKeeper's callback handler authorises every authenticated user, then replaces the
    authorization id by the authentication id mapped through KerberosName with the
    default ``auth_to_local`` rules: a plain name stays as it is; ``svc[/host]@REALM``
    keeps host and realm unless told to remove them, but only when REALM is the default
    realm (otherwise no rule applies and the requested authorization id is kept).
    Custom ``auth_to_local`` rules are not supported.
    """
    match = _KERBEROS_NAME.fullmatch(authentication_id)
    if match is None:
        if "@" in authentication_id:
            # KerberosName rejects it outright; ZooKeeper's handler does not catch that.
            raise SaslError(f"DIGEST-MD5: malformed Kerberos name: {authentication_id!r}")
        return authentication_id
    service, host, realm = match.group(1), match.group(3), match.group(4)
    if realm != default_realm:
        return authorization_id
    name = service
    if host is not None and not remove_host:
        name += "/" + host
    if not remove_realm:
        name += "@" + realm
    return name


def is_sasl_super_user(authorization_id: str, super_users: Iterable[str]) -> bool:
    """ZooKeeper's ``zookeeper.superUser`` / ``zookeeper.superUser.N`` check."""
    return bool(authorization_id) and authorization_id in set(super_users)


class DigestMD5Server:
    """One connection's DIGEST-MD5 exchange (ZooKeeper's ``ZooKeeperSaslServer``).

    Feed each ``GetSASLRequest.token`` to :meth:`evaluate`; send back what it returns in
    ``SetSASLResponse.token``. When :attr:`complete` turns true, :attr:`authorization_id`
    is the id to add as ``Id("sasl", ...)``. A :class:`SaslError` means the exchange
    failed; the object then refuses further tokens.
    """

    def __init__(self, config: DigestConfig, nonce: NonceSource | bytes) -> None:
        self._config = config
        raw = nonce if isinstance(nonce, bytes) else nonce.randbytes(NONCE_RAW_BYTES)
        if len(raw) != NONCE_RAW_BYTES:
            raise ValueError(f"nonce source must give {NONCE_RAW_BYTES} bytes")
        # The JDK sends the base64 text and hashes exactly those bytes.
        self._nonce = base64.b64encode(raw)
        self._step = 0
        self._complete = False
        self._failed = False
        self._authorization_id: str | None = None
        self._username: str | None = None
        self._qop = _QOP_AUTH

    @property
    def complete(self) -> bool:
        return self._complete

    @property
    def authorization_id(self) -> str | None:
        """The ``sasl`` ACL id once complete, else None."""
        return self._authorization_id if self._complete else None

    @property
    def username(self) -> str | None:
        """The authentication id (the DIGEST-MD5 username) once complete."""
        return self._username if self._complete else None

    @property
    def negotiated_qop(self) -> str:
        return self._qop

    def evaluate(self, token: bytes) -> bytes:
        """Process one client token and return the server's next token."""
        if self._complete:
            raise SaslError("DIGEST-MD5 authentication already complete")
        if self._failed:
            raise SaslError("DIGEST-MD5 authentication previously failed")
        try:
            if self._step == 0:
                self._step = 1
                if token:
                    raise SaslError("DIGEST-MD5 must not have an initial response")
                return self._challenge()
            if self._step == 1:
                self._step = 2
                return self._verify(token)
            raise SaslError("DIGEST-MD5: more than two steps")
        except SaslError:
            self._failed = True
            raise

    def _challenge(self) -> bytes:
        parts = [b'realm="' + _quote(r.encode("utf-8")) + b'"' for r in self._config.realms]
        parts.append(b'nonce="' + self._nonce + b'"')
        parts.append(b"charset=utf-8")
        parts.append(b"algorithm=md5-sess")
        return b",".join(parts)

    def _verify(self, token: bytes) -> bytes:
        if len(token) > RESPONSE_BYTES_MAX:
            raise SaslError(f"DIGEST-MD5: invalid digest response length. Got: {len(token)}")
        d = parse_directives(token)

        charset = d.get("charset")
        if charset is not None and charset.decode("utf-8", "replace").lower() != "utf-8":
            raise SaslError("DIGEST-MD5: incompatible charset value")

        qop = d.get("qop", b"auth").decode("utf-8", "replace")
        if qop != _QOP_AUTH:
            raise SaslError(f"DIGEST-MD5: client selected unsupported protection: {qop}")
        self._qop = qop

        username_raw = d.get("username")
        if username_raw is None:
            raise SaslError("DIGEST-MD5: digest response format violation. Missing username.")
        username = _decode(username_raw)

        realm = _decode(d.get("realm", b""))
        if realm not in self._config.realms:
            raise SaslError(
                f"DIGEST-MD5: digest response format violation. Nonexistent realm: {realm}"
            )

        nonce = d.get("nonce")
        if nonce is None:
            raise SaslError("DIGEST-MD5: digest response format violation. Missing nonce.")
        if not hmac.compare_digest(nonce, self._nonce):
            raise SaslError("DIGEST-MD5: digest response format violation. Mismatched nonce.")

        cnonce = d.get("cnonce")
        if cnonce is None:
            raise SaslError("DIGEST-MD5: digest response format violation. Missing cnonce.")

        nc = d.get("nc")
        if nc is not None and _parse_hex(nc) != NONCE_COUNT:
            raise SaslError("DIGEST-MD5: nonce count does not match")

        uri_raw = d.get("digest-uri")
        if uri_raw is None:
            raise SaslError("DIGEST-MD5: digest response format violation. Missing digest-uri.")
        expected_uri = f"{self._config.protocol}/{self._config.server_name}"
        if _decode(uri_raw).lower() != expected_uri.lower():
            raise SaslError(
                "DIGEST-MD5: digest response format violation. Mismatched URI: "
                f"{_decode(uri_raw)}; expecting: {expected_uri}"
            )

        response = d.get("response")
        if response is None:
            raise SaslError("DIGEST-MD5: digest response format violation. Missing response.")
        authzid_raw = d.get("authzid")

        password = self._config.password_for(username)
        if password is None:
            log.warning("SASL DIGEST-MD5: unknown user %r", username)
            raise SaslError(
                f"DIGEST-MD5: cannot acquire password for {username} in realm : {realm}"
            )

        ha1 = _md5_sess_ha1(username, realm, password, self._nonce, cnonce, authzid_raw)
        expected = _kd_response(ha1, self._nonce, cnonce, qop, b"AUTHENTICATE:" + uri_raw)
        if not hmac.compare_digest(response.lower(), expected):
            raise SaslError("DIGEST-MD5: digest response format violation. Mismatched response.")

        authzid = _decode(authzid_raw) if authzid_raw is not None else username
        self._authorization_id = canonical_sasl_id(
            username,
            authzid,
            default_realm=self._config.kerberos_default_realm,
            remove_host=self._config.remove_host_from_principal,
            remove_realm=self._config.remove_realm_from_principal,
        )
        self._username = username
        self._complete = True
        rspauth = _kd_response(ha1, self._nonce, cnonce, qop, b":" + uri_raw)
        return b"rspauth=" + rspauth


def _decode(raw: bytes) -> str:
    # We advertise charset=utf-8, so the client's strings are UTF-8 (the JDK decodes so).
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslError("DIGEST-MD5: response is not valid UTF-8") from None


def _parse_hex(raw: bytes) -> int:
    try:
        return int(raw.decode("ascii"), 16)
    except (UnicodeDecodeError, ValueError):
        raise SaslError("DIGEST-MD5: malformed nonce count") from None


def _quote(raw: bytes) -> bytes:
    return raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"')


def _md5_sess_ha1(
    user: str, realm: str, password: str, nonce: bytes, cnonce: bytes, authzid: bytes | None
) -> bytes:
    """H(A1) for algorithm=md5-sess (RFC 2831 2.1.2.1), binary."""
    secret = b":".join([_latin1_or_utf8(user), _latin1_or_utf8(realm), _latin1_or_utf8(password)])
    inner = _md5(secret)
    a1 = inner + b":" + nonce + b":" + cnonce
    if authzid is not None:
        a1 += b":" + authzid
    return _md5(a1)


def _kd_response(ha1: bytes, nonce: bytes, cnonce: bytes, qop: str, a2: bytes) -> bytes:
    """HEX(KD(HEX(H(A1)), nonce:nc:cnonce:qop:HEX(H(A2)))) with nc fixed at 1."""
    if qop != _QOP_AUTH:
        a2 += _A2_INTEGRITY_SUFFIX
    nc = f"{NONCE_COUNT:08x}".encode("ascii")
    kd = b":".join(
        [ha1.hex().encode("ascii"), nonce, nc, cnonce, qop.encode("ascii"), _hex_md5(a2)]
    )
    return _hex_md5(kd)
