"""The snapshot stream after SNAP: serializer, incremental total bounded reader, Java's
iteration order, and a learner saving / loading the leader's snapshot."""

from __future__ import annotations

import gzip
import os
import random
import shutil
import struct
from pathlib import Path

import pytest
from store_helpers import (
    Crash,
    TxnStream,
    config,
    crash_at,
    recover,
    reference_tree,
    view,
    workload,
)

from corral.proto import jute
from corral.store import snapstream as ss
from corral.store.database import Database
from corral.store.snapshot import read_snapshot, take_snapshot, verify_snapshot_file
from corral.store.txnlog import read_log
from corral.tree.datatree import DataTree
from corral.tree.znode import ZNode

SIG = b"\x00\x00\x00\x0aBenWasHere"
FILE_HEADER_BYTES = 16
# After the body of a snapshot file: seal (8 + 5), digest (20), seal (8 + 5).
FILE_TRAILER_BYTES = 13 + 20 + 13


def some_tree(n: int = 200, seed: int = 3) -> DataTree:
    return reference_tree(list(workload(TxnStream(), n, seed=seed)))


def loaded(stream: bytes, zxid: int = 0) -> DataTree:
    return Database.tree_from_stream(
        zxid, stream, empty_for_load=DataTree.empty_for_load, make_node=ZNode
    )


def test_round_trip_gives_the_same_tree() -> None:
    tree = some_tree()
    zxid, stream = Database.serialize_tree(tree)
    assert zxid == tree.last_zxid
    back = loaded(stream, zxid)
    assert view(back) == view(tree)
    assert back.sessions == tree.sessions and back.last_zxid == zxid


def test_stream_is_a_snapshot_file_body(tmp_path: Path) -> None:
    """The same bytes as the file ZooKeeper's format puts between header and seal."""
    tree = some_tree()
    path = take_snapshot(tmp_path, tree.last_zxid, tree.sessions, tree.nodes)
    raw = path.read_bytes()
    assert ss.serialize_snapshot(tree.sessions, tree.nodes) == raw[16:-FILE_TRAILER_BYTES]
    # And a file written from the stream is that very file.
    other = tmp_path / "other"
    other.mkdir()
    again = ss.write_snapshot_stream(other, tree.last_zxid, raw[16:-FILE_TRAILER_BYTES])
    assert again.read_bytes() == raw
    assert verify_snapshot_file(again)
    assert len(read_snapshot(again).nodes) == len(tree.nodes)
    # A learner configured for gz snapshots writes the same file gzipped.
    zipped = ss.write_snapshot_stream(
        other, tree.last_zxid, raw[16:-FILE_TRAILER_BYTES], compression="gz"
    )
    assert zipped.name == again.name + ".gz"
    assert gzip.decompress(zipped.read_bytes()) == raw


def test_fed_one_byte_at_a_time_with_signature_and_following_bytes() -> None:
    tree = some_tree(80)
    stream = ss.serialize_snapshot(tree.sessions, tree.nodes)
    wire = stream + SIG + b"NEXT"
    reader = ss.SnapshotStreamReader(signature=True)
    for i in range(len(wire)):
        done = reader.feed(wire[i : i + 1])
        assert done == (i >= len(stream) + len(SIG) - 1)
    assert reader.unused() == b"NEXT"
    result = reader.result()
    assert result.length == len(stream)
    whole = ss.parse_snapshot_stream(stream)
    assert result.nodes == whole.nodes and result.sessions == whole.sessions


def test_fed_in_random_chunks() -> None:
    tree = some_tree(300, seed=9)
    stream = ss.serialize_snapshot(tree.sessions, tree.nodes) + SIG
    rng = random.Random(1)
    reader = ss.SnapshotStreamReader()
    pos = 0
    while pos < len(stream):
        n = rng.randrange(1, 5000)
        reader.feed(stream[pos : pos + n])
        pos += n
    assert reader.done
    assert len(reader.result().nodes) == len(tree.nodes)


def test_every_prefix_is_incomplete_not_an_error() -> None:
    tree = some_tree(30)
    stream = ss.serialize_snapshot(tree.sessions, tree.nodes) + SIG
    for cut in range(len(stream)):
        reader = ss.SnapshotStreamReader()
        assert not reader.feed(stream[:cut])
        with pytest.raises(ss.SnapshotStreamError):
            reader.result()
        with pytest.raises(ss.SnapshotStreamError):
            ss.parse_snapshot_stream(stream[:cut], signature=True)


