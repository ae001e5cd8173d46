"""``dask-prefetch bench``: run the benchmark scripts of a source checkout, merge their JSON, plot it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

SCRIPTS = ("prefetch", "tractogram", "cluster", "parsers")


def benchmarks_dir() -> Path:
    """``benchmarks/`` of the checkout this package runs from (they are not part of the wheel)."""
    here = Path(__file__).resolve().parents[2] / "benchmarks"
    if not (here / "bench_prefetch.py").is_file():
        raise click.ClickException(
            "dask-prefetch bench runs the benchmark scripts of a source checkout "
            "(git clone the project, then `pip install -e .[test]` there)"
        )
    return here


def run_benchmarks(only: tuple[str, ...], repeat: int | None, out: Path) -> dict[str, Any]:
    """Run each script (in a child process, as a user would), collecting the JSON each writes."""
    folder = benchmarks_dir()
    out.mkdir(parents=True, exist_ok=True)
    merged: dict[str, Any] = {}
    for name in only or SCRIPTS:
        target = out / f"bench_{name}.json"
        command = [sys.executable, str(folder / f"bench_{name}.py"), "--json", str(target)]
        if repeat is not None:
            command += ["--repeat", str(repeat)]
        click.echo(f"$ {' '.join(command[1:])}", err=True)
        if subprocess.run(command, cwd=folder.parent).returncode != 0:
            raise click.ClickException(f"bench_{name}.py failed (its output is above)")
        merged[name] = json.loads(target.read_text())
    (out / "bench.json").write_text(json.dumps(merged, indent=2))
    return merged


def targets(merged: dict[str, Any]) -> list[tuple[str, str, float, float, bool]]:
    """``(benchmark, target, value, limit, met)`` for every target the scripts checked."""
    rows = []
    for name, report in merged.items():
        limits = report.get("target_limits", {})
        for target, value in report.get("targets", {}).items():
            limit = limits.get(target)
            if isinstance(value, (int, float)) and isinstance(limit, (int, float)):
                at_least = ">=" in target or "faster" in target  # else an upper bound
                met = value >= limit if at_least else value <= limit
                rows.append((name, target, float(value), float(limit), met))
    return rows


def plot(merged: dict[str, Any], path: Path) -> None:
    """One panel per benchmark workload: median seconds per method."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    panels: list[tuple[str, dict[str, float]]] = []
    for name, report in merged.items():
        medians = report.get("medians", {})
        if medians and all(isinstance(v, dict) for v in medians.values()):
            panels += [(f"{name}: {workload}", times) for workload, times in medians.items()]
        elif medians:
            panels.append((name, medians))
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 1.2 + 0.4 * sum(len(t) for _, t in panels)), squeeze=False)
    for ax, (title, times) in zip(axes[:, 0], panels):
        ordered = sorted(times.items(), key=lambda kv: kv[1])
        ax.barh([k for k, _ in ordered], [v for _, v in ordered], color="tab:blue")
        ax.invert_yaxis()
        ax.set_title(title, fontsize="medium", loc="left")
        ax.set_xlabel("median seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
