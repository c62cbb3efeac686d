"""A mixed ensemble: two Corral members and one Apache ZooKeeper 3.8 member speaking the same
election and learner protocols, with ZooKeeper as a follower and as the leader."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kazoo.client import KazooClient  # type: ignore[import-untyped]

from support import kazoo_client
from support import zookeeper as zookeeper_support
from support.corral_ensemble import LocalEnsemble
from support.procs import port_is_open

pytestmark = pytest.mark.zookeeper

# ZooKeeper derives session passwords from the session id; Corral must do the same here.
PROPS = {"corral.sessionPasswordScheme": "zookeeper"}


@pytest.mark.parametrize("zookeeper_sid", [1, 3], ids=["zookeeper-follows", "zookeeper-leads"])
def test_corral_and_zookeeper_in_one_ensemble(tmp_path: Path, zookeeper_sid: int) -> None:
    why = zookeeper_support.available()
    if why is not None:
        pytest.skip(why)
    with LocalEnsemble(tmp_path / "mixed", size=3, tick_ms=200, properties=PROPS) as ens:
        # Equal zxids: the largest id leads, whichever implementation it is, provided it
        # is electing before any two others can form a quorum without it. So members start
        # from the largest id down, each once its election port is open (the JVM takes
        # seconds to start).
        for sid in sorted(ens.members, reverse=True):
            if sid == zookeeper_sid:
                ens.start_zookeeper(sid)
            else:
                ens.start(sid)
            deadline = time.monotonic() + 60
            while not port_is_open(ens.members[sid].election_port):
                assert ens.members[sid].running, ens.logs()
                assert time.monotonic() < deadline, f"server {sid}'s election port never opened"
                time.sleep(0.05)
        ens.wait_serving(sorted(ens.members), timeout_s=60)
        assert ens.leader() == 3
        for sid in sorted(ens.members):
            zk = KazooClient(hosts=ens.members[sid].address, timeout=4.0)
            zk.start(timeout=20)
            try:
                zk.create(f"/from{sid}", b"%d" % sid)
                zk.sync("/")
                assert sorted(zk.get_children("/"))[:sid] == [f"from{i}" for i in range(1, sid + 1)]
            finally:
                kazoo_client.stop(zk)
        # A session created on one implementation moves to the other with its ephemeral.
        corral_sid = next(s for s in ens.members if s != zookeeper_sid)
        order = [corral_sid, zookeeper_sid]
        for first, second in (order, order[::-1]):
            a = KazooClient(hosts=ens.members[first].address, timeout=4.0)
            a.start(timeout=20)
            try:
                a.create(f"/eph{first}", b"", ephemeral=True)
                b = KazooClient(
                    hosts=ens.members[second].address,
                    timeout=4.0,
                    client_id=a.client_id,
                )
                b.start(timeout=20)
                try:
                    assert b.client_id[0] == a.client_id[0]
                    b.sync("/")
                    assert b.exists(f"/eph{first}") is not None
                finally:
                    kazoo_client.stop(b)
            finally:
                kazoo_client.stop(a)