def test_mutations_raise_only_protocol_errors() -> None:
    tree = some_tree(40)
    stream = ss.serialize_snapshot(tree.sessions, tree.nodes) + SIG
    rng = random.Random(7)
    for _ in range(2000):
        data = bytearray(stream)
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        reader = ss.SnapshotStreamReader()
        try:
            reader.feed(bytes(data))
        except jute.ProtocolError:
            continue


@pytest.mark.parametrize(
    ("stream", "match"),
    [
        (struct.pack(">i", -1), "negative session count"),
        (struct.pack(">ii", 0, -5), "negative ACL table count"),
        (struct.pack(">iiqi", 0, 1, 1, -1), "ACL vector"),
        (struct.pack(">iii", 0, 0, 1 << 30), "unreasonable path length"),
        (struct.pack(">iii", 0, 0, 2) + b"/a" + b"\x00" * 80, "first node"),
        (struct.pack(">iii", 0, 0, 1) + b"/", "no root"),
    ],
)
def test_bad_streams_are_refused_before_buffering(stream: bytes, match: str) -> None:
    with pytest.raises(ss.SnapshotStreamError, match=match):
        ss.SnapshotStreamReader().feed(stream)


def test_orphans_duplicates_and_a_wrong_signature_are_refused() -> None:
    tree = DataTree()
    stream = ss.serialize_snapshot({}, tree.nodes)
    node = stream[stream.index(b"/zookeeper") - 4 :][: 4 + len("/zookeeper") + 4 + 76]
    end = stream[-5:]
    body = stream[: -5 - 0]
    with pytest.raises(ss.SnapshotStreamError, match="without its parent"):
        ss.parse_snapshot_stream(body + struct.pack(">i", 4) + b"/x/y" + node[14:] + end)
    with pytest.raises(ss.SnapshotStreamError, match="without its parent"):
        ss.parse_snapshot_stream(body + node + end)
    with pytest.raises(ss.SnapshotStreamError, match="signature"):
        ss.parse_snapshot_stream(stream + b"\x00\x00\x00\x03Ben", signature=True)
    with pytest.raises(ss.SnapshotStreamError, match="after the snapshot"):
        ss.parse_snapshot_stream(stream + b"x")


def test_java_hashes() -> None:
    # Values of String.hashCode / Long.hashCode as Java computes them.
    assert ss.java_string_hash("") == 0
    assert ss.java_string_hash("hello") == 99162322
    assert ss.java_string_hash("zookeeper") == 1600681804
    assert ss.java_string_hash("\U0001f600") == (0xD83D * 31 + 0xDE00)
    assert ss.java_long_hash(-1) == 0
    assert ss.java_long_hash(1 << 32) == 1
    assert ss.grown_capacity(6, 8) == 8 and ss.grown_capacity(7, 8) == 16
    assert ss.grown_capacity(13, 8) == 32
    assert ss.copy_capacity(1) == 2 and ss.copy_capacity(3) == 8 and ss.copy_capacity(12) == 32
    # Checked with java: new HashSet<>(8) of b, a, q prints [a, q, b]; new HashMap<>(m) of
    # {0x100000001, -5, 7} iterates in this order.
    assert ss.java_hash_order(["b", "a", "q"], ss.grown_capacity(3, 8)) == ["a", "q", "b"]
    assert ss.java_hash_order([7, -5, 0x100000001], ss.copy_capacity(3)) == [0x100000001, -5, 7]


def test_java_order_is_a_valid_stream_of_the_same_tree() -> None:
    tree = some_tree(300, seed=11)
    stream = ss.serialize_snapshot(tree.sessions, tree.nodes, java_order=True)
    assert view(loaded(stream)) == view(tree)
    assert stream != ss.serialize_snapshot(tree.sessions, tree.nodes)


