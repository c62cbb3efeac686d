"""Debian's zkCli.sh (Apache ZooKeeper 3.8's Java client) against Corral: one JVM start,
a script of commands on stdin, and the output checked line by line. Then the same client
with SASL DIGEST-MD5 credentials from a JAAS Client section, against Corral and against
Debian's ZooKeeper given the same server JAAS file."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import ServerPool
from support.procs import HOST, ServerProcess, ServerSettings

ZKCLI = Path("/usr/share/zookeeper/bin/zkCli.sh")

SCRIPT = """\
create /cli hello
get /cli
ls /
set /cli world
stat /cli
create /cli/a
create /cli/a/b
create -e /cli/eph
getAllChildrenNumber /cli
getEphemerals /cli
whoami
addauth digest carol:pw
whoami
delete /cli/a/b
delete /cli/a
delete /cli/eph
ls /cli
get /cli
delete /cli
ls /
quit
"""


@pytest.mark.skipif(not ZKCLI.exists(), reason="needs Debian's zookeeper package (zkCli.sh)")
def test_zkcli_script(corral: ServerProcess) -> None:
    result = subprocess.run(
        [str(ZKCLI), "-server", f"{HOST}:{corral.port}"],
        input=SCRIPT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    out, err = result.stdout, result.stderr
    # zkCli prints "Created ..." on stderr and everything else on stdout.
    created = [line.strip() for line in err.splitlines() if line.startswith("Created ")]
    assert created == ["Created /cli", "Created /cli/a", "Created /cli/a/b", "Created /cli/eph"]
    lines = [line.strip() for line in out.splitlines()]
    start = lines.index("WatchedEvent state:SyncConnected type:None path:null") + 1
    # get, ls, then stat after set
    assert lines[start : start + 2] == ["hello", "[cli, zookeeper]"], out
    stat = {
        k.strip(): v.strip()
        for k, _, v in (line.partition("=") for line in lines[start + 2 : start + 13])
    }
    assert stat["dataVersion"] == "1"
    assert stat["dataLength"] == "5"
    assert stat["numChildren"] == "0"
    assert stat["ephemeralOwner"] == "0x0"
    assert int(stat["mZxid"], 16) > int(stat["cZxid"], 16)
    # getAllChildrenNumber, getEphemerals, whoami before and after addauth
    after = lines[start + 13 :]
    assert after[0] == "3", out
    assert after[1] == "[/cli/eph]"
    assert after[2:4] == ["Auth scheme: User", "ip: 127.0.0.1"]
    # In ZooKeeper's order (its ids sit in a hash set: digest:carol comes first).
    assert after[4:7] == ["Auth scheme: User", "digest: carol", "ip: 127.0.0.1"]
    # delete, and the tree as it is afterwards
    assert after[7:10] == ["[]", "world", "[zookeeper]"]
    assert "Exception" not in out + err, out + err


# --- SASL DIGEST-MD5 from the Java client, configured as its users configure it ----------

SASL_PROVIDER = "org.apache.zookeeper.server.auth.SASLAuthenticationProvider"
SERVER_JAAS = """
Server {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    user_super="adminsecret"
    user_bob="bobsecret";
};
"""
# The Java client reads its credentials from the JAAS "Client" section.
CLIENT_JAAS = """
Client {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    username="%s"
    password="%s";
};
"""
SASL_SCRIPT = "whoami\ncreate /sasl-cli\ndelete /sasl-cli\nquit\n"


def _zkcli_sasl(server: ServerProcess, client_jaas: Path) -> tuple[list[str], list[str]]:
    """zkCli with a JAAS Client section: its events, its whoami lines (sorted: ZooKeeper
    keeps a connection's ids in a hash set, so their order means nothing) and the
    "Created" lines."""
    env = dict(os.environ, CLIENT_JVMFLAGS=f"-Djava.security.auth.login.config={client_jaas}")
    host, port = server.address
    result = subprocess.run(
        [str(ZKCLI), "-server", f"{host}:{port}"],
        input=SASL_SCRIPT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        env=env,
    )
    lines = [line.strip() for line in result.stdout.splitlines()]
    events = [line for line in lines if line.startswith("WatchedEvent")]
    start = lines.index("Auth scheme: User") + 1
    ids = sorted(line for line in lines[start:] if ": " in line and " " not in line.split(":")[0])
    created = [line.strip() for line in result.stderr.splitlines() if line.startswith("Created ")]
    return events, ids + created + [line for line in lines if line == "Not connected"]


@pytest.mark.skipif(not ZKCLI.exists(), reason="needs Debian's zookeeper package (zkCli.sh)")
def test_zkcli_sasl_same_as_zookeeper(
    zookeeper_pool: ServerPool, corral_pool: ServerPool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The Java client authenticates with DIGEST-MD5 (its events SyncConnected, then
    SaslAuthenticated; whoami shows sasl: bob) or fails with a wrong password or an unknown
    user (AuthFailed, then "Not connected") exactly as against Debian's ZooKeeper."""
    jaas_dir = tmp_path_factory.mktemp("zkcli-jaas")
    server_jaas = jaas_dir / "server.conf"
    server_jaas.write_text(SERVER_JAAS)
    settings = ServerSettings(
        properties=(("java.security.auth.login.config", str(server_jaas)),),
        cfg=(("authProvider.1", SASL_PROVIDER),),
    )
    servers = {"zookeeper": zookeeper_pool.get(settings), "corral": corral_pool.get(settings)}
    cases = {"ok": ("bob", "bobsecret"), "wrong": ("bob", "nope"), "unknown": ("carol", "x")}
    seen: dict[str, dict[str, tuple[list[str], list[str]]]] = {}
    for kind, server in servers.items():
        seen[kind] = {}
        for case, (user, password) in cases.items():
            client_jaas = jaas_dir / f"client-{case}.conf"
            client_jaas.write_text(CLIENT_JAAS % (user, password))
            seen[kind][case] = _zkcli_sasl(server, client_jaas)
    assert seen["corral"] == seen["zookeeper"]
    connected = "WatchedEvent state:SyncConnected type:None path:null"
    assert seen["corral"]["ok"] == (
        [
            connected,
            "WatchedEvent state:SaslAuthenticated type:None path:null",
            "WatchedEvent state:Closed type:None path:null",
        ],
        ["ip: 127.0.0.1", "sasl: bob", "Created /sasl-cli"],
    )
    for failed in ("wrong", "unknown"):
        assert seen["corral"][failed] == (
            [connected, "WatchedEvent state:AuthFailed type:None path:null"],
            ["Not connected", "Not connected"],  # the create and the delete
        )
