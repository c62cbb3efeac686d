"""A linearizability checker for register histories, and a per-session read check.

`check_linearizable` is Wing and Gong's search with Lowe's memoisation, made
P-compositional: the history is partitioned by key (registers are independent objects, so
the whole history is linearizable iff each key's sub-history is) and each key is searched
on its own. The search extends a linearization one operation at a time; an operation may
come next if it was invoked before every not yet linearized operation completed. A
configuration is (set of linearized operations, register state): one already explored is
not explored again (Lowe). Operations of unknown outcome complete at infinity: they may be
linearized at any point after their invocation, or never (the search succeeds once every
`ok` operation is linearized). `failed` operations took no effect and are left out. A bound
on search steps turns a search that would take too long into "undecided".

The register state is (value, version): every applied write adds one to the version, as
ZooKeeper's `Stat.version` does, so that a write's reported version (when recorded) is
checked too, and a cas applies only at its expected version.

`check_sessions` checks what ZooKeeper promises reads (which are served locally and so are
not linearizable): per session and key, reads observe a non-decreasing sequence of writes,
and a session's read sees at least its own completed writes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from support.history import Op

State = tuple[object, int]  # (value, version)
Status = Literal["ok", "violation", "undecided"]

DEFAULT_MAX_STEPS = 2_000_000


@dataclass
class KeyResult:
    key: str
    status: Status
    # For "ok": the linearized operations in order (ok ones and applied unknown ones).
    order: list[Op] = field(default_factory=list)
    steps: int = 0
    # For "violation": the longest linearizable prefix found, and the operations left over.
    detail: str = ""


@dataclass
class Result:
    status: Status
    keys: dict[str, KeyResult]

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def explain(self) -> str:
        bad = [r for r in self.keys.values() if r.status != "ok"]
        return "\n".join(f"key {r.key}: {r.status} after {r.steps} steps\n{r.detail}" for r in bad)


def _step(op: Op, state: State) -> tuple[bool, State]:
    """Whether `op` may take effect in `state`, and the state after it."""
    value, version = state
    if op.kind == "read":
        if op.value != value or (op.version is not None and op.version != version):
            return False, state
        return True, state
    if op.kind == "cas" and op.expected != version:
        # An unknown cas at the wrong version is a no-op wherever it is placed.
        return (op.outcome == "unknown"), state
    if op.version is not None and op.version != version + 1:
        return False, state
    return True, (op.value, version + 1)


def check_register(
    ops: list[Op], initial: State = (None, 0), max_steps: int = DEFAULT_MAX_STEPS, key: str = ""
) -> KeyResult:
    """Wing-Gong search with memoisation over one register's operations."""
    ops = sorted((o for o in ops if o.outcome != "failed"), key=lambda o: (o.invoke, o.id))
    n = len(ops)
    required = 0
    for i, o in enumerate(ops):
        if o.outcome == "ok":
            required |= 1 << i
    optional = ((1 << n) - 1) & ~required
    unknown = [i for i in range(n) if not required >> i & 1]
    seen: set[tuple[int, State]] = set()
    # DFS; each entry: (linearized mask, state, order so far as a linked tuple).
    Chain = tuple[int, object] | None
    stack: list[tuple[int, State, Chain]] = [(0, initial, None)]
    steps = 0
    best: tuple[int, Chain] = (0, None)
    while stack:
        mask, state, chain = stack.pop()
        if mask & required == required:
            return KeyResult(key, "ok", [ops[i] for i in _unchain(chain)], steps)
        steps += 1
        if steps > max_steps:
            return KeyResult(key, "undecided", [], steps, f"search bound {max_steps} reached")
        depth = (mask & required).bit_count()
        if depth >= best[0]:
            best = (depth, chain)
        # The earliest completion among the `ok` operations not yet linearized (unknown ones
        # complete at infinity): ops are in invocation order, so scan from the first pending
        # one until an invocation comes after the earliest completion seen.
        done = mask | optional
        lo = (~done & (done + 1)).bit_length() - 1
        bound = ops[lo].complete
        hi = lo + 1
        while hi < n and ops[hi].invoke <= bound:
            if not mask >> hi & 1 and ops[hi].complete < bound:
                bound = ops[hi].complete
            hi += 1
        candidates = [i for i in unknown if i < lo and not mask >> i & 1]
        candidates += [i for i in range(lo, hi) if not mask >> i & 1]
        for i in reversed(candidates):
            if ops[i].invoke > bound:
                continue
            ok, after = _step(ops[i], state)
            if not ok:
                continue
            nxt = (mask | 1 << i, after)
            if nxt in seen:
                continue
            seen.add(nxt)
            stack.append((nxt[0], after, (i, chain)))
    prefix = [ops[i] for i in _unchain(best[1])]
    placed = {o.id for o in prefix}
    left = [o for o in ops if o.id not in placed and o.outcome == "ok"]
    detail = (
        "longest linearizable prefix:\n"
        + "".join(f"  {o}\n" for o in prefix[-10:])
        + "cannot be extended by any of:\n"
        + "".join(f"  {o}\n" for o in left[:10])
    )
    return KeyResult(key, "violation", [], steps, detail)


