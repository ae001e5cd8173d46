"""The job behind ``dask-prefetch stats`` and ``demo``: counts, bounding box and length histogram."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from ..engine.stats import EngineStats, job_stats, process_stats
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


# Below these, a rate or a share says more about timing noise and first blocks than about prefetching.
MIN_RATE_BYTES = 2**20  # bytes moved
MIN_RATE_SECONDS = 0.1
MIN_HIT_READS = 8  # block reads, and at least two per stream: each stream's first read is its start


@dataclass
class JobResult:
    """One job's summary and its own prefetch figures (not the workers' cumulative counters)."""

    summary: Summary
    seconds: float
    prefetch: EngineStats  # summed over the workers, for this job only
    bytes_read: int
    partitions: int = 0


def run(tractogram: Tractogram, client: Any, progress: bool | None = None, stream: TextIO | None = None) -> JobResult:
    """Summarise ``tractogram`` on ``client``'s cluster, with a progress line when ``stream`` is a terminal.

    Parameters
    ----------
    progress
        Draw the progress line (:class:`~.progress.JobProgress`: bytes fetched, partitions done);
        None: when ``stream`` is a terminal.
    stream
        Where the progress line goes (default: stderr; stdout is for the summary).
    """
    from .progress import JobProgress

    stream = stream or sys.stderr
    nbytes = sum(getattr(p, "nbytes", 0) for p in tractogram.partitions)
    before = client.run(process_stats)
    started = time.perf_counter()
    parts = tractogram.map_chunks(Summary.of).to_delayed()
    futures = client.compute(parts)
    if progress if progress is not None else stream.isatty():
        JobProgress(client, futures, nbytes, stream).wait()
    summary = Summary()
    for part in client.gather(futures):
        for s in part:
            summary = summary.merge(s)
    seconds = time.perf_counter() - started
    return JobResult(summary, seconds, job_stats(before, client.run(process_stats)), nbytes, len(parts))


def rate(nbytes: float, seconds: float) -> str | None:
    """``"55.5 MiB/s"``, or None where too few bytes or too little time make a rate meaningless."""
    if nbytes < MIN_RATE_BYTES or seconds < MIN_RATE_SECONDS:
        return None
    mib_s = nbytes / 2**20 / seconds
    return f"{mib_s:.3g} MiB/s" if mib_s < 1000 else f"{mib_s:.0f} MiB/s"


def hits(p: EngineStats) -> str:
    """The share of block reads that found their bytes already local, where there are enough to tell."""
    if p.reads < max(MIN_HIT_READS, 2 * p.files_opened) or p.hit_ratio is None:
        return f"hits n/a ({p.reads} block reads: too few to tell)"
    return f"{100 * p.hit_ratio:.0f}% of {p.reads} block reads found them already local (hits)"


def report(result: JobResult, out: Any = None) -> None:
    """Print the summary (counts, bounding box, length histogram) and this job's throughput and prefetch figures."""
    out = out or sys.stdout
    s, p = result.summary, result.prefetch
    w = out.write
    w(f"{s.streamlines:,} streamlines, {s.points:,} points in {result.seconds:.2f} s")
    read_rate = rate(result.bytes_read, result.seconds)
    if read_rate:
        w(f" ({read_rate})")
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
        fetch_rate = rate(p.bytes_fetched, result.seconds)
        tasks = result.partitions or p.files_opened
        w(
            f"prefetch, this job only: {p.files_opened} streams, {p.requests} GETs, "
            f"{p.bytes_fetched / 2**20:.1f} MiB fetched{f' ({fetch_rate})' if fetch_rate else ''}, "
            f"{p.bytes_served / 2**20:.1f} MiB served from local tiers; {hits(p)}; "
            f"waited {p.stall_seconds:.2f} s in all, {1000 * p.stall_seconds / tasks:.0f} ms per task, "
            f"{1000 * p.start_stall_seconds / p.files_opened:.0f} ms per stream before its first bytes\n"
        )
