"""One ranged read of a pinned object version, from a :class:`~.sources.RangeSource`, streamed into a block file.

The body is written in pieces with ``os.pwrite`` as it arrives, so memory does not grow with
the size of a part or with the number of GETs in flight. A body stream that breaks or stalls,
or a store that answers with other bytes than the range, is asked again from the first missing
byte, with backoff and jitter; errors of the request itself (``503 SlowDown``, ...) are retried
by the store's client (s3fs and botocore for S3). A GET far slower than its peers is re-issued
(see :mod:`dask_prefetch.engine.stragglers`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from functools import partial
from typing import Any, Callable

from s3fs.utils import FileExpired

from .layout import Part, Shard
from ..sources import RangeSource
from ..sources.errors import STREAM_ERRORS, RangeNotHonouredError
from .stragglers import StragglerWatch

logger = logging.getLogger(__name__)
#: Largest piece read from a body before it is written out.
CHUNK_BYTES = 1 << 20

class ShortBodyError(OSError):
    """The server closed a body before sending every byte of the range."""


class StalledError(TimeoutError):
    """A GET sent no byte for longer than the stall timeout."""


async def fetch_part(
    source: RangeSource,
    shard: Shard,
    part: Part,
    fd: int,
    on_bytes: Callable[[int], None],
    retries: int,
    stall_timeout: float = 60.0,
    watch: StragglerWatch | None = None,
    on_retry: Callable[[str, BaseException | None], None] | None = None,
) -> None:
    """Download object bytes ``part.start:part.stop`` of ``shard`` into ``fd`` at ``part.block_offset``.

    Parameters
    ----------
    source
        Where the bytes come from (the store's client, credentials and retry settings).
    shard
        The object, pinned to ``shard.etag`` / ``shard.version_id``.
    part
        The byte range and where it goes in the block file.
    fd
        An open, writable block file.
    on_bytes
        Called with the number of new contiguous bytes present, after they are written (on the event loop).
    retries
        Attempts in a row, without progress, for a GET that fails, breaks or stalls.
    stall_timeout
        Seconds without a byte (headers or body) after which a GET is abandoned and resumed.
    watch
        Durations of the engine's GETs: a GET far slower than its peers is re-issued for the rest of
        its range, and the first of the two to finish wins. None: never re-issue.
    on_retry
        Called with ``("resumed", error)`` or ``("reissued", None)`` when either happens.

    Raises
    ------
    s3fs.utils.FileExpired
        If the object is no longer the pinned version.
    OSError
        If the store keeps failing (the last error is the cause).
    """
    loop = asyncio.get_running_loop()
    began = loop.time()
    progress = _Progress(on_bytes)
    stream = partial(_stream, source, shard, part, fd, progress, retries, stall_timeout, on_retry)
    racers = [asyncio.ensure_future(stream())]
    try:
        if watch is not None and watch.factor:
            await _reissue_if_straggling(watch, racers, stream, progress, part, began, shard.path, on_retry)
        error: BaseException | None = None
        pending = set(racers)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                failure = task.exception()
                if failure is None:
                    if watch is not None and len(racers) == 1:
                        watch.record(loop.time() - began)
                    return
                if isinstance(failure, FileExpired):
                    raise failure
                error = error or failure
        assert error is not None
        raise error
    finally:
        await _settle(racers)
        if len(racers) > 1:
            watch.end_reissue()  # type: ignore[union-attr]


async def _reissue_if_straggling(
    watch: StragglerWatch,
    racers: list[asyncio.Future],
    stream: Callable[[], Any],
    progress: _Progress,
    part: Part,
    began: float,
    path: str,
    on_retry: Callable[[str, BaseException | None], None] | None,
) -> None:
    """Wait while the GET in ``racers`` runs; once it is a straggler, add a second GET (when one may start)."""
    loop = asyncio.get_running_loop()
    while True:
        patience = watch.patience()  # None until enough GETs have finished: look again later
        elapsed = loop.time() - began
        straggling = patience is not None and elapsed >= patience
        if straggling and watch.take_reissue():
            logger.debug("%s: bytes %d-%d straggling after %.2f s; re-issued", path, part.start, part.stop - 1, elapsed)
            if on_retry is not None:
                on_retry("reissued", None)
            racers.append(asyncio.ensure_future(stream()))
            return
        wait = watch.floor if patience is None or straggling else patience - elapsed  # straggling: wait for a turn
        done, _ = await asyncio.wait(racers, timeout=wait)
        if done or progress.done >= part.length:
            return


class _Progress:
    """How many bytes of a part are present from its start, shared by the GETs racing for it.

    Each GET writes its range in order from where the part stood when it began, so the bytes
    present from the start are those up to the furthest position any of them reached.
    """

    def __init__(self, on_bytes: Callable[[int], None]) -> None:
        self.done = 0
        self._on_bytes = on_bytes

    def reached(self, position: int) -> None:
        if position > self.done:
            self._on_bytes(position - self.done)
            self.done = position


async def _stream(
    source: RangeSource,
    shard: Shard,
    part: Part,
    fd: int,
    progress: _Progress,
    retries: int,
    stall_timeout: float,
    on_retry: Callable[[str, BaseException | None], None] | None,
) -> None:
    """One GET (resumed while it breaks or stalls) of the part's bytes from ``progress.done`` on."""
    done = progress.done
    failures = 0
    while done < part.length:
        resumed_at = done
        try:
            body = await source.open_range(shard, part.start + done, part.stop)  # its request errors are final
        except RangeNotHonouredError as e:  # asked again, like a broken body: a proxy may drop one Range
            error: BaseException = e
        else:
            try:
                while done < part.length:
                    try:
                        piece = await asyncio.wait_for(body.read(min(CHUNK_BYTES, part.length - done)), stall_timeout)
                    except asyncio.TimeoutError as e:
                        raise StalledError(
                            f"{shard.path}: no byte after {part.start + done} within {stall_timeout:g} s"
                        ) from e
                    if not piece:
                        raise ShortBodyError(f"{shard.path}: body ended at byte {part.start + done} of {part.stop}")
                    os.pwrite(fd, piece, part.block_offset + done)
                    done += len(piece)
                    progress.reached(done)
                return
            except (*STREAM_ERRORS, ShortBodyError) as e:
                error = e
            finally:
                body.close()
        failures = 1 if done > resumed_at else failures + 1  # only failures in a row count
        if failures >= retries:
            raise OSError(
                f"{shard.path}: bytes {part.start + resumed_at}-{part.stop - 1} failed {failures} times; "
                f"last error: {error}"
            ) from error
        if on_retry is not None:
            on_retry("resumed", error)
        delay = min(0.1 * 2**failures, 5.0) * random.uniform(0.5, 1.0)  # backoff with jitter
        logger.debug("%s: GET broke at byte %d (%r); resuming in %.2f s", shard.path, part.start + done, error, delay)
        await asyncio.sleep(delay)


async def _settle(tasks: list[asyncio.Future]) -> None:
    """Cancel ``tasks`` and wait until every one has ended (their writes with them)."""
    for task in tasks:
        task.cancel()
    cancelled = False
    while not all(task.done() for task in tasks):
        try:
            await asyncio.wait(tasks)
        except asyncio.CancelledError:
            cancelled = True
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: no "never retrieved" warning
    if cancelled:
        raise asyncio.CancelledError
