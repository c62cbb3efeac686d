"""Retention: delete old snapshots and the logs no kept snapshot needs (ZooKeeper's PurgeTxnLog).

Kept: the newest `retain` snapshots that are actually valid (ZOOKEEPER-3231: counting invalid
ones could delete the only good snapshot), every log file that can hold txns after the oldest
kept snapshot (the newest log starting at or before it, and all later logs), and anything newer.
"""

from __future__ import annotations

import logging
from pathlib import Path

from corral.store.layout import LOG_PREFIX, SNAPSHOT_PREFIX, fsync_path, list_files, remove_file
from corral.store.snapshot import newest_valid_snapshots
from corral.store.txnlog import log_files_from

log = logging.getLogger(__name__)

# ZooKeeper refuses to keep fewer (autopurge.snapRetainCount, zkCleanup.sh -n).
RETAIN_MIN = 3


def purge(snap_dir: Path, log_dir: Path, retain: int) -> list[Path]:
    """Delete what ZooKeeper's purge deletes; returns the deleted paths."""
    if retain < RETAIN_MIN:
        raise ValueError(f"snapRetainCount must be at least {RETAIN_MIN}, not {retain}")
    keep = newest_valid_snapshots(snap_dir, retain)
    if not keep:
        return []
    oldest_kept = keep[-1][0]
    needed = {path for _zxid, path in log_files_from(log_dir, oldest_kept)}
    victims = [
        path
        for zxid, path in list_files(log_dir, LOG_PREFIX)
        if zxid < oldest_kept and path not in needed
    ]
    victims += [path for zxid, path in list_files(snap_dir, SNAPSHOT_PREFIX) if zxid < oldest_kept]
    for path in victims:
        log.info("purge: removing %s", path)
        remove_file(path)
    if victims:
        fsync_path(log_dir)
        if snap_dir != log_dir:
            fsync_path(snap_dir)
    return victims
