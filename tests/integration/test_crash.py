"""Crash durability: kill -9 during a write load, restart on the same dataDir, check the tree.

Writers are raw clients with many requests in flight. Each writer alternates a create of a
new node and a setData of its own key, and records every request it sent and every one
whose reply arrived (acknowledged). The server runs with forceSync=yes, so an acknowledged
write was fsynced. At a seeded random point (a number of acknowledged writes) the server is
killed with SIGKILL, restarted on the same dataDir, and then:

- every acknowledged write is present, with the right data and version;
- nothing is present that was never sent;
- each writer's applied writes are a prefix of what it sent (one connection's writes are
  applied in order), which for the alternating sequence means the number of its nodes and
  its key's version differ by at most one, in the right direction.

Variants: snapCount=50, so recovery goes through a snapshot taken mid-load plus the log; and
a torn tail (the newest log truncated at a seeded offset after the kill), where the server
must start cleanly, log a warning and cut the torn entry off the file, serve a consistent
prefix, and keep writes made after the repair.

Seeds are printed; CORRAL_CRASH_SEED replays one, CORRAL_CRASH_ROUNDS runs more rounds.
"""

from __future__ import annotations

import dataclasses
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

from kazoo.client import KazooClient

from corral.proto.codes import OpCode
from corral.proto.records import CreateRequest, SetDataRequest
from corral.store.txnlog import LogFileReader
from support import kazoo_client
from support.procs import ServerProcess, ServerSettings
from support.rawclient import OPEN_ACL_UNSAFE, RawClient

ROUNDS = int(os.environ.get("CORRAL_CRASH_ROUNDS", "3"))
WRITERS = 4
WINDOW = 16  # requests each writer keeps in flight
IO_TIMEOUT_S = 10.0
LOAD_TIMEOUT_S = 30.0  # bound on reaching the kill point
DURABLE = ServerSettings(force_sync=True)


def base_seed() -> int:
    env = os.environ.get("CORRAL_CRASH_SEED")
    return int(env) if env else random.SystemRandom().randrange(1 << 32)


@dataclasses.dataclass
class Ledger:
    """What one writer sent and what was acknowledged, in its own order."""

    tid: int
    created_sent: list[tuple[str, bytes]] = dataclasses.field(default_factory=list)
    created_acked: int = 0  # creates acknowledged, a prefix of created_sent
    set_sent: list[bytes] = dataclasses.field(default_factory=list)
    set_acked: int = 0


class Load:
    """WRITERS threads, each a raw client pipelining WINDOW writes, until the server dies."""

    def __init__(self, address: tuple[str, int], root: str) -> None:
        self.address = address
        self.root = root
        self.ledgers = [Ledger(t) for t in range(WRITERS)]
        self.acked = 0
        self.cond = threading.Condition()
        self.errors: list[BaseException] = []
        self.threads = [
            threading.Thread(target=self._run, args=(ledger,), daemon=True)
            for ledger in self.ledgers
        ]

    def key(self, tid: int) -> str:
        return f"{self.root}/k{tid}"

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def wait_acked(self, target: int) -> None:
        """Until `target` writes were acknowledged (bounded)."""
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        with self.cond:
            while self.acked < target and not self.errors:
                left = deadline - time.monotonic()
                assert left > 0, f"only {self.acked} of {target} writes acknowledged in time"
                self.cond.wait(left)
        assert not self.errors, self.errors

    def join(self) -> None:
        for t in self.threads:
            t.join(IO_TIMEOUT_S + 5)
            assert not t.is_alive(), "a writer did not notice the server died"

    def _run(self, ledger: Ledger) -> None:
        try:
            client = RawClient.connect(self.address, io_timeout_s=IO_TIMEOUT_S)
        except OSError:
            return  # the server died before this writer got going
        try:
            self._pipeline(client, ledger)
        except OSError:
            pass  # the kill: replies stop arriving
        except BaseException as exc:  # a wrong reply: report it to the test
            with self.cond:
                self.errors.append(exc)
                self.cond.notify_all()
        finally:
            client.abort()

    def _pipeline(self, client: RawClient, ledger: Ledger) -> None:
        inflight: list[tuple[int, bool]] = []  # (xid, is_create), in request order
        n = 0
        while True:
            while len(inflight) < WINDOW:
                if n % 2 == 0:
                    path = f"{self.root}/w{ledger.tid}-{n:07d}"
                    data = f"c{ledger.tid}:{n}".encode()
                    ledger.created_sent.append((path, data))
                    req: object = CreateRequest(path, data, OPEN_ACL_UNSAFE, 0)
                    inflight.append((client.submit(OpCode.CREATE, req), True))
                else:
                    data = f"s{ledger.tid}:{n}".encode()
                    ledger.set_sent.append(data)
                    req = SetDataRequest(self.key(ledger.tid), data, -1)
                    inflight.append((client.submit(OpCode.SET_DATA, req), False))
                n += 1
            xid, is_create = inflight.pop(0)
            reply = client.read_reply(xid)
            assert reply.err == 0, f"writer {ledger.tid}: xid {xid} failed with {reply.err}"
            with self.cond:
                if is_create:
                    ledger.created_acked += 1
                else:
                    ledger.set_acked += 1
                self.acked += 1
                self.cond.notify_all()


