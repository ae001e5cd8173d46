"""TrackVis (TRK) streaming parser, vectorised over blocks of records.

A record is ``int32 n_points``, ``n_points x (3 + n_scalars)`` float32, ``n_properties`` float32.
There is no sync marker, so records are found by hopping the count words from a known record
boundary. The reader reads a chunk at a time into one reused buffer, carrying a partial record
over to the next chunk; finding and gathering the records of a chunk (points in RAS+ mm, scalars,
properties) is :mod:`.trk_records`' job, compiled with numba or vectorised with numpy.
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

from .chunk import PointsBuilder, StreamlineChunk, TractogramHeader
from .errors import CorruptTractogramError
from .reading import read_full, readinto_full
from .trk_records import MAX_POINTS, RecordGatherer

__all__ = [
    "CHUNK_BYTES",
    "HEADER_SIZE",
    "MAX_POINTS",
    "TrkReader",
    "parse_trk_header",
    "read_trk_header",
    "same_records",
]

HEADER_SIZE = 1000
MAGIC = b"TRACK"


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


def same_records(a: TractogramHeader, b: TractogramHeader) -> bool:
    """Whether records read with TRK header ``a`` or ``b`` give the same streamlines and named data.

    Byte order, scalars and properties (number and names) and the voxmm-to-RAS+ affine (voxel
    sizes, ``vox_to_ras``, voxel order, dimensions) agree; ``n_count`` may differ.
    """
    fa, fb = a.fields, b.fields
    return (
        fa["_endianness"] == fb["_endianness"]
        and a.data_fields() == b.data_fields()
        and np.array_equal(fa["_voxmm_to_rasmm"], fb["_voxmm_to_rasmm"])
    )


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
    scalar_names, scalar_columns = _named_fields(fields["scalar_name"], n_scalars, "scalars", name, 38)
    property_names, property_columns = _named_fields(fields["property_name"], n_properties, "properties", name, 240)
    return TractogramHeader(
        format="trk",
        voxel_to_rasmm=vox_to_ras.astype(np.float64),
        nb_streamlines=count if count > 0 else None,
        data_offset=HEADER_SIZE,
        scalar_names=scalar_names,
        property_names=property_names,
        scalar_columns=scalar_columns,
        property_columns=property_columns,
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


def _named_fields(
    raw: np.ndarray, n: int, rest: str, name: str, offset: int
) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The names of ``n`` columns as nibabel gives them, and how many columns each covers.

    TRK packs ``name\\0<count>`` for a name that covers several columns; names with a count of 0
    (empty ones) are skipped, and columns no name covers are called ``rest``, as in nibabel's
    ``TrkFile.load``. ``offset`` is where the ten 20-byte names start in the header, for messages.
    """
    names: list[str] = []
    columns: list[int] = []
    covered = 0
    for i, encoded in enumerate(raw):
        if covered >= n:
            break
        raw_name = bytes(encoded)
        if not raw_name.strip(b"\0"):
            continue
        try:
            column, count = decode_value_from_name(raw_name)
        except (ValueError, HeaderError):  # a count that is not an integer, or stray bytes after it
            raise CorruptTractogramError(name, offset + 20 * i, f"bad scalar or property name {raw_name!r}") from None
        if count <= 0:
            continue
        count = min(count, n - covered)  # a corrupt count must not claim columns the records lack
        names.append(column)
        columns.append(count)
        covered += count
    if covered < n:
        names.append(rest)
        columns.append(n - covered)
    return tuple(names), tuple(columns)


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
    use_kernels
        None: numba-compiled kernels when available (``dask-prefetch.compiled-parsers``);
        False: numpy only. Both give identical results.
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
        use_kernels: bool | None = None,
    ) -> None:
        self.fileobj = fileobj
        self.name = name
        self.header = header if header is not None else read_trk_header(fileobj, name)
        self.limit = None if ignore_count else self.header.nb_streamlines
        self.stop = stop
        self.chunk_bytes = max(int(CHUNK_BYTES if chunk_bytes is None else chunk_bytes), 64)
        fields = self.header.fields
        self._records = RecordGatherer(
            self.header.n_scalars, self.header.n_properties, fields["_voxmm_to_rasmm"], name, use_kernels
        )
        self._order = fields["_endianness"]

    def __iter__(self) -> Iterator[StreamlineChunk]:
        for words, starts, counts in self._batches():
            yield self._named(self._records.gather(words, starts, counts))

    def _named(self, chunk: StreamlineChunk) -> StreamlineChunk:
        """``chunk`` with its scalars and properties also by nibabel's names (views, no copies)."""
        scalars, properties = self.header.data_fields()
        if not (scalars or properties) or chunk.scalar_fields or chunk.property_fields:
            return chunk
        return StreamlineChunk(chunk.points, chunk.lengths, chunk.scalars, chunk.properties,
                               scalar_fields=scalars, property_fields=properties)  # fmt: skip

    def read_all(self, into: PointsBuilder | None = None) -> StreamlineChunk:
        """Every streamline left, in one chunk.

        Points go straight into one growing array instead of chunks joined at the end, which
        would copy them all once more. With ``into``, they are appended to it (several files into
        one array) and its :meth:`PointsBuilder.finish` gives the result.
        """
        if self._records.n_scalars or self._records.n_props:  # kept in chunks, then joined
            empty = StreamlineChunk.empty(self._records.n_scalars, self._records.n_props)
            chunk = StreamlineChunk.concat(list(self) or [self._named(empty)])  # an empty file: still (0, k) arrays
            if into is not None:
                into.append(chunk)
            return chunk
        builder = into if into is not None else PointsBuilder(_remaining_bytes(self.fileobj, self.stop) // 12)
        for words, starts, counts in self._batches():
            self._records.gather(words, starts, counts, builder.extend(int(counts.sum()), counts))
        return builder.finish() if into is None else StreamlineChunk.empty()

    def _batches(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(native int32 words, record start words, point counts)`` for each run of whole records read.

        The words are a view of one buffer reused from batch to batch: use them before the next.
        """
        left = self.limit if self.limit is not None else -1  # streamlines still to read (-1: no limit)
        position = self.header.data_offset  # byte offset of the buffer's first byte in the file, for messages
        remaining = self.stop
        buf = np.empty(0, np.uint8)
        carried = 0  # bytes at the start of ``buf`` left over from the last batch
        while left != 0:
            step = max(self.chunk_bytes, carried)  # a record longer than a chunk: read doubling amounts
            want = step if remaining is None else min(step, remaining)
            if carried + want > len(buf):
                grown = np.empty(carried + want, np.uint8)
                grown[:carried] = buf[:carried]
                buf = grown
            got = readinto_full(self.fileobj, buf[carried : carried + want]) if want > 0 else 0
            if remaining is not None:
                remaining -= got
            eof = got < want or remaining == 0
            filled = carried + got
            words = buf[: filled // 4 * 4].view(self._order + "i4")
            if self._order != _NATIVE:
                words = words.astype(np.int32)
            starts, counts, end_word = self._records.find(words, left, position)
            if len(starts):
                yield words, starts, counts
                if left > 0:
                    left -= len(starts)
            consumed = end_word * 4
            position += consumed
            carried = filled - consumed
            buf[:carried] = buf[consumed:filled]  # overlapping: numpy copies as memmove does
            if eof:
                if carried and left != 0:
                    raise CorruptTractogramError(
                        self.name,
                        position,
                        f"truncated record: {carried} bytes left after the last whole streamline",
                    )
                return


def _remaining_bytes(fileobj: BinaryIO, stop: int | None) -> int:
    """Bytes left to read in ``fileobj`` (at most ``stop``) if it can seek, or from its ``size_hint``
    (a gzip stream whose size was read from its trailer); else a guess of 64 MiB."""
    if stop is not None:
        return stop
    try:
        here = fileobj.tell()
        end = fileobj.seek(0, io.SEEK_END)
        fileobj.seek(here)
        return max(0, end - here)
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        hint = getattr(fileobj, "size_hint", None)
        return max(0, hint - fileobj.tell()) if hint else 64 * 2**20


_NATIVE = "<" if np.little_endian else ">"
#: Bytes parsed at a time by default: small enough that a chunk and its points stay in a core's L2
#: cache through the passes over them (2 MiB: 62 ms per 100 MB here, 8 MiB: 70 ms).
CHUNK_BYTES = 2 * 2**20
