"""The register linearizability checker and the per-session read check (tests/support)."""

from __future__ import annotations

import math
import random
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from support.history import History, Op
from support.linearizability import check_linearizable, check_register, check_sessions


def op(
    client: str,
    kind: str,
    value: object,
    invoke: float,
    complete: float = math.inf,
    outcome: str = "ok",
    key: str = "x",
    version: int | None = None,
    expected: int | None = None,
    _ids: list[int] = [0],  # noqa: B006 - a counter
) -> Op:
    _ids[0] += 1
    if outcome == "unknown":
        complete = math.inf
    return Op(_ids[0], client, kind, key, value, version, expected, invoke, complete, outcome)  # type: ignore[arg-type]


def test_sequential_history_is_linearizable() -> None:
    h = [op("a", "write", 1, 0, 1), op("b", "read", 1, 2, 3), op("a", "write", 2, 4, 5)]
    h.append(op("b", "read", 2, 6, 7))
    r = check_linearizable(h)
    assert r.ok, r.explain()
    assert [o.value for o in r.keys["x"].order if o.kind == "write"] == [1, 2]


def test_stale_read_after_a_completed_write_is_rejected() -> None:
    h = [op("a", "write", 1, 0, 1), op("a", "write", 2, 2, 3), op("b", "read", 1, 4, 5)]
    r = check_linearizable(h)
    assert r.status == "violation"
    assert "cannot be extended" in r.explain()


def test_read_concurrent_with_a_write_may_see_either_value() -> None:
    for seen in (1, 2):
        h = [op("a", "write", 1, 0, 1), op("a", "write", 2, 2, 5), op("b", "read", seen, 3, 4)]
        assert check_linearizable(h).ok


def test_lost_acknowledged_write_is_rejected() -> None:
    # Write 2 was acknowledged, but a later read (after everything) sees 1.
    h = [op("a", "write", 1, 0, 1), op("b", "write", 2, 2, 3), op("c", "read", 1, 10, 11)]
    assert check_linearizable(h).status == "violation"
    # With versions: the acknowledged write's version is taken by someone else's write.
    h = [
        op("a", "write", "p", 0, 1, version=1),
        op("b", "write", "q", 2, 3, version=2),
        op("c", "write", "r", 4, 5, version=2),
    ]
    assert check_linearizable(h).status == "violation"


def test_concurrent_writes_in_both_orders() -> None:
    for final in ("a", "b"):
        h = [
            op("a", "write", "a", 0, 5),
            op("b", "write", "b", 1, 4),
            op("c", "read", final, 6, 7),
        ]
        assert check_linearizable(h).ok, final
    # Reads that see both orders at once are not linearizable.
    h = [
        op("a", "write", "a", 0, 5),
        op("b", "write", "b", 1, 4),
        op("c", "read", "a", 6, 7),
        op("d", "read", "b", 8, 9),
    ]
    assert check_linearizable(h).status == "violation"


def test_versions_order_concurrent_writes() -> None:
    h = [op("a", "write", "a", 0, 5, version=2), op("b", "write", "b", 1, 4, version=1)]
    h.append(op("c", "read", "a", 6, 7, version=2))
    assert check_linearizable(h).ok
    h[-1] = op("c", "read", "b", 6, 7, version=1)
    assert check_linearizable(h).status == "violation"


def test_unknown_write_may_apply_late_or_never() -> None:
    never = [op("a", "write", 1, 0, 1), op("b", "write", 2, 2, outcome="unknown")]
    never.append(op("c", "read", 1, 10, 11))
    assert check_linearizable(never).ok
    late = [*never, op("c", "read", 2, 12, 13)]
    assert check_linearizable(late).ok
    # But once it has been seen, it cannot be unapplied.
    back = [*late, op("c", "read", 1, 14, 15)]
    assert check_linearizable(back).status == "violation"
    # And it cannot take effect before it was invoked.
    early = [op("a", "write", 1, 0, 1), op("c", "read", 2, 2, 3)]
    early.append(op("b", "write", 2, 5, outcome="unknown"))
    assert check_linearizable(early).status == "violation"


def test_failed_operations_take_no_effect() -> None:
    h = [op("a", "write", 1, 0, 1), op("b", "write", 2, 2, 3, outcome="failed")]
    h.append(op("c", "read", 2, 4, 5))
    assert check_linearizable(h).status == "violation"


