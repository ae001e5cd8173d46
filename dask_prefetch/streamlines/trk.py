"""TrackVis (TRK) streaming parser, vectorised over blocks of records.

A record is ``int32 n_points``, ``n_points x (3 + n_scalars)`` float32, ``n_properties`` float32.
There is no sync marker, so records are found by hopping the count words from a known record
boundary: one cheap Python step per streamline over a block held as one buffer; everything else
(gathering points, scalars and properties, byte order, the affine to RAS+ mm) is numpy.
"""

from __future__ import annotations

import io
from typing import BinaryIO, Iterator

import numpy as np
from nibabel.orientations import aff2axcodes
from nibabel.streamlines.tractogram_file import HeaderError
from nibabel.streamlines.trk import (
    decode_value_from_name,
    get_affine_trackvis_to_rasmm,
    header_2_dtype,
)
from threadpoolctl import ThreadpoolController

from .chunk import PointsBuilder, StreamlineChunk, TractogramHeader
from .errors import CorruptTractogramError
from .reading import read_full, readinto_full

HEADER_SIZE = 1000
MAGIC = b"TRACK"
#: Largest point count accepted for one streamline: a corrupt count must not make us buffer GBs.
MAX_POINTS = 10_000_000


def read_trk_header(fileobj: BinaryIO, name: str = "<file>") -> TractogramHeader:
    """Parse the 1000-byte TRK header at the file object's position (either byte order).

    Raises
    ------
    CorruptTractogramError
        If the magic number, header size or version is wrong, the affine, voxel sizes or voxel order
        are invalid, a scalar or property name is malformed, or ``n_count`` is negative.
    """
    buf = read_full(fileobj, HEADER_SIZE)
    return parse_trk_header(buf, name)


def parse_trk_header(buf: bytes, name: str = "<file>") -> TractogramHeader:
    """Parse a TRK header held in ``buf`` (see :func:`read_trk_header`)."""
    if len(buf) < HEADER_SIZE:
        raise CorruptTractogramError(name, len(buf), f"TRK header needs {HEADER_SIZE} bytes, file has {len(buf)}")
    if buf[:5] != MAGIC:
        raise CorruptTractogramError(name, 0, f"not a TRK file (magic {bytes(buf[:5])!r}, expected {MAGIC!r})")
    rec = np.frombuffer(buf[:HEADER_SIZE], dtype=header_2_dtype)[0]
    endian = "<" if np.little_endian else ">"  # nibabel's header_2_dtype is native
    if rec["hdr_size"] != HEADER_SIZE:
        rec = np.frombuffer(buf[:HEADER_SIZE], dtype=header_2_dtype.newbyteorder())[0]
        endian = ">" if endian == "<" else "<"
        if rec["hdr_size"] != HEADER_SIZE:
            raise CorruptTractogramError(name, 996, f"hdr_size is not {HEADER_SIZE} in either byte order")
    fields = {key: rec[key] for key in header_2_dtype.names}
    version = int(fields["version"])
    if version not in (1, 2, 3):
        raise CorruptTractogramError(name, 992, f"unsupported TRK version {version}")
    vox_to_ras = np.array(fields["voxel_to_rasmm"], dtype=np.float32)
    if version == 1 or vox_to_ras[3, 3] == 0:
        vox_to_ras = np.eye(4, dtype=np.float32)  # not recorded: identity, as nibabel does
    if not _orientable(vox_to_ras):
        raise CorruptTractogramError(name, 440, f"invalid vox_to_ras affine {vox_to_ras.tolist()}")
    fields["voxel_to_rasmm"] = vox_to_ras
    if fields["voxel_order"] == b"":
        fields["voxel_order"] = b"LPS"  # TrackVis's default, as nibabel assumes
    n_scalars, n_properties = int(fields["nb_scalars_per_point"]), int(fields["nb_properties_per_streamline"])
    if not (0 <= n_scalars <= 10 and 0 <= n_properties <= 10):
        raise CorruptTractogramError(name, 36, f"n_scalars={n_scalars}, n_properties={n_properties} (0-10 allowed)")
    sizes = np.asarray(fields["voxel_sizes"], dtype=np.float64)
    if not np.all(np.isfinite(sizes) & (sizes > 0)):
        raise CorruptTractogramError(name, 12, f"voxel sizes must be > 0 and finite, got {sizes.tolist()}")
    to_rasmm = _voxmm_to_rasmm(fields, name)
    fields["_endianness"] = endian
    fields["_voxmm_to_rasmm"] = to_rasmm
    count = int(fields["nb_streamlines"])
    if count < 0:
        raise CorruptTractogramError(name, 988, f"negative streamline count n_count={count}")
    return TractogramHeader(
        format="trk",
        voxel_to_rasmm=vox_to_ras.astype(np.float64),
        nb_streamlines=count if count > 0 else None,
        data_offset=HEADER_SIZE,
        scalar_names=_names(fields["scalar_name"], n_scalars, name, 38),
        property_names=_names(fields["property_name"], n_properties, name, 240),
        fields=fields,
    )


