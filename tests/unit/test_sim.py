"""The deterministic simulator (corral.sim): seeded runs of whole ensembles under faults.

Each seed runs 3 or 5 voters (an observer in some) through a fault phase with client
traffic, then heals a majority and requires convergence; the invariants are checked after
every step. A failure names its seed and replays with `python -m corral.sim --seed N`.
Some seeds run with dynamic reconfig (`--reconfig`: joiners, reconfig requests, faults
while one is pending, and the config invariants). Longer runs: `make sim SEEDS=10000`,
`make sim SEEDS=2000 SIMFLAGS=--reconfig`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator

import pytest

from corral.sim.run import SimFailure, run_seed

# (voters, observer, seeds, reconfig): None lets the seed choose the shape. 300 seeds in all.
CHUNKS = [
    *[(None, None, range(start, start + 25), False) for start in range(0, 100, 25)],
    (3, False, range(2000, 2025), False),
    (3, True, range(2025, 2050), False),
    (5, False, range(3000, 3025), False),
    (5, False, range(3025, 3050), False),
    (5, True, range(4000, 4025), False),
    (5, True, range(4025, 4050), False),
    (None, None, range(5000, 5025), True),
    (None, None, range(5025, 5050), True),
]


@pytest.fixture(autouse=True)
def quiet_cores() -> Iterator[None]:
    # The cores log a warning for every fault they see; thousands per run.
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


@pytest.mark.parametrize(("voters", "observer", "seeds", "reconfig"), CHUNKS)
def test_seeds_stay_safe_and_converge(
    voters: int | None, observer: bool | None, seeds: range, reconfig: bool
) -> None:
    total: Counter[str] = Counter()
    committed = 0
    for seed in seeds:
        res = run_seed(seed, voters, observer, reconfig=reconfig)
        total.update(res.stats)
        committed += res.committed
    print(f"seeds {seeds.start}..{seeds.stop - 1}: {committed} committed, {dict(total)}")
    # The runs must do what they claim: elect, commit, sync every way, and suffer faults.
    assert committed > 50 * len(seeds)
    assert total["sync_DIFF"] and total["established"] >= len(seeds)
    assert total["crashes"] and total["partitions"] and total["pauses"] and total["clock_jumps"]
    assert total["forwarded"] and total["sessions"]
    if reconfig:
        # Reconfigs commit (adding joiners too), are refused, and are hit while pending.
        assert total["reconfig_OK"] > len(seeds) and total["reconfig_asked_add"]
        assert total["reconfig_BADVERSION"] and total["reconfig_NEWCONFIGNOQUORUM"]
        assert total["activations"] and total["config_adopted"] and total["reconfig_faults"]


def test_a_seed_replays_exactly() -> None:
    a = run_seed(17)
    b = run_seed(17)
    assert a.trace_hash == b.trace_hash
    assert a.stats == b.stats and a.committed == b.committed
    c = run_seed(5003, reconfig=True)
    assert c.trace_hash == run_seed(5003, reconfig=True).trace_hash and c.stats["reconfig_OK"]


def test_a_failure_names_its_seed_and_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from corral.sim import run

    real = run.shape_of
    monkeypatch.setattr(run, "shape_of", lambda *a: replace(real(*a), mutation="skip-apply"))
    with pytest.raises(SimFailure) as info:
        run_seed(0)
    text = str(info.value)
    assert "seed 0 failed" in text and "trace" in text
    assert "python -m corral.sim --seed 0" in text


def test_the_command_line_replays_a_seed_and_runs_many(capsys: pytest.CaptureFixture[str]) -> None:
    from corral.sim.__main__ import main

    assert main(["--seed", "17"]) == 0
    out = capsys.readouterr().out
    assert f"trace hash {run_seed(17).trace_hash:08x}" in out
    assert main(["--seeds", "2", "--start", "5", "--servers", "5", "--observer"]) == 0
    out = capsys.readouterr().out
    assert "2 seeds in" in out and "failures: none" in out
    assert "faults: crashes" in out and "work: epochs" in out
