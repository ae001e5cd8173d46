"""Cross-task prefetch: open the next read tasks' streams while the current ones compute.

A worker holds its queue of ready tasks in priority order. When :class:`PrefetchSchedulerPlugin`
places the read tasks, a worker receives them ahead of time (instead of one at a time as threads
free up), so the queue says which partitions the worker reads next. Whenever a task becomes
ready or starts, the worker opens the first stream of the next read tasks in the queue,
prefetching at most ``head_bytes`` of each into the worker's tiers: as many tasks as it takes for
those heads to add up to ``head_bytes`` per worker thread (small partitions: several per thread),
or a fixed ``lookahead``. When such a task runs,
its ``S3PrefetchFileSystem.open`` of that stream is handed the file already open (its first
blocks local), and its window grows to the usual size: the task starts without waiting for the
network. Files that no task claims (the task was stolen, cancelled, or opened something else)
are closed when their task leaves the worker's queue.

Running tasks come first: while a read task that had nothing opened ahead waits for its first
bytes (the first task of each thread, when a job starts), nothing is opened ahead, so its GETs
do not share the link, the event loop and the cores with the next tasks' (measured: first bytes
after ~250 ms instead of ~70 ms, 50 ms WAN, 2 workers).

Threads: :meth:`NextTaskPrefetcher.transition` runs on the worker's event loop and only looks at
the queue; opening (HEAD requests, scratch directories) happens on one background thread;
:meth:`NextTaskPrefetcher.claim` runs in task threads.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import threading
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Hashable

from ..engine.rolling import opening_limit
from .tasks import PartitionRead, find_partition_read

if TYPE_CHECKING:
    from ..fs.file import PrefetchFile

logger = logging.getLogger(__name__)

_QUEUED = ("ready", "constrained")  # states of tasks waiting for a thread on this worker
#: Longest the opening ahead waits for running read tasks' first bytes.
START_GATE_SECONDS = 2.0


class NextTaskPrefetcher:
    """Open, ahead of time, the first stream of the read tasks a worker will run next.

    Parameters
    ----------
    worker
        The ``distributed.Worker``.
    lookahead
        Read tasks, among the next in the queue, opened ahead; None: enough for their heads to
        add up to ``head_bytes`` per thread (at most 4 tasks per thread).
    head_bytes
        Bytes each file opened ahead may prefetch before its task claims it.
    acting
        ``acting()`` is a context manager under which ``S3PrefetchFileSystem.open`` draws on the
        worker's tiers (the background thread runs no task).
    claim_timeout
        Longest a task waits for the opening of its stream, begun ahead, to finish.
    budget
        The worker's tier budget: heads opened ahead hold at most half of it.
    """

    def __init__(
        self,
        worker: Any,
        lookahead: int | None,
        head_bytes: int,
        acting: Callable[[], ContextManager[Any]],
        claim_timeout: float,
        budget: int | None = None,
    ) -> None:
        self.worker = worker
        self.lookahead = lookahead
        self.head_bytes = head_bytes
        self.claim_timeout = claim_timeout
        self.budget = budget
        self._acting = acting
        self._reads: dict[Hashable, PartitionRead | None] = {}  # event loop thread only
        self._opened: dict[Hashable, concurrent.futures.Future] = {}  # guarded by _lock
        self._lock = threading.Lock()
        self._started = threading.Condition(self._lock)  # notified as running reads get first bytes
        self._starting: set[Hashable] = set()  # running read tasks waiting for first bytes; guarded by _lock
        self._closed = False
        self._plan_pending = False
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="dask-prefetch-next")
        self.opened_ahead = 0
        self.claimed = 0
        self.held_back = 0  # openings that waited for running reads' first bytes

    # -- event loop side ---------------------------------------------------------------------

    def transition(self, key: Hashable, start: str, finish: str) -> None:
        """A task of this worker changed state: drop what it no longer needs, open what comes next."""
        if finish == "executing" and self.lookahead != 0:
            ts = self.worker.state.tasks.get(key)
            if ts is not None and self._read_of(ts) is not None:
                with self._lock:
                    self._starting.add(key)  # until it has first bytes: see _open
        if start == "executing":
            self._started_reading(key)
        if start in _QUEUED + ("executing",) and finish != "executing":
            self._reads.pop(key, None)
            self._discard(key)  # left the worker (stolen, cancelled) or ended without claiming it
        if (finish in _QUEUED + ("executing",) or start in _QUEUED) and not self._plan_pending:
            self._plan_pending = True  # once per batch of transitions, not once per task
            self.worker.loop.add_callback(self._plan)

    def _plan(self) -> None:
        self._plan_pending = False
        if self._closed or self.lookahead == 0:
            return
        state = self.worker.state
        threads = max(1, state.nthreads)
        most = self.lookahead if self.lookahead is not None else 4 * threads
        wanted_bytes = self.head_bytes * threads if self.lookahead is None else float("inf")
        if self.budget is not None:
            wanted_bytes = min(wanted_bytes, self.budget // 2)  # heads never take most of the tiers
        chosen: list[tuple[Hashable, PartitionRead]] = []
        heads = 0
        for ts in state.ready.peekn(4 * most + 4):
            read = self._read_of(ts)
            if read is None:
                continue
            chosen.append((ts.key, read))
            heads += min(self.head_bytes, getattr(read.partition, "nbytes", 0) or self.head_bytes)
            if len(chosen) == most or heads >= wanted_bytes:
                break
        with self._lock:
            for key, read in chosen:
                if key not in self._opened:
                    self._opened[key] = self._executor.submit(self._open, key, read)
                    self.opened_ahead += 1
                    logger.debug("opening ahead for task %s", key)

    def _read_of(self, ts: Any) -> PartitionRead | None:
        if ts.key not in self._reads:
            read = find_partition_read(ts.run_spec)
            if read is not None and not _opens_on_worker_tiers(read):
                read = None
            self._reads[ts.key] = read
        return self._reads[ts.key]

    # -- background thread -------------------------------------------------------------------

    def _open(self, key: Hashable, read: PartitionRead) -> PrefetchFile | None:
        with self._lock:
            if self._starting and not self._closed:  # running reads are waiting for their first bytes
                self.held_back += 1
                self._started.wait_for(lambda: not self._starting or self._closed, START_GATE_SECONDS)
            if self._opened.get(key) is None or self._closed:
                return None  # discarded before we got to it
        token = opening_limit.set(self.head_bytes)  # from its first GET on: only the head until claimed
        try:
            with self._acting():
                return read.opener.open(*read.partition.first_stream())
        finally:
            opening_limit.reset(token)

    # -- task threads ------------------------------------------------------------------------

    def claim(self, fs: Any, paths: list[str], open_kwargs: dict, offset: int) -> PrefetchFile | None:
        """The file opened ahead for the running task, if it is the stream asked for, else None."""
        key = self.worker.active_threads.get(threading.get_ident())
        with self._lock:
            future = self._opened.get(key) if key is not None else None
        if future is None:
            return None
        if future.cancel():  # not begun yet (behind other openings): the task opens it sooner itself
            self._discard(key)
            return None
        self._started_reading(key)  # its file has been prefetching: no need to hold the others back
        try:
            f = future.result(timeout=self.claim_timeout)
        except Exception:  # the task's own open will meet (and raise) the same problem, if any
            self._discard(key)
            return None
        if f is None or not _same_stream(f, fs, paths, open_kwargs, offset):
            self._discard(key)  # the task reads something else first: give the space back now
            return None
        with self._lock:
            if self._opened.get(key) is not future:
                return None  # discarded meanwhile (and so closed)
            del self._opened[key]
            self.claimed += 1
        logger.debug("task %s starts on %s, opened ahead", key, f.name)
        f.engine.set_limit(None)
        return f

    def on_first_bytes(self) -> Callable[[], None] | None:
        """For the running task's file: a callback for its first bytes (lets the opening ahead go on)."""
        key = self.worker.active_threads.get(threading.get_ident())
        return None if key is None else functools.partial(self._started_reading, key)

    def _started_reading(self, key: Hashable) -> None:
        with self._lock:
            if key in self._starting:
                self._starting.discard(key)
                self._started.notify_all()

    # -- ending ------------------------------------------------------------------------------

    def _discard(self, key: Hashable) -> None:
        with self._lock:
            future = self._opened.pop(key, None)
            if future is not None and not self._closed:
                # Closed on the background thread, after the opening (it is first in line): a close
                # may wait for GETs to wind down, which must not happen on the worker's event loop.
                self._executor.submit(_close_result, future)

    def close(self) -> None:
        """Close every file opened ahead and stop the background thread."""
        with self._lock:
            self._closed = True
            self._started.notify_all()
            futures, self._opened = list(self._opened.values()), {}
        for future in futures:
            future.add_done_callback(_close_result)
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._reads.clear()

    def pending(self) -> int:
        """Files opened ahead and not yet claimed."""
        with self._lock:
            return len(self._opened)


def _opens_on_worker_tiers(read: PartitionRead) -> bool:
    """Tasks that open S3 without their own ``prefetch_storage`` draw on the worker's tiers."""
    opener = read.opener
    return getattr(opener, "fs", None) is not None and opener.open_kwargs.get("prefetch_storage") is None


def _same_stream(f: PrefetchFile, fs: Any, paths: list[str], open_kwargs: dict, offset: int) -> bool:
    return (
        type(f.fs) is type(fs)
        and f.fs.storage_options == fs.storage_options
        and list(f.paths) == list(paths)
        and f.open_kwargs == open_kwargs
        and f.tell() == offset
    )


def _close_result(future: concurrent.futures.Future) -> None:
    if future.cancelled() or future.exception() is not None:
        if not future.cancelled():
            logger.debug("opening ahead failed: %r", future.exception())
        return
    f = future.result()
    if f is not None:
        f.close()