def test_cas_applies_only_at_its_expected_version() -> None:
    ok = [
        op("a", "write", "p", 0, 1, version=1),
        op("b", "cas", "q", 2, 3, expected=1, version=2),
        op("c", "read", "q", 4, 5),
    ]
    assert check_linearizable(ok).ok
    bad = [
        op("a", "write", "p", 0, 1),
        op("a", "write", "p2", 1.5, 1.8),
        op("b", "cas", "q", 2, 3, expected=1),
    ]
    assert check_linearizable(bad).status == "violation"
    # An unknown cas at the wrong version is harmless.
    harmless = [*bad[:2], op("b", "cas", "q", 2, outcome="unknown", expected=1)]
    harmless.append(op("c", "read", "p2", 4, 5))
    assert check_linearizable(harmless).ok


def test_keys_are_checked_independently() -> None:
    h = [op("a", "write", 1, 0, 1, key="x"), op("a", "write", 1, 0, 1, key="y")]
    h.append(op("b", "read", None, 2, 3, key="y"))
    r = check_linearizable(h)
    assert r.status == "violation"
    assert r.keys["x"].status == "ok" and r.keys["y"].status == "violation"


def test_initial_state() -> None:
    h = [op("a", "read", "init", 0, 1), op("a", "write", "w", 2, 3, version=1)]
    assert check_linearizable(h, {"x": ("init", 0)}).ok
    assert check_linearizable(h).status == "violation"


def test_search_bound_reports_undecided() -> None:
    # Many fully concurrent writes and a read of the one that must come last: explored
    # orders explode, and a tiny bound gives up instead of hanging.
    h = [op(f"c{i}", "write", i, 0, 100) for i in range(14)]
    h.append(op("r", "read", "nope", 200, 201))
    r = check_register(h, max_steps=1000)
    assert r.status == "undecided"


def test_memoisation_keeps_concurrent_histories_tractable() -> None:
    h = [op(f"c{i}", "write", i, 0, 100) for i in range(12)]
    h.append(op("r", "read", 11, 200, 201))
    r = check_register(h, max_steps=200_000)
    assert r.status == "ok", r.steps


def test_sessions_see_non_decreasing_writes_and_their_own() -> None:
    writes = [
        op("w", "write", "a", 0, 1, version=1),
        op("w", "write", "b", 2, 3, version=2),
    ]
    good = [*writes, op("r", "read", "b", 4, 5, version=2), op("w", "read", "b", 6, 7)]
    assert check_sessions(good).ok
    # Reads are local: a stale read is fine for ZooKeeper, if the session never saw newer.
    stale = [*writes, op("r", "read", "a", 4, 5, version=1)]
    assert check_sessions(stale).ok
    back = [*writes, op("r", "read", "b", 4, 5, version=2), op("r", "read", "a", 6, 7)]
    res = check_sessions(back)
    assert not res.ok and "back in time" in res.problems[0]
    own = [*writes, op("w", "read", "a", 4, 5, version=1)]
    res = check_sessions(own)
    assert not res.ok and "own write" in res.problems[0]
    ghost = [*writes, op("r", "read", "zzz", 4, 5)]
    res = check_sessions(ghost)
    assert not res.ok and "never written" in res.problems[0]


def test_sessions_use_the_linearization_order_without_versions() -> None:
    h = [op("a", "write", 1, 0, 5), op("b", "write", 2, 1, 4), op("c", "read", 1, 6, 7)]
    r = check_linearizable(h)
    assert r.ok
    order = {k: kr.order for k, kr in r.keys.items()}
    assert check_sessions(h, write_order=order).ok
    h.append(op("c", "read", 2, 8, 9))
    assert not check_sessions(h, write_order=order).ok


def test_sessions_take_an_unknown_writes_version_from_the_read() -> None:
    # Two writes of unknown outcome: an order may place both (q at version 2) while the
    # server applied only q (version 1); a read of q at version 1 is no contradiction.
    p = op("a", "write", "p", 0, outcome="unknown")
    q = op("b", "write", "q", 0, outcome="unknown")
    h = [p, q, op("c", "read", "q", 5, 6, version=1)]
    assert check_sessions(h, write_order={"x": [p, q]}).ok
    # An acknowledged write's version is known: a read of its value at another one is not.
    acked = op("b", "write", "q", 0, 4, version=2)
    h = [p, acked, op("c", "read", "q", 5, 6, version=1)]
    res = check_sessions(h, write_order={"x": [p, acked]})
    assert not res.ok and "disagree" in res.problems[0]