def _orientable(affine: np.ndarray) -> bool:
    """Whether ``affine`` is finite and maps each voxel axis to one RAS axis (nibabel's ``aff2axcodes``)."""
    if not np.isfinite(affine).all():
        return False
    try:
        with np.errstate(all="ignore"):
            return None not in aff2axcodes(affine)
    except ValueError:  # numpy's LinAlgError (an SVD that does not converge) is one
        return False


def _voxmm_to_rasmm(fields: dict, name: str) -> np.ndarray:
    """nibabel's affine from TrackVis voxmm to RAS+ mm, refusing a bad voxel order or a non-finite result."""
    try:
        with np.errstate(all="ignore"):
            affine = get_affine_trackvis_to_rasmm(fields)
    except ValueError:  # axis codes other than three distinct axes of L/R, P/A, I/S
        raise CorruptTractogramError(name, 948, f"invalid voxel_order {bytes(fields['voxel_order'])!r}") from None
    if not np.isfinite(affine).all():
        sizes = fields["voxel_sizes"].tolist()
        problem = f"voxel sizes {sizes} and the vox_to_ras affine give a non-finite voxmm-to-RAS+ affine"
        raise CorruptTractogramError(name, 12, problem)
    return affine


def _names(raw: np.ndarray, n: int, name: str, offset: int) -> tuple[str, ...]:
    """One name per column: TRK packs ``name\\0<count>`` for a name that covers several columns.

    ``offset`` is where the ten 20-byte names start in the header, for messages.
    """
    names: list[str] = []
    for i, encoded in enumerate(raw):
        if len(names) >= n:
            break
        raw_name = bytes(encoded)
        if not raw_name.strip(b"\0"):
            continue
        try:
            column, count = decode_value_from_name(raw_name)
        except (ValueError, HeaderError):  # a count that is not an integer, or stray bytes after it
            raise CorruptTractogramError(name, offset + 20 * i, f"bad scalar or property name {raw_name!r}") from None
        names.extend([column] * min(max(count, 1), n - len(names)))  # a corrupt count must not build a huge list
    names.extend([""] * (n - len(names)))
    return tuple(names[:n])


