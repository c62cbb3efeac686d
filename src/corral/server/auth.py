"""Authentication packets: `auth` (op 100, xid -4) and SASL (op 102), and the rule that
refuses other requests from unauthenticated connections.

Both packets are answered at once, outside the connection's reply order, as ZooKeeper's
processPacket does. The auth providers are ZooKeeper's defaults: `digest` (with the
superDigest), `ip`, and `x509` when configured (its ids come from the TLS handshake);
anything else fails with AUTHFAILED, after which the connection is closed.

A failed SASL exchange closes the connection with AUTHFAILED unless
`zookeeper.allowSaslFailedClients` keeps it open. ZooKeeper's authentication enforcement
(`zookeeper.enforce.auth.enabled` + `enforce.auth.schemes`, or the 3.6 shorthand
`zookeeper.sessionRequireClientSASLAuth` for "sasl") makes every other request of a
connection without an id of those schemes fail with SESSIONCLOSEDREQUIRESASLAUTH (-124),
after which the connection is closed; a failed SASL exchange then always gets -124.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass

from corral.proto import jute
from corral.proto.codes import Err
from corral.proto.records import AuthPacket, GetSASLRequest, Id, SetSASLResponse
from corral.server import acl
from corral.server.connection import Connection
from corral.server.replies import header_frame, record_frame
from corral.server.sasl_digest import DigestConfig, DigestMD5Server, SaslError

log = logging.getLogger(__name__)


@dataclass(slots=True)
class AuthOutcome:
    """The reply to send at once, and whether to close the connection after it.

    `reply` is None when the packet did not decode (ZooKeeper closes without a reply).
    """

    reply: bytes | None
    close: bool


class Authenticator:
    """Handles auth and SASL packets for every connection of one server."""

    def __init__(
        self,
        providers: acl.AuthProviders,
        super_digest: str | None,
        sasl: DigestConfig | None,
        sasl_super_users: tuple[str, ...],
        secret: bytes,
        enforce_schemes: frozenset[str] = frozenset(),
        allow_sasl_failed: bool = False,
    ) -> None:
        self.providers = providers
        self.super_digest = super_digest
        self.sasl = sasl
        self.sasl_super_users = sasl_super_users
        self._secret = secret
        self._nonces = 0
        # Empty: enforcement off. Else a connection needs an id of one of these schemes.
        self.enforce_schemes = enforce_schemes
        self._sasl_required = "sasl" in enforce_schemes
        self._allow_sasl_failed = allow_sasl_failed and not self._sasl_required

    def enforce(self, conn: Connection, xid: int) -> AuthOutcome | None:
        """None when the connection may send a request (op other than auth and sasl);
        else the -124 reply, after which the connection is closed."""
        schemes = self.enforce_schemes
        if not schemes or any(ident.scheme in schemes for ident in conn.auth.ids):
            return None
        log.warning(
            "connection %d: no id of the schemes %s that authentication enforcement requires;"
            " closing",
            conn.conn_id,
            sorted(schemes),
        )
        return AuthOutcome(header_frame(xid, 0, Err.SESSIONCLOSEDREQUIRESASLAUTH), True)

    def auth(self, conn: Connection, xid: int, frame: bytes) -> AuthOutcome:
        """An AuthPacket: add the ids it proves to the connection, or AUTHFAILED."""
        try:
            pkt, _ = jute.decode(AuthPacket, frame, 8)
        except jute.DecodeError:
            return AuthOutcome(None, True)
        ids = self._authenticate(conn, pkt.scheme, pkt.auth or b"")
        if ids is None:
            log.info("connection %d: authentication failed for scheme %r", conn.conn_id, pkt.scheme)
            return AuthOutcome(header_frame(xid, 0, Err.AUTHFAILED), True)
        for ident in ids:
            conn.add_auth(ident)
        return AuthOutcome(header_frame(xid, 0, 0), False)

    def _authenticate(self, conn: Connection, scheme: str, data: bytes) -> tuple[Id, ...] | None:
        """The ids an AuthPacket grants (ZooKeeper's providers); None for AUTHFAILED."""
        if scheme not in self.providers.schemes:
            return None
        if scheme == "digest":
            return acl.digest_authenticate(data, self.super_digest)
        if scheme == "ip":
            return (acl.ip_auth_id(conn.remote_ip),)
        if scheme == "x509":
            certs = tuple(i for i in conn.secure_ids if i.scheme == "x509")
            return certs or None
        return None  # sasl authenticates only through op 102

    def sasl_step(self, conn: Connection, xid: int, frame: bytes) -> AuthOutcome:
        """One GetSASLRequest: the DIGEST-MD5 server's next token, or AUTHFAILED."""
        try:
            req, _ = jute.decode(GetSASLRequest, frame, 8)
        except jute.DecodeError:
            return AuthOutcome(None, True)
        cfg = self.sasl
        if cfg is None:
            # ZooKeeper without a JAAS Server section has no SASL server for the connection
            # and answers OK with a null token.
            return AuthOutcome(record_frame(xid, 0, 0, SetSASLResponse(None)), False)
        server = conn.sasl
        if not isinstance(server, DigestMD5Server):
            server = conn.sasl = DigestMD5Server(cfg, self._nonce())
        try:
            token = server.evaluate(req.token or b"")
        except SaslError as exc:
            log.info("connection %d: SASL failed: %s", conn.conn_id, exc)
            if self._allow_sasl_failed:
                # Kept open without the sasl id, as ZooKeeper does: an OK with no token.
                return AuthOutcome(record_frame(xid, 0, 0, SetSASLResponse(None)), False)
            err = Err.SESSIONCLOSEDREQUIRESASLAUTH if self._sasl_required else Err.AUTHFAILED
            return AuthOutcome(record_frame(xid, 0, err, SetSASLResponse(None)), True)
        authz = server.authorization_id
        if authz is not None:
            conn.add_auth(Id("sasl", authz))
            if authz in self.sasl_super_users:
                conn.add_auth(acl.SUPER_ID)
        return AuthOutcome(record_frame(xid, 0, 0, SetSASLResponse(token)), False)

    def _nonce(self) -> bytes:
        # Unpredictable without the server secret, yet pure and reproducible in tests.
        self._nonces += 1
        msg = b"sasl-nonce" + self._nonces.to_bytes(8, "big")
        return hmac.new(self._secret, msg, hashlib.sha256).digest()[:30]
