"""The ensemble's durable state against Debian's Apache ZooKeeper 3.8.

1. Epoch files: a one-server ZooKeeper ensemble (QuorumPeerMain, standaloneEnabled=false, one
   server.1 line) writes acceptedEpoch/currentEpoch over two runs; Corral reads them exactly and
   finds them consistent with the log; ZooKeeper then starts on epoch files Corral wrote and
   builds its next epoch on them.
2. The snapshot stream after SNAP: ZooKeeper's own ZKDatabase.deserializeSnapshot reads our
   stream (and the "BenWasHere" signature), and its ZKDatabase.serializeSnapshot of that tree
   gives back exactly our bytes.
3. The body of a snapshot file ZooKeeper wrote (minus header, seal and digest) is byte for byte
   what our serializer makes of the same tree.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.security import ACL as KACL
from kazoo.security import Id as KId

from corral.proto import jute
from corral.proto.codes import OpCode
from corral.proto.records import ACL, CreateSessionTxn, CreateTxn, Id, TxnHeader
from corral.store import epochs as ep
from corral.store import snapstream as ss
from corral.store.database import Database, StoreConfig
from corral.store.snapshot import snapshot_files
from corral.tree.datatree import DataTree
from corral.tree.txn import TxnRecord
from corral.tree.znode import ZNode
from support import kazoo_client
from support.procs import HOST, ServerSettings, free_port
from support.zookeeper import ZooKeeperServer, available

pytestmark = pytest.mark.zookeeper

WAIT_S = 30.0
JAVA_DIR = Path("/usr/share/java")
JARS = ["zookeeper.jar", "zookeeper-jute.jar", "slf4j-api.jar", "slf4j-nop.jar"]

HARNESS = r"""
import java.io.*;
import java.nio.file.*;
import org.apache.jute.BinaryInputArchive;
import org.apache.jute.BinaryOutputArchive;
import org.apache.zookeeper.server.ZKDatabase;

