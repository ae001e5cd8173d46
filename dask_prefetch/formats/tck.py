"""MRtrix TCK streaming parser, vectorised over chunks of 12-byte point rows.

The body is float32 ``x y z`` rows: a NaN row ends each streamline, an Inf row ends the file. A
chunk of rows is searched for marker rows with numpy and split at them; the only Python loop is
per chunk. Because NaN rows are sync markers, a reader can own a byte range of the data region
and find its first streamline on its own, so one big file splits across tasks
(:func:`tck_byte_ranges`).
"""

from __future__ import annotations

import os
from typing import BinaryIO, Iterator

import numpy as np

from .chunk import StreamlineChunk, TractogramHeader
from .errors import CorruptTractogramError
from .reading import read_full, readinto_full

MAGIC = b"mrtrix tracks"
ROW = 12  # bytes per point row
#: A header without ``END`` in its first MiB is refused rather than searched further.
MAX_HEADER = 2**20
#: Longest streamline accepted: a region without NaN rows must not make us buffer GBs.
MAX_POINTS = 10_000_000
_DTYPES = {"Float32LE": "<f4", "Float32BE": ">f4"}
_ROW_ITEM = np.dtype((np.void, ROW))
_TAIL_BYTES = 64 * 2**10  # first read past ``stop`` when finishing the last streamline; doubles


def read_tck_header(fileobj: BinaryIO, name: str = "<file>", size: int | None = None) -> TractogramHeader:
    """Parse the text header of a TCK file.

    Parameters
    ----------
    fileobj
        Binary file object positioned at the start of the file. Left positioned at the first
        data byte (``data_offset``).
    name
        Used in error messages.
    size
        The file's size, when ``fileobj`` holds only its first bytes (None: ``fileobj``'s size, if
        it can seek to its end; else unknown, as for a gzip stream).

    Returns
    -------
    TractogramHeader
        ``format="tck"``, identity ``voxel_to_rasmm`` (TCK points are RAS+ mm), ``nb_streamlines``
        from ``count`` (None when absent or not an integer), ``data_offset`` from ``file: . N``, and
        ``fields``: the key/value strings (repeated keys and continuation lines joined by newlines,
        as nibabel does) plus ``"_dtype"``, the numpy dtype of the body (``'<f4'`` or ``'>f4'``).

    Raises
    ------
    CorruptTractogramError
        Bad magic line, no ``END`` line in the first MiB (or before EOF), a non-UTF-8 line, an
        unsupported datatype, a missing or malformed ``file:`` field, or a data offset inside the
        header or beyond the end of the file.

    Notes
    -----
    A missing ``datatype`` means Float32LE, as in nibabel.
    """
    base = fileobj.tell()
    buf = bytearray()
    eof, pos, want = False, 0, 4096  # pos: start of the next unparsed line in buf
    values: dict[str, list[str]] = {}
    line_at: dict[str, int] = {}  # key -> file offset of its first line, for messages
    key: str | None = None
    while True:
        nl = buf.find(b"\n", pos)
        if nl < 0 and not eof:
            if len(buf) >= MAX_HEADER:
                raise CorruptTractogramError(name, base + len(buf), f"no END line in the first {MAX_HEADER} bytes")
            request, want = min(want, MAX_HEADER - len(buf)), want * 2
            more = read_full(fileobj, request)
            eof = len(more) < request
            buf += more
            if pos == 0 and not buf.startswith(MAGIC):  # fail fast on a file of another kind
                raise CorruptTractogramError(name, base, f"not a TCK file (starts with {bytes(buf[:16])!r})")
            continue
        end = len(buf) if nl < 0 else nl + 1
        raw, at, pos = bytes(buf[pos:end]), base + pos, end
        if at == base:
            if raw.rstrip() != MAGIC:
                raise CorruptTractogramError(name, base, f"first line is not {MAGIC!r} but {raw[:40]!r}")
            continue
        if not raw:  # EOF
            raise CorruptTractogramError(name, at, "end of file before the header's END line")
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise CorruptTractogramError(name, at, "header line is not UTF-8 text (no END line?)") from None
        if line == "END":
            break
        if not line:
            continue
        head, sep, value = line.partition(":")
        if sep:
            key = head.strip()
        elif key is None:
            raise CorruptTractogramError(name, at, f"header line without a key: {line[:80]!r}")
        else:
            value = line  # continuation of the previous key
        values.setdefault(key, []).append(value.strip())
        line_at.setdefault(key, at)
    header_end = base + pos
    fields: dict = {k: "\n".join(v) for k, v in values.items()}

    datatype = fields.get("datatype", "Float32LE")
    if datatype not in _DTYPES:
        raise CorruptTractogramError(
            name, line_at.get("datatype", base), f"unsupported datatype {datatype!r} (Float32LE or Float32BE)"
        )
    if "file" not in fields:
        raise CorruptTractogramError(name, header_end, "header has no 'file: . <offset>' field")
    parts = fields["file"].split()
    file_at = line_at["file"]
    if len(parts) != 2 or parts[0] != "." or not _is_decimal(parts[1]):
        raise CorruptTractogramError(name, file_at, f"bad 'file' field {fields['file']!r} (want '. <offset>')")
    data_offset = base + int(parts[1])
    if data_offset < header_end:
        problem = f"data offset {data_offset} is inside the header (ends at {header_end})"
        raise CorruptTractogramError(name, file_at, problem)
    if size is None:
        try:
            size = fileobj.seek(0, os.SEEK_END)
        except (OSError, ValueError):  # a stream of unknown length (gzip): a short body shows when it is read
            size = None
    if size is not None and data_offset > size:
        raise CorruptTractogramError(name, file_at, f"data offset {data_offset} is beyond the end of the file ({size})")
    fileobj.seek(data_offset)
    count = fields.get("count", "").strip()
    fields["_dtype"] = np.dtype(_DTYPES[datatype])
    return TractogramHeader(
        format="tck",
        voxel_to_rasmm=np.eye(4),
        nb_streamlines=int(count) if _is_decimal(count) else None,
        data_offset=data_offset,
        fields=fields,
    )


