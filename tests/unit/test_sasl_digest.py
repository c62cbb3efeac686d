"""SASL DIGEST-MD5 server, driven by pure-sasl's client (what kazoo uses) and RFC 2831."""

from __future__ import annotations

import random

import pytest
from puresasl.client import SASLClient  # type: ignore[import-untyped]

from corral.server import sasl_digest as sd
from corral.server.sasl_digest import (
    DigestConfig,
    DigestMD5Server,
    SaslError,
    canonical_sasl_id,
    is_sasl_super_user,
    parse_directives,
)

USERS = {"super": "adminsecret", "bob": "bobsecret", "hé": "pässwörd"}


def make_server(**kw: object) -> DigestMD5Server:
    config = DigestConfig(credentials=USERS, **kw)  # type: ignore[arg-type]
    return DigestMD5Server(config, random.Random(7))


def kazoo_client(user: str, password: str, **kw: str) -> SASLClient:
    # Exactly how kazoo builds it for DIGEST-MD5 (host hard-coded as ZooKeeper does).
    return SASLClient(
        host="zk-sasl-md5",
        service="zookeeper",
        mechanism="DIGEST-MD5",
        username=user,
        password=password,
        **kw,
    )


def run_exchange(server: DigestMD5Server, client: SASLClient) -> None:
    """kazoo's loop: start with an empty token, stop when the client is complete."""
    challenge: bytes | None = None
    while not client.complete:
        response = client.process(challenge=challenge)
        if client.complete and not response:
            break
        challenge = server.evaluate(response or b"")


def test_pure_sasl_client_authenticates() -> None:
    server = make_server()
    client = kazoo_client("bob", "bobsecret")
    run_exchange(server, client)
    assert client.complete  # it verified our rspauth
    assert server.complete
    assert server.authorization_id == "bob"
    assert server.username == "bob"
    assert server.negotiated_qop == "auth"


def test_authzid_does_not_change_the_acl_id() -> None:
    # ZooKeeper's callback handler derives the id from the authentication id.
    server = make_server()
    client = kazoo_client("bob", "bobsecret", authorization_id="super")
    challenge = server.evaluate(b"")
    response = client.process(challenge)
    # pure-sasl does not send authzid for DIGEST-MD5; add it by hand, hashed into A1.
    assert b"authzid" not in response
    server2 = DigestMD5Server(DigestConfig(credentials=USERS), random.Random(7))
    assert server2.evaluate(b"") == challenge
    d = parse_directives(response)
    ha1 = sd._md5_sess_ha1("bob", "zk-sasl-md5", "bobsecret", d["nonce"], d["cnonce"], b"super")
    resp = sd._kd_response(ha1, d["nonce"], d["cnonce"], "auth", b"AUTHENTICATE:" + d["digest-uri"])
    token = response.replace(d["response"], resp) + b',authzid="super"'
    assert server2.evaluate(token).startswith(b"rspauth=")
    assert server2.authorization_id == "bob"


def test_challenge_has_the_jdk_layout() -> None:
    server = DigestMD5Server(DigestConfig(credentials=USERS), bytes(range(30)))
    challenge = server.evaluate(b"")
    assert challenge == (
        b'realm="zk-sasl-md5",nonce="AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd",'
        b"charset=utf-8,algorithm=md5-sess"
    )
    assert not server.complete
    assert server.authorization_id is None


def test_nonce_comes_from_the_injected_source() -> None:
    a = make_server().evaluate(b"")
    b = make_server().evaluate(b"")
    c = DigestMD5Server(DigestConfig(credentials=USERS), random.Random(8)).evaluate(b"")
    assert a == b != c
    with pytest.raises(ValueError):
        DigestMD5Server(DigestConfig(credentials=USERS), b"short")


def test_rfc2831_example_vector() -> None:
    nonce, cnonce = b"OA6MG9tEQGm2hh", b"OA6MHXh6VqTrRk"
    ha1 = sd._md5_sess_ha1("chris", "elwood.innosoft.com", "secret", nonce, cnonce, None)
    uri = b"imap/elwood.innosoft.com"
    assert sd._kd_response(ha1, nonce, cnonce, "auth", b"AUTHENTICATE:" + uri) == (
        b"d388dad90d4bbd760a152321f2143af7"
    )
    assert sd._kd_response(ha1, nonce, cnonce, "auth", b":" + uri) == (
        b"ea40f60335c427b5527b84dbabcdfffd"
    )


def test_wrong_password_fails_and_stays_failed() -> None:
    server = make_server()
    client = kazoo_client("bob", "wrong")
    response = client.process(server.evaluate(b""))
    with pytest.raises(SaslError, match="Mismatched response"):
        server.evaluate(response)
    assert not server.complete
    with pytest.raises(SaslError, match="previously failed"):
        server.evaluate(response)


def test_unknown_user_fails() -> None:
    server = make_server()
    response = kazoo_client("mallory", "x").process(server.evaluate(b""))
    with pytest.raises(SaslError, match="cannot acquire password for mallory"):
        server.evaluate(response)