def test_learner_saves_the_leaders_snapshot_and_drops_its_log(tmp_path: Path) -> None:
    leader_txns = list(workload(TxnStream(), 150, seed=12))
    leader = reference_tree(leader_txns)
    zxid, stream = Database.serialize_tree(leader)
    # The learner has a diverged history of its own, with snapshots past the leader's zxid.
    own = list(workload(TxnStream(session=0x7000), 200, seed=13))
    db = Database(config(tmp_path, snap_count=40, snap_size_limit_bytes=0), rng=random.Random(2))
    tree = recover(db)
    db.start(lambda z: None)
    for hdr, txn in own:
        db.append(hdr, jute.encode(txn))
        tree.apply_txn(hdr, txn)
        assert db.wait_durable(hdr.zxid, 10)
        if db.maybe_snapshot(tree):
            assert db._snap_thread is not None
            db._snap_thread.join(10)
    with pytest.raises(ss.SnapshotStreamError):
        db.save_snapshot_stream(zxid, stream[:-1])
    done: list[int] = []
    db.save_snapshot_stream(zxid, stream, on_done=lambda: done.append(db.durable_zxid))
    tree = loaded(stream, zxid)
    s = TxnStream(zxid=zxid, session=0x9000)
    more = [s.create_session(), s.create("/after-snap", b"!")]
    for hdr, txn in more:
        db.append(hdr, jute.encode(txn))
        tree.apply_txn(hdr, txn)
    assert db.wait_durable(more[-1][0].zxid, 10)
    db.close()
    assert done == [zxid]
    names = sorted(os.listdir(tmp_path / "version-2"))
    assert f"snapshot.{zxid:x}" in names
    assert all(int(n.split(".")[1], 16) <= zxid for n in names if n.startswith("snapshot."))
    assert [e.hdr.zxid for e in read_log(tmp_path / "version-2", 0)] == [zxid + 1, zxid + 2]
    again = Database(config(tmp_path))
    assert view(recover(again)) == view(reference_tree(leader_txns + more))


def test_a_crash_at_any_step_of_saving_a_snap_leaves_old_or_new_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    leader = reference_tree(list(workload(TxnStream(), 150, seed=12)))
    zxid, stream = Database.serialize_tree(leader)
    own = list(workload(TxnStream(session=0x7000), 200, seed=13))
    base = tmp_path / "base"
    db = Database(config(base, snap_count=40, snap_size_limit_bytes=0), rng=random.Random(2))
    tree = recover(db)
    db.start(lambda z: None)
    for hdr, txn in own:
        db.append(hdr, jute.encode(txn))
        tree.apply_txn(hdr, txn)
        assert db.wait_durable(hdr.zxid, 10)
        if db.maybe_snapshot(tree):
            assert db._snap_thread is not None
            db._snap_thread.join(10)
    db.close()
    step = 1
    while True:
        work = tmp_path / f"crash{step}"
        shutil.copytree(base, work)
        db = Database(config(work, snapshot_on_recover=False))
        recover(db)
        crash_at(monkeypatch, step)
        try:
            db.save_snapshot_stream(zxid, stream)
            finished = True
        except Crash:
            finished = False
        monkeypatch.undo()
        names = os.listdir(work / "version-2")
        again = Database(config(work, snapshot_on_recover=False))
        recovered = recover(again)
        if f"snapshot.{zxid:x}" not in names:
            assert step == 1  # the rename is the first mutation: before it, the old state
            assert view(recovered) == view(reference_tree(own))
        elif finished:
            assert view(recovered) == view(leader)
            break
        else:
            # The leader's snapshot, plus at most a tail of our old log after it: the next
            # sync truncates that tail like any unacknowledged one.
            assert recovered.last_zxid >= zxid
        step += 1
    assert step > 3


def test_kept_stream_bytes_are_what_the_zab_core_carries() -> None:
    tree = some_tree(120, seed=4)
    stream = ss.serialize_snapshot(tree.sessions, tree.nodes)
    wire = stream + SIG + b"\x00\x00\x00\x0c"
    reader = ss.SnapshotStreamReader(keep=True)
    with pytest.raises(ss.SnapshotStreamError):
        reader.stream_bytes()
    for i in range(0, len(wire), 7):
        reader.feed(wire[i : i + 7])
    assert reader.stream_bytes() == stream
    assert reader.unused() == b"\x00\x00\x00\x0c"


def test_byte_at_a_time_and_whole_agree_on_mutated_streams() -> None:
    tree = some_tree(20)
    stream = ss.serialize_snapshot(tree.sessions, tree.nodes) + SIG
    rng = random.Random(5)
    for _ in range(150):
        data = bytearray(stream)
        data[rng.randrange(len(data))] = rng.randrange(256)

        def outcome(chunk: int, data: bytes = bytes(data)) -> object:
            reader = ss.SnapshotStreamReader()
            try:
                for i in range(0, len(data), chunk):
                    reader.feed(data[i : i + chunk])
            except ss.SnapshotStreamError:
                return "error"
            return reader.result() if reader.done else "incomplete"

        assert outcome(1) == outcome(len(data))
