"""Counters of prefetching files: per file (:class:`EngineStats`) and per process (:func:`process_stats`)."""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from .rolling import PrefetchEngine


@dataclass
class EngineStats:
    """Counters of one engine (or totals of several), for benchmarks and metrics."""

    bytes_fetched: int = 0
    requests: int = 0
    stall_seconds: float = 0.0
    blocks_refetched: int = 0
    peak_in_flight: int = 0
    bytes_served: int = 0  # bytes handed to the reader
    start_stall_seconds: float = 0.0  # from asking for a file (opening included) to its first bytes
    files_opened: int = 0
    reads: int = 0  # times the reader asked for bytes not yet in hand (about once per block)
    reads_waited: int = 0  # ... and had to wait for them: the rest are prefetch hits
    gets_resumed: int = 0  # GETs that broke or stalled and were resumed
    gets_reissued: int = 0  # straggling GETs raced by a second one
    peak_concurrency: int = 0  # the highest limit on GETs in flight (adaptive concurrency)
    concurrency_backoffs: int = 0  # times a throttling answer halved that limit

    @property
    def hit_ratio(self) -> float | None:
        """Share of the reader's requests for bytes that found them already local (None before any)."""
        return 1 - self.reads_waited / self.reads if self.reads else None

    def add(self, other: EngineStats) -> None:
        """Accumulate ``other`` (peaks take the maximum, the rest add up)."""
        for key, value in vars(other).items():
            mine = getattr(self, key)
            setattr(self, key, max(mine, value) if key.startswith("peak") else mine + value)

    def since(self, earlier: EngineStats) -> EngineStats:
        """What was counted between ``earlier`` and these totals (peaks are these totals' own)."""
        out = EngineStats()
        for key, value in vars(self).items():
            setattr(out, key, value if key.startswith("peak") else value - getattr(earlier, key))
        return out


def job_stats(before: Mapping[str, EngineStats], after: Mapping[str, EngineStats]) -> EngineStats:
    """Counters of one job: two snapshots of ``client.run(process_stats)`` taken around it, summed over workers.

    The counters are cumulative per process (as are the workers' metrics and Prometheus counters);
    their difference is what the job in between did. A worker that joined in between counts from
    zero; one that left is not counted. The totals are per process: on a cluster whose workers
    share one process (``LocalCluster(processes=False)``) take one worker's entry, not their sum.

    Examples
    --------
    >>> before = client.run(dask_prefetch.process_stats)  # doctest: +SKIP
    >>> lengths = tg.lengths.compute()  # doctest: +SKIP
    >>> job = job_stats(before, client.run(dask_prefetch.process_stats))  # doctest: +SKIP
    >>> job.bytes_fetched, job.hit_ratio, job.stall_seconds / tg.npartitions  # doctest: +SKIP
    """
    total = EngineStats()
    for worker, stats in after.items():
        total.add(stats.since(before.get(worker, EngineStats())))
    return total


_live: weakref.WeakSet[PrefetchEngine] = weakref.WeakSet()
_closed = EngineStats()
_lock = threading.Lock()


def engine_opened(engine: PrefetchEngine) -> None:
    with _lock:
        _live.add(engine)


def engine_closed(engine: PrefetchEngine) -> None:
    with _lock:
        if engine in _live:
            _live.discard(engine)
            _closed.add(engine.stats)


def process_stats() -> EngineStats:
    """Totals over every prefetching file this process has opened (open ones included).

    With or without the worker plugin: ``client.run(dask_prefetch.process_stats)`` gives them per
    worker.
    """
    with _lock:
        total = EngineStats()
        total.add(_closed)
        for engine in list(_live):
            total.add(engine.stats)
        return total
