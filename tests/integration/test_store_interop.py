"""Data directories move between Apache ZooKeeper 3.8 and Corral in both directions.

1. ZooKeeper (Debian's 3.8.0, small snapCount so it writes several snapshots and logs) gets a
   varied tree from kazoo and is stopped; Corral's store recovers the data directory and must
   hold exactly the tree kazoo saw: paths, data, every Stat field, ACLs, the session table.
2. Corral's store writes a data directory (a snapshot mid-way, the rest in the log, as the
   server does); ZooKeeper starts on it and kazoo must read exactly Corral's tree.
3. The same both ways with both servers as processes: the `corral server` process serves a
   directory ZooKeeper wrote, and ZooKeeper serves one the `corral server` process wrote
   (kazoo's whole view: paths, data, every Stat field, ACLs), and the session that was open
   when the first server stopped is resumed on the second with its id and password
   (corral.sessionPasswordScheme=zookeeper) and still owns its ephemeral (getEphemerals).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError, NoNodeError
from kazoo.security import ACL as KACL
from kazoo.security import Id as KId

from corral.proto import jute
from corral.proto.codes import OpCode
from corral.proto.records import (
    ACL,
    CloseSessionTxn,
    CreateSessionTxn,
    CreateTxn,
    DeleteTxn,
    ErrorTxn,
    Id,
    MultiTxn,
    SetACLTxn,
    SetDataTxn,
    Txn,
    TxnHeader,
)
from corral.store.database import Database, StoreConfig
from corral.store.snapshot import verify_snapshot_file
from corral.tree.datatree import DataTree
from corral.tree.txn import TxnRecord
from corral.tree.znode import ZNode
from support import kazoo_client
from support.corral import CorralServer
from support.corral import available as corral_available
from support.procs import ServerProcess, ServerSettings
from support.rawclient import RawClient
from support.zookeeper import ZooKeeperServer, available

pytestmark = pytest.mark.zookeeper

WAIT_S = 30.0
USER, PASSWORD = "alice", "secret"
ALICE_ID = (
    f"{USER}:" + base64.b64encode(hashlib.sha1(f"{USER}:{PASSWORD}".encode()).digest()).decode()
)

Node = tuple[bytes | None, tuple[int, ...], tuple[tuple[int, str, str], ...]]


def make_server(tmp_path: Path, *properties: tuple[str, str]) -> ZooKeeperServer:
    why = available()
    if why is not None:
        pytest.skip(why)
    props = (("zookeeper.snapCount", "16"), *properties)
    return ZooKeeperServer(ServerSettings(force_sync=True, properties=props), tmp_path / "zk")


@pytest.fixture
def zk_server(tmp_path: Path) -> Iterator[ZooKeeperServer]:
    server = make_server(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def zk_server_gz(tmp_path: Path) -> Iterator[ZooKeeperServer]:
    server = make_server(tmp_path, ("zookeeper.snapshot.compression.method", "gz"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def zk_server_snappy(tmp_path: Path) -> Iterator[ZooKeeperServer]:
    server = make_server(tmp_path, ("zookeeper.snapshot.compression.method", "snappy"))
    try:
        yield server
    finally:
        server.stop()


def client(server: ServerProcess, timeout: float = 10.0) -> KazooClient:
    zk = KazooClient(
        hosts=f"127.0.0.1:{server.port}",
        timeout=timeout,
        auth_data=[("digest", f"{USER}:{PASSWORD}")],
        connection_retry={"max_tries": 1},
    )
    zk.start(timeout=WAIT_S)
    return zk


def kazoo_tree(zk: KazooClient) -> dict[str, Node]:
    """Every node as a client sees it: data, Stat as a tuple, ACLs."""
    out: dict[str, Node] = {}
    stack = ["/"]
    while stack:
        path = stack.pop()
        data, stat = zk.get(path)
        acls, _ = zk.get_acls(path)
        out[path] = (data, tuple(stat), tuple((a.perms, a.id.scheme, a.id.id) for a in acls))
        prefix = "/" if path == "/" else path + "/"
        stack.extend(prefix + c for c in zk.get_children(path))
    return out


def corral_view(tree: DataTree) -> dict[str, Node]:
    return {
        path: (
            node.data,
            dataclasses.astuple(node.stat()),
            tuple((a.perms, a.id.scheme, a.id.id) for a in node.acl),
        )
        for path, node in tree.nodes.items()
    }


def recover(data_dir: Path, snap_count: int = 100_000) -> tuple[Database, DataTree]:
    # A small preallocation: these logs hold a few txns each.
    db = Database(StoreConfig(data_dir=data_dir, snap_count=snap_count, prealloc_bytes=1 << 20))
    tree = db.recover(new_tree=DataTree, empty_for_load=DataTree.empty_for_load, make_node=ZNode)
    return db, tree


def write_with_kazoo(zk: KazooClient, other: KazooClient) -> None:
    rng = random.Random(4)
    alice = [KACL(31, KId("digest", ALICE_ID)), KACL(1, KId("world", "anyone"))]
    zk.create("/app", b"root")
    zk.create("/app/config", rng.randbytes(300))
    zk.ensure_path("/app/deep/er/still")
    for i in range(6):
        zk.create("/app/queue/item-", str(i).encode(), sequence=True, makepath=True)
    zk.create("/app/big", rng.randbytes(200_000))
    zk.create("/app/owned", b"mine", ephemeral=True)
    zk.create("/app/secret", b"s", acl=alice)
    zk.set_acls("/app/config", alice)
    for v in range(5):
        zk.set("/app/config", b"v%d" % v)
    zk.delete("/app/queue/item-0000000002")
    zk.delete("/app/deep/er/still")
    with pytest.raises(NodeExistsError):
        zk.create("/app", b"again")  # a failed write is logged too
    with pytest.raises(NoNodeError):
        zk.set("/nope", b"x")
    t = zk.transaction()
    t.create("/app/multi", b"m")
    t.set_data("/app", b"root2")
    assert all(r is not None for r in t.commit())
    t = zk.transaction()
    t.check("/app", 99)  # fails: the whole multi is an error txn
    t.create("/app/never")
    t.commit()
    other.create("/app/theirs", b"t", ephemeral=True)
    other.stop()  # closeSession deletes it
    other.close()
    for i in range(40):  # enough txns for ZooKeeper to snapshot and roll its log again
        zk.create(f"/app/n{i}", b"%d" % i)
        if i % 3 == 0:
            zk.delete(f"/app/n{i}")


def run_workload(server: ServerProcess) -> tuple[dict[str, Node], int, int, bytes]:
    """Start the server, write the tree, stop the server with the main session still open;
    returns what kazoo saw, the open session's id, its timeout and its password."""
    server.start()
    # A long session timeout: the next server must still hold the session when it is checked
    # (a restored session's timeout starts again when a server loads it).
    zk = client(server, timeout=30.0)
    try:
        write_with_kazoo(zk, client(server))
        seen = kazoo_tree(zk)
        session_id, passwd = zk.client_id
        timeout_ms = int(zk._session_timeout)
    finally:
        # Stop the server first: the session stays open in its files, with its ephemeral.
        server.stop()
        kazoo_client.stop(zk)
    return seen, session_id, timeout_ms, passwd


