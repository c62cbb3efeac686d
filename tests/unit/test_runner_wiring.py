"""How the runner turns a ServerConfig into the core's and the store's settings."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from corral.config import ConfigError, parse_config
from corral.net.runner import auth_providers, core_config, store_config

BASE = {"dataDir": "/d", "clientPort": "2181"}


def test_store_config() -> None:
    cfg = parse_config(
        {
            **BASE,
            "dataLogDir": "/l",
            "autopurge.purgeInterval": "90m",
            "autopurge.snapRetainCount": "4",
        },
        {"zookeeper.preAllocSize": "1024", "zookeeper.forceSync": "no"},
    )
    s = store_config(cfg)
    assert s.data_dir == Path("/d") and s.data_log_dir == Path("/l")
    assert s.prealloc_bytes == 1024 * 1024 and not s.force_sync
    assert s.purge_interval_ms == 90 * 60_000
    assert s.snap_retain_count == 4 and s.snap_count == 100_000


def test_core_config() -> None:
    cfg = parse_config(
        {**BASE, "tickTime": "1000", "skipACL": "yes", "extendedTypesEnabled": "true"},
        {"corral.sessionPasswordScheme": "zookeeper", "jute.maxbuffer": "2048"},
    )
    c = core_config(cfg)
    assert c.tick_ms == 1000 and c.min_timeout == 2000 and c.max_timeout == 20000
    assert c.skip_acl and c.extended_types_enabled and c.zookeeper_passwords
    assert c.max_buffer_bytes == 2048 and c.sasl is None
    assert c.server_id == 1  # standalone ZooKeeper's session id prefix, whatever the myid


def test_auth_providers(caplog: pytest.LogCaptureFixture) -> None:
    cfg = parse_config(
        {
            **BASE,
            "secureClientPort": "2182",
            "authProvider.1": "org.apache.zookeeper.server.auth.SASLAuthenticationProvider",
            "authProvider.2": "com.example.Custom",
            "DigestAuthenticationProvider.enabled": "false",
            "X509AuthenticationProvider.superUser": "CN=admin",
        },
        {},
    )
    with caplog.at_level(logging.WARNING):
        p = auth_providers(cfg)
    assert p.schemes == {"ip", "sasl", "x509"}
    assert p.x509_super_user == "CN=admin"
    assert "com.example.Custom" in caplog.text


def test_jaas_file_gives_sasl_users(tmp_path: Path) -> None:
    jaas = tmp_path / "jaas.conf"
    jaas.write_text(
        "Server {\n org.apache.zookeeper.server.auth.DigestLoginModule required\n"
        '  user_super="s3cret" user_bob="b0b";\n};\n'
    )
    cfg = parse_config(BASE, {"java.security.auth.login.config": str(jaas)})
    sasl = core_config(cfg).sasl
    assert sasl is not None and dict(sasl.credentials) == {"super": "s3cret", "bob": "b0b"}


def test_bad_jaas_file_is_a_config_error(tmp_path: Path) -> None:
    cfg = parse_config(BASE, {"java.security.auth.login.config": str(tmp_path / "missing")})
    with pytest.raises(ConfigError) as err:
        core_config(cfg)
    assert err.value.key == "java.security.auth.login.config"
