"""Autopurge through the server's zoo.cfg keys (autopurge.snapRetainCount, autopurge.purgeInterval).

A `corral server` process with a small snapCount writes enough to leave many snapshots and
logs. Restarted with `autopurge.snapRetainCount=3` and ZooKeeper's `autopurge.purgeInterval=1`
(hours), it purges once at start (as ZooKeeper's DatadirCleanupManager does): exactly the 3
newest snapshots remain, plus the logs they need (the newest log starting at or before the
oldest kept snapshot, and every later one), and the tree is whole. Restarted with a short
interval (Corral also takes a unit, `2s`), more writes leave more snapshots and the periodic
purge brings them back to 3 while the server serves. Waits poll with a bounded deadline.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from support import kazoo_client
from support.procs import ServerProcess, ServerSettings

WAIT_S = 60.0
BASE = ServerSettings(cfg=(("snapCount", "20"),))


def files(server: ServerProcess, prefix: str) -> list[int]:
    names = (server.data_dir / "version-2").glob(prefix + ".*")
    return sorted(int(p.name.split(".")[1], 16) for p in names)


def write(server: ServerProcess, start: int, count: int) -> None:
    with kazoo_client.session(server.address, start_timeout=30) as zk:
        zk.ensure_path("/purge")
        for i in range(start, start + count):
            zk.create(f"/purge/n{i:04d}", b"%d" % i)


def children(server: ServerProcess) -> list[str]:
    with kazoo_client.session(server.address, start_timeout=30) as zk:
        return sorted(zk.get_children("/purge"))


def wait_snapshots(server: ServerProcess, count: int) -> list[int]:
    deadline = time.monotonic() + WAIT_S
    while (snaps := files(server, "snapshot")) and len(snaps) != count:
        assert time.monotonic() < deadline, f"snapshots {snaps}: never {count}"
        time.sleep(0.1)  # polling the directory the purge thread changes (bounded)
    return snaps


def check_logs_kept(server: ServerProcess, oldest_kept: int, *, exact: bool = True) -> None:
    logs = files(server, "log")
    older = [z for z in logs if z <= oldest_kept]
    # Only the newest log starting at or before the oldest kept snapshot survives of those
    # (with a periodic purge running, a later purge may already have removed it too).
    assert len(older) == 1 if exact else len(older) <= 1, (older, oldest_kept)


def test_autopurge_keys_keep_the_newest_snapshots_at_start_and_periodically(
    corral_factory: Callable[..., ServerProcess],
) -> None:
    server = corral_factory(BASE)
    write(server, 0, 300)
    many = files(server, "snapshot")
    print(f"without autopurge: {len(many)} snapshots, {len(files(server, 'log'))} logs")
    assert len(many) > 6

    server.settings = dataclasses.replace(
        BASE,
        cfg=(*BASE.cfg, ("autopurge.snapRetainCount", "3"), ("autopurge.purgeInterval", "1")),
    )
    server.restart()
    kept = wait_snapshots(server, 3)
    # The newest three (the startup snapshot after the replay among them) are kept.
    assert kept == sorted(set(many) | set(kept))[-3:], (kept, many)
    check_logs_kept(server, kept[0])
    assert children(server) == [f"n{i:04d}" for i in range(300)]
    print(f"purged at start: snapshots {[hex(z) for z in kept]}, logs {files(server, 'log')}")

    server.settings = dataclasses.replace(
        BASE,
        cfg=(*BASE.cfg, ("autopurge.snapRetainCount", "3"), ("autopurge.purgeInterval", "2s")),
    )
    server.restart()
    write(server, 300, 200)  # about ten more snapshots while the purge thread runs
    assert len(files(server, "snapshot")) >= 3
    kept = wait_snapshots(server, 3)
    check_logs_kept(server, kept[0], exact=False)
    assert children(server) == [f"n{i:04d}" for i in range(500)]
    server.restart()  # what the purge left recovers the whole tree
    assert children(server) == [f"n{i:04d}" for i in range(500)]
