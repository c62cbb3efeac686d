"""Group commit and "fsynced before the reply", seen from a client of the real server.

The standalone server (`corral.net.runner.serve`) runs in this process on its own event loop,
with forceSync=yes, so the test can watch the txn log's fdatasync calls. A raw client sends a
burst of BURST creates without waiting for replies, and the first fdatasync after the burst
began is held until the store has been handed every one of them. Then:

- group commit: the whole burst became durable in at most 2 fdatasyncs (the held one, and one
  for everything queued behind it), not one per write; the counts are printed;
- fsync before reply: every reply (its ReplyHeader.zxid is its txn's zxid) arrived after an
  fdatasync whose file already held that txn (read back from the file being synced).

The hold is a condition with a bounded deadline, not a sleep.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from pathlib import Path

import pytest

from corral.config import load_config
from corral.net.runner import serve
from corral.proto.codes import OpCode
from corral.proto.records import CreateRequest
from corral.store.database import Database
from corral.store.txnlog import LogFileReader
from support.procs import HOST, free_port
from support.rawclient import OPEN_ACL_UNSAFE, RawClient

BURST = 200
WAIT_S = 60.0


class FsyncWatch:
    """Wraps os.fdatasync (only the txn log writer calls it): records, after each call, the
    newest zxid in the file it synced, and holds the first call after `arm()` until the
    store has been handed `target` txns."""

    def __init__(self) -> None:
        self.real = os.fdatasync
        self.lock = threading.Lock()
        self.events: list[tuple[str, int]] = []  # ("sync", newest zxid) / ("reply", zxid)
        self.db: Database | None = None
        self.target: int | None = None
        self.held = threading.Event()

    def arm(self, target: int) -> None:
        self.target = target

    def fdatasync(self, fd: int) -> None:
        target = self.target
        if target is not None and not self.held.is_set():
            self.held.set()
            assert self.db is not None
            deadline = time.monotonic() + WAIT_S
            # Polling a counter the event loop advances, with a bound (no synchronising sleep).
            while self.db.last_logged_zxid < target:
                assert time.monotonic() < deadline, "the burst never reached the store"
                time.sleep(0.005)
        self.real(fd)
        reader = LogFileReader(Path(os.readlink(f"/proc/self/fd/{fd}")))
        newest = max((e.hdr.zxid for e in reader), default=0)
        with self.lock:
            self.events.append(("sync", newest))

    def reply(self, zxid: int) -> None:
        with self.lock:
            self.events.append(("reply", zxid))


def write_config(tmp_path: Path) -> tuple[Path, int]:
    port = free_port()
    cfg = tmp_path / "zoo.cfg"
    cfg.write_text(
        "\n".join(
            [
                "tickTime=2000",
                f"dataDir={tmp_path / 'data'}",
                f"clientPort={port}",
                f"clientPortAddress={HOST}",
                "admin.enableServer=false",
                "forceSync=yes",
                "",
            ]
        )
    )
    return cfg, port


def connect(port: int) -> RawClient:
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            return RawClient.connect((HOST, port), io_timeout_s=WAIT_S)
        except OSError:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)  # polling a port that is not up yet (bounded)


def test_a_burst_of_writes_shares_fsyncs_and_each_reply_follows_its_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    watch = FsyncWatch()
    monkeypatch.setattr(os, "fdatasync", watch.fdatasync)
    real_start = Database.start

    def start(self: Database, *args: object, **kwargs: object) -> None:
        watch.db = self
        real_start(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Database, "start", start)
    cfg, port = write_config(tmp_path)
    config = load_config(cfg)

    def load() -> tuple[int, int]:
        with connect(port) as client:
            setup = client.create("/burst", b"")
            assert setup.err == 0
            first = setup.zxid + 1
            watch.arm(setup.zxid + BURST)
            xids = [
                client.submit(
                    OpCode.CREATE, CreateRequest(f"/burst/n{i}", b"x", OPEN_ACL_UNSAFE, 0)
                )
                for i in range(BURST)
            ]
            for xid in xids:
                reply = client.read_reply(xid)
                assert reply.err == 0, reply
                watch.reply(reply.zxid)
        return first, setup.zxid + BURST

    async def main() -> tuple[int, int]:
        stop = asyncio.Event()
        server = asyncio.create_task(serve(config, stop=stop))
        try:
            return await asyncio.to_thread(load)
        finally:
            stop.set()
            await asyncio.wait_for(server, WAIT_S)

    try:
        first, last = asyncio.run(main())
    finally:
        # serve() freezes what a server starts with (gc.freeze): undone, as this server ran
        # inside the test process (frozen objects are invisible to gc.get_referrers, and
        # hypothesis then warns about its own PRNG in later tests).
        gc.unfreeze()
    events = list(watch.events)
    replies = [z for kind, z in events if kind == "reply"]
    assert sorted(replies) == list(range(first, last + 1))
    # fsynced before the reply: a sync covering each reply's txn precedes it.
    synced = 0
    for kind, zxid in events:
        if kind == "sync":
            synced = max(synced, zxid)
        else:
            assert zxid <= synced, f"reply for zxid {zxid:#x} before its fsync ({synced:#x})"
    # Group commit: the syncs that made the burst durable.
    burst_syncs = [z for kind, z in events if kind == "sync" and first <= z <= last]
    covering = sorted(set(burst_syncs))
    print(f"{BURST} writes made durable by {len(covering)} fdatasyncs: newest zxids {covering}")
    assert covering[-1] == last
    assert len(covering) <= 2, covering
    assert watch.db is not None
    print(f"store stats: {watch.db.stats}")
