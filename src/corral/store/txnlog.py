"""ZooKeeper's transaction log format (FileTxnLog), byte for byte.

A log file is `FileHeader{magic "ZKLG", version 2, dbid 0}` followed by entries:

    long   Adler32 of the entry bytes (as an unsigned 32-bit value in a long)
    int    length of the entry bytes
    bytes  TxnHeader + txn record (+ TxnDigest in ZooKeeper 3.6+ files)
    byte   0x42 ('B', end of record)

Files are preallocated in `prealloc_bytes` chunks (sparse, reading as zeros), so a zero
length means the end of the log. A file is named `log.<zxid of its first entry, hex>`; a new
file starts after each snapshot (rolling) and after every restart, never appending to an old
one.

After a crash the end of the newest file may hold a partial entry, a bad checksum or garbage:
that torn tail was never acknowledged (acks follow fsync), so the reader stops there, warns,
and (when asked to repair) truncates the file to its last whole entry. A damaged entry with
later files continuing from it is not a tail and is refused (CorruptLogError), because skipping
it could lose acknowledged txns.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from corral.proto import jute
from corral.proto.records import FileHeader, TxnDigest, TxnHeader
from corral.store.layout import (
    LOG_PREFIX,
    StoreError,
    fsync_path,
    list_files,
    log_name,
    remove_file,
)
from corral.tree.txn import TxnRecord, TxnTypeError, decode_txn

log = logging.getLogger(__name__)

LOG_MAGIC = int.from_bytes(b"ZKLG", "big")
LOG_VERSION = 2
LOG_DBID = 0
FILE_HEADER = jute.encode(FileHeader(LOG_MAGIC, LOG_VERSION, LOG_DBID))
PREALLOC_BYTES_DEFAULT = 64 * 1024 * 1024
END_OF_RECORD = 0x42
_ENTRY_HEAD = struct.Struct(">qi")
_DIGEST_BYTES = len(jute.encode(TxnDigest(0, 0)))
# ZooKeeper pads again when a write comes within this many bytes of the preallocated end.
_PAD_SLACK_BYTES = 4096
_READ_CHUNK_BYTES = 1 << 20


class CorruptLogError(StoreError):
    """Log damage that is not a torn tail: recovering past it could lose acknowledged txns."""


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One txn read back from a log file."""

    hdr: TxnHeader
    txn: TxnRecord | None  # None: a closeSession ZooKeeper < 3.6 logged without a body
    digest: TxnDigest | None
    path: Path
    offset: int


def encode_entry(hdr: TxnHeader, txn_bytes: bytes) -> bytes:
    """The framed log entry for a txn whose record is already jute-encoded."""
    body = jute.encode(hdr) + txn_bytes
    return _ENTRY_HEAD.pack(zlib.adler32(body), len(body)) + body + b"B"


def decode_body(body: bytes) -> tuple[TxnHeader, TxnRecord | None, TxnDigest | None]:
    """Split checksummed entry bytes into header, txn record and optional digest.

    The record follows ZooKeeper's reader for old formats (tree.txn.decode_txn: a V0 create, a
    bodiless closeSession as None). Raises jute.DecodeError when the bytes are not a txn we
    understand.
    """
    hdr, pos = jute.decode(TxnHeader, body)
    try:
        txn, pos = decode_txn(hdr.type, body, pos)
    except TxnTypeError as exc:
        raise jute.DecodeError(f"{exc} at zxid {hdr.zxid:#x}") from exc
    rest = len(body) - pos
    if rest == 0:
        return hdr, txn, None
    if rest == _DIGEST_BYTES:
        return hdr, txn, jute.decode_exact(TxnDigest, body[pos:])
    raise jute.DecodeError(f"{rest} unexpected bytes after txn at zxid {hdr.zxid:#x}")


