"""The job behind ``dask-prefetch stats`` and ``demo``: counts, bounding box and length histogram."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engine.stats import EngineStats, process_stats
from ..formats import StreamlineChunk
from ..tractography.tractogram import Tractogram

LENGTH_BINS = np.linspace(0.0, 400.0, 21)  # mm; longer streamlines count in the last bin


@dataclass
class Summary:
    """What the job found, merged over partitions."""

    streamlines: int = 0
    points: int = 0
    low: np.ndarray = field(default_factory=lambda: np.full(3, np.inf))
    high: np.ndarray = field(default_factory=lambda: np.full(3, -np.inf))
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(len(LENGTH_BINS) - 1, np.int64))
    total_mm: float = 0.0

    @classmethod
    def of(cls, chunk: StreamlineChunk) -> Summary:
        """The summary of one partition's chunk (runs in a task)."""
        mm = chunk.arc_lengths()
        out = cls(len(chunk.lengths), len(chunk.points), total_mm=float(mm.sum()))
        if len(chunk.points):
            out.low, out.high = chunk.points.min(axis=0).astype(np.float64), chunk.points.max(axis=0).astype(np.float64)
        out.histogram = np.histogram(np.minimum(mm, LENGTH_BINS[-1]), LENGTH_BINS)[0]
        return out

    def merge(self, other: Summary) -> Summary:
        return Summary(
            self.streamlines + other.streamlines,
            self.points + other.points,
            np.minimum(self.low, other.low),
            np.maximum(self.high, other.high),
            self.histogram + other.histogram,
            self.total_mm + other.total_mm,
        )


@dataclass
class JobResult:
    summary: Summary
    seconds: float
    prefetch: EngineStats  # summed over the workers, for this job only
    bytes_read: int


def run(tractogram: Tractogram, client: Any, progress: bool | None = None) -> JobResult:
    """Summarise ``tractogram`` on ``client``'s cluster, with a progress bar when stderr is a terminal."""
    from distributed import progress as progress_bar

    before = _worker_stats(client)
    started = time.perf_counter()
    parts = tractogram.map_chunks(Summary.of).to_delayed()
    futures = client.compute(parts)
    if progress if progress is not None else sys.stderr.isatty():
        progress_bar(futures)
    summary = Summary()
    for part in client.gather(futures):
        for s in part:
            summary = summary.merge(s)
    seconds = time.perf_counter() - started
    after = _worker_stats(client)
    delta = EngineStats()
    for key, value in vars(after).items():
        setattr(delta, key, value if key.startswith("peak") else value - getattr(before, key))
    nbytes = sum(getattr(p, "nbytes", 0) for p in tractogram.partitions)
    return JobResult(summary, seconds, delta, nbytes)


def _worker_stats(client: Any) -> EngineStats:
    total = EngineStats()
    for stats in client.run(process_stats).values():
        total.add(stats)
    return total


def report(result: JobResult, out: Any = None) -> None:
    """Print the summary: counts, bounding box, length histogram, throughput, prefetch figures."""
    out = out or sys.stdout
    s, p = result.summary, result.prefetch
    w = out.write
    w(f"{s.streamlines:,} streamlines, {s.points:,} points in {result.seconds:.2f} s")
    if result.bytes_read:
        w(f" ({result.bytes_read / 2**20 / result.seconds:.0f} MiB/s)")
    w("\n")
    if s.streamlines:
        w(f"bounding box (mm): {np.round(s.low, 1).tolist()} .. {np.round(s.high, 1).tolist()}\n")
        w(f"mean length {s.total_mm / s.streamlines:.1f} mm; lengths (mm):\n")
        peak = max(int(s.histogram.max()), 1)
        for n, lo, hi in zip(s.histogram, LENGTH_BINS, LENGTH_BINS[1:]):
            if n:
                w(
                    f"  {lo:5.0f}-{hi:<5.0f}{'+' if hi == LENGTH_BINS[-1] else ' '} {'#' * max(1, 50 * int(n) // peak)} {n}\n"
                )
    if p.files_opened:
        w(
            f"prefetch: {p.files_opened} streams, {p.requests} GETs, {p.bytes_fetched / 2**20:.1f} MiB fetched, "
            f"{p.bytes_served / 2**20:.1f} MiB served from local tiers, "
            + (
                f"{100 * p.hit_ratio:.0f}% of {p.reads} reads of a block found it already local (hits); "
                if p.reads
                else ""
            )
            + f"waited {p.stall_seconds:.2f} s in all, "
            f"{1000 * p.start_stall_seconds / p.files_opened:.0f} ms per stream before its first bytes\n"
        )
