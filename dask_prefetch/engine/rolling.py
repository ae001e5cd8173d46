"""The rolling prefetch engine: moves byte ranges of one logical file into storage tiers.

It knows no file format and no Dask. From the reader's *cursor* (the block it reads now) it
reserves tier space block by block, in order, and keeps up to ``concurrency`` ranged GETs in
flight on s3fs's event loop. Blocks behind the cursor are evicted at once. The reader waits on a
condition for the exact bytes it needs; every wait is bounded and raises the fetch's error.

Threads: the reader calls :meth:`view`, :meth:`move_to` and :meth:`close`; GETs run and finish on
the event loop thread. All state is guarded by one lock; a block file's descriptor is closed only
after every GET writing to it has ended.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import itertools
import logging
import os
import sys
import threading
import time
from functools import partial
from typing import Any, Callable

from s3fs.utils import FileExpired

from .blockfiles import NO_SPACE, BlockFiles, Slot
from .concurrency import AdaptiveConcurrency
from .fetch import fetch_part
from .layout import Block, Layout
from ..sources import RangeSource, source_for
from .stats import EngineStats, engine_closed, engine_opened
from .stragglers import StragglerWatch
from ..cache.tiers import DISK_FULL, TierSet, disk_bytes
from .trace import current_tracer
from .window import HeldBlock, Launch, Open, Window

logger = logging.getLogger(__name__)
_CLOSE_WAIT_SECONDS = 0.5
# Engines made in this context start with this limit (files opened ahead of their task).
opening_limit: contextvars.ContextVar[int | None] = contextvars.ContextVar("dask_prefetch_opening_limit", default=None)
_serials = itertools.count()


class PrefetchEngine:
    """Prefetch the blocks of ``layout`` ahead of a reader, into ``tiers``.

    Parameters
    ----------
    source
        Where the bytes come from (its event loop runs the GETs); a filesystem is read through
        :func:`~dask_prefetch.sources.source_for`.
    layout
        The logical file.
    tiers
        Where blocks are stored; may be shared with other engines (one budget for all).
    concurrency
        Ranged GETs in flight (at first, when ``max_concurrency`` is larger).
    retries
        Attempts for a broken body stream.
    read_timeout
        Longest :meth:`view` waits for data before raising ``TimeoutError``.
    start
        The block the reader starts at.
    stop
        The first block not prefetched (None: none such): from there on a block is fetched only
        once the reader is at it, so a reader of one byte range fetches nothing past it.
    stall_timeout
        Seconds without a byte after which a GET is resumed.
    straggler_factor
        Re-issue a GET once it has run this many times the median GET (0: never).
    max_concurrency
        Most GETs in flight: from ``concurrency`` the engine climbs towards it while throughput
        rises and backs off when the store throttles (:class:`~.concurrency.AdaptiveConcurrency`).
        None: ``concurrency``, fixed.

    Notes
    -----
    The engine reads no configuration: the filesystems resolve ``dask-prefetch.*`` once per
    ``open`` and hand every setting down.
    """

    def __init__(
        self,
        source: RangeSource | Any,
        layout: Layout,
        tiers: TierSet,
        concurrency: int,
        retries: int,
        read_timeout: float,
        start: int = 0,
        stop: int | None = None,
        *,
        stall_timeout: float,
        straggler_factor: float,
        max_concurrency: int | None = None,
    ) -> None:
        adaptive = max_concurrency is not None and max_concurrency > concurrency
        self._limit_policy = AdaptiveConcurrency(
            concurrency,
            max_concurrency if adaptive else concurrency,  # type: ignore[arg-type]
            layout.part_size,
            floor=1 if adaptive else concurrency,
        )
        self._bound = False  # the window wants more GETs than the limit allows (see _schedule)
        self.window = Window(
            [disk_bytes(b.length) for b in layout.blocks], [len(b.parts) for b in layout.blocks], concurrency, stop
        )
        if not stall_timeout > 0:
            raise ValueError(f"stall_timeout must be > 0 seconds, got {stall_timeout}")
        self.stall_timeout = float(stall_timeout)
        self._stragglers = StragglerWatch(float(straggler_factor), max_active=max(1, concurrency // 4))
        self._last_error: BaseException | None = None  # of a GET that was resumed (for timeout messages)
        self.source = source if isinstance(source, RangeSource) else source_for(source)
        self.layout = layout
        self.tiers = tiers
        self.retries = retries
        self.read_timeout = read_timeout
        self.stats = EngineStats(files_opened=1, peak_concurrency=concurrency)
        self._throttles_seen = self.source.throttles
        self._loop: asyncio.AbstractEventLoop = self.source.loop
        self._cond = threading.Condition(threading.Lock())
        self._slots: dict[int, Slot] = {}
        self._evicted: set[int] = set()
        self._cursor = start
        self._read_past_stop = False  # the reader asked for a block from ``stop`` on: fetch what it reads
        self._inflight = 0
        self._held = 0  # bytes of tier space our blocks hold
        # Bytes we may hold, cursor block aside; None: our fair share. Not None: opened ahead of the
        # reader (its task), so even our cursor block is prefetching and yields to readers' (see _shed).
        self._limit = opening_limit.get()
        self._yielded = False  # opened ahead, and gave all our space to a starved reader: wait for set_limit(None)
        if self._limit is not None:  # no more than the whole file takes (blocks are page-rounded one by one)
            self._limit = min(self._limit, self.window.total_bytes)
        self._asked_at: float | None = None  # when the reader asked for the file (see start_clock)
        self._on_first_bytes: Callable[[], None] | None = None
        self._tracer = current_tracer()
        self._traced = self._tracer.new_file(layout.shards[0].path) if self._tracer is not None else -1
        self._closed = False
        self._pid = os.getpid()  # only this process cleans up (a forked child must not delete our blocks)
        self._failure: BaseException | None = None
        self._after_error = False  # a read raised a fetch error and the reader has not asked again
        self._generation = 0  # times the reader came back after a failed read (see _failed_before_retry)
        self.files = BlockFiles(tiers)
        tiers.add_listener(self._space_released, self._pressed)
        tiers.set_cap(self._space_released, self._limit)
        engine_opened(self)
        logger.debug(
            "%s: %d blocks over %d object(s), %d GETs in flight, from block %d",
            layout.shards[0].path,
            len(layout.blocks),
            len(layout.shards),
            concurrency,
            start,
        )
        with self._cond:
            self._schedule()

    # -- reader side -------------------------------------------------------------------------

    def view(self, index: int, offset: int, have: int | None = None) -> tuple[int, int | None, int]:
        """Wait until block ``index`` has data at ``offset``.

        Parameters
        ----------
        index, offset
            The block and the offset in it the reader needs.
        have
            The serial number of the block file the caller already holds a descriptor of.

        Returns
        -------
        (serial, fd, end)
            The serial number of the block file (a block fetched again gets a new file); a new
            descriptor of it that the caller closes, or None when ``have`` is that serial; and the
            end of the bytes present from ``offset`` on, relative to the block start.

        Raises
        ------
        OSError
            The fetch's own error (``FileExpired``, a persistent S3 failure, ...). Every block
            whose GET had failed is then forgotten and nothing is fetched until the reader asks
            again: a retry once S3 is well makes fresh GETs (``FileExpired`` aside: it stays).
        TimeoutError
            If no data arrived within ``read_timeout`` seconds.
        """
        deadline = time.monotonic() + self.read_timeout
        with self._cond:
            if index >= self.window.stop and not self._read_past_stop:
                self._read_past_stop = True
                self._schedule()
            self._move_to(index)
            waited_since = None
            while True:
                self._check_open()
                slot = self._slots.get(index)
                if slot is not None and slot.error is not None and self._failed_before_retry(slot):
                    slot = None  # fetched afresh: wait for it
                elif slot is not None and slot.error is not None:
                    error = slot.error
                    if isinstance(error, FileExpired):
                        self._failure = error  # the object changed: every later read fails the same way
                    # Every block whose GET failed is forgotten, not only this one: the reader's retry,
                    # once S3 is well again, must make fresh GETs, not meet errors of the outage.
                    self._forget_failed()
                    # Fetch nothing more until the reader asks again: a retry at once, while S3 is
                    # still failing, would only hand the reader's own retry a stale error.
                    self._after_error = True
                    raise error
                if slot is not None:
                    end = slot.available(offset, self.layout.part_size)
                    if end > offset:
                        self.stats.reads += 1
                        if waited_since is not None:
                            self.stats.reads_waited += 1
                            now = time.monotonic()
                            self.stats.stall_seconds += now - waited_since
                            self._note("stall", index, waited_since, at=now)
                            # In a Dask task: the wait shows in the dashboard's Fine Performance Metrics.
                            _report_wait(now - waited_since)
                        if self._asked_at is not None:  # the reader's first bytes
                            self.stats.start_stall_seconds += time.monotonic() - self._asked_at
                            self._asked_at = None
                        if self._on_first_bytes is not None and self._start_fetched(index):
                            self._started()
                        return slot.serial, (None if have == slot.serial else os.dup(slot.fd)), end
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    block = self.layout.blocks[index]
                    retried = self.source.last_retried_error  # inside the store's client (botocore/s3fs)
                    last = f"; last GET error: {self._last_error or retried}" if self._last_error or retried else ""
                    raise TimeoutError(
                        f"{block.shard.path}: no data for logical bytes {block.start + offset}.. within "
                        f"{self.read_timeout:g} s ({self._inflight} requests in flight{last}); "
                        "raise dask-prefetch.read-timeout for slow links"
                    )
                waited_since = waited_since or time.monotonic()
                self._cond.wait(remaining)

    def move_to(self, index: int) -> None:
        """The reader continues at block ``index``: evict what is behind, re-plan ahead."""
        with self._cond:
            self._check_open()
            self._move_to(index)

    def start_clock(self, asked_at: float, on_first_bytes: Callable[[], None] | None = None) -> None:
        """The reader asked for this file at ``asked_at`` (``time.monotonic()``).

        The time from then to the first bytes it gets, opening included, is added to
        ``stats.start_stall_seconds``: what a task waits before it can start. ``on_first_bytes()``
        is called once, with this engine's lock held, when they arrive (or the file closes first).
        """
        with self._cond:
            self._asked_at = asked_at
            self._on_first_bytes = on_first_bytes

    def _started(self) -> None:
        callback, self._on_first_bytes = self._on_first_bytes, None
        if callback is not None:
            callback()

    def _start_fetched(self, reader_at: int) -> bool:
        """Whether the blocks fetched in many parts at the start (the reader's first bytes) are all local.

        Until then, ``on_first_bytes`` waits: a 1000-byte header block comes first, and others'
        GETs started then would share the link with the rest of the reader's first data.
        """
        if not self.layout.start_blocks or reader_at > self.layout.start_blocks[-1]:
            return True
        slot = self._slots.get(self.layout.start_blocks[-1])
        return slot is not None and sum(slot.filled) == slot.block.length

    def set_limit(self, nbytes: int | None) -> None:
        """Hold at most ``nbytes`` of blocks (the cursor's block always), or None for our fair share.

        A file opened ahead of the task that will read it prefetches only its first blocks,
        then the whole window once the task claims it. Until then (``nbytes`` not None) the file
        has no reader: when a reader sharing the tiers has no room for its cursor block, this
        file gives back every block, its first included, and fetches nothing more until it is
        claimed (:meth:`set_limit` with None).
        """
        with self._cond:
            self._limit = nbytes
            if nbytes is None:
                self._yielded = False
            self.tiers.set_cap(self._space_released, nbytes)
            self._schedule()

    def close(self) -> None:
        """Stop every GET, delete every block file and give the space back; idempotent.

        In a process forked from ours (``os.fork``), closing does nothing: the blocks, the scratch
        directories and the event loop belong to the parent, which goes on reading.
        """
        if os.getpid() != self._pid:
            return
        if self._on_loop_thread():  # e.g. garbage collection inside one of our own callbacks
            if not self._cond.acquire(blocking=False):
                self._loop.call_soon(self.close)  # the lock is held, maybe by this very thread: later
                return
            self._cond.release()
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()  # a reader waiting for a block no tier had room for: it raises now
            self._started()  # no first bytes will come: nobody may wait for them
            for slot in list(self._slots.values()):
                self._drop(slot, "closed")
            if not self._on_loop_thread() and self._loop_alive():
                self._cond.wait_for(lambda: not self._slots, _CLOSE_WAIT_SECONDS)
        self.tiers.remove_listener(self._space_released)
        self.files.remove()
        engine_closed(self)
        logger.debug("%s closed: %s", self.layout.shards[0].path, self.stats)

    @property
    def concurrency(self) -> int:
        """Ranged GETs in flight at most (the window's)."""
        return self.window.concurrency

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def in_flight(self) -> int:
        """Ranged GETs started and not yet ended."""
        return self._inflight

    def held_blocks(self) -> list[int]:
        """Indices of the blocks holding tier space now (for tests and metrics)."""
        with self._cond:
            return sorted(self._slots)

    # -- scheduling (caller holds the lock) --------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("I/O operation on closed file")
        if self._failure is not None:
            raise self._failure

    def _failed_before_retry(self, slot: Slot) -> bool:
        """Whether ``slot``'s GET failed in an outage the reader has already been told of.

        A GET that was running when a read raised may fail later, in the same outage (its last
        attempt began then); the reader's retry must not meet that stale error. Such a block is
        dropped and fetched afresh (an object that changed is not: that error stays).
        """
        if slot.generation == self._generation or isinstance(slot.error, FileExpired):
            return False
        self._drop(slot)
        self._schedule()
        return True

    def _move_to(self, index: int) -> None:
        resume, self._after_error = self._after_error, False  # the reader is back after a failed read
        if resume:
            self._generation += 1  # GETs started before now belong to the outage the reader was told of
            self._forget_failed()  # GETs that failed after the read raised, while the reader was away
        if index == self._cursor and not resume:
            return
        for i, why in self.window.passed(self._cursor, index, list(self._slots)):
            self._drop(self._slots[i], why)
        self._cursor = index
        if self._cursor in self._slots:
            self.tiers.satisfied(self._space_released)  # had we pressed for room, we need none now
        self._schedule()

    def _schedule(self) -> None:
        """Open blocks and start GETs as the window says, while slots and tier space allow."""
        if self._after_error or self._yielded:
            return  # until the reader asks again (see view), or our task claims us (see _shed)
        while not self._closed:
            held = self._held_blocks()
            step = self.window.next_step(self._cursor, held, self._inflight, self._read_past_stop)
            if step is None:
                self._bound = (
                    self._limit_policy.adaptive and self._inflight >= self.window.concurrency and self._wants_more(held)
                )
                return
            if isinstance(step, Launch):
                slot = self._slots[step.index]
                self._inflight += 1
                self.stats.peak_in_flight = max(self.stats.peak_in_flight, self._inflight)
                slot.outstanding += 1
                self._loop.call_soon_threadsafe(self._start_part, slot, step.part)
                slot.launched += 1
                continue
            try:
                if self._open_slot(self.layout.blocks[step.index]) is None:
                    self._bound = False  # bound by tier space, not by the GETs in flight
                    return  # no room: rescheduled when space is released
            except OSError as e:
                self._failure = e
                self._cond.notify_all()
                return

    def _wants_more(self, held: dict[int, HeldBlock]) -> bool:
        """Whether one more GET could start now but for the limit: a part to launch, or a block with room."""
        step = self.window.next_step(self._cursor, held, 0, self._read_past_stop)
        if isinstance(step, Open):
            nbytes = self.window.block_bytes[step.index]
            fits = self.window.may_hold(step.index, self._cursor, self._held, self.tiers.fair_share(), self._limit)
            return fits and any(tier.free >= nbytes and tier.unusable is None for tier in self.tiers.tiers)
        return step is not None

    def _adapt(self, nbytes: int) -> None:
        """Let the concurrency policy see ``nbytes`` arrive (and any throttling); apply its new limit."""
        policy = self._limit_policy
        if not policy.adaptive:
            return
        now = time.monotonic()
        throttles = self.source.throttles
        changed = policy.throttled(now) if throttles > self._throttles_seen else False
        self._throttles_seen = throttles
        changed = policy.arrived(nbytes, now, self._bound) or changed
        if changed:
            self.window.concurrency = policy.limit
            self.stats.peak_concurrency = max(self.stats.peak_concurrency, policy.limit)
            self.stats.concurrency_backoffs = policy.backoffs
            logger.debug("%s: %d GETs in flight at most now", self.layout.shards[0].path, policy.limit)
            self._schedule()

    def _held_blocks(self) -> dict[int, HeldBlock]:
        """The window's view of our slots."""
        return {
            i: HeldBlock(s.launched, s.dropped, s.error is not None) for i, s in self._slots.items() if i >= self._cursor
        }

    def _open_slot(self, block: Block) -> Slot | None:
        # The block a reader waits for (or soon will) comes before any prefetching: see TierSet.press.
        urgent = block.index == self._cursor and self._limit is None
        if not self.window.may_hold(block.index, self._cursor, self._held, self.tiers.fair_share(), self._limit):
            return None  # tiers shared with other files: prefetch no further than our share
        placed = None
        while placed is None:
            tier = self.tiers.reserve(block.length, self._space_released, urgent)
            while tier is None:
                if not self._make_room_after(block.index):
                    if self._nowhere_to_go():
                        full = any(t.unusable == DISK_FULL for t in self.tiers.tiers)
                        raise OSError(
                            errno.ENOSPC if full else errno.ENOENT,
                            f"{block.shard.path}: no prefetch_storage tier can hold block {block.index} "
                            f"({block.length / 2**20:.1f} MiB): " + "; ".join(self.tiers.unusable_reasons()),
                        )
                    if urgent:
                        self.tiers.press(self._space_released)  # others hold more than their share
                    return None
                tier = self.tiers.reserve(block.length, self._space_released, urgent)
            placed = self.files.create(tier, block)
        path, fd = placed
        if block.index in self._evicted:
            self.stats.blocks_refetched += 1
        slot = Slot(block, tier, path, fd, [0] * len(block.parts), next(_serials), generation=self._generation)
        self._slots[block.index] = slot
        if self._tracer is not None:
            self._note("requested", block.index, self.tiers.tiers.index(tier))
        self._held += disk_bytes(block.length)
        return slot

    def _forget_failed(self) -> None:
        """Drop every block whose GET failed: it is fetched afresh when the reader needs it again."""
        for slot in [s for s in self._slots.values() if s.error is not None]:
            self._drop(slot)

    def _nowhere_to_go(self) -> bool:
        """No tier can take a block, and no block held by anyone can be released to change that."""
        reasons = self.tiers.unusable_reasons()
        return len(reasons) == len(self.tiers.tiers) and all(t.used == 0 for t in self.tiers.tiers)

    def _make_room_after(self, index: int) -> bool:
        """Give up the furthest held block beyond ``index``; True if space was freed now."""
        victim = self.window.room_victim(index, self._held_blocks())
        if victim is None:
            return False
        self._drop(self._slots[victim])
        return victim not in self._slots

    def _drop(self, slot: Slot, why: str = "evicted") -> None:
        """Stop ``slot``'s GETs; free it now, or when the last of them has ended."""
        if not slot.dropped:
            slot.dropped = True
            self._note(why, slot.block.index)
            self._evicted.add(slot.block.index)
            if slot.outstanding and self._loop_alive():
                self._loop.call_soon_threadsafe(self._cancel_tasks, slot)
        if slot.outstanding == 0:
            self._free(slot)

    def _free(self, slot: Slot) -> None:
        if self._slots.get(slot.block.index) is not slot:
            return  # freed already
        del self._slots[slot.block.index]
        os.close(slot.fd)
        try:
            os.unlink(slot.path)
        except FileNotFoundError:
            pass
        self._held -= disk_bytes(slot.block.length)
        self.tiers.release(slot.tier, slot.block.length)
        self._cond.notify_all()

    # -- event loop side ---------------------------------------------------------------------

    def _start_part(self, slot: Slot, p: int) -> None:
        with self._cond:
            if slot.dropped or self._closed:
                self._part_ended(slot, p, None)
                return
            coro = fetch_part(
                self.source,
                slot.block.shard,
                slot.block.parts[p],
                slot.fd,
                partial(self._arrived, slot, p),
                self.retries,
                self.stall_timeout,
                self._stragglers,
                self._retried,
            )
            task = self._loop.create_task(coro)
            slot.tasks[p] = task
            self.stats.requests += 1
        task.add_done_callback(partial(self._task_done, slot, p))

    def _arrived(self, slot: Slot, p: int, nbytes: int) -> None:
        with self._cond:
            slot.filled[p] += nbytes
            self.stats.bytes_fetched += nbytes
            if self._tracer is not None and sum(slot.filled) == slot.block.length:
                self._note("arrived", slot.block.index)
            if self._on_first_bytes is not None and self._asked_at is None and self._start_fetched(self._cursor):
                self._started()  # the reader has its first bytes, and now the rest of its first data
            self._cond.notify_all()
            self._adapt(nbytes)

    def _retried(self, how: str, error: BaseException | None) -> None:
        with self._cond:
            if how == "reissued":
                self.stats.gets_reissued += 1
            else:
                self.stats.gets_resumed += 1
                self._last_error = error

    def _task_done(self, slot: Slot, p: int, task: asyncio.Task) -> None:
        with self._cond:
            self._part_ended(slot, p, task)

    def _part_ended(self, slot: Slot, p: int, task: asyncio.Task | None) -> None:
        slot.tasks.pop(p, None)
        slot.outstanding -= 1
        self._inflight -= 1
        if task is not None and not task.cancelled():
            error = task.exception()
            if error is None:
                slot.finished += 1
                if slot.ready and not slot.dropped:
                    final = slot.path[: -len(".part")]
                    try:
                        os.rename(slot.path, final)
                        slot.path = final
                    except OSError:  # the directory went away under us: the data is safe in our descriptor
                        pass
            elif isinstance(error, OSError) and error.errno in NO_SPACE and not slot.dropped:
                self.tiers.set_unusable(slot.tier, DISK_FULL)
                self._drop(slot)  # fetched again, in another tier
            elif slot.error is None and not slot.dropped:
                slot.error = error
                self._cancel_tasks(slot)
        if slot.dropped and slot.outstanding == 0:
            self._free(slot)
        self._schedule()
        self._cond.notify_all()

    def _cancel_tasks(self, slot: Slot) -> None:
        for task in list(slot.tasks.values()):
            task.cancel()

    def _space_released(self) -> None:
        if not self._closed and self._loop_alive():
            self._loop.call_soon_threadsafe(self._reschedule)

    def _reschedule(self) -> None:
        with self._cond:
            self._schedule()

    def _pressed(self) -> None:
        if not self._closed and self._loop_alive():
            self._loop.call_soon_threadsafe(self._shed)

    def _shed(self) -> None:
        """Give back the furthest blocks ahead of the reader until we hold no more than our share.

        A file opened ahead of its task has no reader yet: it gives back every block, its cursor
        block too, and waits to be claimed. Otherwise, with a budget of one block, its first
        block would keep the running task's reader from ever getting room for its next one,
        and the task would never end to claim it (the wait cycle of issue #16, item 4).
        """
        with self._cond:
            if self._closed:
                return
            if self._limit is not None:
                self._yielded = True
                self.tiers.set_cap(self._space_released, 0)  # holding nothing: the readers share the rest
                for slot in list(self._slots.values()):
                    self._drop(slot)
                return
            for index in self.window.to_shed(self._cursor, list(self._slots), self._held, self.tiers.fair_share()):
                self._drop(self._slots[index])

    def _note(self, kind: str, block: int, detail: object = None, at: float | None = None) -> None:
        if self._tracer is not None:
            self._tracer.add(self._traced, kind, block, detail, at)

    def _loop_alive(self) -> bool:
        return not self._loop.is_closed()

    def _on_loop_thread(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False


def _report_wait(seconds: float) -> None:
    """A reader's wait, for distributed's Fine Performance Metrics (``prefetch-wait``) inside a Dask task.

    The engine knows no Dask: it reports only where ``distributed`` already runs (a worker has
    imported it), and never imports it itself.
    """
    metrics = sys.modules.get("distributed.metrics")
    if metrics is not None:
        metrics.context_meter.digest_metric("prefetch-wait", seconds, "seconds")