class LogFileReader:
    """Iterates the whole entries of one log file; afterwards says how and where it ended.

    `valid_end` is the offset just past the last whole entry (or the header), `problem` is None
    for a clean end (end of file or zero padding) and a description of the torn or corrupt tail
    otherwise, and `garbage_after` tells whether non-zero bytes follow the problem.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.valid_end = 0
        self.problem: str | None = None
        self.garbage_after = False
        self.count = 0
        # Where the damaged entry would end; bytes after it tell whether more was written.
        self._bad_end = 0

    def __iter__(self) -> Iterator[LogEntry]:
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(len(FILE_HEADER))
            if len(head) < len(FILE_HEADER) or not any(head):
                # Created, but the header never reached the disk (its size may have).
                self.problem = f"file header torn ({len(head)} bytes)"
                self.garbage_after = any(head) or _has_nonzero(f)
                return
            header = jute.decode_exact(FileHeader, head)
            if header.magic != LOG_MAGIC or header.version != LOG_VERSION:
                # Not a torn write: a whole header that is wrong is somebody else's file.
                raise CorruptLogError(
                    f"{self.path}: bad log header magic={header.magic:#x} version={header.version}"
                )
            self.valid_end = pos = len(FILE_HEADER)
            while True:
                entry, pos = self._next(f, pos, size)
                if entry is None:
                    break
                self.valid_end = pos
                self.count += 1
                yield entry
            # Look past the end: zeros are preallocation; anything else is a torn batch whose
            # first entry did not reach the disk, or damage. Either way the log ends here.
            f.seek(max(self.valid_end, self._bad_end))
            self.garbage_after = _has_nonzero(f)
            if self.garbage_after and self.problem is None:
                self.problem = f"zero entry header at offset {self.valid_end}"

    def _next(self, f: BinaryIO, pos: int, size: int) -> tuple[LogEntry | None, int]:
        head = f.read(_ENTRY_HEAD.size)
        if not any(head):
            return None, pos  # zero padding or the end of the file
        if len(head) < _ENTRY_HEAD.size:
            self.problem = f"partial entry header ({len(head)} bytes) at offset {pos}"
            self._bad_end = size  # it reaches the end of the file: nothing follows it
            return None, pos
        crc, length = _ENTRY_HEAD.unpack(head)
        self._bad_end = pos + _ENTRY_HEAD.size
        if length <= 0 or pos + _ENTRY_HEAD.size + length + 1 > size:
            self.problem = f"bad or torn entry length {length} at offset {pos}"
            if length > 0:
                # It runs past the end of the file: the rest of the file is this torn entry,
                # so nothing can follow it (not "more was written after a lost page").
                self._bad_end = size
            return None, pos
        self._bad_end += length + 1
        rest = f.read(length + 1)
        body = rest[:length]
        if len(rest) != length + 1 or rest[length] != END_OF_RECORD:
            self.problem = f"entry at offset {pos} has no end-of-record mark"
            return None, pos
        if zlib.adler32(body) != crc:
            self.problem = f"checksum mismatch in entry at offset {pos}"
            return None, pos
        try:
            hdr, txn, digest = decode_body(body)
        except jute.DecodeError as exc:
            # The checksum holds, so these are the bytes that were written: not a torn write.
            raise CorruptLogError(f"{self.path}: undecodable entry at offset {pos}: {exc}") from exc
        return LogEntry(hdr, txn, digest, self.path, pos), pos + _ENTRY_HEAD.size + length + 1


def _has_nonzero(f: BinaryIO) -> bool:
    while chunk := f.read(_READ_CHUNK_BYTES):
        if chunk.count(0) != len(chunk):
            return True
    return False


def log_files_from(log_dir: Path, zxid: int) -> list[tuple[int, Path]]:
    """The files that can hold txns >= zxid: the newest one starting at or before it, and
    all later ones."""
    files = list_files(log_dir, LOG_PREFIX)
    first = 0
    for i, (start, _path) in enumerate(files):
        if start <= zxid:
            first = i
    return files[first:]


def read_log(log_dir: Path, from_zxid: int, *, repair: bool = False) -> Iterator[LogEntry]:
    """Every logged txn with zxid >= from_zxid, in order, across files.

    A torn tail is skipped with a warning (and truncated away when `repair`); consume the
    iterator to the end for the repair to happen. Raises CorruptLogError for damage that is not
    a tail, and for zxids that do not increase.
    """
    files = log_files_from(log_dir, from_zxid)
    last_zxid: int | None = None
    for i, (_start, path) in enumerate(files):
        reader = LogFileReader(path)
        for entry in reader:
            if last_zxid is not None and entry.hdr.zxid <= last_zxid:
                raise CorruptLogError(
                    f"{path}: zxid {entry.hdr.zxid:#x} at offset {entry.offset} "
                    f"does not follow {last_zxid:#x}"
                )
            last_zxid = entry.hdr.zxid
            if entry.hdr.zxid >= from_zxid:
                yield entry
        if reader.problem is None:
            if repair and reader.count == 0 and i + 1 == len(files):
                # A newest file that holds nothing (the server died before its first entry
                # reached the disk): remove it, or the next txn could not take its name.
                truncate_file(path, 0, empty=True)
            continue
        if i + 1 < len(files):
            _check_tail_before(path, reader, last_zxid, files[i + 1][0])
        if reader.garbage_after:
            log.error(
                "%s: %s; non-zero bytes follow it and are discarded (unacknowledged writes, "
                "or damage)",
                path,
                reader.problem,
            )
        else:
            cut = ", truncating the file there" if repair else ""
            log.warning("%s: torn tail: %s; log ends at offset %d%s", path, reader.problem,
                        reader.valid_end, cut)  # fmt: skip
        if repair:
            truncate_file(path, reader.valid_end, empty=reader.count == 0)


def _check_tail_before(path: Path, reader: LogFileReader, last_zxid: int | None, nxt: int) -> None:
    """A damaged end of a file that is not the newest is harmless only if the next file
    continues right after the last whole entry (the server restarted there)."""
    if last_zxid is None or nxt == last_zxid + 1 or nxt >> 32 > last_zxid >> 32:
        return
    raise CorruptLogError(
        f"{path}: {reader.problem}, but the next log starts at {nxt:#x}, not {last_zxid + 1:#x}: "
        "txns in between are lost; refusing to recover past them"
    )


def truncate_file(path: Path, length: int, *, empty: bool) -> None:
    """Cut a torn tail off a log file durably (no writer has it open: we never append to old
    files). A file left with no entries is removed so that its name is free again."""
    if empty:
        log.warning("%s: no whole entries; removing it", path)
        remove_file(path)
    else:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, length)
            os.fsync(fd)
        finally:
            os.close(fd)
    fsync_path(path.parent)


def last_logged_zxid(log_dir: Path) -> int | None:
    """The zxid of the newest whole entry in the newest non-empty log file (no repair)."""
    files = list_files(log_dir, LOG_PREFIX)
    for _start, path in reversed(files):
        last: int | None = None
        for entry in LogFileReader(path):
            last = entry.hdr.zxid
        if last is not None:
            return last
    return None


class TxnLogWriter:
    """Appends framed entries to the current log file; used by one thread only.

    `write` never fsyncs; `sync` does (fdatasync, unless force_sync is off). `roll` closes the
    current file so the next write starts `log.<its first zxid>`.
    """

    def __init__(self, log_dir: Path, *, prealloc_bytes: int, force_sync: bool) -> None:
        self.log_dir = log_dir
        self.prealloc_bytes = prealloc_bytes
        self.force_sync = force_sync
        self.path: Path | None = None
        self._fd: int | None = None
        self._pos = 0
        self._size = 0
        self._dirty = False
        # Bytes written to files already rolled away, for metrics.
        self.rolled_bytes = 0

    @property
    def position(self) -> int:
        return self._pos

    def write(self, first_zxid: int, data: bytes) -> None:
        """Append entries (already framed); `first_zxid` names a new file if one is started."""
        if self._fd is None:
            self._open(first_zxid)
        assert self._fd is not None
        self._pad(len(data))
        view = memoryview(data)
        while view:
            n = os.pwrite(self._fd, view, self._pos)
            self._pos += n
            view = view[n:]
        self._dirty = True

    def sync(self) -> float:
        """Make everything written durable; returns the seconds the fsync took."""
        if self._fd is None or not self._dirty:
            return 0.0
        started = time.monotonic()
        if self.force_sync:
            os.fdatasync(self._fd)
        self._dirty = False
        return time.monotonic() - started

    def roll(self) -> None:
        """Finish the current file (synced) so that the next write starts a new one."""
        if self._fd is None:
            return
        self.sync()
        os.close(self._fd)
        self.rolled_bytes += self._pos
        self._fd = None
        self.path = None

    def close(self) -> None:
        self.roll()

    def abandon(self) -> None:
        """Close without syncing, after a failed write or fsync. Never retry such an fsync:
        the kernel may already have dropped the pages it could not write."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self.path = None

    def _open(self, zxid: int) -> None:
        path = self.log_dir / log_name(zxid)
        log.info("creating new log file %s", path.name)
        # O_EXCL: recovery removed any entry-less file of this name, so an existing one would
        # hold txns we must not overwrite.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.pwrite(fd, FILE_HEADER, 0)
            fsync_path(self.log_dir)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self.path = path
        self._pos = self._size = len(FILE_HEADER)
        self._dirty = True

    def _pad(self, incoming: int) -> None:
        """Grow the file with zeros in prealloc chunks as ZooKeeper's FilePadding does: when
        a write starts within 4 KiB of the preallocated end (checked again at the end of a
        batch longer than a chunk)."""
        if self.prealloc_bytes <= 0:
            return
        size = _padded_size(self._pos, self._size, self.prealloc_bytes)
        size = _padded_size(self._pos + incoming, size, self.prealloc_bytes)
        if size == self._size:
            return
        assert self._fd is not None
        # One zero at the new end, as ZooKeeper writes it: the gap reads as zeros and stays a
        # hole until written, so a 64 MiB log holding a few txns takes kilobytes of disk.
        # posix_fallocate was no faster per fdatasync (ext4, 120-byte appends: 91-108 us
        # either way) and made every log file, even of an idle server, cost 64 MiB.
        os.pwrite(self._fd, b"\0", size - 1)
        self._size = size


