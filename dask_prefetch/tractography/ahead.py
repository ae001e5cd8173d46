"""Parse ahead: the next chunks of a partition are read and parsed in a helper thread while a function runs.

A streamed task (``map_chunks(f, per="chunk")``) alternates between parsing a chunk and calling
``f`` on it. When ``f`` releases the GIL (numpy's larger kernels, C extensions, I/O, a sleep) the
parse of the next chunk can run beside it: :func:`parsed_ahead` runs the chunk iterator in a helper
thread, at most ``depth`` chunks ahead of the caller, so a task costs about ``f``'s time rather
than ``f``'s plus the parser's. The TRK kernels run without the GIL (numba ``nogil``) and zlib
releases it too.

The iterator's first step runs in the caller's thread: that is where the task's stream is opened
(a stream the worker opened ahead is claimed by the task's thread). Files it opens later, in the
helper, draw on the same worker tiers (:func:`~dask_prefetch.fs.opening.helper_context`).
"""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

from ..fs.opening import helper_context

T = TypeVar("T")

#: How long a wait lasts before it looks again at the other side (both sides also wake each other).
_POLL_SECONDS = 0.1
_ITEM, _END, _ERROR = range(3)


def parsed_ahead(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """Yield ``items`` in order, the next ``depth`` of them made in a helper thread meanwhile.

    Parameters
    ----------
    items
        An iterable whose iterator does the work (reads and parses); its first item is taken in
        the calling thread, the rest in the helper.
    depth
        Items made ahead and held, waiting for the caller (>= 1): memory for ``depth + 1``
        more items than without.

    Yields
    ------
    The items of ``items``, in order. An exception raised by ``items`` is raised here at the
    same place, with its traceback.

    Notes
    -----
    When the caller stops early (an exception in its loop, or ``close()``), the helper is told to
    stop, finishes the item it is making, closes the iterator (so its files are closed in the
    thread that read them) and is joined before this generator ends: no thread outlives it.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth!r}")
    iterator = iter(items)
    try:
        first = next(iterator)
    except StopIteration:
        return
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(message: tuple) -> bool:
        while not stop.is_set():
            try:
                handoff.put(message, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def make() -> None:
        try:
            for item in iterator:
                if not put((_ITEM, item)):
                    return
            put((_END, None))
        except BaseException as e:  # handed to the caller, raised there
            put((_ERROR, e))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()  # the caller has stopped early, or this is a no-op

    helper = threading.Thread(
        target=helper_context().run, args=(make,), name="dask-prefetch-parse-ahead", daemon=True
    )
    helper.start()
    try:
        yield first
        while True:
            try:
                kind, value = handoff.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if not helper.is_alive() and handoff.empty():
                    raise RuntimeError("the parse-ahead thread ended without a result") from None
                continue
            if kind == _ITEM:
                yield value
            elif kind == _END:
                return
            else:
                raise value
    finally:
        stop.set()
        while helper.is_alive():  # it may be blocked handing over an item: take it
            try:
                handoff.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                pass
        helper.join()
