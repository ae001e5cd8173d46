"""Whole TRK records in a buffer: find them, and gather their points (in RAS+ mm), scalars and properties.

Two implementations with identical results: numba kernels (:mod:`.kernels`), one pass over the
buffer, and numpy, a few vectorised passes. :class:`RecordGatherer` picks one per reader.
Buffers are native-endian int32 words (the reader converts a big-endian file's).
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import ThreadpoolController

from .chunk import StreamlineChunk
from .errors import CorruptTractogramError
from .kernels import Kernels, compiled

_NONE = np.empty(0, np.float32)  # the kernel's stand-in for "no scalars" / "no properties"
#: Largest point count accepted for one streamline: a corrupt count must not make us buffer GBs.
MAX_POINTS = 10_000_000


class RecordGatherer:
    """Finds and gathers the records of one TRK stream (see :meth:`find` and :meth:`gather`).

    Parameters
    ----------
    n_scalars, n_props
        Scalars per point and properties per streamline.
    voxmm_to_rasmm
        The 4x4 affine from TrackVis voxmm to RAS+ mm.
    name
        The stream's name, for errors.
    use_kernels
        None or True: the compiled kernels when available (``dask-prefetch.compiled-parsers`` true
        and numba importable); False: numpy.
    """

    def __init__(
        self, n_scalars: int, n_props: int, voxmm_to_rasmm: np.ndarray, name: str, use_kernels: bool | None = None
    ) -> None:
        self.n_scalars, self.n_props, self.name = n_scalars, n_props, name
        self.stride = 3 + n_scalars
        self.affine = voxmm_to_rasmm
        rzs = voxmm_to_rasmm[:3, :3]
        self.diagonal = bool(np.array_equal(rzs, np.diag(np.diag(rzs))))
        self.scale = np.diag(rzs).astype(np.float32) if self.diagonal else np.ones(3, np.float32)
        self.shift = voxmm_to_rasmm[:3, 3].astype(np.float32) if self.diagonal else np.zeros(3, np.float32)
        self.kernels: Kernels | None = compiled() if use_kernels is not False else None
        self._starts = self._counts = np.empty(0, np.int32)

    def find(self, words: np.ndarray, left: int, position: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Whole records from word 0: start words (valid until the next call), point counts (int64, a new
        array), and the word after the last.

        At most ``left`` records (-1: no limit). ``position`` is word 0's byte offset, for errors.
        """
        if self.kernels is None:
            return _find_records(words, self.stride, self.n_props, left, self.name, position)
        if len(self._starts) < len(words):  # scratch for the most records a buffer can hold
            self._starts, self._counts = np.empty(len(words), np.int32), np.empty(len(words), np.int32)
        n, end, bad = self.kernels.scan_records(
            words, self.stride, 1 + self.n_props, left, MAX_POINTS, self._starts, self._counts
        )
        if bad:
            raise CorruptTractogramError(
                self.name, position + 4 * end, f"absurd point count {int(words[end])} in a record header"
            )
        return self._starts[:n], self._counts[:n].astype(np.int64), end

    def gather(
        self, words: np.ndarray, starts: np.ndarray, counts: np.ndarray, points: np.ndarray | None = None
    ) -> StreamlineChunk:
        """The records found by :meth:`find` as a chunk; its points written into ``points`` if given."""
        n_points = int(counts.sum())
        floats = words.view(np.float32)
        if self.kernels is not None:
            out = np.empty((n_points, 3), np.float32) if points is None else points
            props = np.empty((len(counts), self.n_props), np.float32) if self.n_props else None
            scalars = np.empty((n_points, self.n_scalars), np.float32) if self.n_scalars else None
            finite = self.kernels.gather_records(
                floats, starts, counts, len(counts), self.n_scalars, self.n_props, self.scale, self.shift,
                out.reshape(-1),
                _NONE if scalars is None else scalars.reshape(-1),
                _NONE if props is None else props.reshape(-1),
            )  # fmt: skip
            if finite and self.diagonal:
                return StreamlineChunk(out, counts, scalars, props)
            if not finite:  # transformed by scale and shift, not as nibabel's product does: start again
                out, scalars, props = self._gather_rows(floats, starts, counts)
        else:
            out, scalars, props = self._gather_rows(floats, starts, counts)
        if n_points:
            out = to_rasmm(self.affine, out)
        if points is not None and out is not points:
            points[...] = out
            out = points
        return StreamlineChunk(out, counts, scalars, props)

    def _gather_rows(
        self, floats: np.ndarray, starts: np.ndarray, counts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """numpy: the untransformed points (a new array), the scalars and the properties."""
        end = int(starts[-1] + 1 + counts[-1] * self.stride + self.n_props) if len(starts) else 0
        keep = np.ones(end, dtype=bool)  # every word but the counts (and properties) is a point row word
        keep[starts] = False
        props = None
        if self.n_props:
            prop_words = (starts + 1 + counts * self.stride)[:, None] + np.arange(self.n_props)
            keep[prop_words] = False
            props = floats[prop_words]
        rows = floats[:end][keep].reshape(-1, self.stride)  # boolean indexing: ~10x np.compress(out=...)
        if not self.n_scalars:
            return rows, None, props
        return np.ascontiguousarray(rows[:, :3]), np.ascontiguousarray(rows[:, 3:]), props


_blas = ThreadpoolController()
_TILE = 3 * 1024


def to_rasmm(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``nibabel.affines.apply_affine`` on ``points`` (a fresh array, changed in place): the same float32 results.

    TrackVis voxmm -> RAS+ mm is usually a flip and a shift per axis, with no rotation. Then each
    output coordinate is ``x * a + t`` exactly as in nibabel's product (the other terms are exact
    zeros), computed as two elementwise passes instead of a matrix product. Otherwise it is the
    same float32 product as nibabel's, on one BLAS thread: a (N, 3) x (3, 3) product is
    memory-bound, and BLAS threads only fight the other tasks' threads (15x slower seen on a busy
    2-core machine).
    """
    rzs, shift = affine[:3, :3], affine[:3, 3]
    diagonal = np.diag(rzs)
    if np.array_equal(rzs, np.diag(diagonal)) and np.isfinite(points).all():  # inf * 0 would be NaN in a product
        out = points
        _tiled(out, np.multiply, diagonal.astype(out.dtype))
    else:
        with _blas.limit(limits=1, user_api="blas"):
            out = points @ rzs.T
    _tiled(out, np.add, shift.astype(out.dtype))
    return out


def _tiled(points: np.ndarray, op: np.ufunc, row: np.ndarray) -> None:
    """``op(points, row, out=points)`` for a 3-vector ``row``, tiled over wide rows: a 3-wide broadcast
    is a slow inner loop, and tiling gives the same operations on the same elements."""
    flat = points.reshape(-1)
    wide = len(flat) // _TILE * _TILE
    block = flat[:wide].reshape(-1, _TILE)
    op(block, np.tile(row, _TILE // 3), out=block)
    op(points[wide // 3 :], row, out=points[wide // 3 :])


def _find_records(
    ints: np.ndarray, stride: int, n_props: int, left: int, name: str, position: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Whole records from word 0: start words, point counts, and the word after the last.

    Vectorised: every record starts with a word in ``[0, MAX_POINTS]``, and float32 coordinates
    almost never look like one (only +0.0 and denormals do). So take all such words as candidate
    starts, and accept the run of candidates where each record ends exactly at the next candidate.
    A coordinate that looks like a count breaks the run; the hop resumes after the last verified
    record. Inputs with many such coordinates fall back to hopping word by word in Python.
    """
    n_words, extra = len(ints), 1 + n_props
    candidates = np.flatnonzero(ints.view(np.uint32) <= MAX_POINTS)  # negatives wrap high
    found: list[np.ndarray] = []
    i, rounds = 0, 0
    while i < n_words and rounds < 8 and not (0 <= left <= sum(len(run) for run in found)):
        rounds += 1
        n = int(ints[i])
        if n < 0 or n > MAX_POINTS:
            raise CorruptTractogramError(name, position + 4 * i, f"absurd point count {n} in a record header")
        run = candidates[np.searchsorted(candidates, i) :]  # run[0] == i
        ends = run + extra + ints[run].astype(np.int64) * stride
        breaks = np.flatnonzero(ends[:-1] != run[1:])
        verified = len(run) if not len(breaks) else int(breaks[0]) + 1
        whole = int(np.searchsorted(ends[:verified], n_words, side="right"))
        found.append(run[:whole])
        if whole < verified or int(ends[verified - 1]) >= n_words:
            i = n_words  # reached the end of the data (or a record that continues past it)
            break
        i = int(ends[verified - 1])  # past a coordinate that looked like a count
    starts = np.concatenate(found) if found else np.empty(0, np.int64)
    if i < n_words and rounds == 8:  # too many look-alikes: hop the rest one record at a time
        budget = max(0, left - len(starts)) if left >= 0 else -1
        more, _, _ = _hop(memoryview(ints), stride, n_props, budget, name, position, i)
        starts = np.concatenate([starts, np.asarray(more, np.int64)])
    if left >= 0:
        starts = starts[:left]
    counts = ints[starts].astype(np.int64)
    end = int(starts[-1] + extra + counts[-1] * stride) if len(starts) else 0
    return starts, counts, end


def _hop(
    ints: memoryview, stride: int, n_props: int, left: int, name: str, position: int, i: int = 0
) -> tuple[list[int], list[int], int]:
    """Whole records from word ``i``, one Python step each: start words, point counts, the word after the last."""
    starts: list[int] = []
    counts: list[int] = []
    add_start, add_count = starts.append, counts.append
    n_words, extra = len(ints), 1 + n_props
    budget = left if left >= 0 else n_words + 1
    while i < n_words and budget:
        n = ints[i]
        if n < 0 or n > MAX_POINTS:
            raise CorruptTractogramError(name, position + 4 * i, f"absurd point count {n} in a record header")
        end = i + extra + n * stride
        if end > n_words:
            break
        add_start(i)
        add_count(n)
        i = end
        budget -= 1
    return starts, counts, i
