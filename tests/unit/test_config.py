"""zoo.cfg and system-property parsing: every key, precedence, warnings and errors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from corral.cli.main import system_properties
from corral.config import (
    ALL_FOUR_LETTER_WORDS,
    EMBEDDED_FOUR_LETTER_WORDS,
    ConfigError,
    QuorumAddress,
    ServerConfig,
    embedded_config,
    load_config,
    parse_config,
)
from corral.javaprops import PropertiesSyntaxError, jvm_flag_properties, parse_properties


def cfg(tmp_path: Path, text: str, sysprops: dict[str, str] | None = None) -> ServerConfig:
    path = tmp_path / "zoo.cfg"
    path.write_text(text.replace("@DATA@", str(tmp_path / "data")))
    return load_config(path, sysprops)


BASE = "dataDir=@DATA@\nclientPort=2181\n"
SUPER_DIGEST = "DigestAuthenticationProvider.superDigest"


# -- Java properties syntax ------------------------------------------------------------------


def test_properties_separators_comments_and_whitespace() -> None:
    text = (
        "# comment\n"
        "! also a comment\n"
        "   \n"
        "a=1\n"
        "b : 2\n"
        "c 3\n"
        "  d\t=\t4  \n"
        "e=\n"
        "f\n"
        "g==x\n"
        "h:=y\n"
        "url=http://h:1/x=y\n"
    )
    assert parse_properties(text) == {
        "a": "1",
        "b": "2",
        "c": "3",
        "d": "4  ",
        "e": "",
        "f": "",
        "g": "=x",
        "h": "=y",
        "url": "http://h:1/x=y",
    }


def test_properties_continuations_and_line_endings() -> None:
    text = "list=a,\\\n    b,\\\r\n\tc\rnext=1\\\\\nlast=x\\"
    assert parse_properties(text) == {"list": "a,b,c", "next": "1\\", "last": "x"}


def test_properties_comment_marker_inside_continuation_is_data() -> None:
    assert parse_properties("a=1\\\n# not a comment\n") == {"a": "1# not a comment"}


def test_properties_continuation_then_blank_line_ends_the_entry() -> None:
    assert parse_properties("a=1\\\n\nb=2\n") == {"a": "1", "b": "2"}


def test_properties_escapes() -> None:
    text = "k\\ ey\\:x=v\\tw\\u0041\\q\\=\nlast=1\nlast=2\n"
    assert parse_properties(text) == {"k ey:x": "v\twAq=", "last": "2"}


def test_properties_malformed_unicode_escape() -> None:
    with pytest.raises(PropertiesSyntaxError, match="line 2"):
        parse_properties("a=1\nb=\\u12g4\n")


def test_malformed_escape_in_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="uxxxx"):
        cfg(tmp_path, BASE + "x=\\u00\n")


def test_jvm_flags() -> None:
    flags = "-Xmx1g -Da=1 -Db -Dc=x=y -XX:+UseG1GC -D -D=v  -Dd=2"
    assert jvm_flag_properties(flags) == {"a": "1", "b": "", "c": "x=y", "d": "2"}


# -- system properties from the CLI and the environment --------------------------------------


def test_system_properties_precedence() -> None:
    env = {"SERVER_JVMFLAGS": "-Da=server -Db=server", "JVMFLAGS": "-Db=jvm -Dc=jvm"}
    props = system_properties(["c=cli", "d"], env)
    # zkServer.sh runs java with "$SERVER_JVMFLAGS $JVMFLAGS"; -D arguments come last.
    assert props == {"a": "server", "b": "jvm", "c": "cli", "d": ""}


def test_server_jvmflags_reach_the_config(tmp_path: Path) -> None:
    env = {
        "SERVER_JVMFLAGS": "-Dzookeeper.skipACL=yes -Dzookeeper.extendedTypesEnabled=true "
        "-Djute.maxbuffer=4194304"
    }
    c = cfg(tmp_path, BASE, system_properties([], env))
    assert c.skip_acl and c.extended_types_enabled
    assert c.jute_maxbuffer_bytes == 4194304


# -- defaults --------------------------------------------------------------------------------


def test_embedded_default() -> None:
    c = embedded_config()
    assert c.embedded and c.config_file is None
    assert (c.client_port_address, c.client_port) == ("127.0.0.1", 2181)
    assert c.data_dir == Path("./corral-data") == c.data_log_dir
    assert c.tick_time_ms == 2000
    assert (c.min_session_timeout_ms, c.max_session_timeout_ms) == (4000, 40000)
    assert c.four_letter_words == EMBEDDED_FOUR_LETTER_WORDS
    assert c.session_secret_file == Path("./corral-data/corral-session-secret")
    assert not c.ensemble.distributed


def test_embedded_default_takes_system_properties() -> None:
    c = embedded_config({"zookeeper.4lw.commands.whitelist": "ruok", "zookeeper.skipACL": "yes"})
    assert c.four_letter_words == {"ruok", "srvr"}
    assert c.skip_acl


def test_zoo_cfg_defaults_are_zookeepers(tmp_path: Path) -> None:
    c = cfg(tmp_path, BASE)
    assert c.data_dir == tmp_path / "data" == c.data_log_dir
    assert c.config_file == tmp_path / "zoo.cfg"
    assert c.tick_time_ms == 3000
    assert c.client_port == 2181 and c.client_port_address is None
    assert c.secure_client_port is None
    assert c.max_client_cnxns == 60
    assert (c.min_session_timeout_ms, c.max_session_timeout_ms) == (6000, 60000)
    assert c.snap_count == 100_000 and c.pre_alloc_size_kb == 65_536 and c.force_sync
    assert (c.autopurge_snap_retain_count, c.autopurge_purge_interval_ms) == (3, 0)
    assert c.jute_maxbuffer_bytes == 0xFFFFF
    assert not c.extended_types_enabled and not c.skip_acl and c.super_digest is None
    assert c.global_outstanding_limit == 1000
    assert c.four_letter_words == {"srvr"}
    assert c.auth_providers == ()
    assert c.ssl.client_auth == "need" and c.ssl.key_store_location is None
    assert c.admin.server_port == 8080 and c.admin.enable_server
    assert c.session_secret_file == tmp_path / "data" / "corral-session-secret"
    assert c.session_password_scheme == "hmac"
    e = c.ensemble
    assert e.servers == () and e.server_id is None and e.election_alg == 3
    assert e.standalone_enabled and not e.reconfig_enabled and e.peer_type == "participant"
    assert not e.local_sessions_enabled and not e.read_only_mode_enabled


# -- every key -------------------------------------------------------------------------------


def test_every_standalone_key(tmp_path: Path) -> None:
    text = """
