"""Debian's zkCli.sh (Apache ZooKeeper 3.8's Java client) against Corral: one JVM start,
a script of commands on stdin, and the output checked line by line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from support.procs import HOST, ServerProcess

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
