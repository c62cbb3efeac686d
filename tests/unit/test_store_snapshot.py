"""Snapshots: ZooKeeper 3.8's bytes, the four trailer layouts (3.5, 3.6+ digest, 3.9
lastProcessedZxid with and without digest), damage detection, and fuzzy snapshots taken while
the tree changes."""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_helpers import TxnStream, reference_tree, view, workload

from corral.proto.records import StatPersisted
from corral.store.snapshot import (
    OPEN_ACL_UNSAFE,
    NodeView,
    SnapshotError,
    load_newest_snapshot,
    read_snapshot,
    take_snapshot,
    verify_snapshot_file,
    walk_preorder,
    write_snapshot,
)
from corral.tree.datatree import DataTree
from corral.tree.znode import ZNode

# snapshot.0 as Apache ZooKeeper 3.8.0 writes it for a fresh server: no sessions, one ACL
# (READ for /zookeeper/config), the nodes "", /zookeeper, /zookeeper/config, /zookeeper/quota,
# the seal, an empty digest (zxid 0, version 2) and its seal.
ZK38_SNAPSHOT_0 = bytes.fromhex(
    "5a4b534e00000002ffffffffffffffff00000000000000010000000000000001"
    "000000010000000100000005776f726c6400000006616e796f6e650000000000"
    "000000ffffffffffffffff000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "000000000000000000000a2f7a6f6f6b656570657200000000ffffffffffffff"
    "ff00000000000000000000000000000000000000000000000000000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "112f7a6f6f6b65657065722f636f6e6669670000000000000000000000010000"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "000000000000ffffffff00000000000000000000000000000000000000102f7a"
    "6f6f6b65657065722f71756f746100000000ffffffffffffffff000000000000"
    "0000000000000000000000000000000000000000000000000000000000000000"
    "00000000000000000000000000000000000000000000000000012f00000000b8"
    "a23b49000000012f000000000000000000000002000000000000000000000000"
    "95b93d59000000012f"
)
SEAL = 13
DIGEST_SECTION = 20


def load(path: Path) -> DataTree:
    snap = read_snapshot(path)
    tree = DataTree.empty_for_load()
    for n in snap.nodes:
        st = n.stat
        tree.load_node(
            n.path,
            ZNode(
                n.data,
                n.acl,
                st.czxid,
                st.mzxid,
                st.ctime,
                st.mtime,
                st.version,
                st.cversion,
                st.aversion,
                st.ephemeral_owner,
                st.pzxid,
            ),
        )
    tree.finish_load()
    tree.sessions.update(snap.sessions)
    tree.last_zxid = snap.zxid
    return tree


def snapshot_of(tree: DataTree, d: Path) -> Path:
    return take_snapshot(d, tree.last_zxid, dict(tree.sessions), dict(tree.nodes))


def seal(data: bytes) -> bytes:
    return struct.pack(">q", zlib.adler32(data)) + b"\0\0\0\x01/"


def test_fresh_tree_is_byte_identical_to_zookeeper_38(tmp_path: Path) -> None:
    path = snapshot_of(DataTree(), tmp_path)
    assert path.name == "snapshot.0"
    assert path.read_bytes() == ZK38_SNAPSHOT_0


def test_reads_zookeeper_38_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.0"
    path.write_bytes(ZK38_SNAPSHOT_0)
    snap = read_snapshot(path)
    assert [n.path for n in snap.nodes] == [
        "/",
        "/zookeeper",
        "/zookeeper/config",
        "/zookeeper/quota",
    ]
    assert snap.nodes[0].acl == OPEN_ACL_UNSAFE  # ACL id -1
    assert snap.nodes[2].acl[0].perms == 1
    assert snap.nodes[2].stat == StatPersisted(0, 0, 0, 0, 0, 0, -1, 0, 0)
    assert snap.digest is not None and snap.digest.zxid == 0
    assert snap.last_processed_zxid is None
    assert view(load(path)) == view(DataTree())


def test_round_trip_of_a_busy_tree(tmp_path: Path) -> None:
    tree = reference_tree(list(workload(TxnStream(), 400, seed=7)))
    tree.sessions[0x2000] = 5000
    path = snapshot_of(tree, tmp_path)
    assert path.name == f"snapshot.{tree.last_zxid:x}"
    assert verify_snapshot_file(path)
    loaded = load(path)
    assert view(loaded) == view(tree)
    assert loaded.sessions == tree.sessions
    assert loaded.ephemerals_by_session() == tree.ephemerals_by_session()


def _layouts(base: bytes) -> dict[str, bytes]:
    """The same snapshot in each layout ZooKeeper versions write."""
    body = base[: -(DIGEST_SECTION + SEAL)]  # header ... nodes, seal (3.5)
    digest = base[len(body) : -SEAL]
    with_digest = body + digest + seal(body + digest)
    last = struct.pack(">q", 0x77)
    return {
        "3.5": body,
        "3.8": with_digest,
        "3.9": with_digest + last + seal(with_digest + last),
        "3.9-no-digest": body + last + seal(body + last),
    }


@pytest.mark.parametrize("layout", ["3.5", "3.8", "3.9", "3.9-no-digest"])
def test_every_trailer_layout_reads(tmp_path: Path, layout: str) -> None:
    tree = reference_tree(list(workload(TxnStream(), 50)))
    data = _layouts(snapshot_of(tree, tmp_path).read_bytes())[layout]
    path = tmp_path / "x" / f"snapshot.{tree.last_zxid:x}"
    path.parent.mkdir()
    path.write_bytes(data)
    assert verify_snapshot_file(path)
    snap = read_snapshot(path)
    assert (snap.digest is not None) == (layout in ("3.8", "3.9"))
    assert snap.last_processed_zxid == (0x77 if layout.startswith("3.9") else None)
    assert view(load(path)) == view(tree)