tickTime=1000
dataDir=@DATA@
dataLogDir=/var/log/zk
clientPort=2281
clientPortAddress=127.0.0.2
secureClientPort=2282
secureClientPortAddress=127.0.0.3
clientPortListenBacklog=128
maxClientCnxns=7
minSessionTimeout=3000
maxSessionTimeout=9000
snapCount=5000
preAllocSize=1024
forceSync=no
autopurge.snapRetainCount=5
autopurge.purgeInterval=2
jute.maxbuffer=0x200000
extendedTypesEnabled=true
emulate353TTLNodes=true
skipACL=yes
DigestAuthenticationProvider.superDigest=super:D/InIHSb7yEEbrWz8b9l71RjZJU=
X509AuthenticationProvider.superUser=CN=admin
globalOutstandingLimit=500
maxCnxns=100
fsync.warningthresholdms=50
maxBatchSize=10
snapSizeLimitInKb=1000
sasl.serverconfig=ZkServer
4lw.commands.whitelist=ruok, stat ,mntr
authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider
authProvider.x509=org.apache.zookeeper.server.auth.X509AuthenticationProvider
corral.sessionSecretFile=/etc/corral/secret
corral.sessionPasswordScheme=zookeeper
"""
    c = cfg(tmp_path, text)
    assert c.tick_time_ms == 1000
    assert c.data_log_dir == Path("/var/log/zk")
    assert (c.client_port_address, c.client_port) == ("127.0.0.2", 2281)
    assert (c.secure_client_port_address, c.secure_client_port) == ("127.0.0.3", 2282)
    assert c.client_port_listen_backlog == 128
    assert c.max_client_cnxns == 7 and c.max_cnxns == 100
    assert (c.min_session_timeout_ms, c.max_session_timeout_ms) == (3000, 9000)
    assert c.snap_count == 5000 and c.snap_size_limit_kb == 1000
    assert c.pre_alloc_size_kb == 1024 and not c.force_sync
    assert c.fsync_warning_threshold_ms == 50 and c.max_batch_size == 10
    assert c.autopurge_snap_retain_count == 5
    assert c.autopurge_purge_interval_ms == 2 * 3_600_000
    assert c.jute_maxbuffer_bytes == 0x200000
    assert c.extended_types_enabled and c.emulate353_ttl_nodes and c.skip_acl
    assert c.super_digest == "super:D/InIHSb7yEEbrWz8b9l71RjZJU="
    assert c.x509_super_user == "CN=admin"
    assert c.global_outstanding_limit == 500
    assert c.sasl_server_section == "ZkServer"
    assert c.four_letter_words == {"ruok", "stat", "mntr", "srvr"}
    assert c.auth_providers == (
        ("1", "org.apache.zookeeper.server.auth.SASLAuthenticationProvider"),
        ("x509", "org.apache.zookeeper.server.auth.X509AuthenticationProvider"),
    )
    assert c.session_secret_file == Path("/etc/corral/secret")
    assert c.session_password_scheme == "zookeeper"
    # Non-config keys are kept as zookeeper.<key> system properties, as ZooKeeper does.
    assert c.properties["zookeeper.skipACL"] == "yes"
    assert c.properties["zookeeper.4lw.commands.whitelist"] == "ruok, stat ,mntr"


def test_auth_quota_and_container_keys(tmp_path: Path) -> None:
    text = BASE + (
        "enforceQuota=true\nznode.container.checkIntervalMs=1000\n"
        "znode.container.maxPerMinute=60\nsuperUser=admin\n"
        "SASLAuthenticationProvider.superPassword=pw\nletAnySaslUserDoX=anyone\n"
        "kerberos.removeHostFromPrincipal=true\nkerberos.removeRealmFromPrincipal=true\n"
        "DigestAuthenticationProvider.enabled=false\n"
        "snapshot.trust.empty=true\ndatadir.autocreate=false\n"
        "nio.sessionlessCnxnTimeout=1000\n"
    )
    c = cfg(tmp_path, text, {"znode.container.maxNeverUsedIntervalMs": "5000"})
    assert c.enforce_quota and not c.digest_auth_enabled
    assert c.container_check_interval_ms == 1000 and c.container_max_per_minute == 60
    assert c.container_max_never_used_ms == 5000
    assert c.sasl_super_user == "admin" and c.sasl_super_password == "pw"
    assert c.let_any_sasl_user == "anyone"
    assert c.kerberos_remove_host_from_principal and c.kerberos_remove_realm_from_principal
    assert c.snapshot_trust_empty and not c.datadir_autocreate
    assert c.sessionless_cnxn_timeout_ms == 1000
    assert "pw" not in repr(c)


def test_ssl_keys(tmp_path: Path) -> None:
    text = BASE + (
        "secureClientPort=2182\n"
        "ssl.keyStore.location=/k.pem\nssl.keyStore.password=sekrit1\nssl.keyStore.type=PEM\n"
        "ssl.keyStore.passwordPath=/kpp\n"
        "ssl.trustStore.location=/t.pem\nssl.trustStore.password=sekrit2\n"
        "ssl.trustStore.type=PEM\nssl.trustStore.passwordPath=/tpp\n"
        "ssl.protocol=TLSv1.3\nssl.enabledProtocols=TLSv1.2, TLSv1.3\n"
        "ssl.ciphersuites=A,B\nssl.clientAuth=WANT\nssl.hostnameVerification=false\n"
        "ssl.clientHostnameVerification=true\nssl.crl=true\nssl.ocsp=true\n"
        "ssl.authProvider=x509\nssl.handshakeDetectionTimeoutMillis=700\n"
    )
    s = cfg(tmp_path, text).ssl
    assert (s.key_store_location, s.key_store_password) == ("/k.pem", "sekrit1")
    assert s.key_store_type == "PEM"
    assert s.key_store_password_path == "/kpp" and s.trust_store_password_path == "/tpp"
    assert (s.trust_store_location, s.trust_store_password) == ("/t.pem", "sekrit2")
    assert s.trust_store_type == "PEM" and s.protocol == "TLSv1.3"
    assert s.enabled_protocols == ("TLSv1.2", "TLSv1.3") and s.ciphersuites == ("A", "B")
    assert s.client_auth == "want" and not s.hostname_verification
    assert s.client_hostname_verification is True and s.crl and s.ocsp
    assert s.auth_provider == "x509" and s.handshake_detection_timeout_ms == 700
    assert "sekrit" not in repr(s)


def test_ssl_keys_from_system_properties(tmp_path: Path) -> None:
    c = cfg(tmp_path, BASE, {"zookeeper.ssl.keyStore.location": "/from-d.pem"})
    assert c.ssl.key_store_location == "/from-d.pem"


def test_admin_keys(tmp_path: Path) -> None:
    text = BASE + (
        "admin.enableServer=false\nadmin.serverAddress=127.0.0.1\nadmin.serverPort=9090\n"
        "admin.idleTimeout=100\nadmin.commandURL=/cmd\nadmin.httpVersion=2\n"
        "admin.portUnification=true\nadmin.forceHttps=true\nadmin.needClientAuth=true\n"
        "admin.snapshot.enabled=false\nadmin.restore.enabled=false\n"
        "admin.rateLimiterIntervalInMS=10\n"
    )
    a = cfg(tmp_path, text).admin
    assert not a.enable_server and a.server_address == "127.0.0.1" and a.server_port == 9090
    assert a.idle_timeout_ms == 100 and a.command_url == "/cmd" and a.http_version == 2
    assert a.port_unification and a.force_https and a.need_client_auth
    assert not a.snapshot_enabled and not a.restore_enabled
    assert a.rate_limiter_interval_ms == 10


def test_ensemble_keys(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "myid").write_text("2\n")
    text = BASE.replace("clientPort=2181\n", "") + (
        "initLimit=10\nsyncLimit=5\nconnectToLearnerMasterLimit=12\nelectionAlg=3\n"
        "standaloneEnabled=false\nreconfigEnabled=true\npeerType=participant\n"
        "localSessionsEnabled=true\nlocalSessionsUpgradingEnabled=true\n"
        "readonlymode.enabled=true\nquorumListenOnAllIPs=true\nsyncEnabled=false\n"
        "observerMasterPort=2191\n"
        "server.1=zk1:2888:3888\n"
        "server.2=zk2:2888:3888:participant;127.0.0.1:2181\n"
        "server.3=[::1]:2888:3888:observer;2183;2283\n"
    )
    c = cfg(tmp_path, text)
    e = c.ensemble
    assert e.server_id == 2
    assert (e.init_limit, e.sync_limit, e.connect_to_learner_master_limit) == (10, 5, 12)
    assert not e.standalone_enabled and e.reconfig_enabled and e.peer_type == "participant"
    assert e.local_sessions_enabled and e.local_sessions_upgrading_enabled
    assert e.read_only_mode_enabled and "isro" in c.four_letter_words
    assert e.quorum_listen_on_all_ips and not e.sync_enabled and e.observer_master_port == 2191
    assert [s.sid for s in e.servers] == [1, 2, 3]
    one, two, three = e.servers
    assert one.addresses == (QuorumAddress("zk1", 2888, 3888),) and not one.observer
    assert two.client_address == ("127.0.0.1", 2181)
    assert three.observer and three.addresses[0].host == "::1"
    assert three.client_address == ("0.0.0.0", 2183)
    assert three.secure_client_address == ("0.0.0.0", 2283)
    assert e.distributed and [s.sid for s in e.voting_members] == [1, 2]
    # This server's client port comes from its server line, as in ZooKeeper.
    assert (c.client_port_address, c.client_port) == ("127.0.0.1", 2181)
    assert c.secure_client_port is None


def test_secure_port_from_the_server_line(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "myid").write_text("1")
    c = cfg(tmp_path, "dataDir=@DATA@\nserver.1=a:2888:3888;;127.0.0.1:2282\n")
    assert c.client_port is None
    assert (c.secure_client_port_address, c.secure_client_port) == ("127.0.0.1", 2282)


def test_single_server_line_stays_standalone(tmp_path: Path) -> None:
    c = cfg(tmp_path, BASE + "server.1=localhost:2888:3888\n")
    assert not c.ensemble.distributed


def test_dynamic_config_file(tmp_path: Path) -> None:
    dyn = tmp_path / "zoo.cfg.dynamic.100000000"
    dyn.write_text("server.1=a:2888:3888;2181\nserver.2=b:2888:3888;2181\n")
    c = cfg(tmp_path, BASE + f"dynamicConfigFile={dyn}\n")
    assert c.ensemble.dynamic_config_file == dyn
    assert [s.sid for s in c.ensemble.servers] == [1, 2]


def test_server_lines_must_be_in_the_dynamic_file(tmp_path: Path) -> None:
    dyn = tmp_path / "dyn"
    dyn.write_text("server.1=a:2888:3888\n")
    with pytest.raises(ConfigError) as err:
        cfg(tmp_path, BASE + f"dynamicConfigFile={dyn}\nserver.2=b:2888:3888\n")
    assert err.value.key == "server.2"


def test_multi_address_needs_the_switch(tmp_path: Path) -> None:
    line = "server.1=a:2888:3888|b:2889:3889\nserver.2=c:2888:3888\n"
    with pytest.raises(ConfigError, match="multiAddress"):
        cfg(tmp_path, BASE + line)
    c = cfg(tmp_path, BASE + "multiAddress.enabled=true\n" + line)
    assert len(c.ensemble.servers[0].addresses) == 2


def test_four_letter_whitelist_star_and_unknown_words(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert cfg(tmp_path, BASE + "4lw.commands.whitelist=*\n").four_letter_words == (
        ALL_FOUR_LETTER_WORDS
    )
    with caplog.at_level(logging.WARNING, logger="corral.config"):
        c = cfg(tmp_path, BASE + "4lw.commands.whitelist=ruok,bogus\n")
    assert c.four_letter_words == {"ruok", "srvr"}
    assert "bogus" in caplog.text
    assert c.four_letter_allowed("ruok") and not c.four_letter_allowed("dump")


def test_purge_interval_units(tmp_path: Path) -> None:
    for value, ms in [("0", 0), ("1", 3_600_000), ("90m", 5_400_000), ("30s", 30_000),
                      ("1500ms", 1500), ("2d", 172_800_000), ("3H", 10_800_000)]:  # fmt: skip
        c = cfg(tmp_path, BASE + f"autopurge.purgeInterval={value}\n")
        assert c.autopurge_purge_interval_ms == ms, value


def test_clamped_values_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="corral.config"):
        c = cfg(tmp_path, BASE + "snapCount=1\nautopurge.snapRetainCount=1\n")
    assert c.snap_count == 2 and c.autopurge_snap_retain_count == 3
    assert "snapCount" in caplog.text and "snapRetainCount" in caplog.text


# -- zookeeper.<key> fallback and precedence --------------------------------------------------


def test_non_config_key_becomes_zookeeper_property(tmp_path: Path) -> None:
    c = cfg(tmp_path, BASE + "extendedTypesEnabled=true\nleaderServes=no\n")
    assert c.extended_types_enabled
    assert c.properties["zookeeper.extendedTypesEnabled"] == "true"
    assert c.properties["zookeeper.leaderServes"] == "no"
    assert "zookeeper.dataDir" not in c.properties  # config keys are not system properties


def test_pre_alloc_size_zero_turns_preallocation_off(tmp_path: Path) -> None:
    # ZooKeeper's FilePadding pads only while preAllocSize > 0.
    assert cfg(tmp_path, BASE + "preAllocSize=0\n").pre_alloc_size_kb == 0


def test_snapshot_compression_method(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # As ZooKeeper's SnapStream.StreamMode: gz or snappy in any case, anything else is none.
    assert cfg(tmp_path, BASE).snapshot_compression == ""
    assert cfg(tmp_path, BASE + "snapshot.compression.method=GZ\n").snapshot_compression == "gz"
    prop = {"zookeeper.snapshot.compression.method": "snappy"}
    assert cfg(tmp_path, BASE, prop).snapshot_compression == "snappy"
    assert cfg(tmp_path, BASE + "snapshot.compression.method=lz4\n").snapshot_compression == ""
    assert "lz4 is not gz or snappy" in caplog.text


def test_jute_maxbuffer_extrasize(tmp_path: Path) -> None:
    # ZooKeeper's BinaryInputArchive: unset means jute.maxbuffer; below 1024 counts as 1024.
    assert cfg(tmp_path, BASE).jute_maxbuffer_extrasize_bytes is None
    prop = {"zookeeper.jute.maxbuffer.extrasize": "4096"}
    assert cfg(tmp_path, BASE, prop).jute_maxbuffer_extrasize_bytes == 4096
    text = BASE + "jute.maxbuffer.extrasize=10\n"
    assert cfg(tmp_path, text).jute_maxbuffer_extrasize_bytes == 1024


def test_zoo_cfg_overrides_a_d_property(tmp_path: Path) -> None:
    c = cfg(tmp_path, BASE + "snapCount=10\n", {"zookeeper.snapCount": "20"})
    assert c.snap_count == 10
    c = cfg(tmp_path, BASE, {"zookeeper.snapCount": "20"})
    assert c.snap_count == 20


def test_unprefixed_properties_are_honoured_from_zoo_cfg(tmp_path: Path) -> None:
    c = cfg(tmp_path, BASE + "jute.maxbuffer=2048\n", {"jute.maxbuffer": "4096"})
    assert c.jute_maxbuffer_bytes == 2048
    c = cfg(tmp_path, BASE, {"jute.maxbuffer": "4096", "readonlymode.enabled": "true"})
    assert c.jute_maxbuffer_bytes == 4096 and c.ensemble.read_only_mode_enabled


def test_jaas_and_session_secret_properties(tmp_path: Path) -> None:
    c = cfg(
        tmp_path,
        BASE,
        {"java.security.auth.login.config": "/etc/jaas.conf", "corral.sessionSecretFile": "/s"},
    )
    assert c.jaas_config_file == Path("/etc/jaas.conf")
    assert c.session_secret_file == Path("/s")


def test_unknown_key_warns_known_ones_do_not(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="corral.config"):
        c = cfg(
            tmp_path,
            BASE + "initLimit=5\nleaderServes=yes\nssl.quorum.keyStore.location=/x\n"
            "admin.serverPort=1\ntypoKey=1\ncorral.bogus=2\nzookeeper.snapCount=5\n",
        )
    warned = [r.getMessage() for r in caplog.records]
    assert any("'zookeeper.snapCount' has no effect" in m for m in warned)
    assert c.snap_count == 100_000  # as in ZooKeeper: zookeeper.zookeeper.snapCount
    assert any("typoKey" in m for m in warned)
    assert any("corral.bogus" in m for m in warned)
    assert not any(k in m for m in warned for k in ("initLimit", "leaderServes", "ssl.", "admin"))
    assert c.properties["zookeeper.typoKey"] == "1"


# -- bad values name the key ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("tickTime=abc", "tickTime"),
        ("tickTime=0", "tickTime"),
        ("maxClientCnxns=-1", "maxClientCnxns"),
        ("minSessionTimeout=x", "minSessionTimeout"),
        ("minSessionTimeout=9000\nmaxSessionTimeout=8000", "minSessionTimeout"),
        ("secureClientPort=70000", "secureClientPort"),
        ("snapCount=1e5", "zookeeper.snapCount"),
        ("preAllocSize=-1", "zookeeper.preAllocSize"),
        ("forceSync=false", "zookeeper.forceSync"),
        ("skipACL=true", "zookeeper.skipACL"),
        ("extendedTypesEnabled=yes", "zookeeper.extendedTypesEnabled"),
        ("jute.maxbuffer=-1", "zookeeper.jute.maxbuffer"),
        ("globalOutstandingLimit=0", "zookeeper.globalOutstandingLimit"),
        ("autopurge.purgeInterval=2w", "autopurge.purgeInterval"),
        ("autopurge.snapRetainCount=three", "autopurge.snapRetainCount"),
        ("DigestAuthenticationProvider.superDigest=x", "zookeeper." + SUPER_DIGEST),
        ("ssl.clientAuth=maybe", "zookeeper.ssl.clientAuth"),
        ("authProvider.1=", "zookeeper.authProvider.1"),
        ("admin.serverPort=http", "zookeeper.admin.serverPort"),
        ("electionAlg=1", "electionAlg"),
        ("peerType=leader", "peerType"),
        ("standaloneEnabled=maybe", "standaloneEnabled"),
        ("initLimit=0", "initLimit"),
        ("server.x=a:1:2", "server.x"),
        ("server.1=a:1", "server.1"),
        ("server.1=a:1:1", "server.1"),
        ("server.1=a:1:2:boss", "server.1"),
        ("server.1=[::1:1:2", "server.1"),
        ("corral.sessionPasswordScheme=md5", "corral.sessionPasswordScheme"),
        ("maxCnxns=99999999999", "zookeeper.maxCnxns"),
    ],
)  # fmt: skip
def test_bad_values_name_the_key(tmp_path: Path, extra: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        cfg(tmp_path, BASE + extra + "\n")
    assert err.value.key == key
    assert str(err.value).startswith(key + ":")


def test_bad_system_property_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        cfg(tmp_path, BASE, {"zookeeper.skipACL": "on"})
    assert err.value.key == "zookeeper.skipACL"


def test_missing_data_dir_and_ports(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        cfg(tmp_path, "clientPort=2181\n")
    assert err.value.key == "dataDir"
    with pytest.raises(ConfigError) as err:
        cfg(tmp_path, "dataDir=@DATA@\n")
    assert err.value.key == "clientPort"
    with pytest.raises(ConfigError) as err:
        cfg(tmp_path, "dataDir=@DATA@\nclientPortAddress=127.0.0.1\nsecureClientPort=1\n")
    assert err.value.key == "clientPortAddress"


def test_bad_myid(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "myid").write_text("one\n")
    with pytest.raises(ConfigError) as err:
        cfg(tmp_path, BASE)
    assert err.value.key == "myid"


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config("/nonexistent/zoo.cfg")


def test_parse_config_is_usable_without_a_file() -> None:
    c = parse_config({" dataDir ": " /d ", "clientPort": "1"}, {})
    assert c.data_dir == Path("/d") and c.client_port == 1


def test_latin1_config_file(tmp_path: Path) -> None:
    path = tmp_path / "zoo.cfg"
    path.write_bytes(b"dataDir=/tmp/d\xe9\nclientPort=1\n")
    assert load_config(path).data_dir == Path("/tmp/d\u00e9")


# -- the command line ------------------------------------------------------------------------


def test_cli_config_error_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from corral.cli.main import EXIT_CONFIG, main

    path = tmp_path / "zoo.cfg"
    path.write_text(f"dataDir={tmp_path}\nclientPort=2181\n")
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        assert main(["server", str(path), "-Dzookeeper.snapCount=many"]) == EXIT_CONFIG
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
    assert "zookeeper.snapCount" in capsys.readouterr().err


def test_cli_version(capsys: pytest.CaptureFixture[str]) -> None:
    from corral.cli.main import main

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("corral ")


def test_utf8_bom_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "zoo.cfg"
    path.write_bytes(b"\xef\xbb\xbftickTime=1000\ndataDir=/tmp/d\nclientPort=1\n")
    assert load_config(path).tick_time_ms == 1000


def test_cli_refuses_a_jute_maxbuffer_its_loaded_codec_cannot_honour(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `corral server` sets jute.maxbuffer before importing the codec; in-process (here, where
    # the codec is already imported) a different value is refused instead of half-applied.
    import corral.proto.jute  # noqa: F401
    from corral.cli.main import EXIT_CONFIG, main

    path = tmp_path / "zoo.cfg"
    path.write_text(f"dataDir={tmp_path}\nclientPort=2181\njute.maxbuffer=4096\n")
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        assert main(["server", str(path)]) == EXIT_CONFIG
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
    assert "jute.maxbuffer" in capsys.readouterr().err


def test_every_module_that_copies_jute_maxbuffer_is_set_before_import() -> None:
    # A module that reads limits.jute_maxbuffer_bytes must be in the CLI's list (imported only
    # after the configured value is set), or take the value as a parameter its caller passes.
    from corral.cli import main as cli

    src = Path(cli.__file__).resolve().parents[1]
    passed_explicitly = {"corral.server.connection", "corral.server.core", "corral.config"}
    readers = set()
    for path in src.rglob("*.py"):
        text = path.read_text()
        if "limits.jute_maxbuffer_bytes" in text or "from corral.limits import" in text:
            module = ".".join(("corral", *path.relative_to(src).with_suffix("").parts))
            readers.add(module)
    readers -= {"corral.limits", "corral.cli.main", *passed_explicitly}
    assert readers == set(cli._MAXBUFFER_READERS)
