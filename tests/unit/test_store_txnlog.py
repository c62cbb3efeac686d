"""The txn log: ZooKeeper's byte format, preallocation, rolling, reading across files, and
torn or corrupt tails (truncated with a warning, never fatal) versus damage that is not a tail."""

from __future__ import annotations

import logging
import os
import zlib
from pathlib import Path

import pytest
from store_helpers import Txn2, TxnStream, workload

from corral.proto import jute
from corral.proto.codes import OpCode
from corral.proto.records import (
    ACL,
    CheckVersionTxn,
    CloseSessionTxn,
    CreateContainerTxn,
    CreateSessionTxn,
    CreateTTLTxn,
    CreateTxn,
    CreateTxnV0,
    DeleteTxn,
    ErrorTxn,
    Id,
    MultiTxn,
    SetACLTxn,
    SetDataTxn,
    Txn,
    TxnDigest,
    TxnHeader,
)
from corral.store.layout import log_name, zxid_from_name
from corral.store.txnlog import (
    FILE_HEADER,
    CorruptLogError,
    LogFileReader,
    TxnLogWriter,
    decode_body,
    encode_entry,
    last_logged_zxid,
    log_files_from,
    read_log,
)
from corral.tree import txn as txn_records
from corral.tree.txn import decode_sub_txns

# The first entry of a log written by Apache ZooKeeper 3.8.0 (createSession of a kazoo
# client, with the 3.6+ TxnDigest), preceded by the file header.
ZK38_LOG_HEAD = bytes.fromhex(
    "5a4b4c4700000002 0000000000000000"
    "000000009fc108b1 00000030"
    "0100000747f60000 00000000 0000000000000001 000001a2170c111a fffffff6"
    "00002710 00000002 0000000051c6d660 42"
)


def write_log(log_dir: Path, txns: list[Txn2], prealloc: int = 4096) -> Path:
    writer = TxnLogWriter(log_dir, prealloc_bytes=prealloc, force_sync=True)
    for hdr, txn in txns:
        writer.write(hdr.zxid, encode_entry(hdr, jute.encode(txn)))
    path = writer.path
    writer.close()
    assert path is not None
    return path


def zxids(log_dir: Path, start: int = 0, *, repair: bool = False) -> list[int]:
    return [e.hdr.zxid for e in read_log(log_dir, start, repair=repair)]


def test_zookeeper_entry_golden_bytes(tmp_path: Path) -> None:
    # Read ZooKeeper's bytes...
    (tmp_path / "log.1").write_bytes(ZK38_LOG_HEAD + bytes(100))
    [entry] = read_log(tmp_path, 0)
    assert entry.hdr == TxnHeader(0x0100000747F60000, 0, 1, 0x1A2170C111A, OpCode.CREATE_SESSION)
    assert entry.txn == CreateSessionTxn(10_000)
    assert entry.digest == TxnDigest(2, 0x51C6D660)
    # ...and write the same bytes back.
    body = jute.encode(entry.txn) + jute.encode(entry.digest)
    assert FILE_HEADER + encode_entry(entry.hdr, body) == ZK38_LOG_HEAD


def test_every_txn_type_round_trips(tmp_path: Path) -> None:
    s = TxnStream()
    txns = [
        s.create_session(),
        s.create("/a", b"x"),
        s.create("/a/e", None, ephemeral=True),
        s.set_data("/a", b"yy", 1),
        s.set_acl("/a", (), 1),
        s.multi((OpCode.CREATE, s.create("/b")[1]), (OpCode.DELETE, s.delete("/b")[1])),
        s.error(),
        s.delete("/a/e"),
        s.close_session(("/a/e",)),
    ]
    write_log(tmp_path, txns)
    got = [(e.hdr, e.txn, e.digest) for e in read_log(tmp_path, 0)]
    assert got == [(h, t, None) for h, t in txns]


