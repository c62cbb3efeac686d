"""Hypothesis-generated damage to log and snapshot files: readers never crash with anything
but their own errors, never invent a txn or a node, and a damaged snapshot is never valid."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from store_helpers import TxnStream, reference_tree, workload

from corral.proto import jute
from corral.store.snapshot import SnapshotError, read_snapshot, take_snapshot, verify_snapshot_file
from corral.store.txnlog import FILE_HEADER, CorruptLogError, encode_entry, read_log

TXNS = list(workload(TxnStream(), 25, seed=11))
LOG_BYTES = FILE_HEADER + b"".join(encode_entry(h, jute.encode(t)) for h, t in TXNS)
with tempfile.TemporaryDirectory() as _d:
    SNAP_BYTES = take_snapshot(
        Path(_d), 25, {0x1000: 30_000}, dict(reference_tree(TXNS).nodes), fsync=False
    ).read_bytes()

Damage = list[tuple[int, int]]


def damage(size: int) -> st.SearchStrategy[Damage]:
    return st.lists(
        st.tuples(st.integers(0, size - 1), st.integers(1, 255)), min_size=1, max_size=4
    )


def apply(data: bytes, edits: Damage, cut: int | None) -> bytes:
    out = bytearray(data)
    for pos, xor in edits:
        out[pos] ^= xor
    return bytes(out[:cut] if cut is not None else out)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=damage(len(LOG_BYTES)),
    cut=st.none() | st.integers(0, len(LOG_BYTES)),
    zeros=st.integers(0, 64),
)
def test_damaged_log_yields_a_prefix_or_refuses(edits: Damage, cut: int | None, zeros: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "log.1").write_bytes(apply(LOG_BYTES, edits, cut) + bytes(zeros))
        got = []
        try:
            for entry in read_log(Path(d), 0, repair=True):
                got.append((entry.hdr, entry.txn))
        except CorruptLogError:
            pass
        assert got == TXNS[: len(got)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=damage(len(SNAP_BYTES)), cut=st.none() | st.integers(0, len(SNAP_BYTES) - 1))
def test_damaged_snapshot_is_never_valid(edits: Damage, cut: int | None) -> None:
    bad = apply(SNAP_BYTES, edits, cut)
    assume(bad != SNAP_BYTES)  # edits may cancel out
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "snapshot.19"
        path.write_bytes(bad)
        try:
            read_snapshot(path)
        except SnapshotError:
            readable = False
        else:
            readable = True
        assert verify_snapshot_file(path) == readable
        # Only a cut at a section boundary (an older layout) may still be whole.
        if readable:
            assert SNAP_BYTES.startswith(bad)
