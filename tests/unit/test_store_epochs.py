"""acceptedEpoch / currentEpoch files: ZooKeeper's text format, atomic durable writes, and
QuorumPeer.loadDataBase's rules for missing files and leftover temporary files."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from store_helpers import TxnStream, config, recover

from corral.proto import jute
from corral.store import epochs as ep
from corral.store.database import Database

ZXID_EPOCH_3 = (3 << 32) | 7


def snap_dir(tmp_path: Path) -> Path:
    d = tmp_path / "version-2"
    d.mkdir(exist_ok=True)
    return d


def test_written_as_zookeeper_writes_it(tmp_path: Path) -> None:
    path = tmp_path / "currentEpoch"
    ep.write_long_file(path, 12)
    assert path.read_bytes() == b"12"  # Long.toString, no newline
    assert not (tmp_path / "currentEpoch.tmp").exists()
    ep.write_long_file(path, -1)
    assert path.read_bytes() == b"-1"
    assert ep.read_long_file(path) == -1
    with pytest.raises(ValueError):
        ep.write_long_file(path, 1 << 63)


@pytest.mark.parametrize(
    ("text", "value"),
    [(b"5", 5), (b"5\n", 5), (b"5\r\njunk", 5), (b"5\rx", 5), (b"+5", 5), (b"-2", -2),
     (b"007", 7), (b"9223372036854775807", (1 << 63) - 1)],
)  # fmt: skip
def test_read_as_long_parse_long(tmp_path: Path, text: bytes, value: int) -> None:
    path = tmp_path / "acceptedEpoch"
    path.write_bytes(text)
    assert ep.read_long_file(path) == value


@pytest.mark.parametrize(
    "text",
    [b"", b"\n5", b" 5", b"5 ", b"0x5", b"5L", b"abc", b"+", b"9223372036854775808", b"1_0",
     b"\xff\xfe"],
)  # fmt: skip
def test_unparsable_epoch_files_are_refused(tmp_path: Path, text: bytes) -> None:
    path = tmp_path / "currentEpoch"
    path.write_bytes(text)
    with pytest.raises(ep.EpochFileError):
        ep.read_long_file(path)


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ep.read_long_file(tmp_path / "currentEpoch")


def test_missing_files_default_to_the_logged_epoch(tmp_path: Path) -> None:
    d = snap_dir(tmp_path)
    assert ep.load_epochs(d, ZXID_EPOCH_3) == ep.Epochs(3, 3)
    assert (d / "currentEpoch").read_bytes() == b"3"
    assert (d / "acceptedEpoch").read_bytes() == b"3"


def test_existing_files_win_when_consistent(tmp_path: Path) -> None:
    d = snap_dir(tmp_path)
    (d / "currentEpoch").write_text("4")
    (d / "acceptedEpoch").write_text("5")
    assert ep.load_epochs(d, ZXID_EPOCH_3) == ep.Epochs(4, 5)


def test_current_epoch_older_than_the_log_is_refused(tmp_path: Path) -> None:
    d = snap_dir(tmp_path)
    (d / "currentEpoch").write_text("2")
    (d / "acceptedEpoch").write_text("3")
    with pytest.raises(ep.EpochFileError, match="older than the last zxid"):
        ep.load_epochs(d, ZXID_EPOCH_3)


def test_current_epoch_tmp_left_by_a_crash_is_used(tmp_path: Path) -> None:
    """ZOOKEEPER-2307/-4269: died between writing currentEpoch.tmp and the rename."""
    d = snap_dir(tmp_path)
    (d / "currentEpoch").write_text("2")
    (d / "currentEpoch.tmp").write_text("3")
    (d / "acceptedEpoch").write_text("3")
    assert ep.load_epochs(d, ZXID_EPOCH_3) == ep.Epochs(3, 3)
    assert (d / "currentEpoch").read_text() == "3"
    assert not (d / "currentEpoch.tmp").exists()


def test_torn_current_epoch_tmp_is_refused(tmp_path: Path) -> None:
    d = snap_dir(tmp_path)
    (d / "currentEpoch").write_text("2")
    (d / "currentEpoch.tmp").write_text("")
    with pytest.raises(ep.EpochFileError):
        ep.load_epochs(d, ZXID_EPOCH_3)


def test_updating_epoch_marker_of_zookeeper_3_4(tmp_path: Path) -> None:
    d = snap_dir(tmp_path)
    (d / "currentEpoch").write_text("2")
    (d / "acceptedEpoch").write_text("3")
    (d / "updatingEpoch").write_bytes(b"")
    assert ep.load_epochs(d, ZXID_EPOCH_3) == ep.Epochs(3, 3)
    assert (d / "currentEpoch").read_text() == "3"
    assert not (d / "updatingEpoch").exists()


def test_updating_epoch_marker_is_left_when_not_needed(tmp_path: Path) -> None:
    d = snap_dir(tmp_path)
    (d / "currentEpoch").write_text("3")
    (d / "acceptedEpoch").write_text("3")
    (d / "updatingEpoch").write_bytes(b"")
    assert ep.load_epochs(d, ZXID_EPOCH_3) == ep.Epochs(3, 3)
    assert (d / "updatingEpoch").exists()


def test_accepted_below_current_is_refused(tmp_path: Path) -> None:
    d = snap_dir(tmp_path)
    (d / "currentEpoch").write_text("4")
    (d / "acceptedEpoch").write_text("3")
    with pytest.raises(ep.EpochFileError, match="less than the current epoch"):
        ep.load_epochs(d, ZXID_EPOCH_3)


def test_missing_accepted_epoch_gets_the_logged_epoch_even_below_current(tmp_path: Path) -> None:
    d = snap_dir(tmp_path)
    (d / "currentEpoch").write_text("4")
    with pytest.raises(ep.EpochFileError):
        ep.load_epochs(d, ZXID_EPOCH_3)
    assert (d / "acceptedEpoch").read_text() == "3"


def test_write_is_atomic_a_failed_write_keeps_the_old_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "acceptedEpoch"
    ep.write_long_file(path, 1)

    def broken(fd: int) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError):
        ep.write_long_file(path, 2)
    monkeypatch.undo()
    assert ep.read_long_file(path) == 1
    assert not (tmp_path / "acceptedEpoch.tmp").exists()


def test_database_epochs_follow_the_appends_queued_before_them(tmp_path: Path) -> None:
    db = Database(config(tmp_path), rng=random.Random(1))
    tree = recover(db)
    assert db.read_epochs() == ep.Epochs(0, 0)
    db.set_accepted_epoch(1)  # before start(): done here and now
    assert (tmp_path / "version-2" / "acceptedEpoch").read_text() == "1"
    db.start(lambda z: None)
    s = TxnStream(zxid=1 << 32)
    txns = [s.create_session(), s.create("/a"), s.create("/b")]
    seen: list[int] = []
    for hdr, txn in txns:
        db.append(hdr, jute.encode(txn))
    # The epoch is durable only after every txn appended before it (ZOOKEEPER-4643).
    db.set_current_epoch(1, on_done=lambda: seen.append(db.durable_zxid))
    db.set_accepted_epoch(2)  # waits; ops run in queue order
    assert seen == [txns[-1][0].zxid]
    db.close()
    del tree
    again = Database(config(tmp_path))
    recovered = recover(again)
    assert recovered.last_zxid == txns[-1][0].zxid
    assert again.read_epochs() == ep.Epochs(1, 2)
