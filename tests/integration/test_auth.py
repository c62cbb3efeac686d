"""Authentication and ACLs against Corral through kazoo: digest (add_auth, digest and auth
ACLs, NOAUTH, getACL masking), the super-user digest (as -D and from SERVER_JVMFLAGS),
skipACL=yes, ip ACLs with CIDR, SASL DIGEST-MD5 from a JAAS file with the sasl ACL scheme,
and whoAmI for each (sent through kazoo's own connection, as kazoo has no call for it).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from kazoo.client import KazooClient  # type: ignore[import-untyped]
from kazoo.exceptions import (  # type: ignore[import-untyped]
    AuthFailedError,
    ConnectionClosedError,
    InvalidACLError,
    NoAuthError,
)
from kazoo.protocol.states import KazooState, KeeperState  # type: ignore[import-untyped]
from kazoo.security import (  # type: ignore[import-untyped]
    ACL,
    CREATOR_ALL_ACL,
    Id,
    Permissions,
    make_acl,
    make_digest_acl,
)

from conftest import ServerPool
from support import kazoo_client
from support.corral import CorralServer
from support.kazoo_calls import who_am_i
from support.procs import HOST, ServerProcess, ServerSettings, running
from support.rawclient import digest

WAIT_S = 10.0
SASL_PROVIDER = "org.apache.zookeeper.server.auth.SASLAuthenticationProvider"
SUPER_DIGEST = digest("super", "superpw")
JAAS = """
Server {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    user_super="adminsecret"
    user_bob="pw";
};
"""


@pytest.fixture(scope="module")
def server(corral_pool: ServerPool, tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    jaas = tmp_path_factory.mktemp("jaas") / "jaas.conf"
    jaas.write_text(JAAS)
    return corral_pool.get(
        ServerSettings(
            super_digest=SUPER_DIGEST,
            properties=(
                ("java.security.auth.login.config", str(jaas)),
                ("zookeeper.superUser", "super"),  # the SASL super user
            ),
            cfg=(("authProvider.1", SASL_PROVIDER),),
        )
    )


def test_digest_acls(server: ServerProcess) -> None:
    alice_acl = make_digest_acl("alice", "secret", all=True)
    with (
        kazoo_client.session(server.address, auth_data=[("digest", "alice:secret")]) as alice,
        kazoo_client.session(server.address) as anon,
    ):
        alice.create("/digest", b"mine", acl=[alice_acl])
        assert alice.get("/digest")[0] == b"mine"
        for call in (
            lambda: anon.get("/digest"),
            lambda: anon.set("/digest", b"x"),
            lambda: anon.get_children("/digest"),
            lambda: anon.create("/digest/kid"),
            lambda: anon.set_acls("/digest", [alice_acl]),
        ):
            with pytest.raises(NoAuthError):
                call()
        # exists needs READ since 3.9.2 (ZOOKEEPER-2590).
        with pytest.raises(NoAuthError):
            anon.exists("/digest")
        with pytest.raises(NoAuthError):
            anon.get_acls("/digest")
        # add_auth on a live connection.
        anon.add_auth("digest", "alice:secret")
        assert anon.get("/digest")[0] == b"mine"
        assert who_am_i(anon, WAIT_S) == {("ip", "127.0.0.1"), ("digest", "alice")}
        # A wrong password is not an error; it is just another identity.
        with (
            kazoo_client.session(server.address, auth_data=[("digest", "alice:wrong")]) as wrong,
            pytest.raises(NoAuthError),
        ):
            wrong.get("/digest")


def test_auth_scheme_expands_to_the_callers_ids(server: ServerProcess) -> None:
    with kazoo_client.session(server.address) as anon, pytest.raises(InvalidACLError):
        anon.create("/creator-anon", acl=CREATOR_ALL_ACL)
    with kazoo_client.session(server.address, auth_data=[("digest", "dora:pw")]) as dora:
        dora.create("/creator", b"d", acl=CREATOR_ALL_ACL)
        acls, _ = dora.get_acls("/creator")
        assert acls == [ACL(Permissions.ALL, Id("digest", digest("dora", "pw")))]


def test_get_acl_masks_digests_without_admin(server: ServerProcess) -> None:
    with (
        kazoo_client.session(server.address, auth_data=[("digest", "erin:pw")]) as erin,
        kazoo_client.session(server.address) as anon,
    ):
        acl = [
            make_acl("world", "anyone", read=True),
            make_digest_acl("erin", "pw", all=True),
        ]
        erin.create("/masked", acl=acl)
        assert erin.get_acls("/masked")[0] == acl
        masked = anon.get_acls("/masked")[0]
        assert masked == [acl[0], ACL(Permissions.ALL, Id("digest", "erin:x"))]


def test_unknown_auth_scheme_fails(server: ServerProcess) -> None:
    with kazoo_client.session(server.address) as zk, pytest.raises(AuthFailedError):
        zk.add_auth("nosuchscheme", "whatever")


def test_super_digest_from_a_system_property(server: ServerProcess) -> None:
    with (
        kazoo_client.session(server.address, auth_data=[("digest", "frank:pw")]) as frank,
        kazoo_client.session(server.address, auth_data=[("digest", "super:superpw")]) as root,
    ):
        frank.create("/private", b"f", acl=[make_digest_acl("frank", "pw", all=True)])
        assert root.get("/private")[0] == b"f"
        root.set("/private", b"root was here")
        root.create("/private/kid")
        root.set_acls("/private", [make_acl("world", "anyone", read=True)])
        assert who_am_i(root, WAIT_S) == {("ip", "127.0.0.1"), ("super", ""), ("digest", "super")}
        root.delete("/private", recursive=True)


def test_ip_acls(server: ServerProcess) -> None:
    with kazoo_client.session(server.address) as zk:
        zk.create("/ip-exact", b"1", acl=[make_acl("ip", "127.0.0.1", all=True)])
        zk.create("/ip-cidr", b"2", acl=[make_acl("ip", "127.0.0.0/8", all=True)])
        zk.create("/ip-other", b"3", acl=[make_acl("ip", "10.1.0.0/16", all=True)])
        assert zk.get("/ip-exact")[0] == b"1"
        assert zk.get("/ip-cidr")[0] == b"2"
        with pytest.raises(NoAuthError):
            zk.get("/ip-other")
        with pytest.raises(InvalidACLError):
            zk.create("/ip-bad", acl=[make_acl("ip", "not-an-address", all=True)])


def test_sasl_digest_md5(server: ServerProcess) -> None:
    sasl = {"mechanism": "DIGEST-MD5", "username": "bob", "password": "pw"}
    with (
        kazoo_client.session(server.address, sasl_options=sasl) as bob,
        kazoo_client.session(server.address) as anon,
    ):
        assert who_am_i(bob, WAIT_S) == {("ip", "127.0.0.1"), ("sasl", "bob")}
        bob.create("/sasl-bob", b"b", acl=[make_acl("sasl", "bob", all=True)])
        assert bob.get("/sasl-bob")[0] == b"b"
        with pytest.raises(NoAuthError):
            anon.get("/sasl-bob")
        assert bob.get_acls("/sasl-bob")[0] == [make_acl("sasl", "bob", all=True)]


def test_sasl_super_user(server: ServerProcess) -> None:
    sasl = {"mechanism": "DIGEST-MD5", "username": "super", "password": "adminsecret"}
    with (
        kazoo_client.session(server.address, auth_data=[("digest", "judy:pw")]) as judy,
        kazoo_client.session(server.address, sasl_options=sasl) as root,
    ):
        judy.create("/judy", b"j", acl=[make_digest_acl("judy", "pw", all=True)])
        assert who_am_i(root, WAIT_S) == {("ip", "127.0.0.1"), ("sasl", "super"), ("super", "")}
        assert root.get("/judy")[0] == b"j"
        root.delete("/judy")


def test_sasl_wrong_password_fails(server: ServerProcess, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING", logger="kazoo.client")
    sasl = {"mechanism": "DIGEST-MD5", "username": "bob", "password": "wrong"}
    client = KazooClient(hosts=f"{HOST}:{server.port}", timeout=5.0, sasl_options=sasl)
    try:
        # The server answers AUTHFAILED and closes; kazoo gives up (LOST), then its
        # connection loop ends (AUTH_FAILED, then CLOSED).
        lost = threading.Event()
        client.add_listener(lambda state: lost.set() if state == KazooState.LOST else None)
        client.start(timeout=WAIT_S)
        assert lost.wait(WAIT_S)
        assert "AUTH_FAILED closing" in caplog.text
        assert client.client_state in (KeeperState.AUTH_FAILED, KeeperState.CLOSED)
        with pytest.raises((AuthFailedError, ConnectionClosedError)):
            client.get("/")
    finally:
        kazoo_client.stop(client)


def test_skip_acl(corral_pool: ServerPool) -> None:
    server = corral_pool.get(ServerSettings(cfg=(("skipACL", "yes"),)))
    with (
        kazoo_client.session(server.address, auth_data=[("digest", "gina:pw")]) as gina,
        kazoo_client.session(server.address) as anon,
    ):
        gina.create("/skipped", b"g", acl=[make_digest_acl("gina", "pw", all=True)])
        assert anon.get("/skipped")[0] == b"g"
        anon.set("/skipped", b"anyone may")
        anon.delete("/skipped")


class JvmFlagsCorral(CorralServer):
    """Corral given its system properties through SERVER_JVMFLAGS, as zkServer.sh users do."""

    def __init__(self, settings: ServerSettings, workdir: Path, jvm_flags: str) -> None:
        super().__init__(settings, workdir)
        self.jvm_flags = jvm_flags

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env["SERVER_JVMFLAGS"] = self.jvm_flags
        return env


def test_super_digest_from_server_jvmflags(tmp_path: Path) -> None:
    flags = f"-Xmx256m -Dzookeeper.DigestAuthenticationProvider.superDigest={SUPER_DIGEST}"
    with (
        running(JvmFlagsCorral(ServerSettings(), tmp_path, flags)) as server,
        kazoo_client.session(server.address, auth_data=[("digest", "hal:pw")]) as hal,
        kazoo_client.session(server.address, auth_data=[("digest", "super:superpw")]) as root,
    ):
        hal.create("/hal", b"h", acl=[make_digest_acl("hal", "pw", all=True)])
        assert root.get("/hal")[0] == b"h"
        assert ("super", "") in who_am_i(root, WAIT_S)