def prepare(client: KazooClient, root: str) -> None:
    """The load's parent and the writers' keys, acknowledged before the load starts."""
    client.create(root, makepath=True)
    for tid in range(WRITERS):
        client.create(f"{root}/k{tid}", b"")


def run_and_kill(server: ServerProcess, root: str, rng: random.Random) -> Load:
    """Load the server, SIGKILL it after a random number of acknowledged writes."""
    load = Load(server.address, root)
    target = rng.randint(50, 600)
    print(f"  kill after {target} acknowledged writes")
    load.start()
    load.wait_acked(target)
    server.kill()
    load.join()
    assert not load.errors, load.errors
    return load


def check(client: KazooClient, load: Load, *, acked_must_exist: bool = True) -> int:
    """Compare the tree with the ledgers; return how many of the writers' writes it holds."""
    sent_paths = {p for ledger in load.ledgers for p, _ in ledger.created_sent}
    names = set(client.get_children(load.root))
    keys = {f"k{t}" for t in range(WRITERS)}
    assert keys <= names, f"keys created before the load are missing: {keys - names}"
    present = {f"{load.root}/{n}" for n in names - keys}
    assert present <= sent_paths, f"never sent: {sorted(present - sent_paths)[:5]}"
    total = 0
    for ledger in load.ledgers:
        mine = [p for p, _ in ledger.created_sent if p in present]
        count = len(mine)
        # A prefix: the first `count` creates of this writer, no gaps.
        assert [p for p, _ in ledger.created_sent[:count]] == mine, f"writer {ledger.tid}: gap"
        for path, data in ledger.created_sent[:count]:
            got, stat = client.get(path)
            assert (got, stat.version) == (data, 0), path
        got, stat = client.get(load.key(ledger.tid))
        version = stat.version
        assert version <= len(ledger.set_sent), f"writer {ledger.tid}: version beyond sent"
        assert got == (ledger.set_sent[version - 1] if version else b""), ledger.tid
        # Alternating create, set, create, ...: a prefix has one create more or equal sets.
        assert count - version in (0, 1), f"writer {ledger.tid}: {count} creates, v{version}"
        if acked_must_exist:
            assert count >= ledger.created_acked, f"writer {ledger.tid} lost acked creates"
            assert version >= ledger.set_acked, f"writer {ledger.tid} lost acked setData"
        total += count + version
    return total


def log_files(server: ServerProcess) -> list[Path]:
    logs = (server.data_dir / "version-2").glob("log.*")
    return sorted(logs, key=lambda p: int(p.name.split(".")[1], 16))


def snapshot_zxids(server: ServerProcess) -> list[int]:
    snaps = (server.data_dir / "version-2").glob("snapshot.*")
    return sorted(int(p.name.split(".")[1], 16) for p in snaps)


def crash_rounds(server: ServerProcess, seed: int) -> None:
    for round_no in range(ROUNDS):
        rng = random.Random(seed + round_no)
        print(f"round {round_no}: seed {seed + round_no}")
        root = f"/crash/r{round_no}"
        with kazoo_client.session(server.address) as client:
            prepare(client, root)
        load = run_and_kill(server, root, rng)
        server.restart()
        with kazoo_client.session(server.address) as client:
            held = check(client, load)
        acked = sum(ledger.created_acked + ledger.set_acked for ledger in load.ledgers)
        sent = sum(len(ledger.created_sent) + len(ledger.set_sent) for ledger in load.ledgers)
        print(f"  acked {acked}, recovered {held}, sent {sent}")