def test_recorder_is_thread_safe_and_tracks_outcomes() -> None:
    hist = History()

    def work(c: int) -> None:
        for i in range(200):
            w = hist.invoke(f"c{c}", "write", "k", (c, i))
            if i % 3 == 0:
                hist.ok(w, version=None)
            elif i % 3 == 1:
                hist.fail(w)
            else:
                hist.unknown(w)

    threads = [threading.Thread(target=work, args=(c,)) for c in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ops = hist.ops()
    assert len(ops) == len(hist) == 800
    assert len({o.id for o in ops}) == 800
    assert [o.invoke for o in ops] == sorted(o.invoke for o in ops)
    outcomes = {o.outcome for o in ops}
    assert outcomes == {"ok", "failed", "unknown"}
    assert all((o.complete == math.inf) == (o.outcome == "unknown") for o in ops)
    r = hist.invoke("x", "read", "k")
    hist.ok(r, value="seen", version=7)
    read = next(o for o in hist.ops() if o.id == r)
    assert (read.value, read.version, read.outcome) == ("seen", 7, "ok")
    assert read.invoke <= read.complete < math.inf


# -- generated histories ------------------------------------------------------------------


def generate(seed: int, n_ops: int, n_keys: int) -> list[Op]:
    """A sequential execution of registers, each operation stretched to a random interval
    that contains its linearization point; some writes' outcomes become unknown."""
    rng = random.Random(seed)
    state: dict[str, tuple[object, int]] = {}
    ops: list[Op] = []
    t = 0.0
    for i in range(n_ops):
        t += rng.uniform(0.1, 1.0)
        key = f"k{rng.randrange(n_keys)}"
        value, version = state.get(key, (None, 0))
        invoke = t - rng.uniform(0, 3)
        complete = t + rng.uniform(0, 3)
        client = f"c{rng.randrange(4)}"
        if rng.random() < 0.5:
            new = f"v{i}"
            state[key] = (new, version + 1)
            unknown = rng.random() < 0.1
            ops.append(
                Op(
                    i,
                    client,
                    "write",
                    key,
                    new,
                    None if unknown or rng.random() < 0.5 else version + 1,
                    None,
                    invoke,
                    math.inf if unknown else complete,
                    "unknown" if unknown else "ok",
                )
            )
        else:
            ops.append(Op(i, client, "read", key, value, None, None, invoke, complete, "ok"))
    return ops


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), n_ops=st.integers(1, 40), n_keys=st.integers(1, 3))
def test_generated_linearizable_histories_are_accepted(seed: int, n_ops: int, n_keys: int) -> None:
    h = generate(seed, n_ops, n_keys)
    r = check_linearizable(h)
    assert r.ok, f"seed={seed}\n" + r.explain()


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    n_ops=st.integers(1, 40),
    n_keys=st.integers(1, 3),
    pick=st.integers(0, 10**6),
)
def test_reading_a_value_never_written_is_rejected(
    seed: int, n_ops: int, n_keys: int, pick: int
) -> None:
    h = generate(seed, n_ops, n_keys)
    i = pick % len(h)
    o = h[i]
    read = Op(
        o.id, o.client, "read", o.key, "never-written", None, None, o.invoke, o.invoke + 1, "ok"
    )
    h[i] = read
    r = check_linearizable(h)
    assert r.status == "violation", f"seed={seed}"
    assert r.keys[o.key].status == "violation"
    assert not check_sessions(h).ok


def test_sessions_skip_an_unknown_cas_that_did_not_apply() -> None:
    h = [
        op("a", "write", "p", 0, 1),
        op("b", "cas", "q", 2, outcome="unknown", expected=5),
        op("a", "write", "r", 3, 4),
        op("c", "read", "r", 5, 6, version=2),
    ]
    r = check_linearizable(h)
    assert r.ok
    assert any(o.kind == "cas" for o in r.keys["x"].order)  # placed, as a no-op
    order = {k: kr.order for k, kr in r.keys.items()}
    assert check_sessions(h, write_order=order).ok, check_sessions(h, write_order=order)
