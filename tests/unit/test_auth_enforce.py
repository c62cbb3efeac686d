"""ZooKeeper's authentication enforcement and allowSaslFailedClients, in the core and in
the configuration (tests/integration/test_sasl_zookeeper.py compares them with ZooKeeper).

- zookeeper.sessionRequireClientSASLAuth=true: every request but auth/sasl of a connection
  without a sasl id gets SESSIONCLOSEDREQUIRESASLAUTH (-124), then the connection closes;
  a failed SASL exchange also gets -124.
- zookeeper.enforce.auth.enabled=true with enforce.auth.schemes: the same for those schemes
  (required; each must have a provider, else the server does not start).
- zookeeper.allowSaslFailedClients=true: a failed SASL exchange keeps the connection.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from core_harness import SECRET, Harness
from puresasl.client import SASLClient  # type: ignore[import-untyped]

from corral.config import ConfigError, load_config
from corral.net.runner import core_config
from corral.proto.codes import Err, OpCode
from corral.proto.records import (
    ACL,
    AuthPacket,
    CreateRequest,
    GetDataRequest,
    GetSASLRequest,
    Id,
    SetSASLResponse,
)
from corral.server import acl
from corral.server.core import CoreConfig
from corral.server.readonly_core import ReadOnlyCore
from corral.server.sasl_digest import DigestConfig

SASL_PROVIDERS = acl.AuthProviders(schemes=frozenset({"ip", "digest", "sasl"}))
USERS = DigestConfig(credentials={"bob": "pw"})


def harness(**kw: object) -> Harness:
    return Harness(config=CoreConfig(providers=SASL_PROVIDERS, sasl=USERS, **kw))  # type: ignore[arg-type]


def sasl_exchange(h: Harness, cid: int, password: str) -> list[int]:
    """A DIGEST-MD5 exchange with pure-sasl; the error codes of the server's replies."""
    client = SASLClient(
        host="zk-sasl-md5",
        service="zookeeper",
        mechanism="DIGEST-MD5",
        username="bob",
        password=password,
    )
    first = h.call(cid, 1, OpCode.SASL, GetSASLRequest(b""))
    token = client.process(first[0].decode(SetSASLResponse).token)
    second = h.call(cid, 2, OpCode.SASL, GetSASLRequest(token))
    return [first[0].err, second[0].err]


def test_required_sasl_refuses_other_requests_until_authenticated() -> None:
    h = harness(enforce_auth_schemes=frozenset({"sasl"}))
    h.connect(1)
    # A digest id is not a sasl id.
    assert h.call(1, -4, OpCode.AUTH, AuthPacket(0, "digest", b"a:b"))[0].err == 0
    replies = h.call(1, 5, OpCode.GET_DATA, GetDataRequest("/", False))
    assert [(r.xid, r.err) for r in replies] == [(5, Err.SESSIONCLOSEDREQUIRESASLAUTH)]
    assert 1 in h.closed
    # Pings too: ZooKeeper checks every packet but auth and sasl.
    h.connect(2)
    assert h.call(2, -2, OpCode.PING)[0].err == Err.SESSIONCLOSEDREQUIRESASLAUTH
    assert 2 in h.closed
    # After SASL, requests are served.
    h.connect(3)
    assert sasl_exchange(h, 3, "pw") == [0, 0]
    assert h.call(3, 3, OpCode.GET_DATA, GetDataRequest("/", False))[0].err == 0
    assert 3 not in h.closed


def test_required_sasl_failed_exchange_gets_124() -> None:
    h = harness(enforce_auth_schemes=frozenset({"sasl"}), allow_sasl_failed_clients=True)
    h.connect(1)
    # allowSaslFailedClients does not apply when SASL is required.
    assert sasl_exchange(h, 1, "wrong") == [0, Err.SESSIONCLOSEDREQUIRESASLAUTH]
    assert 1 in h.closed