def test_kill9_loses_no_acknowledged_write(
    corral_factory: Callable[..., ServerProcess],
) -> None:
    seed = base_seed()
    print(f"CORRAL_CRASH_SEED={seed}")
    server = corral_factory(DURABLE)
    crash_rounds(server, seed)


def test_kill9_recovers_through_snapshot_and_log(
    corral_factory: Callable[..., ServerProcess],
) -> None:
    seed = base_seed()
    print(f"CORRAL_CRASH_SEED={seed}")
    server = corral_factory(dataclasses.replace(DURABLE, cfg=(("snapCount", "50"),)))
    crash_rounds(server, seed)
    # The loads took snapshots as they went (the one at zxid 0 is the startup one).
    taken = [z for z in snapshot_zxids(server) if z > 0]
    assert taken, "no snapshot was taken during the load"
    print(f"snapshots at zxids {[hex(z) for z in taken]}")


def test_torn_log_tail_starts_and_serves_a_prefix(
    corral_factory: Callable[..., ServerProcess],
) -> None:
    seed = base_seed()
    print(f"CORRAL_CRASH_SEED={seed}")
    server = corral_factory(DURABLE)
    for round_no in range(ROUNDS):
        rng = random.Random(seed + round_no)
        print(f"round {round_no}: seed {seed + round_no}")
        root = f"/torn/r{round_no}"
        with kazoo_client.session(server.address) as client:
            prepare(client, root)
        # Setup writes are not torn off: the cut lands in what the load appended.
        newest = log_files(server)[-1]
        setup_end = len(newest.read_bytes().rstrip(b"\0"))
        load = run_and_kill(server, root, rng)
        newest_after = log_files(server)[-1]
        assert newest_after == newest, "the log rolled during the load (snapCount is default)"
        used = len(newest.read_bytes().rstrip(b"\0"))
        cut = rng.randint(setup_end, used)
        print(f"  {newest.name}: setup ends at {setup_end}, data ends at {used}, cut at {cut}")
        with newest.open("r+b") as f:
            f.truncate(cut)
        # Where the torn file's whole entries end (a cut at an entry boundary, or inside the
        # first 4 bytes of an entry, the zero high half of its checksum, leaves no problem).
        reader = LogFileReader(newest)
        for _entry in reader:
            pass
        valid_end = reader.valid_end
        log_before = server.log_path.stat().st_size
        server.restart()
        if reader.problem is not None:
            # The repair is logged, and the torn bytes are gone from the file.
            logged = server.log_path.read_bytes()[log_before:].decode(errors="replace")
            assert f"{newest.name}: torn tail" in logged, logged[-2000:]
            assert newest.stat().st_size == valid_end
            print(f"  torn tail at {valid_end} of {cut} truncated with a warning")
        after = f"/torn/after{round_no}"
        with kazoo_client.session(server.address) as client:
            held = check(client, load, acked_must_exist=False)
            print(f"  recovered {held} writes of the load")
            # Writes after the repair must survive a restart: the torn bytes are gone for good.
            client.create(after, b"after-repair")
        server.restart()  # a clean stop (SIGTERM) and start
        with kazoo_client.session(server.address) as client:
            assert client.get(after)[0] == b"after-repair"
            assert check(client, load, acked_must_exist=False) == held


def test_torn_newest_snapshot_falls_back_to_an_older_one(
    corral_factory: Callable[..., ServerProcess],
) -> None:
    """A kill -9 while a snapshot is being written leaves it short: recovery must skip it
    and rebuild from an older snapshot plus the log, losing no acknowledged write."""
    seed = base_seed()
    print(f"CORRAL_CRASH_SEED={seed}")
    rng = random.Random(seed)
    server = corral_factory(dataclasses.replace(DURABLE, cfg=(("snapCount", "50"),)))
    root = "/torn-snap"
    with kazoo_client.session(server.address) as client:
        prepare(client, root)
    load = run_and_kill(server, root, rng)
    snaps = sorted(
        (server.data_dir / "version-2").glob("snapshot.*"),
        key=lambda p: int(p.name.split(".")[1], 16),
    )
    assert len(snaps) >= 2, "the load took no snapshot"
    newest = snaps[-1]
    size = newest.stat().st_size
    cut = rng.randint(0, size - 1)
    print(f"  {newest.name}: {size} bytes, cut at {cut}")
    with newest.open("r+b") as f:
        f.truncate(cut)
    server.restart()
    with kazoo_client.session(server.address) as client:
        held = check(client, load)
    print(f"  recovered {held} writes")
