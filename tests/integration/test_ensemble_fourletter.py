"""Four-letter words on a 3-server Corral ensemble of real processes.

A member that is electing answers srvr/stat/mntr/conf with ZooKeeper's "not currently
serving requests" (ruok still imok); once the ensemble serves, exactly one member says
"Mode: leader" and the others "Mode: follower", with parseable zxids; after the leader is
killed (SIGKILL) the survivors report a new leader in a newer epoch.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

from kazoo.client import KazooClient  # type: ignore[import-untyped]

from support import kazoo_client
from support.corral_ensemble import LocalEnsemble
from support.procs import HOST, port_is_open

WAIT_S = 30.0
NOT_SERVING = "This ZooKeeper instance is not currently serving requests\n"
ZXID = re.compile(r"^Zxid: 0x([0-9a-f]+)$", re.MULTILINE)
MODE = re.compile(r"^Mode: (\S+)$", re.MULTILINE)


def word(port: int, w: str) -> str:
    with socket.create_connection((HOST, port), timeout=5.0) as sock:
        sock.sendall(w.encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def srvr(ens: LocalEnsemble, sid: int) -> tuple[str, int] | None:
    """(mode, zxid) from member `sid`'s srvr, or None while it is not serving."""
    try:
        text = word(ens.members[sid].client_port, "srvr")
    except OSError:
        return None
    mode, zxid = MODE.search(text), ZXID.search(text)
    if mode is None or zxid is None:
        return None
    return mode.group(1), int(zxid.group(1), 16)


def create(ens: LocalEnsemble, sid: int, path: str) -> None:
    zk = KazooClient(hosts=ens.members[sid].address, timeout=4.0)
    zk.start(timeout=WAIT_S)
    try:
        zk.create(path, b"x")
    finally:
        kazoo_client.stop(zk)


def modes(ens: LocalEnsemble, sids: list[int], timeout_s: float = WAIT_S) -> dict[int, str]:
    """Until every member in `sids` serves as leader or follower, one of them leader."""
    deadline = time.monotonic() + timeout_s
    while True:
        seen = {sid: srvr(ens, sid) for sid in sids}
        roles = {sid: s[0] for sid, s in seen.items() if s is not None}
        if len(roles) == len(sids) and sorted(roles.values()) == ["follower"] * (len(sids) - 1) + [
            "leader"
        ]:
            return roles
        if time.monotonic() > deadline:
            raise AssertionError(f"modes {seen}\n{ens.logs()}")
        time.sleep(0.1)


def test_modes_and_not_serving(tmp_path: Path) -> None:
    props = {"zookeeper.4lw.commands.whitelist": "*"}
    with LocalEnsemble(tmp_path / "ensemble", size=3, tick_ms=200, properties=props) as ens:
        # Alone, member 1 cannot elect: it answers four-letter words, but serves nothing.
        ens.start(1)
        port = ens.members[1].client_port
        deadline = time.monotonic() + WAIT_S
        while not port_is_open(port):
            assert ens.members[1].running, ens.logs()
            assert time.monotonic() < deadline, ens.logs()
            time.sleep(0.05)
        for w in ("srvr", "stat", "mntr", "conf"):
            assert word(port, w) == NOT_SERVING, w
        assert word(port, "ruok") == "imok"
        assert "server 1: LOOKING" in ens.members[1].log_text()

        ens.start(2)
        ens.start(3)
        ens.wait_serving([1, 2, 3])
        roles = modes(ens, [1, 2, 3])
        leader = next(sid for sid, role in roles.items() if role == "leader")
        assert ens.leader() == leader

        # stat and mntr agree with srvr; mntr has the leader-only state.
        for sid, role in roles.items():
            p = ens.members[sid].client_port
            assert f"Mode: {role}\n" in word(p, "stat")
            assert f"zk_server_state\t{role}\n" in word(p, "mntr")
            conf = word(p, "conf")
            assert f"serverId={sid}\n" in conf
            # QuorumZooKeeperServer.dumpConf's lines, then the verifier's text.
            assert "\nelectionAlg=3\n" in conf and "\npeerType=0\nmembership: \n" in conf
            membership = conf.split("membership: \n", 1)[1]
            assert membership.startswith("server.1=") and "\nversion=" in membership
        # Logs name each mode change.
        for sid, role in roles.items():
            text = ens.members[sid].log_text()
            if role == "leader":
                assert f"server {sid}: LEADING" in text
            else:
                assert f"server {sid}: FOLLOWING leader {leader}" in text

        # The zxid is the last one applied: 0 before any write, then epoch << 32 | counter.
        create(ens, leader, "/before-failover")
        zxids = {sid: srvr(ens, sid) for sid in roles}
        old_epoch = max(z[1] >> 32 for z in zxids.values() if z is not None)
        assert old_epoch >= 1, zxids
        leader_zxid = zxids[leader]
        assert leader_zxid is not None and leader_zxid[1] & 0xFFFFFFFF >= 1, zxids

        ens.kill(leader)
        survivors = [sid for sid in (1, 2, 3) if sid != leader]
        new_roles = modes(ens, survivors)
        new_leader = next(sid for sid, role in new_roles.items() if role == "leader")
        assert new_leader != leader
        # A write in the new epoch shows in the new leader's zxid (epoch << 32 | counter).
        create(ens, new_leader, "/after-failover")
        deadline = time.monotonic() + WAIT_S
        while True:
            now = srvr(ens, new_leader)
            if now is not None and now[1] >> 32 > old_epoch:
                break
            assert time.monotonic() < deadline, (now, old_epoch, ens.logs())
            time.sleep(0.1)