def test_enforced_digest() -> None:
    h = harness(enforce_auth_schemes=frozenset({"digest"}))
    h.connect(1)
    assert h.call(1, 1, OpCode.GET_DATA, GetDataRequest("/", False))[0].err == (
        Err.SESSIONCLOSEDREQUIRESASLAUTH
    )
    h.connect(2)
    h.call(2, -4, OpCode.AUTH, AuthPacket(0, "digest", b"a:b"))
    assert h.call(2, 1, OpCode.GET_DATA, GetDataRequest("/", False))[0].err == 0


def test_failed_sasl_closes_unless_allowed() -> None:
    h = harness()
    h.connect(1)
    assert sasl_exchange(h, 1, "wrong") == [0, Err.AUTHFAILED]
    assert 1 in h.closed
    h = harness(allow_sasl_failed_clients=True)
    h.connect(1)
    assert sasl_exchange(h, 1, "wrong") == [0, 0]
    assert 1 not in h.closed
    assert h.call(1, 3, OpCode.GET_DATA, GetDataRequest("/", False))[0].err == 0


def test_read_only_server_checks_enforcement_before_refusing_writes() -> None:
    """ZooKeeper's processPacket checks enforcement before the read-only processor answers
    NOTREADONLY: an unauthenticated write gets -124 and the connection closes."""
    h = harness(enforce_auth_schemes=frozenset({"digest"}))
    h.core = ReadOnlyCore(h.config, h.tree, h.now, h.wall, SECRET)
    anyone = (ACL(31, Id("world", "anyone")),)
    h.connect(1, read_only=True)
    assert h.call(1, 1, OpCode.CREATE, CreateRequest("/x", b"", anyone, 0))[0].err == (
        Err.SESSIONCLOSEDREQUIRESASLAUTH
    )
    assert 1 in h.closed
    h.connect(2, read_only=True)
    h.call(2, -4, OpCode.AUTH, AuthPacket(0, "digest", b"a:b"))
    assert h.call(2, 1, OpCode.CREATE, CreateRequest("/x", b"", anyone, 0))[0].err == (
        Err.NOTREADONLY
    )


def test_off_by_default() -> None:
    h = harness()
    h.connect(1)
    assert h.call(1, 1, OpCode.GET_DATA, GetDataRequest("/", False))[0].err == 0


def test_configuration(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path), {})
    assert cfg.enforce_auth_schemes == () and not cfg.allow_sasl_failed_clients
    cfg = load_config(_write(tmp_path), {"zookeeper.sessionRequireClientSASLAuth": "true"})
    assert cfg.enforce_auth_schemes == ("sasl",)
    cfg = load_config(
        _write(tmp_path),
        {
            "zookeeper.enforce.auth.enabled": "true",
            "zookeeper.enforce.auth.schemes": "digest, ip",
            "zookeeper.allowSaslFailedClients": "true",
        },
    )
    assert cfg.enforce_auth_schemes == ("digest", "ip")
    assert cfg.allow_sasl_failed_clients
    assert core_config(cfg).enforce_auth_schemes == {"digest", "ip"}
    # zoo.cfg keys become zookeeper.* properties, as in ZooKeeper.
    cfg = load_config(_write(tmp_path, "sessionRequireClientSASLAuth=true\n"), {})
    assert cfg.enforce_auth_schemes == ("sasl",)


def test_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="enforce.auth.schemes"):
        load_config(_write(tmp_path), {"zookeeper.enforce.auth.enabled": "true"})
    # sasl has no provider unless authProvider.N names it: ZooKeeper refuses to start.
    cfg = load_config(_write(tmp_path), {"zookeeper.sessionRequireClientSASLAuth": "true"})
    with pytest.raises(ConfigError, match="sasl is not available"):
        core_config(cfg)


def _write(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "zoo.cfg"
    path.write_text(f"dataDir={tmp_path / 'data'}\nclientPort=2181\n{extra}")
    return path