class TrkReader:
    """Stream the streamlines of a TRK file as :class:`StreamlineChunk` objects in RAS+ mm.

    Parameters
    ----------
    fileobj
        Binary file object; read from its position (the header's start unless ``header`` is given,
        in which case it must be at the first record).
    name
        Used in error messages (a path or shard name).
    header
        An already-parsed header (for bodies that follow a global header elsewhere).
    ignore_count
        Read to the end even if the header's ``n_count`` is set (a header describing more than
        this stream, e.g. a global header in front of one group of shards).
    stop
        Stop at this many bytes from the first record (None: end of file).
    chunk_bytes
        Bytes read and parsed at a time (None: :data:`CHUNK_BYTES`).
    """

    def __init__(
        self,
        fileobj: BinaryIO,
        name: str = "<file>",
        *,
        header: TractogramHeader | None = None,
        ignore_count: bool = False,
        stop: int | None = None,
        chunk_bytes: int | None = None,
    ) -> None:
        self.fileobj = fileobj
        self.name = name
        self.header = header if header is not None else read_trk_header(fileobj, name)
        self.limit = None if ignore_count else self.header.nb_streamlines
        self.stop = stop
        self.chunk_bytes = max(int(CHUNK_BYTES if chunk_bytes is None else chunk_bytes), 64)

    def __iter__(self) -> Iterator[StreamlineChunk]:
        n_scalars, n_props = len(self.header.scalar_names), len(self.header.property_names)
        for buf, starts, counts in self._batches():
            yield self._chunk(buf, starts, counts, n_scalars, n_props)

    def read_all(self, into: PointsBuilder | None = None) -> StreamlineChunk:
        """Every streamline left, in one chunk.

        Points go straight into one growing array instead of chunks joined at the end, which
        would copy them all once more. With ``into``, they are appended to it (several files into
        one array) and its :meth:`PointsBuilder.finish` gives the result.
        """
        n_scalars, n_props = len(self.header.scalar_names), len(self.header.property_names)
        if n_scalars or n_props:  # rows to split: the chunk path
            chunk = StreamlineChunk.concat(list(self))
            if into is not None:
                into.append(chunk)
            return chunk
        builder = into if into is not None else PointsBuilder(_remaining_bytes(self.fileobj, self.stop) // 12)
        for buf, starts, counts in self._batches():
            end = int(starts[-1] + 1 + counts[-1] * 3)
            keep = np.ones(end, dtype=bool)
            keep[starts] = False
            out = builder.extend(int(counts.sum()), counts)
            np.compress(keep, np.frombuffer(buf, dtype=self._order + "f4", count=end), out=out.reshape(-1))
            moved = _to_rasmm(self.header.fields["_voxmm_to_rasmm"], out) if len(out) else out
            if moved is not out:  # a rotation: the product made a new array
                out[...] = moved
        return builder.finish() if into is None else StreamlineChunk.empty()

    @property
    def _order(self) -> str:
        return self.header.fields["_endianness"]

    def _batches(self) -> Iterator[tuple[bytes, np.ndarray, np.ndarray]]:
        """``(buffer, record start words, point counts)`` for each run of whole records read."""
        stride = 3 + len(self.header.scalar_names)
        n_properties = len(self.header.property_names)
        left = self.limit if self.limit is not None else -1  # streamlines still to read (-1: no limit)
        position = self.header.data_offset  # byte offset of ``carry`` in the file, for messages
        remaining = self.stop
        carry = b""
        while left != 0:
            step = max(self.chunk_bytes, len(carry))  # a record longer than a chunk: read doubling amounts
            want = step if remaining is None else min(step, remaining)
            buf = bytearray(len(carry) + want)  # the new bytes land right after the carried ones
            buf[: len(carry)] = carry
            got = readinto_full(self.fileobj, memoryview(buf)[len(carry) :]) if want > 0 else 0
            if remaining is not None:
                remaining -= got
            eof = got < want or remaining == 0
            if got < want:
                buf = memoryview(buf)[: len(carry) + got]
            ints = np.frombuffer(buf, dtype=self._order + "i4", count=len(buf) // 4)
            starts, counts, end_word = _find_records(ints, stride, n_properties, left, self.name, position)
            if len(starts):
                yield buf, starts, counts
                if left > 0:
                    left -= len(starts)
            consumed = end_word * 4
            position += consumed
            carry = bytes(buf[consumed:])
            if eof:
                if carry and left != 0:
                    raise CorruptTractogramError(
                        self.name,
                        position,
                        f"truncated record: {len(carry)} bytes left after the last whole streamline",
                    )
                return

    def _chunk(
        self, buf: bytes, starts: np.ndarray, counts: np.ndarray, n_scalars: int, n_props: int
    ) -> StreamlineChunk:
        stride = 3 + n_scalars
        starts_a = np.asarray(starts, dtype=np.int64)
        lengths = np.asarray(counts, dtype=np.int64)
        end = int(starts_a[-1] + 1 + lengths[-1] * stride + n_props)
        floats = np.frombuffer(buf, dtype=self._order + "f4", count=end)
        keep = np.ones(end, dtype=bool)  # every word but the counts (and properties) is a point row word
        keep[starts_a] = False
        props = None
        if n_props:
            prop_words = (starts_a + 1 + lengths * stride)[:, None] + np.arange(n_props)
            keep[prop_words] = False
            props = floats[prop_words].astype(np.float32)
        rows = floats[keep].astype(np.float32, copy=False).reshape(-1, stride)
        points = rows if not n_scalars else np.ascontiguousarray(rows[:, :3])
        scalars = np.ascontiguousarray(rows[:, 3:]) if n_scalars else None
        if len(points):
            points = _to_rasmm(self.header.fields["_voxmm_to_rasmm"], points)
        return StreamlineChunk(points, lengths, scalars, props)


def _remaining_bytes(fileobj: BinaryIO, stop: int | None) -> int:
    """Bytes left to read in ``fileobj`` (at most ``stop``) if it can seek; else a guess of 64 MiB."""
    if stop is not None:
        return stop
    try:
        here = fileobj.tell()
        end = fileobj.seek(0, io.SEEK_END)
        fileobj.seek(here)
        return max(0, end - here)
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return 64 * 2**20


_blas = ThreadpoolController()
#: Bytes parsed at a time by default: small enough that a chunk and its points stay in a core's L2
#: cache through the passes over them (2 MiB: 62 ms per 100 MB here, 8 MiB: 70 ms).
CHUNK_BYTES = 2 * 2**20
_TILE = 3 * 1024


def _to_rasmm(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
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
    candidates = np.flatnonzero(ints.view(ints.dtype.str.replace("i", "u")) <= MAX_POINTS)  # negatives wrap high
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
        more, _, _ = _hop(memoryview(ints.astype(np.int32)), stride, n_props, budget, name, position, i)
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