def run_zookeeper_workload(zk_server: ZooKeeperServer) -> tuple[dict[str, Node], int, int]:
    seen, session_id, timeout_ms, _passwd = run_workload(zk_server)
    return seen, session_id, timeout_ms


def test_corral_recovers_zookeeper_data_dir(zk_server: ZooKeeperServer) -> None:
    seen, session_id, timeout_ms = run_zookeeper_workload(zk_server)
    version2 = zk_server.data_dir / "version-2"
    names = sorted(p.name for p in version2.iterdir())
    assert sum(n.startswith("snapshot.") for n in names) >= 2, names
    assert sum(n.startswith("log.") for n in names) >= 2, names
    db, tree = recover(zk_server.data_dir)
    assert corral_view(tree) == seen
    assert tree.sessions.get(session_id) == timeout_ms
    assert tree.ephemerals(session_id) == {"/app/owned"}
    assert len(tree.sessions) == 1


def test_corral_reads_gzip_snapshots_of_zookeeper(zk_server_gz: ZooKeeperServer) -> None:
    seen, _session_id, _timeout = run_zookeeper_workload(zk_server_gz)
    names = sorted(p.name for p in (zk_server_gz.data_dir / "version-2").iterdir())
    assert any(n.startswith("snapshot.") and n.endswith(".gz") for n in names), names
    _db, tree = recover(zk_server_gz.data_dir)
    assert corral_view(tree) == seen


def test_corral_reads_snappy_snapshots_of_zookeeper(zk_server_snappy: ZooKeeperServer) -> None:
    seen, _session_id, _timeout = run_zookeeper_workload(zk_server_snappy)
    version2 = zk_server_snappy.data_dir / "version-2"
    snappy = [p for p in version2.iterdir() if p.name.endswith(".snappy")]
    assert len(snappy) >= 2, sorted(p.name for p in version2.iterdir())
    # Only the snappy snapshots: recovery must start from the newest of them.
    for path in version2.glob("snapshot.*"):
        if not path.name.endswith(".snappy"):
            path.unlink()
    _db, tree = recover(zk_server_snappy.data_dir)
    assert corral_view(tree) == seen
    assert verify_snapshot_file(max(snappy, key=lambda p: int(p.name.split(".")[1], 16)))


