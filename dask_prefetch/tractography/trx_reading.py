"""How a task reads a TRX partition: byte ranges of its arrays, through the prefetching filesystem.

A ``"trx"`` :class:`~dask_prefetch.tractography.partitions.Partition` is a run of :class:`TrxSegment`
(streamlines ``[first, stop)`` of one TRX, see :mod:`dask_prefetch.tractography.trx_planning`). For a stored
TRX the segment knows its vertices ``[v0, v1)`` from the graph: the task opens the byte range of
those rows of ``positions`` (first: the stream a worker may have opened ahead) and of every
``dpv`` array at once (``open(..., offset, end)``: nothing past the range is prefetched), reads
its ``offsets`` (checking they still give ``[v0, v1)``), then the rows. A deflated member is
inflated from its first compressed byte with bounded memory, dropping the rows before the
segment's; its vertices come from the offsets the task reads. Streamed (``map_chunks(f,
per="chunk")``), the rows are taken a chunk at a time from all the streams side by side
(:func:`iter_segment`), so a task over a deflated TRX of any size holds a few chunks, not its file.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from ..formats import StreamlineChunk
from ..formats.errors import CorruptTractogramError
from ..formats.trx import MemberRows, TrxContents, TrxMember, lengths, read_rows

if TYPE_CHECKING:
    from .partitions import Opener, Partition


@dataclass(frozen=True)
class TrxSegment:
    """Streamlines ``[first, stop)`` of one TRX; ``vertices`` ``(v0, v1)`` when read at graph time."""

    contents: TrxContents
    first: int
    stop: int
    vertices: tuple[int, int] | None = None

    @property
    def members(self) -> list[TrxMember]:
        c = self.contents
        return [m for m in (c.positions, c.offsets, *(m for _, m in c.dpv + c.dps)) if m is not None]


def first_stream(part: Partition) -> tuple[tuple[str, ...], int, int, list[dict] | None, int | None]:
    """What a ``"trx"`` task opens first: the byte range of its first segment's positions (or
    compressed positions), so that a worker can open it ahead and the task claim it."""
    for s in part.trx:
        m = s.contents.positions
        if m is None or s.first == s.stop:
            continue
        start, end = (m.start, m.start + m.stored) if s.vertices is None else m.byte_range(*s.vertices)
        return (m.source,), 0, start, part.pinned([m.source]), end
    return part.paths[:1], 0, 0, part.pinned(part.paths[:1]), 0


def _open(opener: Opener, part: Partition, m: TrxMember, rows: tuple[int, int] | None) -> Any:
    """A stream of rows ``[a, b)`` of a stored member (or of a deflated member's compressed bytes)."""
    start, end = (m.start, m.start + m.stored) if m.deflated or rows is None else m.byte_range(*rows)
    return opener.open([m.source], 0, start, part.pinned([m.source]), end)


def _rows(opener: Opener, part: Partition, m: TrxMember, a: int, b: int, name: str, f: Any = None) -> np.ndarray:
    """Rows ``[a, b)`` of ``m`` (from ``f`` when it was opened already)."""
    with ExitStack() as stack:
        if f is None:
            f = stack.enter_context(_open(opener, part, m, (a, b)))
        return read_rows(f, m, a, b, name)


def read_trx_partition(part: Partition, opener: Opener) -> StreamlineChunk:
    """Read one ``"trx"`` partition (runs in a task): its segments' points, lengths and named data."""
    return StreamlineChunk.concat([c for s in part.trx for c in iter_segment(part, opener, s, None)])


def iter_trx_partition(part: Partition, opener: Opener, chunk_bytes: int | None) -> Iterator[StreamlineChunk]:
    """The partition's streamlines in chunks of about ``chunk_bytes`` of positions (None: :data:`CHUNK_BYTES`),
    as they are read (runs in a task); never an empty chunk."""
    for s in part.trx:
        for chunk in iter_segment(part, opener, s, chunk_bytes or CHUNK_BYTES):
            if len(chunk):
                yield chunk


#: Bytes of ``positions`` in each streamed chunk of a TRX by default.
CHUNK_BYTES = 8 * 2**20


def iter_segment(part: Partition, opener: Opener, s: TrxSegment, chunk_bytes: int | None) -> Iterator[StreamlineChunk]:
    """The streamlines of one segment, in chunks of about ``chunk_bytes`` of positions (None: one chunk).

    The segment's offsets are read first (its streamlines' lengths), then its rows of
    ``positions`` and of every ``dpv`` and ``dps`` array, a chunk's worth at a time from streams
    open side by side: a deflated member is inflated as its rows are taken, so a task streaming
    chunks holds a few chunks and the inflaters' buffers, never its whole segment.
    """
    c, name = s.contents, s.contents.name
    if s.first == s.stop or c.nb_streamlines == 0 or c.nb_vertices == 0:
        yield _empty(c)
        return
    offsets = c.offsets
    last = s.stop + 1 if s.stop < offsets.rows else s.stop  # the next offset, if the file has it
    with ExitStack() as stack:
        early: dict[str, Any] = {}
        if s.vertices is not None:  # every stream at once, positions first (a worker may have opened it ahead)
            rows = {"offsets": (s.first, last), **{f"dps/{k}": (s.first, s.stop) for k, _ in c.dps}}
            wanted = [("positions", c.positions), *((f"dpv/{k}", m) for k, m in c.dpv), ("offsets", offsets),
                      *((f"dps/{k}", m) for k, m in c.dps)]  # fmt: skip
            for key, m in wanted:
                if not m.deflated:
                    early[key] = stack.enter_context(_open(opener, part, m, rows.get(key, s.vertices)))
        bounds = _rows(opener, part, offsets, s.first, last, name, early.get("offsets"))
        if last == s.stop:  # the last streamline of a file without the final entry ends at NB_VERTICES
            bounds = np.append(bounds.ravel().astype(np.int64), c.nb_vertices)
        at = offsets.start + s.first * offsets.row_bytes
        first_vertex = 0 if s.first == 0 else (s.vertices[0] if s.vertices is not None else None)
        lens = lengths(bounds, first_vertex, name, at, c.nb_vertices)
        v0, v1 = int(bounds.ravel()[0]), int(bounds.ravel()[-1])
        if s.vertices is not None and (v0, v1) != s.vertices:
            raise_changed(name, at, s.vertices, (v0, v1))

        def rows_of(key: str, m: TrxMember, first: int, stop: int) -> MemberRows:
            f = early[key] if key in early else stack.enter_context(_open(opener, part, m, (first, stop)))
            return MemberRows(f, m, first, name)

        points = rows_of("positions", c.positions, v0, v1)
        dpv = {k: rows_of(f"dpv/{k}", m, v0, v1) for k, m in c.dpv}
        dps = {k: rows_of(f"dps/{k}", m, s.first, s.stop) for k, m in c.dps}
        for a, b in chunk_bounds(lens, c.positions.row_bytes, chunk_bytes):
            n = int(lens[a:b].sum())
            yield StreamlineChunk(
                points.take(n).astype(np.float32, copy=False),
                lens[a:b],
                data_per_point={k: r.take(n) for k, r in dpv.items()},
                data_per_streamline={k: r.take(b - a) for k, r in dps.items()},
            )


def chunk_bounds(lens: np.ndarray, row_bytes: int, chunk_bytes: int | None) -> list[tuple[int, int]]:
    """Streamline ranges ``[a, b)`` of about ``chunk_bytes`` of vertex rows each, at least one streamline
    each, covering ``lens`` (one range when ``chunk_bytes`` is None)."""
    n = len(lens)
    if chunk_bytes is None or n == 0:
        return [(0, n)]
    ends = np.cumsum(lens, dtype=np.int64) * row_bytes  # bytes up to the end of each streamline
    marks = np.arange(chunk_bytes, int(ends[-1]), chunk_bytes)
    cuts = np.unique(np.minimum(np.searchsorted(ends, marks, side="left") + 1, n))
    edges = [0, *(int(x) for x in cuts if 0 < x < n), n]
    return list(zip(edges, edges[1:]))


def raise_changed(name: str, at: int, planned: tuple[int, int], read: tuple[int, int]) -> None:
    raise CorruptTractogramError(
        name, at, f"offsets give vertices {read[0]}..{read[1]} where {planned[0]}..{planned[1]} were read when "
        "the graph was built"
    )


def _empty(c: TrxContents) -> StreamlineChunk:
    def none(pairs: tuple[tuple[str, TrxMember], ...]) -> dict[str, np.ndarray]:
        return {k: np.empty((0, m.columns), m.dtype) for k, m in pairs}

    return StreamlineChunk(
        np.empty((0, 3), np.float32), np.empty(0, np.int64), data_per_point=none(c.dpv), data_per_streamline=none(c.dps)
    )


def read_group_data(opener: Opener, m: TrxMember, pinned: list[dict] | None, name: str) -> np.ndarray:
    """One ``dpg`` array (read in a task): one row of its columns, in its dtype with native byte order."""
    start, end = (m.start, m.start + m.stored) if m.deflated else m.byte_range(0, m.rows)
    with opener.open([m.source], 0, start, pinned, end) as f:
        values = read_rows(f, m, 0, m.rows, name)
    return values.reshape(1, -1).astype(np.dtype(m.dtype).newbyteorder("="))


def read_group(opener: Opener, m: TrxMember, pinned: list[dict] | None, name: str, first: int) -> np.ndarray:
    """A group's streamline indices (read in a task), int64, plus ``first`` (its file's first streamline)."""
    start, end = (m.start, m.start + m.stored) if m.deflated else m.byte_range(0, m.rows)
    with opener.open([m.source], 0, start, pinned, end) as f:
        return read_rows(f, m, 0, m.rows, name).ravel().astype(np.int64) + first
