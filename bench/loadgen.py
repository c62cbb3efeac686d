"""The load generator: builds bench/zkload.c against libzookeeper_st and runs it.

The C program prints START when its measured window opens and END when it closes; this
module samples the server processes, the generator itself and the machine's cores at
both marks, so CPU figures cover exactly the window.

`run(..., procs=N)` splits the load over N generator processes (the generator check: the
same rate with one process or two says the generator is not what limits it). Their windows
overlap but are not identical: rates are summed per process, the server's CPU is taken from
the first START to the last END.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from servers import Deployment, proc_cpu_s

BENCH = Path(__file__).resolve().parent
SOURCE = BENCH / "zkload.c"
BUILD = BENCH / "build"
BINARY = BUILD / "zkload"
RUN_TIMEOUT_S = 600.0


def unavailable() -> str | None:
    """Why the generator cannot be built here, or None."""
    if shutil.which("gcc") is None:
        return "gcc is missing (bench/setup.sh installs it)"
    if not Path("/usr/include/zookeeper/zookeeper.h").is_file():
        return "libzookeeper-st-dev is missing (bench/setup.sh installs it)"
    return None


def build() -> Path:
    """Compile the generator when the source is newer than the binary."""
    if BINARY.is_file() and BINARY.stat().st_mtime >= SOURCE.stat().st_mtime:
        return BINARY
    BUILD.mkdir(exist_ok=True)
    subprocess.run(
        ["gcc", "-O2", "-Wall", "-Wextra", "-o", str(BINARY), str(SOURCE), "-lzookeeper_st"],
        check=True,
    )
    return BINARY


def cores_busy() -> list[tuple[int, int]]:
    """(busy, total) jiffies per core from /proc/stat."""
    out = []
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3].isdigit():
            values = [int(v) for v in line.split()[1:]]
            idle = values[3] + values[4]
            out.append((sum(values) - idle, sum(values)))
    return out


@dataclasses.dataclass
class Sample:
    """Readings at one mark."""

    at: float
    server_cpu_s: float
    gen_cpu_s: float
    cores: list[tuple[int, int]]

    @classmethod
    def take(cls, deployment: Deployment, gen_pid: int) -> Sample:
        return cls(time.monotonic(), deployment.cpu_s(), proc_cpu_s(gen_pid), cores_busy())


def _follow(
    proc: subprocess.Popen[str], deployment: Deployment
) -> tuple[dict[str, Sample], dict[str, Any] | None]:
    """Sample at the generator's marks; its JSON result once it has exited."""
    marks: dict[str, Sample] = {}
    result: dict[str, Any] | None = None
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            line = line.strip()
            if line in ("START", "END"):
                marks[line] = Sample.take(deployment, proc.pid)
            elif line.startswith("{"):
                result = json.loads(line)
        proc.wait(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return marks, result


Started = Callable[[subprocess.Popen[str]], None]


def _launch(
    deployment: Deployment,
    workload: str,
    args: list[str],
    gen_cpus: str | None,
    errors: Any,
) -> subprocess.Popen[str]:
    cmd = [str(BINARY), deployment.connect_string, workload, *args]
    if gen_cpus is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", gen_cpus, *cmd]
    # Its stderr goes to a file: a pipe nobody reads while it runs could fill and stall it.
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors, text=True)


def _one(
    deployment: Deployment,
    workload: str,
    args: list[str],
    gen_cpus: str | None,
    started: Started | None,
) -> tuple[dict[str, Sample], dict[str, Any]]:
    """Run one generator process to its end: its marks' samples and its JSON."""
    with tempfile.TemporaryFile(mode="w+") as errors:
        proc = _launch(deployment, workload, args, gen_cpus, errors)
        if started is not None:
            started(proc)
        marks, result = _follow(proc, deployment)
        errors.seek(0)
        stderr = errors.read()
    if proc.returncode != 0 or result is None or set(marks) != {"START", "END"}:
        raise RuntimeError(f"zkload {workload} failed ({proc.returncode}): {stderr[-2000:]}")
    result["gen_cpu_share"] = _share(marks, lambda m: m.gen_cpu_s)
    return marks, result


def _share(marks: dict[str, Sample], value: Callable[[Sample], float]) -> float:
    wall = marks["END"].at - marks["START"].at
    return (value(marks["END"]) - value(marks["START"])) / wall if wall > 0 else 0.0


def run(
    deployment: Deployment,
    workload: str,
    args: list[str],
    gen_cpus: str | None,
    procs: int = 1,
    started: Started | None = None,
) -> dict[str, Any]:
    """Run one workload once; the generator's JSON plus server-side measurements.

    With `procs` > 1, every process gets `args` (give each its share of the sessions) and a
    node-name tag of its own; `started` is called with each process once it runs."""
    if procs == 1:
        marks, result = _one(deployment, workload, args, gen_cpus, started)
        return _measured(deployment, result, marks["START"], marks["END"])
    outcomes: list[tuple[dict[str, Sample], dict[str, Any]] | BaseException] = [
        RuntimeError("not run")
    ] * procs

    def one(i: int) -> None:
        try:
            tagged = [*args, "-P", f"g{i}_"]
            outcomes[i] = _one(deployment, workload, tagged, gen_cpus, started)
        except BaseException as e:  # re-raised below, in the caller's thread
            outcomes[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(procs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done: list[tuple[dict[str, Sample], dict[str, Any]]] = []
    for o in outcomes:
        if isinstance(o, BaseException):
            raise o
        done.append(o)
    results = [r for _, r in done]
    first = min((m["START"] for m, _ in done), key=lambda s: s.at)
    last = max((m["END"] for m, _ in done), key=lambda s: s.at)
    combined: dict[str, Any] = {
        "workload": results[0]["workload"],
        "procs": procs,
        "ops": sum(r["ops"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "ops_per_s": sum(r["ops_per_s"] for r in results),
        # Percentiles do not add up: the worst process's stands for all.
        **{k: max(r[k] for r in results) for k in ("p50_ms", "p99_ms", "p999_ms", "max_ms")},
        "gen_cpu_share": sum(r["gen_cpu_share"] for r in results),
        "per_process": results,
    }
    return _measured(deployment, combined, first, last)


def _measured(
    deployment: Deployment, result: dict[str, Any], start: Sample, end: Sample
) -> dict[str, Any]:
    wall = end.at - start.at
    server_cpu = end.server_cpu_s - start.server_cpu_s
    result["wall_s"] = wall
    result["server_cpu_s"] = server_cpu
    result["server_cpu_share"] = server_cpu / wall if wall > 0 else 0.0
    result["core_busy"] = [
        (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
        for (b0, t0), (b1, t1) in zip(start.cores, end.cores, strict=True)
    ]
    ops = result["ops"]
    result["server_cpu_s_per_1k_ops"] = server_cpu / ops * 1000 if ops else None
    result["server_rss_kb"] = deployment.rss_kb()
    return result
