"""Dynamic reconfiguration on a Corral ensemble of real processes, driven with kazoo.

A 3-server ensemble with `reconfigEnabled=true` and a super digest: /zookeeper/config holds
ZooKeeper's text with the first leader's version; reconfig answers ZooKeeper's errors
(NoAuth without super, BadVersion for a stale version, BadArguments for a bad spec or too
few voters, NewConfigNoQuorum for members that are not there); a 4th server started with
the ensemble's config plus itself joins as an observer, a 5th as a participant; a follower
is removed (it goes on as a non-voting follower); a bulk reconfig turns the observer into a
participant. After each: the reply's text and version, /zookeeper/config on every member,
the dynamic config files and zoo.cfg, and writes still replicating. A member given another
client address listens there (a follower, then the leader).

Without `reconfigEnabled`, /zookeeper/config still holds the membership (`version=0`) and
reconfig answers RECONFIGDISABLED.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient  # type: ignore[import-untyped]
from kazoo.exceptions import (  # type: ignore[import-untyped]
    BadArgumentsError,
    BadVersionError,
    NewConfigNoQuorumError,
    NoAuthError,
    ReconfigDisabledError,
)
from kazoo.retry import KazooRetry  # type: ignore[import-untyped]

from support import kazoo_client
from support import zookeeper as zookeeper_support
from support.corral_ensemble import LocalEnsemble, Member
from support.procs import HOST, free_port, port_is_open

WAIT_S = 30.0
SUPER_PASSWORD = "reconfig-test"


def _super_digest(password: str) -> str:
    raw = hashlib.sha1(f"super:{password}".encode()).digest()
    return "super:" + base64.b64encode(raw).decode()


def client(hosts: str, *, super_auth: bool = True) -> KazooClient:
    retry = KazooRetry(max_tries=-1, delay=0.05, backoff=1.5, max_delay=0.5)
    zk = KazooClient(
        hosts=hosts,
        timeout=6.0,
        randomize_hosts=False,
        connection_retry=retry,
        command_retry=KazooRetry(max_tries=-1, delay=0.05, backoff=1.5, max_delay=0.5),
    )
    zk.start(timeout=WAIT_S)
    if super_auth:
        zk.add_auth("digest", f"super:{SUPER_PASSWORD}")
    return zk


def wait_until(what: str, check: object, ens: LocalEnsemble, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{ens.logs()}")
        time.sleep(0.05)


def line(m: Member, role: str = "participant") -> str:
    return f"server.{m.sid}={HOST}:{m.quorum_port}:{m.election_port}:{role};{HOST}:{m.client_port}"


def config_text(members: list[tuple[Member, str]], version: int) -> str:
    lines = [line(m, role) for m, role in sorted(members, key=lambda p: p[0].sid)]
    return "\n".join(lines) + f"\nversion={version:x}"


def enable_reconfig(ens: LocalEnsemble, m: Member) -> None:
    with (m.home / "zoo.cfg").open("a") as f:
        f.write("reconfigEnabled=true\n")


def add_joiner(ens: LocalEnsemble, sid: int, config: list[tuple[Member, str]]) -> Member:
    """A new member whose zoo.cfg lists `config` (the ensemble's current members) plus itself
    as a participant, as ZooKeeper's manual says a joiner starts."""
    client_port, quorum_port, election_port = ports()
    m = Member(sid, ens.workdir / f"server{sid}", client_port, quorum_port, election_port)
    ens.members[sid] = m
    data = m.home / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "myid").write_text(f"{sid}\n")
    lines = [
        f"tickTime={ens.tick_ms}",
        "initLimit=10",
        "syncLimit=5",
        f"dataDir={data}",
        "4lw.commands.whitelist=*",
        "reconfigEnabled=true",
        *(line(o, role) for o, role in config),
        line(m),
    ]
    (m.home / "zoo.cfg").write_text("\n".join(lines) + "\n")
    return m


def ports() -> tuple[int, int, int]:
    return free_port(), free_port(), free_port()


def dynamic_file(m: Member, version: int) -> Path:
    return m.home / f"zoo.cfg.dynamic.{version:x}"


def read_config(zk: KazooClient) -> tuple[str, int]:
    zk.sync("/zookeeper/config")
    data, stat = zk.get("/zookeeper/config")
    return data.decode(), stat.mzxid


@pytest.fixture
def ensemble(tmp_path: Path) -> Iterator[LocalEnsemble]:
    props = {"zookeeper.DigestAuthenticationProvider.superDigest": _super_digest(SUPER_PASSWORD)}
    with LocalEnsemble(tmp_path / "ensemble", size=3, tick_ms=200, properties=props) as ens:
        for m in ens.members.values():
            enable_reconfig(ens, m)
        try:
            ens.start_all()
        except AssertionError:
            ens.stop_all()
            raise
        yield ens


