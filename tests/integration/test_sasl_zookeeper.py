"""What Apache ZooKeeper 3.8 does with a JAAS file and kazoo's DIGEST-MD5: our reference.

The same JAAS text is parsed by corral.server.jaas and handed to ZooKeeper; the users it
yields must be exactly the ones ZooKeeper lets in, and the ``sasl`` id ZooKeeper records
must be the one corral.server.sasl_digest computes.

Then the same kazoo (pure-sasl) exchanges run against Debian's ZooKeeper and against Corral,
both given the same JAAS file and zoo.cfg: a known user, the SASL super user, a wrong
password and an unknown user. What the client sees (connected or not, its states, the error
of its first request), the ids whoAmI reports, who may read a node with a ``sasl`` ACL, and
mntr's ``zk_auth_failed_count`` (which a failed SASL exchange does not move) must be the
same on both servers. Last, requiring authentication (sessionRequireClientSASLAuth,
enforce.auth.*) and allowSaslFailedClients: the first request of each kind of client gets
the same answer from both.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient  # type: ignore[import-untyped]
from kazoo.exceptions import NoAuthError  # type: ignore[import-untyped]
from kazoo.protocol.states import KazooState  # type: ignore[import-untyped]
from kazoo.security import make_acl  # type: ignore[import-untyped]
from puresasl.client import SASLClient  # type: ignore[import-untyped]

from conftest import ServerPool
from corral.proto.codes import OpCode
from corral.proto.records import GetSASLRequest, SetSASLResponse
from corral.server.jaas import server_credentials
from corral.server.sasl_digest import DigestConfig, DigestMD5Server
from support import kazoo_client
from support.kazoo_calls import who_am_i
from support.procs import ServerProcess, ServerSettings, ServerStartError
from support.rawclient import RawClient

WAIT_S = 15.0
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
    users = server_credentials(JAAS)
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
        kazoo_client.stop(bob)

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
        kazoo_client.stop(anon)


# --- the same exchanges against both servers -------------------------------------------


@pytest.fixture(scope="module")
def same_settings(tmp_path_factory: pytest.TempPathFactory) -> ServerSettings:
    jaas = tmp_path_factory.mktemp("jaas") / "jaas.conf"
    jaas.write_text(JAAS)
    return ServerSettings(
        properties=(
            ("java.security.auth.login.config", str(jaas)),
            ("zookeeper.superUser", "super"),  # the SASL super user
        ),
        cfg=(("authProvider.1", SASL_PROVIDER),),
    )


@pytest.fixture(scope="module")
def both(
    zookeeper_pool: ServerPool, corral_pool: ServerPool, same_settings: ServerSettings
) -> dict[str, ServerProcess]:
    return {
        "zookeeper": zookeeper_pool.get(same_settings),
        "corral": corral_pool.get(same_settings),
    }


@contextlib.contextmanager
def sasl_session(server: ServerProcess, user: str, password: str) -> Iterator[Any]:
    """A kazoo client started with DIGEST-MD5 credentials, and the states it went through."""
    host, port = server.address
    client = KazooClient(
        hosts=f"{host}:{port}",
        timeout=10.0,
        sasl_options={"mechanism": "DIGEST-MD5", "username": user, "password": password},
    )
    states: list[str] = []
    lost = threading.Event()

    def listener(state: Any) -> None:
        states.append(str(state))
        if state == KazooState.LOST:
            lost.set()

    client.add_listener(listener)
    try:
        client.start(timeout=WAIT_S)
        yield client, states, lost
    finally:
        kazoo_client.stop(client)


def _outcome(server: ServerProcess, user: str, password: str) -> dict[str, Any]:
    """What a client with these credentials sees, in terms both servers can be compared in."""
    with sasl_session(server, user, password) as (client, states, lost):
        try:
            ids = who_am_i(client, WAIT_S)
        except Exception as exc:  # the server failed the exchange and closed
            ids = frozenset()
            first_error = type(exc).__name__
        else:
            first_error = None
        if first_error is not None:
            assert lost.wait(WAIT_S), "kazoo never gave the failed session up"
        states_seen = tuple(states)
    return {"whoami": ids, "first_error": first_error, "states": states_seen}


def _auth_failed_count(server: ServerProcess) -> int:
    with socket.create_connection(server.address, timeout=WAIT_S) as sock:
        sock.sendall(b"mntr")
        text = b"".join(iter(lambda: sock.recv(65536), b"")).decode()
    values = dict(line.split("\t", 1) for line in text.splitlines())
    return int(values["zk_auth_failed_count"])


CASES = [
    ("bob", 'bob"secret'),  # a user of the JAAS section
    ("super", "adminsecret"),  # the zookeeper.superUser
    ("bob", "wrong"),  # wrong password
    ("carol", "x"),  # no such user
]


def test_same_outcomes_as_zookeeper(both: dict[str, ServerProcess]) -> None:
    before = {kind: _auth_failed_count(server) for kind, server in both.items()}
    seen = {
        kind: {case: _outcome(server, *case) for case in CASES} for kind, server in both.items()
    }
    assert seen["corral"] == seen["zookeeper"]
    ok = seen["corral"]
    # And what the shared outcome is, so that agreeing on nonsense fails too.
    assert ok[CASES[0]] == {
        "whoami": frozenset({("ip", "127.0.0.1"), ("sasl", "bob")}),
        "first_error": None,
        "states": ("CONNECTED",),
    }
    assert ("sasl", "super") in ok[CASES[1]]["whoami"]
    for failed in CASES[2:]:
        assert ok[failed]["first_error"] == "AuthFailedError"
        assert ok[failed]["states"] == ("CONNECTED", "LOST")
    after = {kind: _auth_failed_count(server) for kind, server in both.items()}
    # ZooKeeper 3.8 counts failed auth packets there, not failed SASL exchanges: neither moves.
    assert {k: after[k] - before[k] for k in after} == {"zookeeper": 0, "corral": 0}


def test_sasl_acl_same_as_zookeeper(both: dict[str, ServerProcess]) -> None:
    """A node only sasl:bob may touch: bob reads it; the super user too; others get NOAUTH."""
    results: dict[str, list[str]] = {}
    for kind, server in both.items():
        got: list[str] = []
        with sasl_session(server, "bob", 'bob"secret') as (bob, _, _):
            bob.create("/sasl-acl", b"b", acl=[make_acl("sasl", "bob", all=True)])
            got.append(bob.get("/sasl-acl")[0].decode())
            got.append(repr(bob.get_acls("/sasl-acl")[0]))
        with sasl_session(server, "super", "adminsecret") as (root, _, _):
            got.append(root.get("/sasl-acl")[0].decode())
        host, port = server.address
        anon = KazooClient(hosts=f"{host}:{port}", timeout=10.0)
        anon.start(timeout=WAIT_S)
        try:
            try:
                anon.get("/sasl-acl")
            except NoAuthError:
                got.append("NOAUTH")
            # sasl ids are not digest ids: an ACL naming sasl:bob does not admit digest bob.
            anon.add_auth("digest", 'bob:bob"secret')
            try:
                anon.get("/sasl-acl")
            except NoAuthError:
                got.append("NOAUTH")
        finally:
            kazoo_client.stop(anon)
        with sasl_session(server, "super", "adminsecret") as (root, _, _):
            root.delete("/sasl-acl")
        results[kind] = got
    assert results["corral"] == results["zookeeper"]
    assert results["corral"][0] == "b" and results["corral"][2:] == ["b", "NOAUTH", "NOAUTH"]


# --- requiring authentication ----------------------------------------------------------

BOB = {"mechanism": "DIGEST-MD5", "username": "bob", "password": 'bob"secret'}
BAD = {"mechanism": "DIGEST-MD5", "username": "bob", "password": "nope"}
ENFORCEMENT = {
    # The 3.6 shorthand: every connection must complete SASL.
    "sessionRequireClientSASLAuth": (("zookeeper.sessionRequireClientSASLAuth", "true"),),
    # 3.7's general form, here with digest as the scheme a connection must have.
    "enforce.auth digest": (
        ("zookeeper.enforce.auth.enabled", "true"),
        ("zookeeper.enforce.auth.schemes", "digest"),
    ),
    # A failed SASL exchange keeps the connection (without the sasl id).
    "allowSaslFailedClients": (("zookeeper.allowSaslFailedClients", "true"),),
}
CLIENTS: dict[str, dict[str, Any]] = {
    "anonymous": {},
    "sasl": {"sasl_options": BOB},
    "wrong sasl": {"sasl_options": BAD},
    "digest": {"auth_data": [("digest", "dan:pw")]},
}


def _first_request(server: ServerProcess, client_kwargs: dict[str, Any]) -> str | tuple[Any, ...]:
    """Start kazoo with these credentials: "ok" or the error of its first request. (What
    kazoo does next, reconnecting a refused session with backoff, depends on timing.)

    A failed exchange that the server answers with -124 races kazoo's start, so that case
    is driven on the wire instead: the error codes of both SASL replies, and whether the
    server then closes the connection."""
    if client_kwargs.get("sasl_options") is BAD and _requires_sasl(server):
        return _raw_failed_sasl(server)
    host, port = server.address
    # The shortest session timeout the servers grant (2 ticks): kazoo gives a connection
    # kept open after a failed exchange (allowSaslFailedClients) up only after about that.
    client = KazooClient(hosts=f"{host}:{port}", timeout=4.0, **client_kwargs)
    try:
        client.start(timeout=WAIT_S)
        try:
            client.get("/")
        except Exception as exc:
            return type(exc).__name__
        return "ok"
    finally:
        kazoo_client.stop(client)


def _requires_sasl(server: ServerProcess) -> bool:
    return dict(server.settings.properties).get("zookeeper.sessionRequireClientSASLAuth") == "true"


def _raw_failed_sasl(server: ServerProcess) -> tuple[Any, ...]:
    with RawClient.connect(server.address) as raw:
        challenge = raw.request(OpCode.SASL, GetSASLRequest(b""))
        client = SASLClient(
            host="zk-sasl-md5",
            service="zookeeper",
            mechanism="DIGEST-MD5",
            username=BAD["username"],
            password=BAD["password"],
        )
        token = client.process(challenge.decode(SetSASLResponse).token)
        refused = raw.request(OpCode.SASL, GetSASLRequest(token))
        return ("raw", challenge.err, refused.err, raw.connection_closed(WAIT_S))


@pytest.mark.parametrize("config", list(ENFORCEMENT))
def test_enforcement_same_as_zookeeper(
    config: str, jaas_file: Path, corral_factory: Any, zookeeper_factory: Any
) -> None:
    settings = ServerSettings(
        properties=(("java.security.auth.login.config", str(jaas_file)), *ENFORCEMENT[config]),
        cfg=(("authProvider.1", SASL_PROVIDER),),
    )
    seen = {}
    for kind, factory in (("zookeeper", zookeeper_factory), ("corral", corral_factory)):
        server = factory(settings)
        seen[kind] = {name: _first_request(server, kw) for name, kw in CLIENTS.items()}
        server.stop()
    assert seen["corral"] == seen["zookeeper"]
    ours = seen["corral"]
    refused = "SessionClosedRequireSaslError"  # -124
    expected = {
        "sessionRequireClientSASLAuth": {
            "anonymous": refused,
            "sasl": "ok",
            "wrong sasl": ("raw", 0, -124, True),  # -124 to the SASL packet, then closed
            "digest": refused,
        },
        "enforce.auth digest": {
            "anonymous": refused,
            "sasl": refused,
            "wrong sasl": "AuthFailedError",
            "digest": "ok",
        },
        "allowSaslFailedClients": {
            "anonymous": "ok",
            "sasl": "ok",
            # The server keeps the connection, but pure-sasl fails on the empty token.
            "wrong sasl": "AuthFailedError",
            "digest": "ok",
        },
    }
    assert ours == expected[config]


@pytest.fixture(scope="module")
def jaas_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("enforce") / "jaas.conf"
    path.write_text(JAAS)
    return path


# --- which JAAS section, and files without it ----------------------------------------------

QUORUM_ONLY_JAAS = """
QuorumServer {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    user_peer="peerpw";
};
"""
OTHER_SECTION_JAAS = """
MyServer {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    user_bob="bob\\"secret";
};
"""


@pytest.mark.parametrize("case", ["zookeeper.sasl.serverconfig", "no Server section", "malformed"])
def test_jaas_sections_same_as_zookeeper(
    case: str, tmp_path: Path, corral_factory: Any, zookeeper_factory: Any
) -> None:
    """zookeeper.sasl.serverconfig names the section; a well-formed file without it leaves
    SASL off (the server starts; a SASL client then fails); a malformed file stops it."""
    jaas = tmp_path / "jaas.conf"
    extra: tuple[tuple[str, str], ...] = ()
    if case == "zookeeper.sasl.serverconfig":
        jaas.write_text(OTHER_SECTION_JAAS)
        extra = (("zookeeper.sasl.serverconfig", "MyServer"),)
    elif case == "no Server section":
        jaas.write_text(QUORUM_ONLY_JAAS)
    else:
        jaas.write_text("Server { this is not a login module list")
    settings = ServerSettings(
        properties=(("java.security.auth.login.config", str(jaas)), *extra),
        cfg=(("authProvider.1", SASL_PROVIDER),),
    )
    seen: dict[str, Any] = {}
    for kind, factory in (("zookeeper", zookeeper_factory), ("corral", corral_factory)):
        try:
            server = factory(settings)
        except ServerStartError:
            seen[kind] = "did not start"
            continue
        seen[kind] = (_first_request(server, {"sasl_options": BOB}), _first_request(server, {}))
        server.stop()
    assert seen["corral"] == seen["zookeeper"]
    expected = {
        "zookeeper.sasl.serverconfig": ("ok", "ok"),
        "no Server section": ("AuthFailedError", "ok"),
        "malformed": "did not start",
    }
    assert seen["corral"] == expected[case]