def test_zookeeper_to_corral_and_back(zk_server: ZooKeeperServer) -> None:
    """A migration both ways: Corral takes over ZooKeeper's directory, keeps writing (new log
    files next to ZooKeeper's, its own snapshot), and ZooKeeper then serves the result."""
    seen, session_id, _timeout = run_zookeeper_workload(zk_server)
    db, tree = recover(zk_server.data_dir)
    assert corral_view(tree) == seen
    db.start(lambda zxid: None)
    w = Writer(db, tree)
    w.txn(session_id, OpCode.CLOSE_SESSION, CloseSessionTxn(("/app/owned",)))
    w.txn(0x200, OpCode.CREATE_SESSION, CreateSessionTxn(20_000))
    w.txn(0x200, OpCode.CREATE, CreateTxn("/corral", b"was here", ALICE, False, 2))
    w.txn(0x200, OpCode.SET_DATA, SetDataTxn("/app", b"root3", 2))
    db.start_snapshot(tree).join(WAIT_S)
    w.txn(0x200, OpCode.DELETE, DeleteTxn("/app/big"))
    w.txn(0x200, OpCode.CLOSE_SESSION, CloseSessionTxn(()))
    db.close()
    expected = corral_view(tree)
    assert "/app/owned" not in expected and "/corral" in expected

    zk_server.restart()
    zk = client(zk_server)
    try:
        assert kazoo_tree(zk) == expected
    finally:
        kazoo_client.stop(zk)


OPEN = (ACL(31, Id("world", "anyone")),)
ALICE = (ACL(31, Id("digest", ALICE_ID)), ACL(1, Id("world", "anyone")))


class Writer:
    """Txns as Corral's core makes them, through the store, applied after they are durable."""

    def __init__(self, db: Database, tree: DataTree) -> None:
        self.db = db
        self.tree = tree
        self.zxid = tree.last_zxid
        self.time = 1_795_000_000_000

    def txn(self, session: int, op: int, txn: TxnRecord) -> None:
        self.zxid += 1
        self.time += 7
        hdr = TxnHeader(session, self.zxid, self.zxid, self.time, op)
        self.db.append(hdr, jute.encode(txn))
        assert self.db.wait_durable(self.zxid, WAIT_S)
        self.tree.apply_txn(hdr, txn)
        snapshot = self.db.maybe_snapshot(self.tree)
        if snapshot and self.db._snap_thread is not None:
            self.db._snap_thread.join(WAIT_S)


def test_zookeeper_serves_corral_data_dir(zk_server: ZooKeeperServer) -> None:
    db, tree = recover(zk_server.data_dir, snap_count=6)
    db.start(lambda zxid: None)
    w = Writer(db, tree)
    s1, s2 = 0x10000AB0001, 0x10000AB0002
    w.txn(s1, OpCode.CREATE_SESSION, CreateSessionTxn(30_000))
    w.txn(s2, OpCode.CREATE_SESSION, CreateSessionTxn(30_000))
    w.txn(s1, OpCode.CREATE, CreateTxn("/app", b"root", OPEN, False, 1))
    w.txn(s1, OpCode.CREATE, CreateTxn("/app/none", None, OPEN, False, 1))
    w.txn(s1, OpCode.CREATE, CreateTxn("/app/big", bytes(range(256)) * 400, OPEN, False, 2))
    w.txn(s1, OpCode.CREATE, CreateTxn("/app/secret", b"s", ALICE, False, 3))
    for i in range(5):
        w.txn(s1, OpCode.CREATE, CreateTxn(f"/app/seq-{i:010d}", b"%d" % i, OPEN, False, 4 + i))
    w.txn(s1, OpCode.SET_DATA, SetDataTxn("/app", b"root2", 1))
    w.txn(s1, OpCode.SET_ACL, SetACLTxn("/app/big", ALICE, 1))
    db.start_snapshot(tree).join(WAIT_S)  # snapshot here; the rest only in the log
    w.txn(s1, OpCode.CREATE, CreateTxn("/app/mine", b"e1", OPEN, True, 9))
    w.txn(s2, OpCode.CREATE, CreateTxn("/app/theirs", b"e2", OPEN, True, 10))
    w.txn(s1, OpCode.DELETE, DeleteTxn("/app/seq-0000000002"))
    w.txn(s1, OpCode.ERROR, ErrorTxn(-110))
    sub = (
        Txn(OpCode.CREATE, jute.encode(CreateTxn("/app/multi", b"m", OPEN, False, 11))),
        Txn(OpCode.SET_DATA, jute.encode(SetDataTxn("/app/none", b"now", 1))),
    )
    w.txn(s1, OpCode.MULTI, MultiTxn(sub))
    w.txn(s2, OpCode.CLOSE_SESSION, CloseSessionTxn(("/app/theirs",)))
    db.close()
    expected = corral_view(tree)
    assert "/app/theirs" not in expected and "/app/mine" in expected
    names = sorted(p.name for p in (zk_server.data_dir / "version-2").iterdir())
    assert sum(n.startswith("log.") for n in names) >= 3, names  # rolled at random points

    zk_server.start()
    zk = client(zk_server)
    try:
        seen = kazoo_tree(zk)
    finally:
        kazoo_client.stop(zk)
    assert seen == expected


