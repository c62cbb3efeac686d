"""In-process micro-benchmark of the write path and getChildren (no sockets, no disk).

    .venv/bin/python bench/micro/write_path.py            # every case
    .venv/bin/python bench/micro/write_path.py multi5 children1000 --repeats 9

Each case drives a real StandaloneCore the way the runner does: one connection, a batch of
requests per `receive` (pipelined, as zkload keeps 16 in flight), then `persisted` for the
whole batch (group commit). Reported: CPU µs per request, median (and min) over repeats. The
`prep+apply` cases time prep_write + DataTree.apply_txn alone. Numbers are for comparing
before/after on the same machine, not across machines.
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

# CORRAL_SRC: another source tree to measure (e.g. a copy of src/ before a change).
sys.path.insert(0, os.environ.get("CORRAL_SRC") or str(Path(__file__).resolve().parents[2] / "src"))

from corral.proto import jute
from corral.proto.codes import CreateMode, OpCode
from corral.proto.records import (
    ACL,
    CreateRequest,
    DeleteRequest,
    GetChildrenRequest,
    Id,
    MultiHeader,
    RequestHeader,
    SetDataRequest,
)
from corral.server.core import CoreConfig, StandaloneCore
from corral.server.prep import PendingChanges, PrepConfig, prep_write
from corral.tree.datatree import DataTree

OPEN = (ACL(31, Id("world", "anyone")),)
PAYLOAD = b"x" * 100
BATCH = 16


def _frame(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


def _req(xid: int, op: int, rec: object | None) -> bytes:
    body = jute.encode(RequestHeader(xid, int(op)))
    if rec is not None:
        body += jute.encode(rec)
    return _frame(body)


def _multi_body(ops: list[tuple[int, object]]) -> bytes:
    out = b""
    for op, rec in ops:
        out += jute.encode(MultiHeader(int(op), False, -1)) + jute.encode(rec)
    return out + jute.encode(MultiHeader(-1, True, -1))


class Client:
    """One established session on a fresh core."""

    def __init__(self) -> None:
        self.core = StandaloneCore(CoreConfig(), DataTree(), 0, 1_000_000, b"secret")
        self.now = 1
        self.core.open(1, "127.0.0.1")
        body = struct.pack(">iqiqi", 0, 0, 30_000, 0, 16) + b"\0" * 16 + b"\0"
        self._run([_frame(body)])
        self.xid = 1

    def _run(self, frames: list[bytes]) -> int:
        core = self.core
        out = core.receive(1, b"".join(frames), self.now, 1_000_000 + self.now)
        last = out.persist[-1][0].zxid if out.persist else 0
        sent = sum(len(b) for _, b in out.sends)
        if last:
            out = core.persisted(last, self.now, 1_000_000 + self.now)
            sent += sum(len(b) for _, b in out.sends)
        return sent

    def send(self, frames: list[bytes]) -> int:
        return self._run(frames)

    def next_xid(self) -> int:
        self.xid += 1
        return self.xid

    def setup(self, ops: list[tuple[int, object]]) -> None:
        self._run([_req(self.next_xid(), op, rec) for op, rec in ops])


def _timed(rounds: int, make: Callable[[], Callable[[], None]]) -> float:
    """CPU µs per request of `rounds` batches of BATCH requests (process CPU time, not
    wall time: the machine is shared, and a descheduled process must not count)."""
    step = make()
    t0 = time.process_time()
    for _ in range(rounds):
        step()
    return (time.process_time() - t0) * 1e6 / (rounds * BATCH)


def case_multi5() -> Callable[[], None]:
    c = Client()
    c.setup([(OpCode.CREATE, CreateRequest("/m", b"", OPEN, 0))])
    c.setup([(OpCode.CREATE, CreateRequest("/m/node", PAYLOAD, OPEN, 0))])
    seq = [0]

    def step() -> None:
        frames = []
        for i in range(BATCH):
            seq[0] += 1
            a = f"/m/a{i}-{seq[0]}"
            b = f"/m/b{i}-{seq[0]}"
            body = _multi_body(
                [
                    (OpCode.CREATE, CreateRequest(a, PAYLOAD, OPEN, 0)),
                    (OpCode.CREATE, CreateRequest(b, PAYLOAD, OPEN, 0)),
                    (OpCode.SET_DATA, SetDataRequest("/m/node", PAYLOAD, -1)),
                    (OpCode.DELETE, DeleteRequest(a, -1)),
                    (OpCode.DELETE, DeleteRequest(b, -1)),
                ]
            )
            frames.append(_frame(jute.encode(RequestHeader(c.next_xid(), OpCode.MULTI)) + body))
        c.send(frames)

    return step


def case_multi5_prebuilt() -> Callable[[], None]:
    """multi5 with the request frames built once (the core's share only)."""
    c = Client()
    c.setup([(OpCode.CREATE, CreateRequest("/m", b"", OPEN, 0))])
    c.setup([(OpCode.CREATE, CreateRequest("/m/node", PAYLOAD, OPEN, 0))])
    frames = []
    for i in range(BATCH):
        a = f"/m/a{i}"
        b = f"/m/b{i}"
        body = _multi_body(
            [
                (OpCode.CREATE, CreateRequest(a, PAYLOAD, OPEN, 0)),
                (OpCode.CREATE, CreateRequest(b, PAYLOAD, OPEN, 0)),
                (OpCode.SET_DATA, SetDataRequest("/m/node", PAYLOAD, -1)),
                (OpCode.DELETE, DeleteRequest(a, -1)),
                (OpCode.DELETE, DeleteRequest(b, -1)),
            ]
        )
        frames.append(_frame(jute.encode(RequestHeader(i + 100, OpCode.MULTI)) + body))

    def step() -> None:
        c.send(frames)

    return step


def case_set100() -> Callable[[], None]:
    c = Client()
    c.setup([(OpCode.CREATE, CreateRequest("/s", PAYLOAD, OPEN, 0))])
    frames = [
        _req(i + 100, OpCode.SET_DATA, SetDataRequest("/s", PAYLOAD, -1)) for i in range(BATCH)
    ]

    def step() -> None:
        c.send(frames)

    return step


def case_createdelete() -> Callable[[], None]:
    c = Client()
    c.setup([(OpCode.CREATE, CreateRequest("/cd", b"", OPEN, 0))])
    half = BATCH // 2
    creates = [
        _req(i + 100, OpCode.CREATE, CreateRequest(f"/cd/c{i}", PAYLOAD, OPEN, 0))
        for i in range(half)
    ]
    deletes = [_req(i + 200, OpCode.DELETE, DeleteRequest(f"/cd/c{i}", -1)) for i in range(half)]

    def step() -> None:
        c.send(creates)
        c.send(deletes)

    return step


def case_ephseq() -> Callable[[], None]:
    c = Client()
    c.setup([(OpCode.CREATE, CreateRequest("/e", b"", OPEN, 0))])
    flags = int(CreateMode.EPHEMERAL_SEQUENTIAL)
    frames = [
        _req(i + 100, OpCode.CREATE, CreateRequest("/e/e-", PAYLOAD, OPEN, flags))
        for i in range(BATCH)
    ]

    def step() -> None:
        c.send(frames)

    return step


def case_children1000() -> Callable[[], None]:
    c = Client()
    c.setup([(OpCode.CREATE, CreateRequest("/k", b"", OPEN, 0))])
    for start in range(0, 1000, 100):
        c.setup(
            [
                (OpCode.CREATE, CreateRequest(f"/k/child-{i:04d}", b"", OPEN, 0))
                for i in range(start, start + 100)
            ]
        )
    frames = [
        _req(i + 100, OpCode.GET_CHILDREN, GetChildrenRequest("/k", False)) for i in range(BATCH)
    ]

    def step() -> None:
        c.send(frames)

    return step


def _prep_apply(make_req: Callable[[int], tuple[int, object]]) -> Callable[[], Callable[[], None]]:
    def make() -> Callable[[], None]:
        tree = DataTree()
        pending = PendingChanges()
        cfg = PrepConfig()
        zxid = [0]

        def run(op: int, req: object) -> None:
            zxid[0] += 1
            hdr, txn = prep_write(
                tree,
                pending,
                op,
                req,
                session_id=1,
                cxid=1,
                zxid=zxid[0],
                time_ms=5,
                config=cfg,  # type: ignore[arg-type]
            )
            tree.apply_txn(hdr, txn)
            pending.applied(hdr.zxid)

        run(OpCode.CREATE, CreateRequest("/m", b"", OPEN, 0))
        run(OpCode.CREATE, CreateRequest("/m/node", PAYLOAD, OPEN, 0))
        seq = [0]

        def step() -> None:
            for _ in range(BATCH):
                seq[0] += 1
                op, req = make_req(seq[0])
                run(op, req)

        return step

    return make


def _multi_ops(n: int) -> tuple[int, object]:
    a = f"/m/a{n}"
    b = f"/m/b{n}"
    return OpCode.MULTI, [
        (OpCode.CREATE, CreateRequest(a, PAYLOAD, OPEN, 0)),
        (OpCode.CREATE, CreateRequest(b, PAYLOAD, OPEN, 0)),
        (OpCode.SET_DATA, SetDataRequest("/m/node", PAYLOAD, -1)),
        (OpCode.DELETE, DeleteRequest(a, -1)),
        (OpCode.DELETE, DeleteRequest(b, -1)),
    ]


def _create_delete(n: int) -> tuple[int, object]:
    path = f"/m/c{n // 2}"
    if n % 2:
        return OpCode.CREATE, CreateRequest(path, PAYLOAD, OPEN, 0)
    return OpCode.DELETE, DeleteRequest(path, -1)


CASES: dict[str, tuple[Callable[[], Callable[[], None]], int]] = {
    "multi5": (case_multi5_prebuilt, 300),
    "multi5+client-encode": (case_multi5, 300),
    "set100": (case_set100, 1500),
    "createdelete": (case_createdelete, 1000),
    "ephseq": (case_ephseq, 600),
    "children1000": (case_children1000, 200),
    "prep+apply multi5": (_prep_apply(_multi_ops), 300),
    "prep+apply create+del": (_prep_apply(_create_delete), 1000),
    "prep+apply set100": (
        _prep_apply(lambda n: (OpCode.SET_DATA, SetDataRequest("/m/node", PAYLOAD, -1))),
        2000,
    ),
}


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("cases", nargs="*", help="substrings of case names (default: all)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--scale", type=float, default=1.0, help="multiply the rounds per repeat")
    args = p.parse_args()
    names = [n for n in CASES if not args.cases or any(s in n for s in args.cases)]
    print(f"{'case':<22} {'median µs/op':>12} {'min':>8}   (batch {BATCH}, {args.repeats} repeats)")
    for name in names:
        make, rounds = CASES[name]
        rounds = max(1, int(rounds * args.scale))
        samples = [_timed(rounds, make) for _ in range(args.repeats)]
        print(f"{name:<22} {statistics.median(samples):12.2f} {min(samples):8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