def _unchain(chain: object) -> list[int]:
    out: list[int] = []
    while chain is not None:
        assert isinstance(chain, tuple)
        i, chain = chain
        out.append(i)
    out.reverse()
    return out


def check_linearizable(
    history: Iterable[Op],
    initial: Mapping[str, State] | None = None,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> Result:
    """Check every key's sub-history (P-compositionality); `max_steps` bounds each key."""
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in history:
        by_key[op.key].append(op)
    init = dict(initial or {})
    results = {
        k: check_register(ops, init.get(k, (None, 0)), max_steps, k) for k, ops in by_key.items()
    }
    statuses = {r.status for r in results.values()}
    status: Status = (
        "violation" if "violation" in statuses else "undecided" if "undecided" in statuses else "ok"
    )
    return Result(status, results)


@dataclass
class SessionResult:
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def check_sessions(
    history: Iterable[Op],
    initial: Mapping[str, State] | None = None,
    write_order: Mapping[str, list[Op]] | None = None,
) -> SessionResult:
    """Per session (client) and key: reads observe a non-decreasing sequence of writes, and
    never one older than the session's own last completed write.

    A read's position in the key's write sequence is its recorded version when it has one;
    otherwise the position of the write of the value it returned, in `write_order` (e.g. the
    order the linearizability check found) or, failing that, in the order of the writes'
    recorded versions. A recorded version must agree with an acknowledged write's; an unknown
    write's version is one order's guess and is not held against a read. Values are assumed
    unique per key. A read of a value that no write (and no initial state) produced is a
    problem too.
    """
    ops = sorted(history, key=lambda o: (o.invoke, o.id))
    init = dict(initial or {})
    # value -> version per key, from the initial state, the given order and recorded versions.
    versions: dict[str, dict[object, int]] = defaultdict(dict)
    for k, (value, version) in init.items():
        versions[k][value] = version
    # Values whose version only the given order says: an unknown write may sit elsewhere (or
    # be absent) in another order that fits the checked ops as well, so a read's recorded
    # version of such a value is not contradicted by the order's.
    placed: dict[str, set[object]] = defaultdict(set)
    if write_order is not None:
        for k, order in write_order.items():
            state = init.get(k, (None, 0))
            for o in order:
                _, after = _step(o, state)
                if after[1] != state[1]:  # applied (an unknown cas may be a no-op)
                    versions[k][o.value] = after[1]
                    if o.outcome != "ok":
                        placed[k].add(o.value)
                state = after
    written: dict[str, set[object]] = defaultdict(set)
    for o in ops:
        if o.kind != "read":
            written[o.key].add(o.value)
            if o.outcome == "ok" and o.version is not None:
                versions[o.key].setdefault(o.value, o.version)
    problems: list[str] = []
    # Per (client, key): the highest version observed so far, and by which op.
    seen: dict[tuple[str, str], tuple[int, Op | None]] = {}
    for o in sorted(ops, key=lambda o: (o.complete, o.id)):
        if o.outcome != "ok":
            continue
        k = o.key
        if o.kind == "read":
            never = o.value not in written[k] and (k not in init or init[k][0] != o.value)
            if never and not (k not in init and o.value is None):
                problems.append(f"read of a value never written: {o}")
                continue
            v = o.version if o.version is not None else versions[k].get(o.value)
            if v is None:
                continue  # an unknown write's value that the order did not place
            known = o.value not in placed[k]
            if o.version is not None and known and versions[k].get(o.value, v) != v:
                problems.append(f"read value and version disagree: {o}")
        else:
            v = o.version if o.version is not None else versions[k].get(o.value)
            if v is None:
                continue
        prev, by = seen.get((o.client, k), (-1, None))
        if v < prev:
            what = "its own write" if by is not None and by.kind != "read" else "an earlier read"
            problems.append(f"session went back in time (below {what} {by}): {o}")
        else:
            seen[(o.client, k)] = (v, o)
    return SessionResult(problems)