def _padded_size(position: int, size: int, chunk: int) -> int:
    """ZooKeeper's FilePadding.calculateFileSizeWithPadding."""
    if position + _PAD_SLACK_BYTES >= size:
        if position > size:
            size = position + chunk
            size -= size % chunk
        else:
            size += chunk
    return size


def truncate_log(log_dir: Path, zxid: int, *, fsync: bool = True) -> int | None:
    """Remove every logged txn after `zxid`, durably (FileTxnLog.truncate, done exactly).

    Files starting after `zxid` are deleted, newest first (a crash midway leaves a shorter but
    gapless log), then the file holding `zxid` is cut right after the last entry <= `zxid`
    (ftruncate + fsync). ZooKeeper cuts after the first entry >= zxid, keeping one txn too many
    when `zxid` itself is not logged; we cut exactly. No writer may have these files open
    (Database closes its writer first: ZOOKEEPER-1489). Returns the newest zxid left, or None.
    """
    files = list_files(log_dir, LOG_PREFIX)
    for start, path in reversed(files):
        if start <= zxid:
            break
        log.warning("truncating the log to %#x: removing %s", zxid, path.name)
        remove_file(path)
        if fsync:
            fsync_path(log_dir)
    kept = [(start, path) for start, path in files if start <= zxid]
    if not kept:
        return None
    path = kept[-1][1]
    reader = LogFileReader(path)
    last: int | None = None
    end = 0
    beyond = False
    for entry in reader:
        if entry.hdr.zxid > zxid:
            beyond = True
            break
        last, end = entry.hdr.zxid, reader.valid_end
    if last is None:
        # Nothing at or below zxid in the newest file (a torn or mislabelled file): drop it.
        log.warning("truncating the log to %#x: %s holds nothing before it", zxid, path.name)
        remove_file(path)
        if fsync:
            fsync_path(log_dir)
        return truncate_log(log_dir, zxid, fsync=fsync) if len(kept) > 1 else None
    if beyond or reader.problem is not None:
        log.warning("truncating the log to %#x: cutting %s at offset %d", zxid, path.name, end)
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, end)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
    return last