def test_a_member_moves_its_client_port(ensemble: LocalEnsemble) -> None:
    """An incremental reconfig that gives a member another client address moves its client
    listener, as QuorumPeer.processReconfig does (cnxnFactory.reconfigure): the new port
    serves, the old one no longer accepts, a session opened before keeps working, `conf`
    shows the new port, and a restart listens there (from the dynamic config file). A
    follower moves first, then the leader."""
    move_client_ports(ensemble, ensemble.start)


@pytest.mark.slow
@pytest.mark.zookeeper
def test_zookeeper_moves_a_members_client_port_the_same_way(tmp_path: Path) -> None:
    """The same steps on an ensemble of Apache ZooKeeper 3.8 servers (skipACL stands in for
    the super user): the behaviour pinned above is ZooKeeper's."""
    why = zookeeper_support.available()
    if why is not None:
        pytest.skip(why)
    cfg = ("reconfigEnabled=true", "skipACL=yes")
    with LocalEnsemble(tmp_path / "zookeeper", size=3, tick_ms=200, cfg=cfg) as ens:
        for sid in ens.members:
            ens.start_zookeeper(sid)
        ens.wait_serving(sorted(ens.members), timeout_s=60)
        move_client_ports(ens, ens.start_zookeeper)


def move_client_ports(ens: LocalEnsemble, restart: Callable[[int], None]) -> None:
    zk = client(ens.connect_string())
    try:
        leader = ens.leader()
        follower = next(s for s in sorted(ens.members) if s != leader)
        for sid in (follower, leader):
            m = ens.members[sid]
            before = kazoo_client.start(m.address, connection_retry={"max_tries": 0})
            try:
                old_port, new_port = m.client_port, free_port()
                spec = f"{HOST}:{m.quorum_port}:{m.election_port}:participant"
                zk.reconfig(
                    joining=f"server.{sid}={spec};{HOST}:{new_port}", leaving=None, new_members=None
                )
                m.client_port = new_port
                wait_until(
                    f"server {sid} on port {new_port}", lambda p=new_port: port_is_open(p), ens
                )
                assert not port_is_open(old_port)
                assert f"clientPort={new_port}" in ens.four_letter(sid, "conf").splitlines()
                before.create(f"/moved-{sid}", b"still served")
                with kazoo_client.session(m.address) as after:
                    assert after.get(f"/moved-{sid}")[0] == b"still served"
            finally:
                kazoo_client.stop(before)
        ens.terminate(follower)
        restart(follower)
        ens.wait_serving([follower], timeout_s=60)
        with kazoo_client.session(ens.members[follower].address) as again:
            assert again.get(f"/moved-{leader}")[0] == b"still served"
    finally:
        kazoo_client.stop(zk)


def check_everywhere(ens: LocalEnsemble, sids: list[int], text: str, version: int) -> None:
    """Every member in `sids` shows `text` in /zookeeper/config and has its dynamic file."""
    for sid in sids:
        m = ens.members[sid]
        zk = client(m.address)
        try:

            def shows() -> bool:
                return read_config(zk) == (text, version)  # noqa: B023

            wait_until(f"server {sid} showing config {version:x}", shows, ens)
        finally:
            kazoo_client.stop(zk)
        wait_until(f"server {sid}'s dynamic file", dynamic_file(m, version).exists, ens)
        lines = dynamic_file(m, version).read_text().splitlines()
        assert lines == sorted(text.splitlines()[:-1]), lines
        assert f"dynamicConfigFile={dynamic_file(m, version).resolve()}" in (
            (m.home / "zoo.cfg").read_text().splitlines()
        )


