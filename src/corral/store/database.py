"""The durable database: recovery, group-committed txn log, snapshots, autopurge.

How a runner uses it (all calls from the event-loop thread unless noted):

    db = Database(StoreConfig(data_dir=...), rng=random.Random())
    tree = db.recover(new_tree=DataTree, empty_for_load=DataTree.empty_for_load, make_node=ZNode)
    db.start(on_durable=lambda z: loop.call_soon_threadsafe(persisted, z),
             on_fatal=lambda exc: loop.call_soon_threadsafe(crash, exc))
    ...
    for hdr, txn_bytes in output.persist:  # from the core
        db.append(hdr, txn_bytes)           # queued; never blocks on the disk
    # later, in the writer thread: on_durable(highest zxid now on disk)
    # runner (on the loop): core.persisted(zxid); then db.maybe_snapshot(tree)
    ...
    db.close()

"Acknowledged means fsynced" is a fact of this API: the only way to learn that a txn is durable is
`on_durable(zxid)`, which the writer thread calls after the fdatasync covering every txn up to
`zxid` returned (with forceSync=no, after the write; ZooKeeper's documented unsafe mode). Txns that
arrive while an fsync runs form the next batch (group commit). A failed write or fsync is fatal:
`on_fatal` is called once, nothing more is reported durable and `append` raises.

Snapshots follow ZooKeeper: after a random number of txns in [snapCount/2+1, snapCount] (or of
log bytes in [snapSizeLimit/2, snapSizeLimit]) since the last one, the log rolls (the next txn
starts a new file) and a snapshot becomes due; `maybe_snapshot(tree)`, called on the loop after
txns were applied, copies the tree's tables and writes the snapshot in a worker thread (fuzzy,
see store/snapshot.py). Recovery = newest valid snapshot + replay of every later logged txn through
`tree.apply_txn`, then a fresh snapshot (as ZooKeeper's loadData takes one).

The startup snapshot after a replay is written in the snapshot thread, like a periodic one,
while the server already serves (ZooKeeper writes it before serving: 3-4 s at 1M znodes).
Nothing depends on it being on disk first: every txn it holds is in the log (recovery fsyncs
the log files it replayed from, so what clients see after a restart is durable even if the
previous process died before its own fsync), and a crash before it is complete leaves only a
temporary file and the previous snapshot plus the log, from which the next start recovers the
same tree. Log truncation (Zab's TRUNC) and SNAP installs wait for it and then drop it if it is
newer than their zxid, as they do for any snapshot. Only a fresh directory's snapshot.0 (and a
log-only recovery under snapshot.trust.empty) is written before recover() returns, since a log
must never exist without a snapshot below it.

Ensemble API (a quorum peer's runner performs Zab's Ready.persist ops with these):

    epochs = db.read_epochs()             # after recover(): QuorumPeer.loadDataBase's rules
    db.last_logged_zxid, db.snapshot_zxid, db.last_txns(commit_log_count)   # to build roles
    AppendTxn(entry)        -> db.append(hdr, txn_bytes)              durable: on_durable(zxid)
    SetAcceptedEpoch(e)     -> db.set_accepted_epoch(e, on_done)      acceptedEpoch file
    SetCurrentEpoch(e)      -> db.set_current_epoch(e, on_done)       currentEpoch file
    TruncateLog(z)          -> db.truncate(z, on_done)                NeedsSnapshotError: SNAP
                               then, if the tree is past z: tree = db.rebuild_tree(..., upto=z)
    SaveSnapshot(z, data)   -> db.save_snapshot_stream(z, data, on_done)
    LoadSnapshot(z, data)   -> tree = Database.tree_from_stream(z, data, ...)
    leader, SNAP            -> zxid, data = Database.serialize_tree(tree)   (store/snapstream.py)
    leader, DIFF from disk  -> db.proposals_for_diff(peer_zxid, snapshotSizeFactor) or None
    learner stream reading  -> snapstream.SnapshotStreamReader (feed bytes; signature checked)

Every file operation (epochs, truncate, save snapshot) goes through the writer thread's queue,
so it happens after the txns appended before it are fsynced and with no log file open, and the
txns appended after it go to a new file. `on_done()` is called from the writer thread once the
operation is durable; without `on_done` the call waits for it (fine before start() or off the
event loop; on the loop, pass on_done and hop back with call_soon_threadsafe). A failed file
operation is fatal like a failed fsync: on_fatal is called and nothing more is made durable.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from corral.proto.records import ACL, TxnHeader
from corral.store import epochs as ep
from corral.store import snapshot as snap
from corral.store import snapstream
from corral.store.layout import (
    LOG_PREFIX,
    StoreError,
    fsync_path,
    list_files,
    remove_file,
    version_dir,
)
from corral.store.purge import RETAIN_MIN, purge
from corral.store.txnlog import (
    PREALLOC_BYTES_DEFAULT,
    CorruptLogError,
    LogEntry,
    TxnLogWriter,
    encode_entry,
    last_logged_zxid,
    last_txns,
    proposals_from_log,
    read_log,
    truncate_log,
    txns_after,
)

log = logging.getLogger(__name__)

SNAP_COUNT_MIN = 2


@dataclasses.dataclass(frozen=True, slots=True)
class StoreConfig:
    """The zoo.cfg settings the store uses (names as ZooKeeper's, units in the names)."""

    data_dir: Path
    data_log_dir: Path | None = None  # dataLogDir; defaults to dataDir
    force_sync: bool = True  # forceSync
    prealloc_bytes: int = PREALLOC_BYTES_DEFAULT  # preAllocSize (ZooKeeper's is in KiB)
    snap_count: int = 100_000  # snapCount
    snap_size_limit_bytes: int = 4 * 1024 * 1024 * 1024  # snapSizeLimitInKb; <= 0 disables
    snap_retain_count: int = 3  # autopurge.snapRetainCount
    purge_interval_hours: int = 0  # autopurge.purgeInterval; 0 disables
    purge_interval_ms: int = 0  # the same with units (3.9 accepts "90m"); wins when > 0
    max_batch_txns: int = 1000  # maxBatchSize: txns per write + fsync
    fsync_warning_ms: int = 1000  # fsync.warningthresholdms
    trust_empty_snapshot: bool = False  # snapshot.trust.empty (an upgrade escape hatch)
    snapshot_compression: str = ""  # snapshot.compression.method: "" or "gz"
    snapshot_on_recover: bool = True  # snapshot after replaying logged txns at startup


class RecoveringTree(Protocol):
    """What recovery needs from tree.DataTree."""

    sessions: dict[int, int]
    last_zxid: int

    @property
    def nodes(self) -> Mapping[str, snap.NodeView]: ...
    def load_node(self, path: str, node: Any) -> None: ...
    def apply_txn(self, hdr: TxnHeader, txn: Any) -> object: ...


class SnapshotSource(Protocol):
    """What taking a snapshot needs from tree.DataTree."""

    @property
    def nodes(self) -> Mapping[str, snap.NodeView]: ...
    @property
    def sessions(self) -> Mapping[int, int]: ...
    @property
    def last_zxid(self) -> int: ...


TreeT = TypeVar("TreeT", bound=RecoveringTree)
_A = TypeVar("_A")


class NeedsSnapshotError(StoreError):
    """A truncation the files cannot do (no valid snapshot at or below the target): the
    learner must ask its leader for a SNAP instead."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Op:
    """A file operation the writer thread runs in queue order, after syncing the txns queued
    before it and closing the current log file (ZOOKEEPER-1489: never truncate under a writer)."""

    name: str
    run: Callable[[], None]
    done: Callable[[BaseException | None], None]


# Writer-queue items: (zxid, framed entry), _ROLL (finish the current log file here), or an _Op.
_ROLL = None
_QueueItem = tuple[int, bytes] | _Op | None


def node_loader(tree: RecoveringTree, make_node: Callable[..., object]) -> snap.NodeSink:
    """A snapshot node sink (snapshot.read_snapshot's on_node) that loads into `tree`.

    A tree with `load_fields` (tree.DataTree) is the sink itself, making its own nodes: one
    call per node instead of three on a restart's hottest loop."""
    fast = getattr(tree, "load_fields", None)
    if callable(fast):
        return fast  # type: ignore[no-any-return]
    load = tree.load_node

    def on_node(path: str, data: bytes | None, acl: tuple[ACL, ...], tail: tuple[int, ...]) -> None:
        _acl_id, czxid, mzxid, ctime, mtime, version, cversion, aversion, owner, pzxid = tail
        # make_node takes ZNode's positional parameters (DataTree.load_fields also shares
        # equal stat values to save memory; other trees need not).
        load(
            path,
            make_node(data, acl, czxid, mzxid, ctime, mtime, version, cversion, aversion, owner,
                      pzxid),
        )  # fmt: skip

    return on_node


def finish_tree(tree: TreeT, zxid: int, sessions: Mapping[int, int]) -> TreeT:
    """Complete a tree whose snapshot nodes are loaded: sessions, zxid, finish_load()."""
    tree.sessions.update(sessions)
    tree.last_zxid = zxid
    finish = getattr(tree, "finish_load", None)
    if callable(finish):
        finish()
    return tree


def build_tree(
    zxid: int,
    sessions: Mapping[int, int],
    nodes: list[snap.SnapshotNode],
    empty_for_load: Callable[[], TreeT],
    make_node: Callable[..., object],
) -> TreeT:
    """A tree holding a snapshot's nodes and sessions, at `zxid` (no IO)."""
    tree = empty_for_load()
    on_node = node_loader(tree, make_node)
    for node in nodes:
        st = node.stat
        on_node(
            node.path,
            node.data,
            node.acl,
            (0, st.czxid, st.mzxid, st.ctime, st.mtime, st.version, st.cversion, st.aversion,
             st.ephemeral_owner, st.pzxid),
        )  # fmt: skip
    return finish_tree(tree, zxid, sessions)


def _ignore(_zxid: int) -> None:
    pass


def _ignore_exc(_exc: BaseException) -> None:
    pass


def _call_safely(callback: Callable[[_A], object], arg: _A) -> None:
    try:
        callback(arg)
    except Exception:
        log.error("store callback %r failed", callback, exc_info=True)


@dataclasses.dataclass(slots=True)
class StoreStats:
    """Counters for mntr / metrics (read from any thread; approximate)."""

    fsyncs: int = 0
    last_fsync_ms: float = 0.0
    max_fsync_ms: float = 0.0
    fsync_threshold_exceeded: int = 0
    batches: int = 0
    txns_written: int = 0
    snapshots: int = 0
    last_snapshot_zxid: int = -1
    last_snapshot_seconds: float = 0.0


class Database:
    """One server's durable state in ZooKeeper's layout: dataDir/version-2, dataLogDir/version-2."""

    def __init__(self, config: StoreConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self.snap_dir = version_dir(config.data_dir)
        self.log_dir = version_dir(config.data_log_dir or config.data_dir)
        self.stats = StoreStats()
        self._rng = rng if rng is not None else random.Random()
        self._snap_count = max(config.snap_count, SNAP_COUNT_MIN)
        if config.snap_count < SNAP_COUNT_MIN:
            log.warning("snapCount %d is too small; using %d", config.snap_count, SNAP_COUNT_MIN)
        self._max_batch = max(config.max_batch_txns, 1)
        self._recovered = False
        self._last_logged = 0
        self._durable = 0
        self._txns_since_roll = 0
        self._bytes_since_roll = 0
        self._txn_threshold = 0
        self._bytes_threshold = 0
        self._reset_snapshot_point()
        self._snapshot_due = False
        self._snap_thread: threading.Thread | None = None
        self._startup_snapshot: threading.Thread | None = None
        # One lock, two conditions: the writer waits for work, others wait for durability
        # (one condition for both could hand an append's wake-up to the wrong waiter).
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._durable_cv = threading.Condition(self._lock)
        self._queue: collections.deque[_QueueItem] = collections.deque()
        self._stopping = False
        self._failed: BaseException | None = None
        self._writer_thread: threading.Thread | None = None
        self._writer = TxnLogWriter(
            self.log_dir, prealloc_bytes=config.prealloc_bytes, force_sync=config.force_sync
        )
        self._on_durable: Callable[[int], None] = _ignore
        self._on_fatal: Callable[[BaseException], None] = _ignore_exc
        self._purge_stop = threading.Event()
        self._purge_thread: threading.Thread | None = None

    # -- recovery --------------------------------------------------------------------------

    def recover(
        self,
        *,
        new_tree: Callable[[], TreeT],
        empty_for_load: Callable[[], TreeT],
        make_node: Callable[..., object],
    ) -> TreeT:
        """Rebuild the tree: newest valid snapshot, then every later logged txn.

        A fresh data directory gets `new_tree()` and a snapshot.0, as ZooKeeper does. Refuses
        (StoreError) when logs exist without any snapshot or snapshots exist but none is valid
        (ZOOKEEPER-2325: starting empty would silently drop the data), and for log damage that is
        not a torn tail. A torn tail is truncated away with a warning.
        """
        if self._recovered:
            raise StoreError("recover() runs once per Database")
        snap.remove_tmp_files(self.snap_dir)
        tree, loaded, replayed = self._load_tree(new_tree, empty_for_load, make_node, None, True)
        self._last_logged = self._durable = tree.last_zxid
        self._recovered = True
        log.info(
            "recovered to zxid %#x (%s, %d txns replayed)",
            tree.last_zxid,
            loaded.path.name if loaded else "no snapshot",
            replayed,
        )
        if loaded is None:
            self._write_snapshot_now(tree)
        elif replayed and self.config.snapshot_on_recover:
            # In the snapshot thread (see the module docstring): serving need not wait.
            self._startup_snapshot = self.start_snapshot(tree)
        return tree

    def rebuild_tree(
        self,
        *,
        new_tree: Callable[[], TreeT],
        empty_for_load: Callable[[], TreeT],
        make_node: Callable[..., object],
        upto: int,
    ) -> TreeT:
        """A tree from the newest valid snapshot plus the logged txns up to `upto` (after
        `truncate(upto)` when the tree held txns past it, as ZKDatabase.truncateLog reloads).

        Reads only: the writer thread may meanwhile append txns after `upto`.
        """
        tree, _loaded, _replayed = self._load_tree(new_tree, empty_for_load, make_node, upto, False)
        return tree

    def _load_tree(
        self,
        new_tree: Callable[[], TreeT],
        empty_for_load: Callable[[], TreeT],
        make_node: Callable[..., object],
        upto: int | None,
        repair: bool,
    ) -> tuple[TreeT, snap.Snapshot | None, int]:
        # The snapshot's nodes go straight into a tree as they are parsed (a fresh tree for
        # each file tried): no list of SnapshotNodes, a third less peak memory at 1M nodes.
        building: list[TreeT] = []

        def new_sink() -> snap.NodeSink:
            tree = empty_for_load()
            building[:] = [tree]
            return node_loader(tree, make_node)

        loaded = snap.load_newest_snapshot(self.snap_dir, new_sink)
        if loaded is None:
            logged = last_logged_zxid(self.log_dir)
            if logged is not None and not self.config.trust_empty_snapshot:
                raise StoreError(
                    f"no snapshot in {self.snap_dir} but the log in {self.log_dir} has txns up to "
                    f"{logged:#x}; refusing to start empty (snapshot.trust.empty overrides)"
                )
            tree = new_tree()
        else:
            if upto is not None and loaded.zxid > upto:
                raise NeedsSnapshotError(f"{loaded.path.name} is newer than {upto:#x}")
            tree = finish_tree(building[0], loaded.zxid, loaded.sessions)
            building.clear()
            self.stats.last_snapshot_zxid = loaded.zxid
        replayed = self._replay(tree, upto, repair)
        return tree, loaded, replayed

    def _replay(self, tree: RecoveringTree, upto: int | None, repair: bool) -> int:
        """Apply every logged txn after the tree's zxid (up to `upto`); returns how many.

        With `repair` (recovery at startup) the files replayed from are fsynced: the previous
        process may have died between writing them and its fsync, and the recovered tree is
        treated as durable."""
        prev = tree.last_zxid
        count = 0
        replayed_files: list[Path] = []
        for entry in read_log(self.log_dir, prev + 1, repair=repair):
            if not replayed_files or replayed_files[-1] != entry.path:
                replayed_files.append(entry.path)
            zxid = entry.hdr.zxid
            if upto is not None and zxid > upto:
                break
            # Within one epoch zxids are consecutive: a hole means lost txns, not a tail.
            if zxid >> 32 == prev >> 32 and zxid != prev + 1:
                raise CorruptLogError(
                    f"{entry.path}: txns {prev + 1:#x}..{zxid - 1:#x} are missing from the log"
                )
            tree.apply_txn(entry.hdr, entry.txn)
            if tree.last_zxid < zxid:
                tree.last_zxid = zxid
            prev = zxid
            count += 1
        if repair and self.config.force_sync:
            for path in replayed_files:
                fsync_path(path)
        return count

    # -- the writer ------------------------------------------------------------------------

    def start(
        self,
        on_durable: Callable[[int], None],
        on_fatal: Callable[[BaseException], None] = _ignore_exc,
    ) -> None:
        """Start the writer thread (and the autopurge timer). Both callbacks are called from
        other threads: hand them to the loop with loop.call_soon_threadsafe."""
        if not self._recovered:
            raise StoreError("recover() before start()")
        if self._writer_thread is not None:
            raise StoreError("start() runs once")
        self._on_durable = on_durable
        self._on_fatal = on_fatal
        self._writer_thread = threading.Thread(
            target=self._write_loop, name="corral-txnlog", daemon=True
        )
        self._writer_thread.start()
        if self._purge_interval_s() > 0:
            self._purge_thread = threading.Thread(
                target=self._purge_loop, name="corral-purge", daemon=True
            )
            self._purge_thread.start()

    @property
    def last_logged_zxid(self) -> int:
        """The newest zxid handed to append() (or recovered)."""
        return self._last_logged

    @property
    def durable_zxid(self) -> int:
        """The newest zxid known to be on disk."""
        return self._durable

    def append(self, hdr: TxnHeader, txn_bytes: bytes) -> None:
        """Queue a txn for the log. Cheap: framing happens here, IO in the writer thread."""
        if self._failed is not None:
            raise StoreError("the txn log failed earlier; this server must stop") from self._failed
        if self._writer_thread is None or self._stopping:
            raise StoreError("the database is not running")
        if hdr.zxid <= self._last_logged:
            raise StoreError(f"zxid {hdr.zxid:#x} does not follow {self._last_logged:#x}")
        entry = encode_entry(hdr, txn_bytes)
        self._last_logged = hdr.zxid
        roll = self._count_for_snapshot(len(entry))
        with self._work:
            self._queue.append((hdr.zxid, entry))
            if roll:
                self._queue.append(_ROLL)
            self._work.notify()

    def append_many(self, txns: Sequence[tuple[TxnHeader, bytes]]) -> None:
        """append() for several txns, in order, with one lock round and one wake-up of the
        writer (a threading.Condition notify per txn was a tenth of the loop's write path)."""
        if self._failed is not None:
            raise StoreError("the txn log failed earlier; this server must stop") from self._failed
        if self._writer_thread is None or self._stopping:
            raise StoreError("the database is not running")
        items: list[_QueueItem] = []
        try:
            for hdr, txn_bytes in txns:
                if hdr.zxid <= self._last_logged:
                    raise StoreError(f"zxid {hdr.zxid:#x} does not follow {self._last_logged:#x}")
                entry = encode_entry(hdr, txn_bytes)
                self._last_logged = hdr.zxid
                items.append((hdr.zxid, entry))
                if self._count_for_snapshot(len(entry)):
                    items.append(_ROLL)
        finally:
            # What was accepted before a refused txn is queued, as single appends would have.
            if items:
                with self._work:
                    self._queue.extend(items)
                    self._work.notify()

    def wait_durable(self, zxid: int, timeout: float) -> bool:
        """Block until `zxid` is durable (for shutdown and tests; never on the event loop)."""
        deadline = time.monotonic() + timeout
        with self._durable_cv:
            while self._durable < zxid and self._failed is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._durable_cv.wait(left)
            return self._durable >= zxid

    @property
    def queued_txns(self) -> int:
        """Txns appended but not yet written (for backpressure and metrics)."""
        return len(self._queue)

    def _count_for_snapshot(self, size: int) -> bool:
        """ZooKeeper's SyncRequestProcessor.shouldSnapshot, counted per appended txn."""
        self._txns_since_roll += 1
        self._bytes_since_roll += size
        limit = self.config.snap_size_limit_bytes
        if self._txns_since_roll > self._txn_threshold or (
            limit > 0 and self._bytes_since_roll > self._bytes_threshold
        ):
            self._reset_snapshot_point()
            self._txns_since_roll = self._bytes_since_roll = 0
            self._snapshot_due = True
            return True
        return False

    def _reset_snapshot_point(self) -> None:
        # Random points, so that the servers of an ensemble do not all snapshot at once.
        half = self._snap_count // 2
        self._txn_threshold = half + self._rng.randrange(half)
        half_bytes = self.config.snap_size_limit_bytes // 2
        if half_bytes > 0:
            self._bytes_threshold = half_bytes + self._rng.randrange(half_bytes)

    def _write_loop(self) -> None:
        try:
            while True:
                with self._work:
                    while not self._queue and not self._stopping:
                        self._work.wait()
                    if not self._queue:
                        break
                    batch: list[_QueueItem] = []
                    txns = 0
                    while self._queue and txns < self._max_batch:
                        item = self._queue.popleft()
                        batch.append(item)
                        txns += item is not _ROLL
                self._write_batch(batch)
        except BaseException as exc:  # crash-only: any IO failure ends durability
            log.critical("txn log writer failed; no further txn is durable", exc_info=True)
            with self._lock:
                self._failed = exc
                self._durable_cv.notify_all()
            _call_safely(self._on_fatal, exc)

    def _write_batch(self, batch: list[_QueueItem]) -> None:
        pending = bytearray()
        first = highest = -1
        for item in batch:
            if isinstance(item, _Op):
                self._flush(pending, first, highest)
                pending.clear()
                first = highest = -1
                self._writer.roll()
                self._run_op(item)
                continue
            if item is None:
                if pending:
                    self._writer.write(first, bytes(pending))
                    pending.clear()
                    first = -1
                self._writer.roll()
                continue
            zxid, entry = item
            if first < 0:
                first = zxid
            pending += entry
            highest = zxid
            self.stats.txns_written += 1
        self._flush(pending, first, highest)

    def _flush(self, pending: bytearray, first: int, highest: int) -> None:
        """Write what is pending, fsync, and report the highest zxid durable."""
        if pending:
            self._writer.write(first, bytes(pending))
        seconds = self._writer.sync()
        ms = seconds * 1000
        self.stats.batches += 1
        if self.config.force_sync:
            self.stats.fsyncs += 1
            self.stats.last_fsync_ms = ms
            self.stats.max_fsync_ms = max(self.stats.max_fsync_ms, ms)
            if ms > self.config.fsync_warning_ms:
                self.stats.fsync_threshold_exceeded += 1
                log.warning(
                    "fsync of the txn log took %.0f ms (%s); this slows every write",
                    ms,
                    self._writer.path,
                )
        if highest >= 0:
            with self._durable_cv:
                self._durable = highest
                self._durable_cv.notify_all()
            # A failing callback (say, the event loop already closed at shutdown) is the
            # runner's problem, not an IO failure: the txns are durable either way.
            _call_safely(self._on_durable, highest)

    def _run_op(self, op: _Op) -> None:
        try:
            op.run()
        except BaseException as exc:
            op.done(exc)
            raise  # crash-only: the files are in an unknown state
        op.done(None)

    def _submit(
        self,
        name: str,
        run: Callable[[], None],
        on_done: Callable[[], None] | None,
        timeout: float,
    ) -> None:
        """Run a file operation in order with the appends queued before it.

        Before start() (no writer thread) it runs here and now. With `on_done` it is queued
        and `on_done()` is called from the writer thread once it is durable (a failure is fatal
        and reported to on_fatal instead). Without, this call waits for it (never do that on
        the event loop with appends outstanding).
        """
        if self._failed is not None:
            raise StoreError("the store failed earlier; this server must stop") from self._failed
        if self._writer_thread is None:
            run()
            if on_done is not None:
                on_done()
            return
        if self._stopping:
            raise StoreError("the database is not running")
        finished = threading.Event()
        outcome: list[BaseException | None] = []

        def done(exc: BaseException | None) -> None:
            outcome.append(exc)
            finished.set()
            if exc is None and on_done is not None:
                _call_safely(lambda _none: on_done(), None)

        with self._work:
            self._queue.append(_Op(name, run, done))
            self._work.notify()
        if on_done is not None:
            return
        if not finished.wait(timeout):
            raise StoreError(f"{name} did not finish within {timeout:.0f}s")
        if outcome[0] is not None:
            raise StoreError(f"{name} failed; this server must stop") from outcome[0]

    # -- epochs ----------------------------------------------------------------------------

    def read_epochs(self) -> ep.Epochs:
        """The currentEpoch and acceptedEpoch files after recover(), created or repaired from
        the last logged zxid exactly where ZooKeeper's QuorumPeer.loadDataBase does (see
        store/epochs.py); EpochFileError where ZooKeeper refuses to start."""
        if not self._recovered:
            raise StoreError("recover() before read_epochs()")
        return ep.load_epochs(self.snap_dir, self._last_logged)

    def set_accepted_epoch(
        self, epoch: int, on_done: Callable[[], None] | None = None, timeout: float = 60.0
    ) -> None:
        """Persist acceptedEpoch (Zab's SetAcceptedEpoch), after the appends queued before."""
        self._submit(
            "acceptedEpoch", lambda: ep.write_accepted_epoch(self.snap_dir, epoch), on_done, timeout
        )

    def set_current_epoch(
        self, epoch: int, on_done: Callable[[], None] | None = None, timeout: float = 60.0
    ) -> None:
        """Persist currentEpoch (Zab's SetCurrentEpoch), after the appends queued before, so
        the epoch never becomes durable ahead of the synced txns (ZOOKEEPER-4643)."""
        self._submit(
            "currentEpoch", lambda: ep.write_current_epoch(self.snap_dir, epoch), on_done, timeout
        )

    # -- truncation and snapshots from the leader ----------------------------------------

    def truncate(
        self, zxid: int, on_done: Callable[[], None] | None = None, timeout: float = 600.0
    ) -> None:
        """Zab's TruncateLog: remove every logged txn after `zxid`, durably.

        Snapshots newer than `zxid` go first (they may hold the txns being removed, which a
        replay could not undo: ZOOKEEPER-1549), then the log is cut (txnlog.truncate_log).
        Raises NeedsSnapshotError, changing nothing, when no valid snapshot at or below
        `zxid` would remain. Appends after this call must have zxids above `zxid`. If the tree
        holds txns after `zxid`, rebuild it with rebuild_tree(upto=zxid) once this is done.
        """
        if not any(
            z <= zxid and snap.verify_snapshot_file(path)
            for z, path in snap.snapshot_files(self.snap_dir)
        ):
            raise NeedsSnapshotError(f"no valid snapshot at or below {zxid:#x}; a SNAP is needed")
        self._last_logged = min(self._last_logged, zxid)

        def run() -> None:
            self._join_snapshot()
            self._remove_snapshots_after(zxid)
            truncate_log(self.log_dir, zxid)
            with self._durable_cv:
                self._durable = min(self._durable, zxid)

        self._submit("truncate", run, on_done, timeout)

    def save_snapshot_stream(
        self,
        zxid: int,
        stream: bytes,
        on_done: Callable[[], None] | None = None,
        timeout: float = 600.0,
    ) -> None:
        """Zab's SaveSnapshot: make the leader's snapshot (the bytes after SNAP, without the
        signature) this server's durable state at `zxid`.

        The stream is checked first (SnapshotStreamError, nothing changed). Then, in order:
        `snapshot.<zxid>` is written (temporary name, fsync, rename, fsync dir); snapshots
        newer than it are removed; every log file is removed, newest first (its txns are either
        in the snapshot or not in the leader's history). A crash before the rename leaves the
        old state; after it, at worst a log tail after `zxid`, which the next sync truncates like
        any unacknowledged tail. Appends after this call must have zxids above `zxid`.
        """
        snapstream.parse_snapshot_stream(stream)
        self._last_logged = zxid

        def run() -> None:
            self._join_snapshot()
            snapstream.write_snapshot_stream(
                self.snap_dir, zxid, stream, compression=self.config.snapshot_compression
            )
            self._remove_snapshots_after(zxid)
            for _start, path in reversed(list_files(self.log_dir, LOG_PREFIX)):
                remove_file(path)
                fsync_path(self.log_dir)
            with self._durable_cv:
                self._durable = zxid
            self.stats.snapshots += 1
            self.stats.last_snapshot_zxid = zxid

        self._submit("save snapshot", run, on_done, timeout)

    def _join_snapshot(self) -> None:
        thread = self._snap_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _remove_snapshots_after(self, zxid: int) -> None:
        for z, path in snap.snapshot_files(self.snap_dir):  # newest first
            if z <= zxid:
                continue
            log.warning("removing %s: it is newer than %#x", path.name, zxid)
            remove_file(path)
            fsync_path(self.snap_dir)

    @staticmethod
    def tree_from_stream(
        zxid: int,
        stream: bytes,
        *,
        empty_for_load: Callable[[], TreeT],
        make_node: Callable[..., object],
    ) -> TreeT:
        """Zab's LoadSnapshot: a tree from the leader's snapshot stream (no IO)."""
        parsed = snapstream.parse_snapshot_stream(stream)
        return build_tree(zxid, parsed.sessions, parsed.nodes, empty_for_load, make_node)

    @staticmethod
    def serialize_tree(tree: SnapshotSource) -> tuple[int, bytes]:
        """(zxid, the snapshot stream) a leader sends after SNAP (Leader's `snapshot` callback).
        Serializes the live tables: call on the loop between applies, or from a thread on
        copies (`dict(tree.nodes)`, `dict(tree.sessions)`) for a fuzzy one."""
        return tree.last_zxid, snapstream.serialize_snapshot(tree.sessions, tree.nodes)

    # -- reading the log for DIFF ----------------------------------------------------------

    def last_txns(self, count: int) -> list[LogEntry]:
        """The newest `count` durable logged txns, oldest first (a new leader's committed-log
        window for DIFF, ZooKeeper's commitLogCount)."""
        return last_txns(self.log_dir, count, upto=self._durable)

    @property
    def snapshot_zxid(self) -> int:
        """The zxid of the newest snapshot loaded or written (-1: none yet)."""
        return self.stats.last_snapshot_zxid

    def txns_after(self, zxid: int) -> Iterator[LogEntry]:
        """Durable logged txns after `zxid`, read lazily (for a leader's history window)."""
        return txns_after(self.log_dir, zxid, upto=self._durable)

    def proposals_for_diff(self, peer_zxid: int, size_factor: float) -> Iterator[LogEntry] | None:
        """ZKDatabase.getProposalsFromTxnLog(peer_zxid, snapshotSizeFactor x newest snapshot
        size): the durable txns after `peer_zxid`, or None when the log cannot serve a DIFF."""
        return proposals_from_log(
            self.log_dir, peer_zxid, self.txn_log_size_limit(size_factor), upto=self._durable
        )

    def txn_log_size_limit(self, size_factor: float) -> int:
        """ZKDatabase.calculateTxnLogSizeLimit (zookeeper.snapshotSizeFactor, default 0.33;
        negative disables DIFF from the log)."""
        if size_factor < 0:
            return -1
        newest = snap.newest_valid_snapshots(self.snap_dir, 1)
        size = newest[0][1].stat().st_size if newest else 0
        return int(size * size_factor)

    # -- snapshots -------------------------------------------------------------------------

    def maybe_snapshot(self, tree: SnapshotSource) -> bool:
        """Start a due snapshot in a worker thread (call on the loop after applying txns)."""
        if not self._snapshot_due or self.snapshot_in_progress:
            return False
        if tree.last_zxid > self._last_logged:
            return False  # truncated under this tree: it is rebuilt before it is snapshotted
        self._snapshot_due = False
        self.start_snapshot(tree)
        return True

    def wait_for_snapshot(self, timeout: float | None = None) -> bool:
        """Wait until no snapshot is being written (e.g. recovery's startup snapshot); False
        if one still is after `timeout` seconds. Not on the event loop."""
        thread = self._snap_thread
        if thread is not None:
            thread.join(timeout)
        return not self.snapshot_in_progress

    @property
    def snapshot_in_progress(self) -> bool:
        return self._snap_thread is not None and self._snap_thread.is_alive()

    def start_snapshot(self, tree: SnapshotSource) -> threading.Thread:
        """Copy the tree's tables here (on the loop, between applies) and write the snapshot in
        a thread; returns the thread (join it to wait). Waits for the startup snapshot if that
        is still being written (maybe_snapshot never starts one meanwhile)."""
        if self._snap_thread is not None and self._snap_thread is self._startup_snapshot:
            self._snap_thread.join()
        if self.snapshot_in_progress:
            raise StoreError("a snapshot is already being written")
        zxid, sessions, nodes = self._copy(tree)
        thread = threading.Thread(
            target=self._snapshot_worker,
            args=(zxid, sessions, nodes),
            name="corral-snapshot",
            daemon=True,
        )
        self._snap_thread = thread
        thread.start()
        return thread

    def _copy(self, tree: SnapshotSource) -> tuple[int, dict[int, int], dict[str, snap.NodeView]]:
        zxid = tree.last_zxid
        # ZOOKEEPER-1549: a snapshot must never hold a txn the log was not given (replay
        # could not undo it); the tree may be behind the log, never ahead.
        if zxid > self._last_logged:
            raise StoreError(f"tree at {zxid:#x} is ahead of the log ({self._last_logged:#x})")
        return zxid, dict(tree.sessions), dict(tree.nodes)

    def _snapshot_worker(
        self, zxid: int, sessions: dict[int, int], nodes: dict[str, snap.NodeView]
    ) -> None:
        started = time.monotonic()
        try:
            path = snap.take_snapshot(
                self.snap_dir,
                zxid,
                sessions,
                nodes,
                fsync=self.config.force_sync,
                compression=self.config.snapshot_compression,
            )
        except Exception:
            # Not fatal: the log still holds everything. As in ZooKeeper, the next snapshot
            # point tries again (retrying at once would hammer a full disk).
            log.error("snapshot at zxid %#x failed", zxid, exc_info=True)
            snap.remove_tmp_files(self.snap_dir)
            return
        self.stats.snapshots += 1
        self.stats.last_snapshot_zxid = zxid
        self.stats.last_snapshot_seconds = time.monotonic() - started
        log.info("wrote %s (%d nodes) in %.2fs", path.name, len(nodes),
                 self.stats.last_snapshot_seconds)  # fmt: skip

    def _write_snapshot_now(self, tree: SnapshotSource) -> None:
        zxid, sessions, nodes = self._copy(tree)
        self._snapshot_worker(zxid, sessions, nodes)
        if self.stats.last_snapshot_zxid != zxid:
            raise StoreError(f"could not write the startup snapshot at {zxid:#x}")

    # -- purge and shutdown ----------------------------------------------------------------

    def purge(self) -> list[Path]:
        """Delete snapshots and logs beyond what autopurge.snapRetainCount keeps."""
        retain = max(self.config.snap_retain_count, RETAIN_MIN)
        return purge(self.snap_dir, self.log_dir, retain)

    def _purge_interval_s(self) -> float:
        if self.config.purge_interval_ms > 0:
            return self.config.purge_interval_ms / 1000.0
        return self.config.purge_interval_hours * 3600.0

    def _purge_loop(self) -> None:
        if self.config.snap_retain_count < RETAIN_MIN:
            log.warning("autopurge.snapRetainCount below %d; using %d", RETAIN_MIN, RETAIN_MIN)
        interval = self._purge_interval_s()
        # The first purge counts the startup snapshot (ZooKeeper's is on disk by then).
        startup = self._startup_snapshot
        if startup is not None:
            startup.join()
        # Like ZooKeeper's timer: once at start, then every interval.
        while True:
            try:
                self.purge()
            except Exception:
                log.error("autopurge failed", exc_info=True)
            if self._purge_stop.wait(interval):
                return

    def close(self, timeout: float = 30.0) -> None:
        """Drain the queue (everything appended becomes durable), stop the threads."""
        with self._work:
            self._stopping = True
            self._work.notify_all()
        self._purge_stop.set()
        for thread in (self._writer_thread, self._snap_thread, self._purge_thread):
            if thread is not None:
                thread.join(timeout)
                if thread.is_alive():
                    log.error("%s did not stop within %.0fs", thread.name, timeout)
        if self._writer_thread is not None and self._writer_thread.is_alive():
            return
        if self._failed is not None:
            self._writer.abandon()
        else:
            self._writer.close()