@pytest.mark.parametrize("layout", ["3.5", "3.8", "3.9"])
def test_any_flipped_byte_or_cut_is_detected(tmp_path: Path, layout: str) -> None:
    s = TxnStream()
    tree = reference_tree([s.create_session(), s.create("/a", b"hello"), s.create("/a/b")])
    layouts = _layouts(snapshot_of(tree, tmp_path).read_bytes())
    good = layouts[layout]
    # Cutting exactly at a section boundary leaves an older layout, which is whole.
    whole = {len(v) for v in layouts.values() if good.startswith(v)}
    path = tmp_path / "bad" / "snapshot.3"
    path.parent.mkdir()
    for i in range(len(good)):
        bad = bytearray(good)
        bad[i] ^= 0x20
        path.write_bytes(bytes(bad))
        assert not verify_snapshot_file(path), f"flip at {i}"
        with pytest.raises(SnapshotError):
            read_snapshot(path)
    for n in range(len(good)):
        path.write_bytes(good[:n])
        if n in whole:
            assert verify_snapshot_file(path)
            read_snapshot(path)
            continue
        assert not verify_snapshot_file(path), f"cut at {n}"
        with pytest.raises(SnapshotError):
            read_snapshot(path)


def test_gzip_snapshots_read(tmp_path: Path) -> None:
    tree = reference_tree(list(workload(TxnStream(), 30)))
    plain = snapshot_of(tree, tmp_path)
    gz = tmp_path / "z" / (plain.name + ".gz")
    gz.parent.mkdir()
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    assert verify_snapshot_file(gz)
    assert view(load(gz)) == view(tree)
    gz.write_bytes(gz.read_bytes()[:-9])
    assert not verify_snapshot_file(gz)


def test_gzip_snapshots_written(tmp_path: Path) -> None:
    """snapshot.compression.method=gz: `snapshot.<zxid>.gz`, the plain file's bytes gzipped."""
    tree = reference_tree(list(workload(TxnStream(), 30)))
    plain = snapshot_of(tree, tmp_path)
    gz = take_snapshot(
        tmp_path, tree.last_zxid, dict(tree.sessions), dict(tree.nodes), compression="gz"
    )
    assert gz.name == plain.name + ".gz"
    assert gzip.decompress(gz.read_bytes()) == plain.read_bytes()
    assert verify_snapshot_file(gz)
    assert view(load(gz)) == view(tree)
    with pytest.raises(ValueError, match="snappy"):
        take_snapshot(tmp_path, 1, {}, dict(tree.nodes), compression="snappy")


def test_newest_valid_snapshot_wins(tmp_path: Path) -> None:
    assert load_newest_snapshot(tmp_path) is None
    stream = TxnStream()
    txns = list(workload(stream, 20))
    old = snapshot_of(reference_tree(txns[:10]), tmp_path)
    newer = snapshot_of(reference_tree(txns), tmp_path)
    newer.write_bytes(newer.read_bytes()[:-40])  # torn by a crash
    (tmp_path / "snapshot.zz").write_bytes(b"junk")  # not a snapshot name: ignored
    snap = load_newest_snapshot(tmp_path)
    assert snap is not None and snap.path == old
    old.write_bytes(b"ZKSN")
    with pytest.raises(SnapshotError, match="none of them valid"):
        load_newest_snapshot(tmp_path)


def test_orphan_node_is_invalid(tmp_path: Path) -> None:
    tree = DataTree()
    nodes = dict(tree.nodes)
    orphan = ZNode(b"", OPEN_ACL_UNSAFE, 1, 1, 0, 0)

    def walk() -> Iterator[tuple[str, NodeView]]:
        yield from walk_preorder(nodes)
        yield "/no/parent", orphan

    path = write_snapshot(tmp_path, 1, {}, walk())
    assert verify_snapshot_file(path)  # checksums are fine...
    with pytest.raises(SnapshotError, match="without parent"):
        read_snapshot(path)  # ...but the tree is not


def test_fuzzy_snapshot_plus_replay_is_exact(tmp_path: Path) -> None:
    """The tree keeps changing while the snapshot walks it (one txn applied after every node
    written); the snapshot is named by the zxid at its start, and replaying the later txns
    over it gives exactly the final tree."""
    stream = TxnStream()
    txns = list(workload(stream, 600, seed=3))
    tree = reference_tree(txns[:300])
    zxid = tree.last_zxid
    sessions, nodes = dict(tree.sessions), dict(tree.nodes)
    later = iter(txns[300:])

    def interleaved() -> Iterator[tuple[str, NodeView]]:
        for item in walk_preorder(nodes):
            yield item
            nxt = next(later, None)
            if nxt is not None:
                tree.apply_txn(*nxt)

    path = write_snapshot(tmp_path, zxid, sessions, interleaved())
    for nxt in later:
        tree.apply_txn(*nxt)
    assert tree.last_zxid == stream.zxid
    recovered = load(path)
    for hdr, txn in txns[300:]:
        recovered.apply_txn(hdr, txn)
    assert view(recovered) == view(tree)
    assert recovered.sessions == tree.sessions