def test_every_logged_type_and_multi_sub_type_round_trips(tmp_path: Path) -> None:
    """Every txn type the log holds (tree.txn's table: each opcode ZooKeeper logs), every
    sub-txn type of a multi, with and without a trailing TxnDigest, byte for byte."""
    acl = (ACL(31, Id("world", "anyone")), ACL(1, Id("digest", "u:x")))
    records: dict[int, object] = {
        OpCode.CREATE: CreateTxn("/a", b"x", acl, True, 3),
        OpCode.CREATE2: CreateTxn("/b", None, acl, False, -1),
        OpCode.CREATE_CONTAINER: CreateContainerTxn("/c", b"", acl, 7),
        OpCode.CREATE_TTL: CreateTTLTxn("/t", b"t", acl, 2, (1 << 40) - 1),
        OpCode.DELETE: DeleteTxn("/a"),
        OpCode.DELETE_CONTAINER: DeleteTxn("/c"),
        OpCode.SET_DATA: SetDataTxn("/b", b"\x00\xff", 4),
        OpCode.RECONFIG: SetDataTxn("/zookeeper/config", b"server.1=h:1:2", 1),
        OpCode.SET_ACL: SetACLTxn("/b", acl, 2),
        OpCode.CHECK: CheckVersionTxn("/b", 5),
        OpCode.CREATE_SESSION: CreateSessionTxn(30_000),
        OpCode.CLOSE_SESSION: CloseSessionTxn(("/e1", "/e2")),
        OpCode.ERROR: ErrorTxn(-110),
    }
    assert set(records) | {OpCode.MULTI} == set(txn_records._CLASSES)
    subs = tuple(
        Txn(t, jute.encode(r))
        for t, r in records.items()
        if t in txn_records._SUB_TYPES  # every type a multi may hold
    )
    assert len(subs) == len(txn_records._SUB_TYPES)
    records[OpCode.MULTI] = MultiTxn(subs)
    entries = []
    for i, (type_, record) in enumerate(records.items()):
        digest = TxnDigest(2, 0x1234 + i) if i % 2 else None
        hdr = TxnHeader(0x100 + i, i, i + 1, 1_700_000_000_000 + i, type_)
        body = jute.encode(record) + (jute.encode(digest) if digest else b"")
        entries.append((hdr, record, digest, encode_entry(hdr, body)))
    writer = TxnLogWriter(tmp_path, prealloc_bytes=0, force_sync=False)
    for hdr, _record, _digest, entry in entries:
        writer.write(hdr.zxid, entry)
    writer.close()
    got = list(read_log(tmp_path, 0))
    assert [(e.hdr, e.txn, e.digest) for e in got] == [(h, r, d) for h, r, d, _ in entries]
    # The multi's sub-txns decode back to the records they were made from.
    multi = got[-1].txn
    assert isinstance(multi, MultiTxn)
    assert decode_sub_txns(multi) == [(sub.type, records[sub.type]) for sub in subs]
    # Byte for byte: the file is the header and the entries, nothing else.
    assert (tmp_path / "log.1").read_bytes() == FILE_HEADER + b"".join(x for *_, x in entries)


def test_old_formats_read_as_zookeeper_reads_them(tmp_path: Path) -> None:
    """A create logged before parentCVersion existed (CreateTxnV0) and a closeSession without
    a body (before CloseSessionTxn) are still read."""
    acl = (ACL(31, Id("world", "anyone")),)
    v0 = TxnHeader(1, 1, 1, 5, OpCode.CREATE)
    close = TxnHeader(1, 2, 2, 6, OpCode.CLOSE_SESSION)
    writer = TxnLogWriter(tmp_path, prealloc_bytes=0, force_sync=False)
    writer.write(1, encode_entry(v0, jute.encode(CreateTxnV0("/old", b"v0", acl, False))))
    writer.write(2, encode_entry(close, b""))
    writer.close()
    got = [(e.hdr, e.txn) for e in read_log(tmp_path, 0)]
    assert got == [(v0, CreateTxn("/old", b"v0", acl, False, -1)), (close, None)]


def test_file_names_parse_like_zookeeper() -> None:
    assert log_name(0x1A) == "log.1a"
    assert zxid_from_name("log.1a", "log") == 0x1A
    assert zxid_from_name("snapshot.100000002.gz", "snapshot") == 0x100000002
    for bad in ("log", "log.", "log.0x1", "log.-1", "log.1_0", "log. 1", "snapshot.1", "log.zz"):
        assert zxid_from_name(bad, "log") is None, bad


def test_preallocation_in_chunks_of_zeros(tmp_path: Path) -> None:
    s = TxnStream()
    path = write_log(tmp_path, [s.create(f"/n{i}", bytes(200)) for i in range(100)], 8192)
    size = path.stat().st_size
    # As ZooKeeper's FilePadding: chunks counted from the end of the 16-byte header (a fresh
    # ZooKeeper log is 64 MiB + 16 bytes).
    assert (size - len(FILE_HEADER)) % 8192 == 0
    reader = LogFileReader(path)
    assert len(list(reader)) == 100 and reader.problem is None
    assert size - reader.valid_end >= 4096 - 300  # padded ahead of the writes
    assert not any(path.read_bytes()[reader.valid_end :])
    # Without preallocation the file ends right after the last entry.
    other = tmp_path / "noprealloc"
    other.mkdir()
    path = write_log(other, [TxnStream().create("/x")], prealloc=0)
    reader = LogFileReader(path)
    assert len(list(reader)) == 1
    assert path.stat().st_size == reader.valid_end