def _is_decimal(text: str) -> bool:
    """Whether ``int(text)`` reads ``text`` as ASCII digits (``str.isdigit`` also takes '²', which int refuses)."""
    return text.isascii() and text.isdigit()


class TckReader:
    """Stream the streamlines of a TCK file as :class:`StreamlineChunk` objects (RAS+ mm).

    Parameters
    ----------
    fileobj
        Binary file object; only ``readinto`` (or ``read``), ``seek`` and ``tell`` are used.
        Short reads are retried until the end of the file.
    name
        Used in error messages (a path or shard name).
    header
        An already-parsed header. When None it is parsed from ``fileobj``, which must then be at
        the start of the file.
    start, stop
        The byte range of the data region this reader owns: it yields exactly the streamlines
        whose first point row starts at a byte in ``[start, stop)`` (rows counted from
        ``data_offset``, so an unaligned bound acts as the next row boundary), reading past ``stop``
        to finish the last one. None: ``data_offset`` and
        the end of the data. A reader starting after ``data_offset`` resyncs on the first NaN row
        at or after the row just before ``start``.
    chunk_bytes
        Bytes read and parsed at a time.

    Notes
    -----
    As in nibabel, empty streamlines (consecutive NaN rows) are skipped, a row is a marker only
    if all three values are NaN (or all Inf), and the data must end with exactly one Inf row:
    EOF without it, a streamline not ended by a NaN row before it, or any byte after it raise
    :class:`CorruptTractogramError` (so that byte-range readers agree with a whole-file reader on
    every file). Each iteration seeks to where it reads, so it may interleave with other users
    of the file object.
    """

    def __init__(
        self,
        fileobj: BinaryIO,
        name: str = "<file>",
        *,
        header: TractogramHeader | None = None,
        start: int | None = None,
        stop: int | None = None,
        chunk_bytes: int | None = None,
    ) -> None:
        self.fileobj = fileobj
        self.name = name
        self.header = header if header is not None else read_tck_header(fileobj, name)
        data = self.header.data_offset
        self.start = data if start is None else int(start)
        self.stop = None if stop is None else int(stop)
        if self.start < data:
            raise ValueError(f"start {self.start} is before the data offset {data}")
        self.chunk_rows = max(1, int(8 * 2**20 if chunk_bytes is None else chunk_bytes) // ROW)
        self._dtype = np.dtype(self.header.fields.get("_dtype", "<f4"))
        self._first = -(-(self.start - data) // ROW)  # first owned row (rows counted from data_offset)
        self._stop = None if self.stop is None else max(0, -(-(self.stop - data) // ROW))

    def _at(self, row: int) -> int:
        return self.header.data_offset + ROW * row

    def __iter__(self) -> Iterator[StreamlineChunk]:
        first, stop = self._first, self._stop
        if stop is not None and first >= stop:
            if first == 0 and not self._more(0):  # no data at all: nobody else will notice
                raise CorruptTractogramError(self.name, self._at(0), "end of file without the Inf row")
            return
        syncing = first > 0
        row = first - 1 if syncing else first  # next row to read from the file
        pending = np.empty((0, 3), np.float32)  # rows of the streamline in progress, which began at row - len
        tail = max(1, _TAIL_BYTES // ROW)
        while True:
            if stop is None or row < stop:
                want = self.chunk_rows if stop is None else min(self.chunk_rows, stop - row)
            else:
                want, tail = min(tail, self.chunk_rows), tail * 2
            want = max(want, len(pending))  # a streamline longer than a chunk: grow, copy it O(log) times
            rows, eof, partial = self._read_rows(row, want, pending)
            base, row = row - len(pending), row + len(rows) - len(pending)
            nan, inf = _markers(rows)
            ended = len(inf) > 0
            if ended:
                end = int(inf[0])
                if end + 1 < len(rows) or partial or (not eof and self._more(row)):
                    raise CorruptTractogramError(self.name, self._at(base + end + 1), "data after the Inf row")
                rows, nan = rows[:end], nan[nan < end]
            elif eof and partial:
                raise CorruptTractogramError(self.name, self._at(row), f"data ends {partial} bytes into a 12-byte row")
            if syncing:
                if not len(nan):
                    if ended or (stop is not None and row >= stop - 1):
                        return
                    if eof:
                        raise CorruptTractogramError(self.name, self._at(row), "end of file without the Inf row")
                    continue
                cut = int(nan[0]) + 1
                if stop is not None and base + cut >= stop:
                    return
                syncing = False
                rows, nan, base = rows[cut:], nan[1:] - cut, base + cut
            # rows[0] begins a streamline; the row after each NaN row begins the next one
            owned = len(nan) + 1 if stop is None else int(np.searchsorted(base + nan + 1, stop)) + 1
            complete = min(owned, len(nan))  # owned streamlines whose NaN row is in ``rows``
            finished = owned <= len(nan)
            chunk = _chunk(rows, nan[:complete]) if complete else None
            if not finished:
                pending = rows[nan[-1] + 1 :] if len(nan) else rows
                if len(pending) > MAX_POINTS:
                    at = self._at(row - len(pending))
                    raise CorruptTractogramError(self.name, at, f"no NaN row in {MAX_POINTS} points")
            if chunk is not None and len(chunk):
                yield chunk
            if finished:  # the next streamline is not ours, but if it starts at EOF, the Inf row is missing
                if base + int(nan[owned - 1]) + 1 == row and (eof or not self._more(row)):
                    raise CorruptTractogramError(self.name, self._at(row), "end of file without the Inf row")
                return
            if ended:
                if len(pending):
                    raise CorruptTractogramError(
                        self.name, self._at(base + len(rows)), "streamline without a NaN row before the Inf row"
                    )
                return
            if eof:
                raise CorruptTractogramError(self.name, self._at(row), "end of file without the Inf row")

    def _more(self, row: int) -> bool:
        """Whether the file has a byte at ``row``."""
        self.fileobj.seek(self._at(row))
        return readinto_full(self.fileobj, np.empty(1, np.uint8)) > 0

    def _read_rows(self, row: int, n_rows: int, pending: np.ndarray) -> tuple[np.ndarray, bool, int]:
        """``pending`` then up to ``n_rows`` rows from ``row`` (native float32), whether EOF came first,
        and how many stray bytes followed the last whole row."""
        out = np.empty((len(pending) + n_rows, 3), dtype=np.float32)
        out[: len(pending)] = pending
        fresh = out[len(pending) :]
        self.fileobj.seek(self._at(row))
        if self._dtype.isnative:
            got = readinto_full(self.fileobj, fresh)
        else:
            raw = np.empty(n_rows * ROW, dtype=np.uint8)
            got = readinto_full(self.fileobj, raw)
            fresh[: got // ROW] = raw[: got - got % ROW].view(self._dtype).reshape(-1, 3)
        return out[: len(pending) + got // ROW], got < n_rows * ROW, got % ROW


def _markers(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the all-NaN rows and of the all-Inf rows."""
    odd = np.flatnonzero(~np.isfinite(rows[:, 0]))
    if not len(odd):
        return odd, odd
    sub = rows[odd]
    return odd[np.isnan(sub).all(axis=1)], odd[np.isinf(sub).all(axis=1)]


def _chunk(rows: np.ndarray, ends: np.ndarray) -> StreamlineChunk:
    """The streamlines in ``rows`` ended by the NaN rows at ``ends`` (the first begins at row 0)."""
    last = int(ends[-1])
    keep = np.ones(last, dtype=bool)
    keep[ends[:-1]] = False
    # rows as one 12-byte item each: boolean indexing copies them much faster than a (n, 3) mask
    points = rows[:last].view(_ROW_ITEM).ravel()[keep].view(np.float32).reshape(-1, 3)
    lengths = np.diff(ends, prepend=-1).astype(np.int64) - 1
    if not lengths.all():
        lengths = lengths[lengths > 0]  # empty streamlines are skipped, as nibabel does
    return StreamlineChunk(points, lengths)


def tck_byte_ranges(header: TractogramHeader, data_end: int, n: int) -> list[tuple[int, int]]:
    """Split ``[data_offset, data_end)`` into up to ``n`` contiguous ranges on 12-byte row boundaries.

    Readers given these ranges as ``start``/``stop`` together yield the streamlines of one reader
    over the whole file, in order. Fewer than ``n`` ranges come back when there are fewer rows.

    Raises
    ------
    ValueError
        If ``n < 1`` or ``data_end`` is before the data offset.
    """
    first = header.data_offset
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    if data_end < first:
        raise ValueError(f"data_end {data_end} is before the data offset {first}")
    rows = (data_end - first) // ROW
    bounds = list(dict.fromkeys(first + ROW * (rows * i // n) for i in range(n)))
    return list(zip(bounds, bounds[1:] + [data_end]))
