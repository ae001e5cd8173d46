"""A progress line for a job on a cluster that moves while partitions download, not only when they finish.

distributed's own bar counts finished tasks; here each task reads and parses a whole partition
before its compute, and with cross-task prefetch the partitions finish close together at the end,
so it sits at 0 % for most of the job. This one follows the bytes the workers fetch (their
:func:`~dask_prefetch.engine.stats.process_stats`, polled) and counts partitions done beside them.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Sequence, TextIO

from ..engine.stats import process_stats


@dataclass(frozen=True)
class Update:
    """One redraw: seconds since the start, bytes fetched by the workers for this job, partitions done."""

    seconds: float
    fetched: int
    done: int


class JobProgress:
    """Draw ``[####......]  40% of 190 MiB fetched | 3/8 partitions done | 1.2 s`` until ``futures`` finish.

    Parameters
    ----------
    client
        The ``distributed.Client`` the futures belong to.
    futures
        One future per partition.
    total_bytes
        The bytes the job reads (0 when unknown, e.g. local files: the bar then counts partitions).
    stream
        Where the line is drawn (``\\r`` redraws it; a newline ends it).
    interval
        Seconds between redraws.
    """

    def __init__(
        self, client: Any, futures: Sequence[Any], total_bytes: int, stream: TextIO, interval: float = 0.2
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.client = client
        self.futures = list(futures)
        self.total_bytes = total_bytes
        self.stream = stream
        self.interval = interval
        self.updates: list[Update] = []

    def wait(self) -> None:
        """Redraw every ``interval`` until every future is finished (done, failed or cancelled)."""
        from distributed import wait

        started = time.perf_counter()
        base = self._fetched()
        while True:
            done = sum(f.done() for f in self.futures)
            update = Update(time.perf_counter() - started, max(0, self._fetched() - base), done)
            self.updates.append(update)
            self.stream.write("\r" + self.line(update))
            self.stream.flush()
            if done == len(self.futures):
                break
            try:
                wait(self.futures, timeout=self.interval)
            except (TimeoutError, asyncio.TimeoutError):  # the same class from Python 3.11 on
                pass
        self.stream.write("\n")
        self.stream.flush()

    def fraction(self, update: Update) -> float:
        """How far the job is: bytes fetched where known (below 1 until every partition is done), else partitions."""
        n = len(self.futures)
        if update.done == n:
            return 1.0
        if self.total_bytes and update.fetched:
            return min(update.fetched / self.total_bytes, 0.99)
        return update.done / n if n else 1.0

    def line(self, update: Update, width: int = 30) -> str:
        fraction = self.fraction(update)
        bar = "#" * int(width * fraction)
        fetched = (
            f" of {self.total_bytes / 2**20:.0f} MiB fetched" if self.total_bytes and update.fetched else " "
        )
        return (
            f"[{bar:.<{width}}] {100 * fraction:3.0f}%{fetched} | {update.done}/{len(self.futures)} partitions done"
            f" | {update.seconds:.1f} s"
        )

    def _fetched(self) -> int:
        return sum(stats.bytes_fetched for stats in self.client.run(process_stats).values())