def test_preallocation_leaves_a_hole_as_zookeepers_does(tmp_path: Path) -> None:
    # ZooKeeper writes one byte at the padded end; the rest costs no disk until written. A
    # fallocated 64 MiB per log file filled CI's disk across the suite's servers.
    path = write_log(tmp_path, [TxnStream().create("/x")], prealloc=64 * 1024 * 1024)
    stat = path.stat()
    assert stat.st_size == len(FILE_HEADER) + 64 * 1024 * 1024
    if stat.st_blocks * 512 >= stat.st_size:
        pytest.skip(f"{tmp_path} is on a filesystem without holes")
    assert stat.st_blocks * 512 < 1024 * 1024


def test_rolling_and_reading_from_a_zxid_across_files(tmp_path: Path) -> None:
    s = TxnStream()
    txns = list(workload(s, 30))
    writer = TxnLogWriter(tmp_path, prealloc_bytes=4096, force_sync=False)
    for i, (hdr, txn) in enumerate(txns):
        if i in (10, 20):
            writer.roll()
        writer.write(hdr.zxid, encode_entry(hdr, jute.encode(txn)))
    writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.1", "log.15", "log.b"]
    assert zxids(tmp_path) == list(range(1, 31))
    assert zxids(tmp_path, 15) == list(range(15, 31))
    assert [p.name for _z, p in log_files_from(tmp_path, 15)] == ["log.b", "log.15"]
    assert zxids(tmp_path, 31) == []
    assert last_logged_zxid(tmp_path) == 30


def _entries_layout(path: Path) -> list[int]:
    """Offsets of the entries of a log file, and its valid end."""
    reader = LogFileReader(path)
    offsets = [e.offset for e in reader]
    return [*offsets, reader.valid_end]


@pytest.mark.parametrize("padded", [False, True], ids=["cut", "cut+zeros"])
def test_torn_last_entry_at_every_byte_offset(
    tmp_path: Path, padded: bool, caplog: pytest.LogCaptureFixture
) -> None:
    s = TxnStream()
    txns = [s.create_session(), s.create("/a", b"data"), s.set_data("/a", b"more data", 1)]
    good = tmp_path / "good"
    good.mkdir()
    path = write_log(good, txns, prealloc=0)
    *_, last_start, end = _entries_layout(path)
    whole = path.read_bytes()
    for cut in range(last_start + 1, end):  # every partial length of the last entry
        d = tmp_path / f"cut{cut}"
        d.mkdir()
        torn = whole[:cut] + (bytes(4096) if padded else b"")
        (d / path.name).write_bytes(torn)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="corral.store.txnlog"):
            assert zxids(d, repair=True) == [1, 2], cut
        # (The first 4 bytes of an entry are the zero high half of its checksum: a tail cut
        # there is indistinguishable from padding, and nothing is lost.)
        if any(whole[last_start:cut]):
            assert caplog.records, f"no warning for a tail torn at {cut}"
            # A torn write, not damage: a warning naming it, no "bytes follow it" error.
            messages = [r.getMessage() for r in caplog.records]
            assert all(r.levelno == logging.WARNING for r in caplog.records), messages
            assert any("torn tail" in m and "truncating" in m for m in messages), messages
            # Repaired: the file now ends after entry 2.
            assert (d / path.name).stat().st_size == last_start
        # A restart appends to a new file.
        more = write_log(d, [s.create(f"/after{cut}")])
        assert more.name == log_name(s.zxid)
        assert zxids(d) == [1, 2, s.zxid]


def test_bad_checksum_in_last_entry_is_a_tail(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = TxnStream()
    path = write_log(tmp_path, [s.create_session(), s.create("/a"), s.create("/b")])
    offsets = _entries_layout(path)
    raw = bytearray(path.read_bytes())
    raw[offsets[2] + 30] ^= 0x01  # a bit flip inside the last entry's txn bytes
    path.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING):
        assert zxids(tmp_path, repair=True) == [1, 2]
    assert any("checksum" in r.getMessage() for r in caplog.records)
    assert zxids(tmp_path) == [1, 2]