def log_storage_bytes(log_dir: Path, zxid: int) -> int:
    """Bytes of the log files that can hold txns >= zxid (FileTxnIterator.getStorageSize:
    file lengths, preallocation included)."""
    total = 0
    for _start, path in log_files_from(log_dir, zxid):
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size
    return total


def txns_after(log_dir: Path, zxid: int, *, upto: int | None = None) -> Iterator[LogEntry]:
    """Logged txns with zxid in (zxid, upto], in order, read entry by entry (whole files are
    never loaded). Stops before `upto`'s successors, so the file a writer is appending to can
    be read up to what the caller knows is durable. Never repairs anything."""
    for entry in read_log(log_dir, zxid + 1):
        if upto is not None and entry.hdr.zxid > upto:
            return
        yield entry


def proposals_from_log(
    log_dir: Path, start_zxid: int, size_limit: int, *, upto: int | None = None
) -> Iterator[LogEntry] | None:
    """ZKDatabase.getProposalsFromTxnLog: the logged txns after `start_zxid` for a DIFF, or
    None when the log cannot serve it and the leader must send a SNAP.

    None when `size_limit` < 0 (snapshotSizeFactor < 0 disables this), when the log files to
    read total more than `size_limit` bytes (> 0; the caller passes snapshotSizeFactor times the
    newest snapshot's size), and when `start_zxid` itself is not in the log (then nothing proves
    the txns that follow are the ones right after it). The check is done here, eagerly; the
    returned iterator then reads lazily.
    """
    if size_limit < 0:
        return None
    if size_limit > 0:
        size = log_storage_bytes(log_dir, start_zxid)
        if size > size_limit:
            log.info("txn log size %d exceeds the limit %d for a DIFF", size, size_limit)
            return None
    entries = read_log(log_dir, start_zxid)
    first = next(entries, None)
    if first is None or first.hdr.zxid != start_zxid:
        log.warning("unable to find proposals from the txn log for zxid %#x", start_zxid)
        return None
    return _until(entries, upto)


def _until(entries: Iterator[LogEntry], upto: int | None) -> Iterator[LogEntry]:
    for entry in entries:
        if upto is not None and entry.hdr.zxid > upto:
            return
        yield entry


def last_txns(log_dir: Path, count: int, *, upto: int | None = None) -> list[LogEntry]:
    """The newest `count` logged txns (<= upto), oldest first: a leader's in-memory committed
    log after a restart (commitLogCount). Files are read newest first, one entry at a time,
    keeping at most `count` entries; no repair."""
    if count <= 0:
        return []
    found: list[LogEntry] = []
    files = list_files(log_dir, LOG_PREFIX)
    for _start, path in reversed(files):
        window: collections.deque[LogEntry] = collections.deque(maxlen=count - len(found))
        for entry in LogFileReader(path):
            if upto is not None and entry.hdr.zxid > upto:
                break
            window.append(entry)
        found[:0] = window
        if len(found) >= count:
            break
    return found
