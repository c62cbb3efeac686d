"""The benchmark's PNG chart: ops/s and p99 latency per workload, both servers side by side;
one pair of panels per deployment shape (standalone, ensemble) that the run measured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLOURS = {"zookeeper": "#d95f02", "corral": "#1b9e77"}


def draw(results: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no screen here
    import matplotlib.pyplot as plt

    measured = [r for r in results["rows"] if r["kind"] != "idle"]
    shapes = list(dict.fromkeys(r.get("deploy", "standalone") for r in measured)) or ["-"]
    fig, axes = plt.subplots(2 * len(shapes), 1, figsize=(13, 9 * len(shapes)), squeeze=False)
    for s, shape in enumerate(shapes):
        rows = [r for r in measured if r.get("deploy", "standalone") == shape]
        kinds = list(rows[0]["median"]) if rows else []
        width = 0.8 / max(1, len(kinds))
        panels = (axes[2 * s][0], axes[2 * s + 1][0])
        for panel, (field, label) in zip(
            panels,
            (
                ("ops_per_s", f"{shape}: ops/s (log; higher is better)"),
                ("p99_ms", f"{shape}: p99 latency, ms (log; lower is better)"),
            ),
            strict=True,
        ):
            for i, kind in enumerate(kinds):
                values = [r["median"][kind][field] or 0 for r in rows]
                xs = [x + (i - (len(kinds) - 1) / 2) * width for x in range(len(rows))]
                panel.bar(xs, values, width, label=kind, color=COLOURS.get(kind))
            panel.set_yscale("log")
            panel.set_ylabel(label)
            panel.grid(axis="y", alpha=0.3)
            panel.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
            panel.set_xticks(
                range(len(rows)), [r["workload"] for r in rows], rotation=35, ha="right"
            )
    meta = results["meta"]
    fig.suptitle(
        f"Corral vs Apache ZooKeeper 3.8, forceSync on; {meta['date']} "
        f"(commit {meta['commit']}, medians of {meta['runs']} runs)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