def test_super_password_property_overrides_jaas() -> None:
    server = make_server(super_password="fromprop")
    run_exchange(server, kazoo_client("super", "fromprop"))
    assert server.authorization_id == "super"
    server = make_server(super_password="fromprop")
    response = kazoo_client("super", "adminsecret").process(server.evaluate(b""))
    with pytest.raises(SaslError):
        server.evaluate(response)


def test_latin1_rule_for_non_ascii_credentials() -> None:
    # pure-sasl hashes UTF-8 bytes; the JDK (and we) hash ISO 8859-1 when the text fits it,
    # so such users fail with kazoo against ZooKeeper too.
    server = make_server()
    response = kazoo_client("hé", "pässwörd").process(server.evaluate(b""))
    with pytest.raises(SaslError, match="Mismatched response"):
        server.evaluate(response)


def test_initial_response_refused() -> None:
    with pytest.raises(SaslError, match="initial response"):
        make_server().evaluate(b"username=bob")


def test_completed_exchange_refuses_more_tokens() -> None:
    server = make_server()
    run_exchange(server, kazoo_client("bob", "bobsecret"))
    with pytest.raises(SaslError, match="already complete"):
        server.evaluate(b"")


def _good_response() -> tuple[DigestMD5Server, bytes]:
    server = make_server()
    return server, kazoo_client("bob", "bobsecret").process(server.evaluate(b""))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.replace(b'realm="zk-sasl-md5"', b'realm="other"'), "Nonexistent realm"),
        (lambda r: r.replace(b"nc=00000001", b"nc=00000002"), "nonce count"),
        (lambda r: r.replace(b"zookeeper/zk-sasl-md5", b"zookeeper/host"), "Mismatched URI"),
        (lambda r: r.replace(b"qop=auth", b"qop=auth-conf"), "unsupported protection"),
        (lambda r: r + b",charset=latin1", "charset"),
        (lambda r: r + b",nc=00000001", "more than one nc"),
        (lambda r: r + b"," + b"x" * 5000, "length"),
        (lambda r: r.replace(b"nonce=", b"nonsense="), "Missing nonce"),
        (lambda r: r.replace(b"cnonce=", b"cnoncex="), "Missing cnonce"),
        (lambda r: r.replace(b"username=", b"user="), "Missing username"),
        (lambda r: r.replace(b"digest-uri=", b"uri="), "Missing digest-uri"),
        (lambda r: r.replace(b"response=", b"resp="), "Missing response"),
    ],
)
def test_malformed_responses(mutate: object, message: str) -> None:
    server, response = _good_response()
    assert callable(mutate)
    with pytest.raises(SaslError, match=message):
        server.evaluate(mutate(response))


def test_mismatched_nonce() -> None:
    server, response = _good_response()
    other = make_server()
    other.evaluate(b"")
    # Same seed means same nonce; give the second server a different one.
    third = DigestMD5Server(DigestConfig(credentials=USERS), random.Random(99))
    third.evaluate(b"")
    with pytest.raises(SaslError, match="Mismatched nonce"):
        third.evaluate(response)
    assert other.evaluate(response).startswith(b"rspauth=")


def test_digest_uri_is_case_insensitive_and_qop_optional() -> None:
    server, response = _good_response()
    # Without qop the JDK assumes auth; the hash covers "auth" either way.
    assert server.evaluate(response.replace(b"qop=auth,", b"")).startswith(b"rspauth=")


def test_parse_directives() -> None:
    d = parse_directives(b' a=1 , b="x\\"y,z" ,, C = "q" ,d=')
    assert d == {"a": b"1", "b": b'x"y,z', "c": b"q", "d": b""}
    for bad in (b"a", b'a="x', b'a="x"y', b"=1"):
        with pytest.raises(SaslError):
            parse_directives(bad)


def test_config_repr_hides_passwords() -> None:
    assert "bobsecret" not in repr(DigestConfig(credentials=USERS, super_password="p"))


@pytest.mark.parametrize(
    ("authn", "authz", "kw", "expected"),
    [
        ("bob", "bob", {}, "bob"),
        ("bob", "alice", {}, "bob"),
        ("bob/host", "x", {}, "bob/host"),  # no realm: KerberosName keeps it whole
        ("bob/host@EX.COM", "x", {"default_realm": "EX.COM"}, "bob/host@EX.COM"),
        ("bob/host@EX.COM", "x", {"default_realm": "EX.COM", "remove_host": True}, "bob@EX.COM"),
        ("bob/host@EX.COM", "x", {"default_realm": "EX.COM", "remove_realm": True}, "bob/host"),
        ("bob@EX.COM", "bob@EX.COM", {"remove_realm": True}, "bob@EX.COM"),  # realm not default
        ("bob@", "bob@", {"remove_realm": True}, "bob"),  # "" is the default realm
    ],
)
def test_canonical_sasl_id(authn: str, authz: str, kw: dict[str, object], expected: str) -> None:
    assert canonical_sasl_id(authn, authz, **kw) == expected  # type: ignore[arg-type]


def test_malformed_kerberos_name() -> None:
    with pytest.raises(SaslError):
        canonical_sasl_id("a@b@c", "a@b@c")


def test_super_user() -> None:
    assert is_sasl_super_user("bob", ["alice", "bob"])
    assert not is_sasl_super_user("", [""])
    assert not is_sasl_super_user("carol", ["alice"])
