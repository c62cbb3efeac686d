"""A thread-safe record of client operations on registers, for linearizability checks.

Each operation is invoked (its invoke time taken from `time.monotonic()` before the request
is sent) and later completed with one outcome:

- `ok`: it took effect (writes) or returned a value (reads),
- `failed`: it definitely did not take effect (e.g. BadVersion on a conditional set),
- `unknown`: the connection was lost or the call timed out; a write may or may not have
  taken effect, at any time after its invocation.

An operation never completed counts as `unknown`. Operations are `write(key, value)`,
`read(key) -> value` and `cas(key, expected_version, value)`; writes and cas may also record
the version the server reported (ZooKeeper's `Stat.version`), and reads the version read,
which makes the order of writes observable to the checker.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from dataclasses import dataclass, replace
from typing import Literal

Kind = Literal["write", "read", "cas"]
Outcome = Literal["ok", "failed", "unknown"]


@dataclass(frozen=True)
class Op:
    id: int
    client: str
    kind: Kind
    key: str
    # write/cas: the value written; read: the value returned (None until completed).
    value: object = None
    # write/cas (ok): the version after it; read: the version read. None: not observed.
    version: int | None = None
    # cas: the version it requires.
    expected: int | None = None
    invoke: float = 0.0
    # math.inf while pending, or when the outcome is unknown.
    complete: float = math.inf
    outcome: Outcome = "unknown"

    def __str__(self) -> str:
        arg = f"{self.value!r}" if self.kind != "cas" else f"{self.expected}->{self.value!r}"
        ver = "" if self.version is None else f" v{self.version}"
        return (
            f"#{self.id} {self.client} {self.kind}({self.key}) {arg}{ver} {self.outcome}"
            f" [{self.invoke:.4f}, {self.complete:.4f}]"
        )


class History:
    """Records operations from many threads; `ops()` is a snapshot, in invocation order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ops: dict[int, Op] = {}
        self._ids = itertools.count()

    def invoke(
        self,
        client: str,
        kind: Kind,
        key: str,
        value: object = None,
        expected: int | None = None,
        at: float | None = None,
    ) -> int:
        now = time.monotonic() if at is None else at
        with self._lock:
            op_id = next(self._ids)
            self._ops[op_id] = Op(op_id, client, kind, key, value, None, expected, now)
        return op_id

    def ok(
        self, op_id: int, value: object = None, version: int | None = None, at: float | None = None
    ) -> None:
        now = time.monotonic() if at is None else at
        with self._lock:
            op = self._ops[op_id]
            assert op.outcome == "unknown" and op.complete == math.inf, op
            new_value = value if op.kind == "read" else op.value
            self._ops[op_id] = replace(
                op, value=new_value, version=version, complete=now, outcome="ok"
            )

    def fail(self, op_id: int, at: float | None = None) -> None:
        now = time.monotonic() if at is None else at
        with self._lock:
            op = self._ops[op_id]
            self._ops[op_id] = replace(op, complete=now, outcome="failed")

    def unknown(self, op_id: int) -> None:
        with self._lock:
            op = self._ops[op_id]
            self._ops[op_id] = replace(op, complete=math.inf, outcome="unknown")

    def ops(self) -> list[Op]:
        with self._lock:
            return sorted(self._ops.values(), key=lambda o: (o.invoke, o.id))

    def __len__(self) -> int:
        with self._lock:
            return len(self._ops)
