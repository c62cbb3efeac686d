"""The acceptedEpoch and currentEpoch files, as ZooKeeper's QuorumPeer keeps them.

Both live in the snapshot directory (`dataDir/version-2/`). Each holds one Java `long` as
decimal text, without a newline (QuorumPeer.writeLongToFile). Writing is ZooKeeper's
AtomicFileWritingIdiom: the text goes to `<name>.tmp`, which is flushed, fsynced, closed and
renamed over `<name>`; we also fsync the directory afterwards so the rename itself is durable
before anything that depends on the epoch (ACKEPOCH, the NEWLEADER ACK) leaves the server.

Reading is QuorumPeer.readLongFromFile: the first line, parsed as Java's Long.parseLong does
(an optional sign and decimal digits, nothing else, within the long range); anything else
makes the data directory unusable (EpochFileError), as in ZooKeeper.

`load_epochs(snap_dir, last_zxid)` applies QuorumPeer.loadDataBase's rules after the database
was recovered (`last_zxid` is the tree's last processed zxid after replaying the whole log):

1. currentEpoch missing: use the epoch of `last_zxid` and write it (an upgrade from a
   version without epoch files). ZooKeeper 3.4 also left an `updatingEpoch` marker while it
   took the post-sync snapshot; if that marker exists and the logged epoch is newer than
   currentEpoch, the server died between the snapshot and the epoch write, so currentEpoch
   becomes the logged epoch and the marker is removed (3.4's rule; 3.8 no longer writes it,
   but a 3.4 data directory may still hold one).
2. currentEpoch older than the logged epoch: if `currentEpoch.tmp` exists the server died
   during the rename (ZOOKEEPER-2307/-4269), so its value becomes currentEpoch; otherwise the
   directory is inconsistent and we refuse to start.
3. acceptedEpoch missing: the logged epoch, written.
4. acceptedEpoch < currentEpoch: refuse to start.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from corral.store.layout import StoreError, fsync_path, remove_file

log = logging.getLogger(__name__)

CURRENT_EPOCH = "currentEpoch"
ACCEPTED_EPOCH = "acceptedEpoch"
# AtomicFileOutputStream.TMP_EXTENSION
TMP_SUFFIX = ".tmp"
# ZooKeeper 3.4's QuorumPeer.UPDATING_EPOCH_FILENAME.
UPDATING_EPOCH = "updatingEpoch"

_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_JAVA_LONG = re.compile(r"[+-]?[0-9]+")
# An epoch file is a few bytes; more than this is not one.
_EPOCH_FILE_BYTES_MAX = 4096


class EpochFileError(StoreError):
    """An epoch file that cannot be read as ZooKeeper reads it, or inconsistent epochs."""


@dataclass(frozen=True, slots=True)
class Epochs:
    """The two durable epochs of a quorum peer."""

    current: int
    accepted: int


def epoch_of(zxid: int) -> int:
    """The epoch half of a zxid (ZxidUtils.getEpochFromZxid)."""
    return zxid >> 32


def parse_java_long(line: str) -> int:
    """Long.parseLong for the texts ZooKeeper writes: raises ValueError where Java throws."""
    if not _JAVA_LONG.fullmatch(line):
        raise ValueError(f"not a long: {line!r}")
    value = int(line)
    if not _LONG_MIN <= value <= _LONG_MAX:
        raise ValueError(f"out of the long range: {line!r}")
    return value


def read_long_file(path: Path) -> int:
    """QuorumPeer.readLongFromFile. FileNotFoundError when the file is missing."""
    with open(path, "rb") as f:
        raw = f.read(_EPOCH_FILE_BYTES_MAX + 1)
    if len(raw) > _EPOCH_FILE_BYTES_MAX:
        raise EpochFileError(f"{path} is too large to be an epoch file")
    text = raw.decode("utf-8", "replace")
    # BufferedReader.readLine ends a line at \n, \r or \r\n; an empty file reads as null.
    line = re.split(r"\r\n|\r|\n", text, maxsplit=1)[0] if text else None
    try:
        if line is None:
            raise ValueError("empty")
        return parse_java_long(line)
    except ValueError as exc:
        raise EpochFileError(f"Found {line} in {path}") from exc


def write_long_file(path: Path, value: int, *, fsync: bool = True) -> None:
    """QuorumPeer.writeLongToFile: `<path>.tmp`, fsync, rename over `path`, fsync the dir."""
    if not _LONG_MIN <= value <= _LONG_MAX:
        raise ValueError(f"{value} is not a Java long")
    tmp = path.with_name(path.name + TMP_SUFFIX)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        data = str(value).encode("ascii")
        while data:
            data = data[os.write(fd, data) :]
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        remove_file(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    if fsync:
        fsync_path(path.parent)


def write_current_epoch(snap_dir: Path, epoch: int, *, fsync: bool = True) -> None:
    write_long_file(snap_dir / CURRENT_EPOCH, epoch, fsync=fsync)


def write_accepted_epoch(snap_dir: Path, epoch: int, *, fsync: bool = True) -> None:
    write_long_file(snap_dir / ACCEPTED_EPOCH, epoch, fsync=fsync)


def load_epochs(snap_dir: Path, last_zxid: int, *, fsync: bool = True) -> Epochs:
    """Read (and where ZooKeeper does, create or repair) both epoch files; see the module
    docstring for the rules. Raises EpochFileError where ZooKeeper refuses to start."""
    logged = epoch_of(last_zxid)
    current_path = snap_dir / CURRENT_EPOCH
    updating = snap_dir / UPDATING_EPOCH
    try:
        current = read_long_file(current_path)
        if logged > current and updating.exists():
            log.info(
                "%s found: the server stopped after a sync snapshot but before writing the "
                "current epoch; setting it to %d",
                UPDATING_EPOCH,
                logged,
            )
            write_current_epoch(snap_dir, logged, fsync=fsync)
            current = logged
            remove_file(updating)
            if fsync:
                fsync_path(snap_dir)
    except FileNotFoundError:
        log.info("%s not found; creating it with the logged epoch %d", CURRENT_EPOCH, logged)
        current = logged
        write_current_epoch(snap_dir, current, fsync=fsync)
    if logged > current:
        tmp = snap_dir / (CURRENT_EPOCH + TMP_SUFFIX)
        if not tmp.exists():
            raise EpochFileError(
                f"the current epoch, {current}, is older than the last zxid, {last_zxid:#x}"
            )
        current = read_long_file(tmp)
        log.info("%s found; setting the current epoch to %d", tmp, current)
        write_current_epoch(snap_dir, current, fsync=fsync)
    try:
        accepted = read_long_file(snap_dir / ACCEPTED_EPOCH)
    except FileNotFoundError:
        log.info("%s not found; creating it with the logged epoch %d", ACCEPTED_EPOCH, logged)
        accepted = logged
        write_accepted_epoch(snap_dir, accepted, fsync=fsync)
    if accepted < current:
        raise EpochFileError(
            f"the accepted epoch, {accepted}, is less than the current epoch, {current}"
        )
    return Epochs(current, accepted)