# --- both servers as processes ---------------------------------------------------------------

# Session passwords as ZooKeeper computes them, so a session moves between the two servers.
ZK_PASSWORDS = ("corral.sessionPasswordScheme", "zookeeper")


def corral_server(workdir: Path, data_dir: Path, *cfg: tuple[str, str]) -> CorralServer:
    why = corral_available()
    if why is not None:
        pytest.skip(why)
    settings = ServerSettings(force_sync=True, cfg=cfg, properties=(ZK_PASSWORDS,))
    workdir.mkdir(parents=True, exist_ok=True)
    server = CorralServer(settings, workdir)
    server.data_dir = data_dir
    return server


def session_ephemerals(server: ServerProcess, session_id: int, passwd: bytes) -> list[str]:
    """Resume the session on `server` with its id and password; its ephemerals there."""
    with RawClient.connect(
        server.address, session_id=session_id, passwd=passwd, timeout_ms=30_000
    ) as raw:
        assert raw.session_id == session_id
        reply = raw.get_ephemerals("/")
        assert reply.err == 0, reply
        ephemerals: list[str] = sorted(reply.result.ephemerals)
        raw.abort()  # keep the session: no closeSession
    return ephemerals


def served_tree(server: ServerProcess) -> dict[str, Node]:
    zk = client(server)
    try:
        return kazoo_tree(zk)
    finally:
        kazoo_client.stop(zk)


def test_corral_process_serves_zookeepers_data_dir_and_back(
    zk_server: ZooKeeperServer, tmp_path: Path
) -> None:
    seen, session_id, _timeout, passwd = run_workload(zk_server)
    corral = corral_server(tmp_path / "corral", zk_server.data_dir)
    corral.start()
    try:
        assert served_tree(corral) == seen
        assert seen["/app/owned"][1][7] == session_id  # ephemeralOwner
        # The session ZooKeeper logged is live on Corral, with its ZooKeeper password.
        assert session_ephemerals(corral, session_id, passwd) == ["/app/owned"]
        zk = client(corral)
        try:
            zk.create("/corral", b"was here")
            zk.set("/app", b"by corral")
            expected = kazoo_tree(zk)
        finally:
            kazoo_client.stop(zk)
    finally:
        corral.stop()
    # And back: ZooKeeper serves what Corral added to its directory.
    zk_server.restart()
    assert served_tree(zk_server) == expected
    assert session_ephemerals(zk_server, session_id, passwd) == ["/app/owned"]


@pytest.mark.parametrize("compression", ["", "gz"], ids=["plain", "gz-snapshots"])
def test_zookeeper_serves_corral_process_data_dir(tmp_path: Path, compression: str) -> None:
    corral = corral_server(
        tmp_path / "corral",
        tmp_path / "corral" / "data",
        ("snapCount", "16"),
        ("snapshot.compression.method", compression),
    )
    seen, session_id, _timeout, passwd = run_workload(corral)
    names = sorted(p.name for p in (corral.data_dir / "version-2").iterdir())
    snaps = [n for n in names if n.startswith("snapshot.")]
    assert len(snaps) >= 3 and sum(n.startswith("log.") for n in names) >= 3, names
    # snapshot.<zxid>.gz with gz, as ZooKeeper names them (it picks the reader by the name).
    assert all(n.endswith(".gz") == (compression == "gz") for n in snaps), snaps
    zk_server = make_server(tmp_path)
    zk_server.workdir.mkdir(parents=True)
    zk_server.data_dir = corral.data_dir
    zk_server.start()
    try:
        assert served_tree(zk_server) == seen
        assert seen["/app/owned"][1][7] == session_id
        assert session_ephemerals(zk_server, session_id, passwd) == ["/app/owned"]
    finally:
        zk_server.stop()
