"""File names and small file-system helpers shared by the log, snapshot and purge code.

ZooKeeper keeps its files in `<dir>/version-2/` and names them `log.<zxid hex>` and
`snapshot.<zxid hex>[.gz|.snappy]`, parsing the zxid as the second dot-separated part of the
name. We parse names exactly the same way so that both servers agree on which files exist.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

VERSION_DIR = "version-2"
LOG_PREFIX = "log"
SNAPSHOT_PREFIX = "snapshot"
# Our in-progress snapshots. The name must not start with "snapshot." or "log.": ZooKeeper
# would parse "snapshot.5.tmp" as a candidate snapshot with zxid 5.
SNAPSHOT_TMP_PREFIX = ".corral-tmp-snapshot."

_HEX = re.compile(r"[0-9a-fA-F]+")


class StoreError(Exception):
    """The data directory cannot be used safely; the server must not start or go on."""


def version_dir(base: Path) -> Path:
    """`base/version-2`, created (with its parents) if missing."""
    path = base / VERSION_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path


def zxid_from_name(name: str, prefix: str) -> int | None:
    """The zxid in `prefix.<hex>[.anything]`, or None when the name is not one of ours."""
    parts = name.split(".")
    if len(parts) < 2 or parts[0] != prefix or not parts[1]:
        return None
    # Only plain hex digits: Python's int() would also take "0x", "_" and spaces, Java's not.
    if not _HEX.fullmatch(parts[1]):
        return None
    zxid = int(parts[1], 16)
    return zxid if zxid < 1 << 63 else None


def log_name(zxid: int) -> str:
    return f"{LOG_PREFIX}.{zxid:x}"


def snapshot_name(zxid: int, compression: str = "") -> str:
    """`snapshot.<zxid hex>`, with ZooKeeper's extension for a compressed one (".gz")."""
    return f"{SNAPSHOT_PREFIX}.{zxid:x}" + (f".{compression}" if compression else "")


def list_files(directory: Path, prefix: str) -> list[tuple[int, Path]]:
    """(zxid, path) of every `prefix.<hex>` file in `directory`, oldest first."""
    found: list[tuple[int, Path]] = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return found
    for name in names:
        zxid = zxid_from_name(name, prefix)
        if zxid is not None and (directory / name).is_file():
            found.append((zxid, directory / name))
    found.sort(key=lambda item: (item[0], item[1].name))
    return found


def fsync_path(path: Path) -> None:
    """fsync by name: a directory makes its entries (a created, renamed or deleted file)
    durable; a file someone else wrote is cheap when its pages are already on disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_file(path: Path) -> None:
    """Delete a file if it is there (purge and repair may race with nothing, but be tolerant)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