def test_zero_header_with_data_after_it_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A batch whose first page never reached the disk but a later one did.
    s = TxnStream()
    path = write_log(tmp_path, [s.create_session(), s.create("/a"), s.create("/b")])
    offsets = _entries_layout(path)
    raw = bytearray(path.read_bytes())
    raw[offsets[1] : offsets[2]] = bytes(offsets[2] - offsets[1])
    path.write_bytes(bytes(raw))
    with caplog.at_level(logging.ERROR):
        assert zxids(tmp_path, repair=True) == [1]
    assert any("non-zero bytes" in r.getMessage() for r in caplog.records)


def test_damage_before_later_files_is_refused(tmp_path: Path) -> None:
    s = TxnStream()
    first = write_log(tmp_path, [s.create_session(), s.create("/a"), s.create("/b")])
    write_log(tmp_path, [s.create("/c")])
    offsets = _entries_layout(first)
    raw = bytearray(first.read_bytes())
    raw[offsets[1] + 20] ^= 0xFF  # entry 2 damaged: 2 and 3 would be lost
    first.write_bytes(bytes(raw))
    with pytest.raises(CorruptLogError, match="txns in between are lost"):
        zxids(tmp_path, repair=True)
    assert first.read_bytes() == bytes(raw)  # nothing was truncated


def test_torn_tail_before_a_file_that_continues_is_fine(tmp_path: Path) -> None:
    # The server crashed with entry 3 half-written, restarted and logged 3 again in log.3.
    s = TxnStream()
    first = write_log(tmp_path, [s.create_session(), s.create("/a"), s.create("/b")])
    offsets = _entries_layout(first)
    with open(first, "r+b") as f:
        f.truncate(offsets[2] + 7)
    s.zxid = 2
    write_log(tmp_path, [s.create("/b2"), s.create("/c")])
    assert zxids(tmp_path, repair=True) == [1, 2, 3, 4]
    assert first.stat().st_size == offsets[2]


def test_zxids_must_increase(tmp_path: Path) -> None:
    s = TxnStream()
    txns = [s.create_session(), s.create("/a")]
    s.zxid = 1
    txns.append(s.create("/b"))
    write_log(tmp_path, txns)
    with pytest.raises(CorruptLogError, match="does not follow"):
        zxids(tmp_path)


def test_checksummed_but_undecodable_entry_is_not_a_tail(tmp_path: Path) -> None:
    body = jute.encode(TxnHeader(1, 1, 1, 1, 99)) + b"\0\0\0\0"  # txn type 99 does not exist
    entry = (zlib.adler32(body)).to_bytes(8, "big") + len(body).to_bytes(4, "big") + body + b"B"
    (tmp_path / "log.1").write_bytes(FILE_HEADER + entry)
    with pytest.raises(CorruptLogError, match="undecodable"):
        zxids(tmp_path, repair=True)
    with pytest.raises(jute.DecodeError):
        decode_body(body)


@pytest.mark.parametrize(
    "tail",
    [FILE_HEADER[:9], b"", bytes(4096), FILE_HEADER, FILE_HEADER + bytes(4096)],
    ids=["torn-header", "empty", "zeros", "header-only", "header+padding"],
)
def test_a_last_file_without_entries_is_removed_by_repair(tmp_path: Path, tail: bytes) -> None:
    s = TxnStream()
    write_log(tmp_path, [s.create_session()])
    (tmp_path / "log.2").write_bytes(tail)
    assert zxids(tmp_path, repair=True) == [1]
    assert sorted(os.listdir(tmp_path)) == ["log.1"]
    # A restart then logs zxid 2 into a new log.2.
    assert write_log(tmp_path, [s.create("/a")]).name == "log.2"
    assert zxids(tmp_path) == [1, 2]


def test_an_empty_file_before_later_files_means_lost_txns(tmp_path: Path) -> None:
    s = TxnStream()
    write_log(tmp_path, [s.create_session()])
    (tmp_path / "log.2").write_bytes(FILE_HEADER[:9])
    s.zxid = 2
    write_log(tmp_path, [s.create("/a")])
    with pytest.raises(CorruptLogError):
        zxids(tmp_path, repair=True)


def test_wrong_magic_is_refused(tmp_path: Path) -> None:
    (tmp_path / "log.1").write_bytes(b"ZKSN" + FILE_HEADER[4:] + bytes(64))
    with pytest.raises(CorruptLogError, match="bad log header"):
        zxids(tmp_path)