/** Reads a SNAP stream as a learner does and writes what a leader would send for that tree. */
public class StreamHarness {
    public static void main(String[] args) throws Exception {
        byte[] in = Files.readAllBytes(Paths.get(args[0]));
        BinaryInputArchive ia = BinaryInputArchive.getArchive(new ByteArrayInputStream(in));
        ZKDatabase db = new ZKDatabase(null);
        db.deserializeSnapshot(ia);
        String signature = ia.readString("signature");
        if (!signature.equals("BenWasHere")) {
            throw new IOException("Missing signature. Got " + signature);
        }
        ByteArrayOutputStream bos = new ByteArrayOutputStream();
        BinaryOutputArchive oa = BinaryOutputArchive.getArchive(bos);
        db.serializeSnapshot(oa);
        oa.writeString("BenWasHere", "signature");
        Files.write(Paths.get(args[1]), bos.toByteArray());
        // The node table holds the root twice, as "" and as "/".
        System.out.println((db.getDataTree().getNodeCount() - 1) + " "
            + db.getSessionWithTimeOuts().size());
    }
}
"""


class QuorumZooKeeper(ZooKeeperServer):
    """ZooKeeper as a one-server ensemble: QuorumPeerMain, standaloneEnabled=false."""

    def __init__(self, workdir: Path) -> None:
        q, e = free_port(), free_port()
        settings = ServerSettings(
            force_sync=True,
            tick_ms=200,
            cfg=(
                ("standaloneEnabled", "false"),
                ("initLimit", "10"),
                ("syncLimit", "5"),
                ("server.1", f"{HOST}:{q}:{e}"),
            ),
        )
        super().__init__(settings, workdir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "myid").write_text("1\n")

    def command(self, cfg_path: Path) -> list[str]:
        cmd = super().command(cfg_path)
        cmd[-2] = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
        return cmd


@pytest.fixture
def quorum_zk(tmp_path: Path) -> Iterator[QuorumZooKeeper]:
    why = available()
    if why is not None:
        pytest.skip(why)
    server = QuorumZooKeeper(tmp_path / "zk")
    try:
        yield server
    finally:
        server.stop()


def kazoo(server: ZooKeeperServer, default_acl: list[KACL] | None = None) -> KazooClient:
    zk = KazooClient(
        hosts=f"{HOST}:{server.port}",
        timeout=10.0,
        connection_retry={"max_tries": 1},
        default_acl=default_acl,
    )
    zk.start(timeout=WAIT_S)
    return zk


# Not OPEN_ACL_UNSAFE: ZooKeeper gives a client's open ACL an id of its own but its built-in
# nodes' open ACL the id -1, a difference a tree (which keeps ACLs, not ids) does not record.
MOST = [KACL(15, KId("world", "anyone"))]


def write_tree(zk: KazooClient) -> None:
    """Creates only, each parent's children in name order (a HashSet's order within a bucket is
    its insertion order, which a tree does not record)."""
    zk.add_auth("digest", "alice:secret")
    alice = [KACL(31, KId("auth", "")), KACL(1, KId("world", "anyone"))]
    reader = [KACL(1, KId("world", "anyone"))]
    zk.create("/app", b"root")
    for i in range(40):
        zk.create(f"/app/c{i:03d}", str(i).encode() * i, acl=reader if i % 3 == 0 else None)
    zk.create("/app/c999", None, acl=alice)
    zk.create("/locks", b"")
    for _ in range(15):
        zk.create("/locks/lock-", b"x", sequence=True)
    zk.create("/locks/zz-eph", b"e", ephemeral=True)
    zk.create("/zeta", b"\x00\xff" * 100, acl=alice)


def zk_files(server: ZooKeeperServer) -> Path:
    return server.data_dir / "version-2"


def corral_recover(data_dir: Path) -> tuple[Database, DataTree]:
    db = Database(StoreConfig(data_dir=data_dir, prealloc_bytes=1 << 20))
    tree = db.recover(new_tree=DataTree, empty_for_load=DataTree.empty_for_load, make_node=ZNode)
    return db, tree


def test_epoch_files_move_between_zookeeper_and_corral(
    quorum_zk: QuorumZooKeeper, tmp_path: Path
) -> None:
    quorum_zk.start()
    zk = kazoo(quorum_zk)
    zk.create("/first", b"1")
    kazoo_client.stop(zk)
    quorum_zk.restart()
    zk = kazoo(quorum_zk)
    stat = zk.set("/first", b"2")
    kazoo_client.stop(zk)
    quorum_zk.stop()
    d = zk_files(quorum_zk)
    current_raw = (d / "currentEpoch").read_bytes()
    accepted_raw = (d / "acceptedEpoch").read_bytes()
    assert stat.mzxid >> 32 == 2  # a second run, a second epoch
    assert ep.read_long_file(d / "currentEpoch") == 2
    assert ep.read_long_file(d / "acceptedEpoch") == 2
    # Our writer produces exactly ZooKeeper's bytes.
    ep.write_long_file(tmp_path / "currentEpoch", 2)
    assert (tmp_path / "currentEpoch").read_bytes() == current_raw == accepted_raw == b"2"
    # Recovery plus loadDataBase's rules: consistent with the log, nothing rewritten.
    copy = tmp_path / "copy"
    shutil.copytree(quorum_zk.data_dir, copy)
    db, tree = corral_recover(copy)
    assert tree.last_zxid >> 32 == 2
    assert db.read_epochs() == ep.Epochs(2, 2)
    assert (copy / "version-2" / "currentEpoch").read_bytes() == b"2"
    # Without the files, both are derived from the log as ZooKeeper derives them.
    for name in ("currentEpoch", "acceptedEpoch"):
        (copy / "version-2" / name).unlink()
    assert db.read_epochs() == ep.Epochs(2, 2)
    # ZooKeeper builds on epochs Corral wrote: accepted 7 means the next leader is in epoch 8.
    ep.write_current_epoch(d, 7)
    ep.write_accepted_epoch(d, 7)
    quorum_zk.restart()
    zk = kazoo(quorum_zk)
    stat = zk.set("/first", b"3")
    kazoo_client.stop(zk)
    quorum_zk.stop()
    assert stat.mzxid >> 32 == 8
    assert ep.read_long_file(d / "currentEpoch") == 8
    assert ep.read_long_file(d / "acceptedEpoch") == 8


@pytest.fixture(scope="module")
def stream_harness(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    javac, java = shutil.which("javac"), shutil.which("java")
    jars = [JAVA_DIR / j for j in JARS]
    if not javac or not java or not all(j.exists() for j in jars):
        pytest.skip("needs javac/java and Debian's ZooKeeper jars")
    work = tmp_path_factory.mktemp("streamharness")
    (work / "StreamHarness.java").write_text(HARNESS)
    cp = os.pathsep.join(str(j) for j in jars)
    subprocess.run([javac, "-cp", cp, "StreamHarness.java"], cwd=work, check=True, timeout=120)
    return [java, "-cp", f"{work}{os.pathsep}{cp}", "StreamHarness"]


def varied_tree() -> DataTree:
    """A tree with many sessions, several ACLs, wide and deep nodes, null data, ephemerals."""
    tree = DataTree()
    zxid = 0

    def apply(op: int, txn: TxnRecord, session: int = 0x1234) -> None:
        nonlocal zxid
        zxid += 1
        tree.apply_txn(TxnHeader(session, zxid, zxid, 1_700_000_000_000 + zxid, op), txn)

    sessions = [0x1000001F2A3B0000 + i for i in range(9)] + [-0x7E00000000000001, 5]
    for sid in sessions:
        apply(OpCode.CREATE_SESSION, CreateSessionTxn(30_000 + sid % 1000), sid)
    acls = [
        (ACL(31, Id("world", "anyone")),),
        (ACL(1, Id("world", "anyone")),),
        (ACL(31, Id("digest", "u:abc")), ACL(1, Id("ip", "10.0.0.0/8"))),
        (ACL(3, Id("sasl", "bob")),),
    ]
    # Characters outside the BMP are left out: ZooKeeper's jute writes them as CESU-8 (each
    # surrogate on its own), which its UTF-8 reader then garbles; we write real UTF-8.
    names = ["a", "b", "c", "zookeepers", "q", "Aa", "BB", "x" * 50, "ü", "€日本"]
    names += [f"n{i}" for i in range(70)]
    count = {"/": 1}
    for i, name in enumerate(names):
        path = "/" + name
        count["/"] += 1
        apply(OpCode.CREATE, CreateTxn(path, None if i % 7 == 0 else name.encode(),
                                       acls[i % 4], False, count["/"]))  # fmt: skip
        count[path] = 0
        for j in range(i % 5):
            count[path] += 1
            eph = j == 3
            apply(
                OpCode.CREATE,
                CreateTxn(f"{path}/k{j}", b"", acls[j % 4], eph, count[path]),
                sessions[j] if eph else 0x1234,
            )
    return tree


def test_zookeeper_reads_our_stream_and_serializes_it_to_the_same_bytes(
    stream_harness: list[str], tmp_path: Path
) -> None:
    tree = varied_tree()
    ours = ss.serialize_snapshot(tree.sessions, tree.nodes, java_order=True) + (
        b"\x00\x00\x00\x0aBenWasHere"
    )
    (tmp_path / "in").write_bytes(ours)
    done = subprocess.run(
        [*stream_harness, str(tmp_path / "in"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    nodes, sessions = map(int, done.stdout.split())
    assert (nodes, sessions) == (len(tree.nodes), len(tree.sessions))
    assert (tmp_path / "out").read_bytes() == ours
    # Sorted order (our default) is another valid stream of the same tree for ZooKeeper.
    plain = ss.serialize_snapshot(tree.sessions, tree.nodes) + b"\x00\x00\x00\x0aBenWasHere"
    (tmp_path / "in2").write_bytes(plain)
    subprocess.run(
        [*stream_harness, str(tmp_path / "in2"), str(tmp_path / "out2")],
        capture_output=True,
        timeout=120,
        check=True,
    )
    # (ACL ids are numbered in walk order, so the bytes differ; the tree is the same.)
    back = ss.parse_snapshot_stream((tmp_path / "out2").read_bytes(), signature=True)
    mine = ss.parse_snapshot_stream(plain, signature=True)
    assert back.sessions == mine.sessions
    assert sorted((n.path, n.data, n.acl, n.stat) for n in back.nodes) == sorted(
        (n.path, n.data, n.acl, n.stat) for n in mine.nodes
    )


def test_zookeepers_snapshot_file_body_is_our_stream_of_its_tree(
    quorum_zk: QuorumZooKeeper,
) -> None:
    quorum_zk.start()
    zk = kazoo(quorum_zk, default_acl=MOST)
    write_tree(zk)
    # The restart makes ZooKeeper snapshot the tree it replays from its log, with the
    # session still open.
    quorum_zk.restart()
    kazoo_client.stop(zk)
    quorum_zk.stop()
    files = snapshot_files(zk_files(quorum_zk))
    raw = files[0][1].read_bytes()
    reader = ss.SnapshotStreamReader(signature=False)
    assert reader.feed(raw[16:])
    parsed = reader.result()
    body = raw[16 : 16 + parsed.length]
    assert len(parsed.nodes) > 60
    tree = Database.tree_from_stream(
        files[0][0], body, empty_for_load=DataTree.empty_for_load, make_node=ZNode
    )
    zk_ids = {acl: acl_id for acl_id, acl in parsed.acls.items()}
    assert ss.serialize_snapshot(tree.sessions, tree.nodes, java_order=True, acl_ids=zk_ids) == body


View = dict[str, tuple[bytes, tuple[int, ...], tuple[object, ...]]]


def kazoo_view(zk: KazooClient) -> View:
    out: View = {}
    stack = ["/"]
    while stack:
        path = stack.pop()
        data, stat = zk.get(path)
        acls, _ = zk.get_acls(path)
        out[path] = (data, tuple(stat), tuple((a.perms, a.id.scheme, a.id.id) for a in acls))
        prefix = "/" if path == "/" else path + "/"
        stack.extend(prefix + c for c in zk.get_children(path))
    return out


def corral_view(tree: DataTree) -> View:
    return {
        path: (
            node.data or b"",
            dataclasses.astuple(node.stat()),
            tuple((a.perms, a.id.scheme, a.id.id) for a in node.acl),
        )
        for path, node in tree.nodes.items()
    }


class Txns:
    """Consecutive txns of one session, as a core would make them."""

    def __init__(self, zxid: int, session: int) -> None:
        self.zxid, self.session, self.cversion = zxid, session, {"/": 1}

    def session_txn(self) -> tuple[TxnHeader, TxnRecord]:
        return self._hdr(OpCode.CREATE_SESSION), CreateSessionTxn(30_000)

    def create(self, path: str, data: bytes) -> tuple[TxnHeader, TxnRecord]:
        parent = path.rsplit("/", 1)[0] or "/"
        self.cversion[parent] = self.cversion.get(parent, 0) + 1
        txn = CreateTxn(path, data, OPEN_ACL, False, self.cversion[parent])
        return self._hdr(OpCode.CREATE), txn

    def _hdr(self, op: int) -> TxnHeader:
        self.zxid += 1
        return TxnHeader(self.session, self.zxid & 0xFFFF, self.zxid, 1_700_000_000_000, op)


OPEN_ACL = (ACL(31, Id("world", "anyone")),)


def log_and_apply(db: Database, tree: DataTree, txns: list[tuple[TxnHeader, TxnRecord]]) -> None:
    for hdr, txn in txns:
        db.append(hdr, jute.encode(txn))
        tree.apply_txn(hdr, txn)
    assert db.wait_durable(txns[-1][0].zxid, WAIT_S)


def served_by_zookeeper(tmp_path: Path, data_dir: Path) -> View:
    server = ZooKeeperServer(ServerSettings(force_sync=True), tmp_path / "zk-serve")
    shutil.copytree(data_dir, server.data_dir)
    try:
        server.start()
        zk = kazoo(server)
        try:
            return kazoo_view(zk)
        finally:
            kazoo_client.stop(zk)
    finally:
        server.stop()


def test_zookeeper_serves_our_directory_after_a_trunc_and_after_a_snap(tmp_path: Path) -> None:
    why = available()
    if why is not None:
        pytest.skip(why)
    # TRUNC: log, truncate (the tree is rebuilt from the files), log more in a new epoch.
    trunc_dir = tmp_path / "trunc"
    db, tree = corral_recover(trunc_dir)
    db.start(lambda z: None)
    t = Txns(1 << 32, 0x1000000AB0001)
    log_and_apply(db, tree, [t.session_txn(), *(t.create(f"/t{i}", b"%d" % i) for i in range(12))])
    db.truncate((1 << 32) + 7)
    tree = db.rebuild_tree(
        new_tree=DataTree,
        empty_for_load=DataTree.empty_for_load,
        make_node=ZNode,
        upto=(1 << 32) + 7,
    )
    t2 = Txns(2 << 32, 0x2000000AB0001)
    t2.cversion["/"] = 7
    log_and_apply(db, tree, [t2.session_txn(), t2.create("/after", b"trunc")])
    db.close()
    assert "/t5" in tree.nodes and "/t6" not in tree.nodes and "/after" in tree.nodes
    assert served_by_zookeeper(tmp_path / "a", trunc_dir) == corral_view(tree)
    # SNAP: a diverged history replaced by the leader's snapshot stream, then more txns.
    snap_dir = tmp_path / "snap"
    db, tree = corral_recover(snap_dir)
    db.start(lambda z: None)
    own = Txns(1 << 32, 0x1000000AB0009)
    log_and_apply(db, tree, [own.session_txn(), *(own.create(f"/own{i}", b"x") for i in range(9))])
    leader = DataTree()
    lt = Txns(1 << 32, 0x1000000CC0001)
    for hdr, txn in [lt.session_txn(), *(lt.create(f"/lead{i}", b"L" * i) for i in range(6))]:
        leader.apply_txn(hdr, txn)
    zxid, stream = Database.serialize_tree(leader)
    db.save_snapshot_stream(zxid, stream)
    tree = Database.tree_from_stream(
        zxid, stream, empty_for_load=DataTree.empty_for_load, make_node=ZNode
    )
    log_and_apply(db, tree, [lt.create("/lead-after", b"snap")])
    db.close()
    assert served_by_zookeeper(tmp_path / "b", snap_dir) == corral_view(tree)
