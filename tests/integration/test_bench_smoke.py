"""The benchmark harness still runs: bench/harness.py --smoke, end to end, in seconds.

It starts both servers standalone and as 3-server ensembles, runs every workload once for a
fraction of a second on each, then the generator check and the big-tree rows (memory,
restart, snapshot under load) on tiny trees, and writes its JSON; this test checks only that
it ran and that the JSON has its shape. Timings are never asserted (benchmarks are not tests).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
HARNESS_TIMEOUT_S = 240


def _why_not() -> str | None:
    """What bench/setup.sh would install that is missing here, or None."""
    if shutil.which("gcc") is None:
        return "gcc"
    if not Path("/usr/include/zookeeper/zookeeper.h").is_file():
        return "libzookeeper-st-dev"
    if not Path("/usr/share/java/zookeeper.jar").is_file() or shutil.which("java") is None:
        return "Debian's zookeeper"
    if importlib.util.find_spec("matplotlib") is None:
        return "matplotlib (the bench extra)"
    return None


@pytest.mark.timeout(HARNESS_TIMEOUT_S + 30)
def test_bench_smoke_runs_and_writes_results(tmp_path: Path) -> None:
    why = _why_not()
    if why:
        pytest.skip(f"bench prerequisites missing: {why}; run bench/setup.sh")
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "harness.py"),
            "--smoke",
            "--deploy",
            "standalone,ensemble",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=HARNESS_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [result_file] = tmp_path.glob("*.json")
    assert result_file.with_suffix(".png").is_file()
    results = json.loads(result_file.read_text())

    assert {"meta", "rows", "generator_check", "memory", "restart", "snapshot"} <= set(results)
    for shape in ("standalone", "ensemble"):
        names = [row["workload"] for row in results["rows"] if row["deploy"] == shape]
        assert len(names) == 15, (shape, names)
        assert any(n.startswith("getData") for n in names)
        assert any(n.startswith("watch fan-out") for n in names)
    for row in results["rows"]:
        assert set(row["runs"]) == {"zookeeper", "corral"}
        for kind in ("zookeeper", "corral"):
            median = row["median"][kind]
            assert {"ops_per_s", "p50_ms", "p99_ms", "p999_ms", "server_rss_kb"}.issubset(median)
            assert median["server_rss_kb"] > 0
            for run in row["runs"][kind]:
                assert run["errors"] == 0, (row["workload"], kind, run)
                if row["deploy"] == "ensemble" and row["workload"].startswith("getData"):
                    # The sessions spread over the members (the smoke run has 2 sessions).
                    per_server = run["per_server"]
                    assert len(per_server) == min(3, sum(per_server.values())), run
        assert "ratio_ops" in row
    assert [g["workload"] for g in results["generator_check"]] == ["getData 100B", "setData 100B"]
    for g in results["generator_check"]:
        assert set(g["median"]) == {"1", "2"}
        for runs in g["runs"].values():
            assert all(r["errors"] == 0 and r["ops"] > 0 for r in runs)
    assert sorted(m["server"] for m in results["memory"]) == ["corral"] * 2 + ["zookeeper"] * 2
    for m in results["memory"]:
        assert m["znodes"] > 0 and m["create_errors"] == 0
    assert {r["server"] for r in results["restart"]} == {"zookeeper", "corral"}
    for r in results["restart"]:
        assert r["restart_serve_s"] > 0 and r["logged_txns"] > 0
    assert {s["server"] for s in results["snapshot"]} == {"zookeeper", "corral"}
    for s in results["snapshot"]:
        assert s["errors"] == 0
        assert s["snapshots"] >= 1, s  # the watcher saw the snapshot the small snapCount made
    # The working data directories are removed after the run.
    assert not list(tmp_path.glob("work-*"))