def test_reconfig_errors_joins_removal_and_bulk(ensemble: LocalEnsemble) -> None:
    ens = ensemble
    m1, m2, m3 = (ens.members[s] for s in (1, 2, 3))
    base = [(m1, "participant"), (m2, "participant"), (m3, "participant")]
    leader = ens.leader()
    zk = client(ens.members[leader].address)
    try:
        # The first leader versions the config with its NEWLEADER zxid (epoch 1, counter 0).
        v0 = 0x100000000
        check_everywhere(ens, [1, 2, 3], config_text(base, v0), v0)
        assert (m1.home / "zoo.cfg.bak").exists()
        assert not any(k.startswith("server.") for k in (m1.home / "zoo.cfg").read_text().split())

        # ZooKeeper's errors.
        anonymous = client(ens.members[leader].address, super_auth=False)
        try:
            with pytest.raises(NoAuthError):
                anonymous.reconfig(joining=None, leaving="3", new_members=None)
        finally:
            kazoo_client.stop(anonymous)
        with pytest.raises(BadVersionError):
            zk.reconfig(joining=None, leaving="3", new_members=None, from_config=v0 - 1)
        with pytest.raises(BadArgumentsError):
            zk.reconfig(joining="server.9=nonsense", leaving=None, new_members=None)
        with pytest.raises(BadArgumentsError):  # a joiner without a client port
            zk.reconfig(joining=f"server.9={HOST}:1:2", leaving=None, new_members=None)
        with pytest.raises(BadArgumentsError):  # fewer than 2 voters left
            zk.reconfig(joining=None, leaving="2,3", new_members=None)
        absent = [
            f"server.{sid}={HOST}:{q}:{e};{HOST}:{c}"
            for sid, (q, e, c) in ((7, ports()), (8, ports()))
        ]
        with pytest.raises(NewConfigNoQuorumError):
            zk.reconfig(joining=None, leaving=None, new_members=",".join(absent))
        text, version = read_config(zk)
        assert version == v0, text

        # A 4th server joins as an observer.
        m4 = add_joiner(ens, 4, base)
        ens.start(4)
        ens.wait_serving([4])
        data, stat = zk.reconfig(joining=line(m4, "observer"), leaving=None, new_members=None)
        v1 = stat.mzxid
        cfg1 = [*base, (m4, "observer")]
        assert data.decode() == config_text(cfg1, v1)
        check_everywhere(ens, [1, 2, 3, 4], config_text(cfg1, v1), v1)
        wait_until("server 4 observing", lambda: m4.serving_as() == "observer", ens)

        # A 5th joins as a participant (a non-voting follower until the reconfig).
        m5 = add_joiner(ens, 5, cfg1)
        ens.start(5)
        ens.wait_serving([5])
        data, stat = zk.reconfig(joining=line(m5), leaving=None, new_members=None, from_config=v1)
        v2 = stat.mzxid
        cfg2 = [*cfg1, (m5, "participant")]
        assert data.decode() == config_text(cfg2, v2)
        check_everywhere(ens, [1, 2, 3, 4, 5], config_text(cfg2, v2), v2)

        # Remove a follower: it goes on as a non-voting follower, as in ZooKeeper.
        gone = next(s for s in (1, 2, 3) if s != leader)
        data, stat = zk.reconfig(joining=None, leaving=str(gone), new_members=None)
        v3 = stat.mzxid
        cfg3 = [p for p in cfg2 if p[0].sid != gone]
        assert data.decode() == config_text(cfg3, v3)
        check_everywhere(ens, [s for s in (1, 2, 3, 4, 5) if s != gone], config_text(cfg3, v3), v3)

        # Bulk: the same members, with the observer made a participant.
        cfg4 = [(m, "participant") for m, _ in cfg3]
        members = ",".join(line(m, role) for m, role in cfg4)
        data, stat = zk.reconfig(joining=None, leaving=None, new_members=members)
        v4 = stat.mzxid
        assert data.decode() == config_text(cfg4, v4)
        check_everywhere(ens, [m.sid for m, _ in cfg4], config_text(cfg4, v4), v4)
        wait_until("server 4 following", lambda: m4.serving_as() == "follower", ens)

        # Writes still replicate to every member, the removed one included.
        zk.create("/after-reconfig", b"x")
        for sid in (1, 2, 3, 4, 5):
            other = client(ens.members[sid].address, super_auth=False)
            try:
                other.sync("/after-reconfig")
                assert other.get("/after-reconfig")[0] == b"x"
            finally:
                kazoo_client.stop(other)
    finally:
        kazoo_client.stop(zk)


def test_without_reconfig_enabled(tmp_path: Path) -> None:
    with LocalEnsemble(tmp_path / "ensemble", size=3, tick_ms=200) as ens:
        ens.start_all()
        base = [(ens.members[s], "participant") for s in (1, 2, 3)]
        zk = client(ens.connect_string(), super_auth=False)
        try:
            text, mzxid = read_config(zk)
            assert (text, mzxid) == (config_text(base, 0), 0)
            with pytest.raises(ReconfigDisabledError):
                zk.reconfig(joining=None, leaving="3", new_members=None)
        finally:
            kazoo_client.stop(zk)
        for m in ens.members.values():
            assert not list(m.home.glob("zoo.cfg.dynamic*"))
