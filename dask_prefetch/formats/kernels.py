"""numba-compiled kernels for the TRK hot loop: hop the count words, gather and transform the points.

Each kernel does in one pass over a buffer what the numpy path in :mod:`.trk_records` does in
four or five (find count-like words, verify the chain, mask the counts out, scale, shift), so
a 2 MiB chunk is read from cache once. Results are identical to the numpy path's, bit for bit:
the arithmetic is the same float32 multiply then add, never fused (no ``fastmath``).

The kernels are used when numba imports and the switch says so (:func:`set_switch`: the parsers
know no configuration; :mod:`dask_prefetch.config` installs ``dask-prefetch.compiled-parsers``
as the switch when it is imported, as it is by every Dask-side module); else the numpy path is used.

They are compiled on first use and cached on disk by numba (``cache=True``), so later processes
(Dask workers) load them instead of compiling. Where the cache goes is numba's choice, in order:
``$NUMBA_CACHE_DIR`` if set, else ``__pycache__`` beside this file if writable, else the user's
cache directory (``~/.cache/numba``); an installed package in a read-only ``site-packages`` so
caches per user. Where none is writable they are compiled in each process, uncached.
:func:`warm` compiles or loads them ahead of use: the worker plugin calls it in its setup and the
demo before it times anything, so no timed task pays for it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, NamedTuple

import numpy as np

logger = logging.getLogger(__name__)


def scan_records(
    ints: np.ndarray, stride: int, extra: int, left: int, max_points: int, starts: np.ndarray, counts: np.ndarray
) -> tuple[int, int, bool]:
    """Hop whole records from word 0 of ``ints`` (native int32), one step per record.

    A record is a count word ``c``, ``c * stride`` point words and ``extra - 1`` property words.
    Start words and counts go to ``starts`` and ``counts`` (int32, at least ``len(ints)`` long).
    Stops after ``left`` records (-1: no limit), at a record that runs past the end, or at a
    count outside ``[0, max_points]``.

    Returns
    -------
    (records found, the word after the last one, whether it stopped at a bad count)
    """
    n_words = ints.shape[0]
    i = 0
    n = 0
    while i < n_words and n != left:
        c = ints[i]
        if c < 0 or c > max_points:
            return n, i, True
        end = i + extra + c * stride
        if end > n_words:
            break
        starts[n] = i
        counts[n] = c
        n += 1
        i = end
    return n, i, False


def gather_records(
    floats: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    n: int,
    n_scalars: int,
    n_props: int,
    scale: np.ndarray,
    shift: np.ndarray,
    points: np.ndarray,
    scalars: np.ndarray,
    props: np.ndarray,
) -> bool:
    """Copy the first ``n`` records' rows out of ``floats`` (native float32), points as ``p * scale + shift``.

    ``points`` is flat (3 per point), ``scalars`` flat (``n_scalars`` per point), ``props`` flat
    (``n_props`` per record); pass empty arrays for the ones there are none of.

    Returns
    -------
    Whether every point coordinate read was finite. If not, the caller must redo the points
    with the full matrix product: there, an infinite coordinate times an off-diagonal zero makes
    the other coordinates NaN, which ``p * scale + shift`` does not reproduce.
    """
    s0, s1, s2 = scale[0], scale[1], scale[2]
    t0, t1, t2 = shift[0], shift[1], shift[2]
    stride = 3 + n_scalars
    finite = True
    k = 0  # next point
    for r in range(n):
        w = starts[r] + 1
        m = counts[r]
        if n_scalars == 0:
            src = floats[w : w + 3 * m]
            dst = points[3 * k : 3 * (k + m)]
            for p in range(0, 3 * m, 3):
                x, y, z = src[p], src[p + 1], src[p + 2]
                finite &= np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
                dst[p] = x * s0 + t0
                dst[p + 1] = y * s1 + t1
                dst[p + 2] = z * s2 + t2
        else:
            for q in range(m):
                row = w + q * stride
                x, y, z = floats[row], floats[row + 1], floats[row + 2]
                finite &= np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
                points[3 * (k + q)] = x * s0 + t0
                points[3 * (k + q) + 1] = y * s1 + t1
                points[3 * (k + q) + 2] = z * s2 + t2
                for j in range(n_scalars):
                    scalars[(k + q) * n_scalars + j] = floats[row + 3 + j]
        for j in range(n_props):
            props[r * n_props + j] = floats[w + m * stride + j]
        k += m
    return finite


class Kernels(NamedTuple):
    """The compiled kernels (see the functions of the same names)."""

    scan_records: Callable[..., tuple[int, int, bool]]
    gather_records: Callable[..., bool]


_lock = threading.Lock()
_compiled: Kernels | None = None
_failed = False
_switch: Callable[[], bool] = lambda: True  # noqa: E731 (on unless the settings' owner says otherwise)


def set_switch(switch: Callable[[], bool]) -> None:
    """Install what says, at each use, whether the compiled kernels are wanted (default: always)."""
    global _switch
    _switch = switch


def compiled() -> Kernels | None:
    """The compiled kernels, or None when turned off or numba is unusable (then use the numpy path)."""
    global _compiled, _failed
    if _failed or not _switch():
        return None
    if _compiled is None:
        with _lock:
            if _compiled is None and not _failed:
                try:
                    _compiled = _compile()
                except Exception as exc:  # ImportError, or numba refusing this numpy: the numpy path works
                    _failed = True
                    logger.warning("numba kernels unavailable (%s); TRK is parsed with numpy, ~1.5x slower", exc)
                    return None
    return _compiled


class Warmup(NamedTuple):
    """What :func:`warm` did."""

    seconds: float
    how: str  # "compiled" (and cached), "loaded" (numba's cache), "ready" (already here), "off", "unavailable"
    cache_dir: str | None  # where numba keeps them (None: not cached)


def warm() -> Warmup:
    """Compile the kernels, or load them from numba's on-disk cache, now rather than in the first parse.

    Returns
    -------
    Warmup
        How long it took (numba's import included), how, and numba's cache directory. Never
        raises: where the kernels are off or numba unusable, the parsers use the numpy path.
    """
    started = time.perf_counter()
    ready = _compiled is not None
    if not _switch():
        return Warmup(0.0, "off", None)
    kernels = compiled()
    seconds = time.perf_counter() - started
    if kernels is None:
        return Warmup(seconds, "unavailable", None)
    stats = [getattr(f, "stats", None) for f in kernels]
    hits = sum(sum(s.cache_hits.values()) for s in stats if s is not None)
    cache_dir = next((s.cache_path for s in stats if s is not None and s.cache_path), None)
    return Warmup(seconds, "ready" if ready else "loaded" if hits else "compiled", cache_dir)


def _compile() -> Kernels:
    import numba

    if numba.config.DISABLE_JIT:  # the kernels would run as plain Python: far slower than numpy
        raise RuntimeError("NUMBA_DISABLE_JIT is set")
    kernels = Kernels(*(_jit(numba, f) for f in (scan_records, gather_records)))
    # Compile (or load from numba's cache) now, under the lock, so that a failure falls back here.
    words = np.array([1, 0, 0, 0], np.int32)
    starts, counts = np.empty(4, np.int32), np.empty(4, np.int32)
    n, end, bad = kernels.scan_records(words, 3, 1, -1, 10, starts, counts)
    out, none = np.empty(3, np.float32), np.empty(0, np.float32)
    one = np.ones(3, np.float32)
    kernels.gather_records(words.view(np.float32), starts, counts.astype(np.int64), n, 0, 0, one, one, out, none, none)
    if (n, end, bad) != (1, 4, False):
        raise RuntimeError(f"scan_records gave {(n, end, bad)} on a known record")
    return kernels


def _jit(numba: Any, function: Callable) -> Callable:
    """``numba.njit`` with an on-disk cache, or without one where numba finds nowhere to write it."""
    try:
        return numba.njit(cache=True, nogil=True)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(nogil=True)(function)
