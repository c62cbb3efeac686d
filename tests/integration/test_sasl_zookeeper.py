"""What Apache ZooKeeper 3.8 does with a JAAS file and kazoo's DIGEST-MD5: our reference.

The same JAAS text is parsed by corral.server.jaas and handed to ZooKeeper; the users it
yields must be exactly the ones ZooKeeper lets in, and the ``sasl`` id ZooKeeper records
must be the one corral.server.sasl_digest computes.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest
from kazoo.client import KazooClient  # type: ignore[import-untyped]
from kazoo.exceptions import NoAuthError  # type: ignore[import-untyped]
from kazoo.security import make_acl  # type: ignore[import-untyped]
from puresasl.client import SASLClient  # type: ignore[import-untyped]

from corral.server.jaas import digest_credentials
from corral.server.sasl_digest import DigestConfig, DigestMD5Server
from support.procs import ServerProcess, ServerSettings

SASL_PROVIDER = "org.apache.zookeeper.server.auth.SASLAuthenticationProvider"
JAAS = """
/* DIGEST-MD5 users of the server */
Server {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    user_super="adminsecret"
    user_bob="bob\\"secret";
};
"""


def _client(server: ServerProcess, user: str, password: str) -> KazooClient:
    host, port = server.address
    return KazooClient(
        hosts=f"{host}:{port}",
        sasl_options={"mechanism": "DIGEST-MD5", "username": user, "password": password},
    )


def test_zookeeper_accepts_the_users_we_parse(
    zookeeper_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    jaas = tmp_path / "jaas.conf"
    jaas.write_text(JAAS)
    users = digest_credentials(JAAS)
    assert users == {"super": "adminsecret", "bob": 'bob"secret'}
    server = zookeeper_factory(
        ServerSettings(
            properties=(("java.security.auth.login.config", str(jaas)),),
            cfg=(("authProvider.1", SASL_PROVIDER),),
        )
    )

    bob = _client(server, "bob", users["bob"])
    bob.start(timeout=30)
    try:
        # Only the id ZooKeeper recorded for bob may read this node.
        bob.create("/sasl-bob", b"x", acl=[make_acl("sasl", "bob", all=True)])
        assert bob.get("/sasl-bob")[0] == b"x"
    finally:
        bob.stop()
        bob.close()

    # Our server records the same id for the same exchange (kazoo's client, pure-sasl).
    ours = DigestMD5Server(DigestConfig(credentials=users), random.Random(1))
    client = SASLClient(
        host="zk-sasl-md5",
        service="zookeeper",
        mechanism="DIGEST-MD5",
        username="bob",
        password=users["bob"],
    )
    rspauth = ours.evaluate(client.process(ours.evaluate(b"")))
    client.process(rspauth)
    assert client.complete
    assert ours.authorization_id == "bob"

    # Someone else (anonymous here) is refused by that ACL.
    host, port = server.address
    anon = KazooClient(hosts=f"{host}:{port}")
    anon.start(timeout=30)
    try:
        with pytest.raises(NoAuthError):
            anon.get("/sasl-bob")
    finally:
        anon.stop()
        anon.close()
