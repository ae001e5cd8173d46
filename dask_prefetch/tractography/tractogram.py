"""``read_tractogram``: TRK/TCK streamlines from S3 (rolling prefetch), local or other fsspec files into Dask.

Layouts and how they become partitions:

* **Complete files** (TRK or TCK, ``layout="files"``): a list of files each with its own header,
  empty ones included; each is read with its own header (byte order, affine, scalars,
  properties). Each partition reads a contiguous group of files that carry the same named data.
* **Global header + shards** (TRK, ``layout="sharded"``): one lone 1000-byte TRK header object
  and shards that are not complete files of their own: either bodies without a header, or TRK
  files whose headers match the global one in everything that shapes records (see
  :func:`read_tractogram`). Each partition reads a contiguous group of shards as one
  rolling-prefetched stream ``[global header, *group]`` with ``header_bytes``, exactly as
  ``S3PrefetchFileSystem.open`` does; shards must start at record boundaries.
* **One TCK file**: split into byte ranges that resynchronise at NaN rows, one per started 256 MiB.
* **One TRK file**: TRK has no sync marker, so it is read as one stream (one partition). Shard it
  (``dask-prefetch`` reads shards in parallel) to spread one tractogram over a cluster.
* **TRX** (a zip, stored or deflated, or a directory): partitions cut on ``offsets``, each reading
  byte ranges of the arrays in place (see ``trx_planning.py``).
"""

from __future__ import annotations

import io
import math
import operator
from dataclasses import replace
from typing import Any, Callable, Mapping, Sequence

import dask
import dask.array as da
import dask.bag as db
from dask._task_spec import DataNode, Task  # as the cluster layer reads them back (cluster/tasks.py)
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph
import numpy as np
from fsspec.asyn import sync
from fsspec.core import split_protocol, url_to_fs
from fsspec.implementations.local import LocalFileSystem

from .. import checks, config
from ..checks import describe
from ..fs.s3 import S3PrefetchFileSystem, check_paths, check_unique
from ..fs.prefetch import PrefetchFileSystem
from .partitions import Opener, Partition, iter_partition, read_partition
from . import export
from .splitting import trk_cuts
from .planning import (  # noqa: F401 (MixedDataWarning re-exported)
    SAMPLE,
    MixedDataWarning,
    file_partitions,
    plan_layout,
    read_ranges,
    sample_positions,
    sharded_partitions,
)
from ..formats import CorruptTractogramError, StreamlineChunk, TractogramHeader, detect_format
from ..formats.compression import gunzip_prefix, inflated_size_hint, is_gzip
from ..formats.tck import MAGIC as TCK_MAGIC
from ..formats.tck import MAX_HEADER, read_tck_header, tck_byte_ranges
from ..formats.trk import HEADER_SIZE, parse_trk_header
from .trx_planning import is_trx_directory, is_trx_name, plan_trx, trx_data_per_group, trx_groups

#: One partition per started 256 MiB of a single TRK file by default (as for TCK).
TRK_PARTITION_BYTES = 256 * 2**20
_PROBE_BYTES = 64 * 1024  # enough for any TRK header and ordinary TCK headers
_PROTOCOLS = {None: "file", "local": "file", "s3a": "s3"}  # spellings of one store
LAYOUTS = ("files", "sharded")
#: One TCK file is split into one partition per started ``TCK_PARTITION_BYTES`` by default.
TCK_PARTITION_BYTES = 256 * 2**20


class Tractogram:
    """A lazily read tractogram: its header, and Dask collections over its streamlines.

    Made by :func:`read_tractogram`. Each partition is one task reading one sequential stream.

    Attributes
    ----------
    header : TractogramHeader
        Format, ``voxel_to_rasmm``, scalar and property names, and ``nb_streamlines``: the count
        the header *claims* (of one file or of a global header; None for several complete files),
        never checked against the data. For several complete files, the first file's header.
    partitions : list of Partition
        What each task reads.
    groups : dict of str to dask.array.Array
        TRX groups: the int64 indices (into the streamlines, in file order) of each group's
        streamlines. Empty for TRK and TCK.
    data_per_group : dict of str to dict of str to dask.array.Array
        TRX ``dpg``: ``{group: {name: values}}``, each one row ``(1, columns)`` in its stored
        dtype, as trx-python loads it (several files holding it: one row per file, in file
        order). Empty for TRK and TCK.

    Notes
    -----
    Without a ``distributed`` client, dask.bag computes on a *process* pool by default, which
    pickles every partition's streamlines between processes. The tasks are numpy and release the
    GIL, so the bags (:meth:`to_bag`, :meth:`to_chunks`, :meth:`map_chunks`) are faster computed
    with ``compute(scheduler="threads")`` or under ``dask.config.set(scheduler="threads")``. The
    arrays (:attr:`points`, :attr:`n_points`, ...) use threads already.
    """

    def __init__(
        self,
        header: TractogramHeader,
        partitions: list[Partition],
        opener: Opener,
        chunk_bytes: int | None,
        identity: Any,
        parts: list[Any] | None = None,
        groups: dict[str, da.Array] | None = None,
        data_per_group: dict[str, dict[str, da.Array]] | None = None,
    ):
        self.header = header
        self.groups = dict(groups or {})
        self.data_per_group = {g: dict(named) for g, named in (data_per_group or {}).items()}
        self.partitions = partitions
        self._opener = opener
        self._chunk_bytes = chunk_bytes
        self._identity = identity
        self._persisted = parts is not None  # the partitions were read once and are kept (persist)
        self._token = dask.base.tokenize(partitions, header.format, chunk_bytes, opener.open_kwargs, identity)
        if parts is None:
            parts = _read_tasks(f"read-tractogram-{self._token}", partitions, opener, header, chunk_bytes)
            if any(p.kind == "trk-range" for p in partitions):
                parts = _proven_in_order(parts, header.nb_streamlines, self._token)
        self._parts = parts

    def __repr__(self) -> str:
        n = self.header.nb_streamlines
        claimed = f" header_claims={n}" if n is not None else ""
        return f"<Tractogram {self.header.format.upper()} npartitions={self.npartitions}{claimed}>"

    @property
    def npartitions(self) -> int:
        return len(self._parts)

    def persist(self, **kwargs: Any) -> "Tractogram":
        """The same tractogram with every partition read once and kept (``dask.persist``).

        Later computes on the returned tractogram reuse the parsed chunks instead of reading the
        files again: in worker memory on a ``distributed`` cluster, in this process otherwise.
        ``kwargs`` go to ``dask.persist`` (``scheduler=...``).
        """
        parts = list(dask.persist(*self._parts, **kwargs))
        return Tractogram(
            self.header, self.partitions, self._opener, self._chunk_bytes, self._identity, parts, self.groups,
            self.data_per_group,
        )

    def to_chunks(self) -> db.Bag:
        """A bag with one :class:`StreamlineChunk` (flat points + lengths) per partition: the fast path.

        Without a ``distributed`` client, compute it with ``scheduler="threads"`` (see Notes of :class:`Tractogram`).
        """
        return db.from_delayed([dask.delayed(_as_list, pure=True)(p) for p in self._parts])

    def map_chunks(self, func: Callable[[StreamlineChunk], Any], *, per: str = "partition") -> db.Bag:
        """``func(chunk)`` for every partition's chunk, or for every chunk as it is parsed, as a bag of the results.

        Without a ``distributed`` client, compute it with ``scheduler="threads"`` (see Notes of :class:`Tractogram`).

        Parameters
        ----------
        func
            Called on a :class:`StreamlineChunk` of whole streamlines.
        per
            ``"partition"`` (default): once per partition, on all of its streamlines in one chunk,
            after its last byte was read and parsed; one result per partition.
            ``"chunk"``: streamed -- inside each partition's task, on every chunk of about
            ``chunk_size`` bytes of records (see :func:`read_tractogram`; TRX: of positions) as
            soon as it is parsed, while the rest of the partition is still being prefetched;
            never on an empty chunk. A task then holds a few chunks and the results, not its
            whole partition (a deflated TRX too: its members are inflated as chunks are taken).
            Partition ``i`` of the bag holds its chunks' results in file order.

        Returns
        -------
        dask.bag.Bag
            Of ``func``'s results, partitioned as the tractogram.

        Raises
        ------
        ValueError
            For another ``per``.

        Notes
        -----
        Both ways read the same streamlines in the same order and make the same checks; only where
        chunks are cut differs (so ``func`` must not depend on it: concatenate, sum or count).
        An error found at the end of a partition (a truncated record, a damaged gzip stream)
        fails its task with ``per="chunk"`` too, after ``func`` has run on the chunks before:
        none of those results is returned. The ranges of one split TRK file are released in
        order, as with :meth:`to_chunks`: a range's results once every range before it was read.
        On a persisted tractogram, ``func`` runs on each kept partition's one chunk.
        """
        if per == "partition":
            return self.to_chunks().map(func)
        if per != "chunk":
            raise ValueError(f"per must be 'partition' or 'chunk', got {per!r}")
        return db.from_delayed(self._streamed(func))

    def _streamed(self, func: Callable[[StreamlineChunk], Any]) -> list[Any]:
        """One task per partition calling ``func`` on each chunk as it is parsed: each a list of the results."""
        if self._persisted:  # the chunks are in memory already: not read again
            return [dask.delayed(_each_kept, pure=True)(p, func) for p in self._parts]
        token = dask.base.tokenize(self._token, func)
        name = f"map-chunks-{token}"
        ranges = any(p.kind == "trk-range" for p in self.partitions)
        per_chunk = _Counted(func) if ranges else func
        reads = _read_tasks(name, self.partitions, self._opener, self.header, self._chunk_bytes, per_chunk)
        if not ranges:
            return reads
        redo = (self._opener, self.header, self._chunk_bytes, func)
        return _results_in_order(reads, self.partitions, self.header.nb_streamlines, token, redo)

    def to_bag(self) -> db.Bag:
        """A bag of streamlines: one float32 ``(n_points, 3)`` array each, in file order, RAS+ mm.

        Without a ``distributed`` client, compute it with ``scheduler="threads"`` (see Notes of :class:`Tractogram`).
        """
        return db.from_delayed([dask.delayed(StreamlineChunk.streamlines, pure=True)(p) for p in self._parts])

    @property
    def points(self) -> da.Array:
        """All points, ``(total_points, 3)`` float32 in RAS+ mm (chunk sizes unknown until computed)."""
        return self._per_partition(_field, "points", (np.nan, 3), np.float32)

    @property
    def n_points(self) -> da.Array:
        """Points per streamline, int64: a count, not a length in mm (for that, :attr:`arc_lengths`).

        Aligned with :attr:`points`: streamline ``i`` is ``points[offsets[i]:offsets[i] + n_points[i]]``
        (``offsets`` the cumulative sum). Chunk sizes unknown until computed.
        """
        return self._per_partition(_field, "lengths", (np.nan,), np.int64)

    @property
    def lengths(self) -> da.Array:
        """Points per streamline, as nibabel's ``ArraySequence`` names them: the same array as :attr:`n_points`.

        Not millimetres: ``dipy.tracking.streamline.length`` gives what :attr:`arc_lengths` gives.
        """
        return self.n_points

    @property
    def arc_lengths(self) -> da.Array:
        """Length of each streamline in mm along its points (float64), as ``dipy.tracking.streamline.length``."""
        return self._per_partition(_arc_lengths, None, (np.nan,), np.float64)

    def _per_partition(self, func: Callable, name: str | None, shape: tuple, dtype: Any) -> da.Array:
        """One dask array of ``func(chunk, name)`` over the partitions, concatenated on the first axis."""
        arrays = [
            da.from_delayed(dask.delayed(func, pure=True)(p, name), shape=shape, dtype=dtype) for p in self._parts
        ]
        empty = tuple(0 if np.isnan(n) else n for n in shape)
        return da.concatenate(arrays, axis=0) if arrays else da.empty(empty, dtype=dtype)

    def to_nibabel(self, **compute_kwargs: Any) -> Any:
        """Every streamline, read now, as a :class:`nibabel.streamlines.Tractogram` (RAS+ mm, named data).

        For a tractogram that fits in memory. ``compute_kwargs`` go to ``dask.compute``
        (``scheduler=...``; with a ``distributed`` client the partitions are read on its cluster).
        One partition at a time: ``tg.map_chunks(dask_prefetch.tractography.export.to_nibabel)``.
        """
        return export.to_nibabel(self._in_memory(compute_kwargs))

    def to_sft(self, reference: Any = None, **compute_kwargs: Any) -> Any:
        """Every streamline, read now, as a dipy ``StatefulTractogram`` in RAS+ mm (needs dipy).

        ``reference`` is anything dipy takes as one; None: this file's own header (TRK, TRX).

        Raises
        ------
        ImportError
            Without dipy.
        ValueError
            For TCK without ``reference`` (TCK stores no reference space).
        """
        reference = export.reference_of(self.header) if reference is None else reference  # before reading
        return export.to_sft(self._in_memory(compute_kwargs), self.header, reference)

    def _in_memory(self, compute_kwargs: dict) -> StreamlineChunk:
        chunks = dask.compute(*self._parts, **compute_kwargs)
        return StreamlineChunk.concat(list(chunks)) if chunks else StreamlineChunk.empty()

    @property
    def data_per_point(self) -> dict[str, da.Array]:
        """Named per-point arrays, ``(total_points, k)`` each, row for row with :attr:`points`.

        TRX ``dpv`` by name, in their own dtypes; TRK scalars by nibabel's names (float32).
        """
        return self._named_data("data_per_point")

    @property
    def data_per_streamline(self) -> dict[str, da.Array]:
        """Named per-streamline arrays, ``(n_streamlines, k)`` each, row for row with :attr:`lengths`.

        TRX ``dps`` by name, in their own dtypes; TRK properties by nibabel's names (float32).
        """
        return self._named_data("data_per_streamline")

    def _named_data(self, kind: str) -> dict[str, da.Array]:
        h = self.header
        per_point = kind == "data_per_point"
        names, columns = (h.scalar_names, h.scalar_columns) if per_point else (h.property_names, h.property_columns)
        dtypes = h.fields.get(f"{kind}_dtypes", {})
        out, first = {}, 0
        for name, k in zip(names, columns):
            dtype = np.dtype(dtypes.get(name, np.float32))
            where = (first, first + k)  # its columns of a TRK chunk's scalars or properties
            arrays = [
                da.from_delayed(dask.delayed(_named, pure=True)(p, kind, name, where), shape=(np.nan, k), dtype=dtype)
                for p in self._parts
            ]
            out[name] = da.concatenate(arrays, axis=0) if arrays else da.empty((0, k), dtype=dtype)
            first += k
        return out



def _read_tasks(
    name: str,
    partitions: list[Partition],
    opener: Opener,
    header: TractogramHeader,
    chunk_bytes: int | None,
    per_chunk: Callable[[StreamlineChunk], Any] | None = None,
) -> list[Delayed]:
    """One ``read_partition`` task per partition, as ``Delayed`` objects, built directly.

    Its arguments are plain data (``DataNode``): nothing in them is a Dask collection, so they are
    not walked, as ``dask.delayed(read_partition)(...)`` would walk each partition and the whole
    header for every task (~0.6-2 ms a partition, most of a 1856-shard graph build). With
    ``per_chunk``, each task returns the list of ``per_chunk``'s results on its chunks (still a
    ``read_partition`` task: the cluster plugins place and prefetch it as any other).
    """
    shared = DataNode(None, opener), DataNode(None, header), DataNode(None, chunk_bytes)
    if per_chunk is not None:
        shared += (DataNode(None, per_chunk),)
    out = []
    for i, part in enumerate(partitions):
        key = (name, i)
        task = Task(key, read_partition, DataNode(None, part), *shared)
        out.append(Delayed(key, HighLevelGraph.from_collections(key, {key: task}, dependencies=())))
    return out


def _proven_in_order(reads: list[Any], claimed: int | None, token: str) -> list[Any]:
    """Each range's streamlines, released only once every range before it has been read.

    A range of a split TRK file starts at a candidate record start, and its reader raises unless
    its records end exactly where the next range starts. So once ranges ``0..i-1`` have been read
    (the first starts at the header's end), range ``i`` starts on the file's own chain of records:
    its streamlines are the file's, and none is released before (computing range ``i`` alone reads
    the ones before it). The streamline counts of the ranges before also apply the header's
    ``n_count`` as nibabel does: no streamline past the ``n_count``-th.
    """
    out, before = [], 0
    for i, read in enumerate(reads):
        out.append(dask.delayed(_after_ranges_before, pure=True)(read, before, claimed, dask_key_name=(f"proven-{token}", i)))
        count = dask.delayed(len, pure=True)(read, dask_key_name=(f"count-{token}", i))
        before = dask.delayed(operator.add, pure=True)(before, count, dask_key_name=(f"before-{token}", i + 1))
    return out


def _after_ranges_before(chunk: StreamlineChunk, before: int, claimed: int | None) -> StreamlineChunk:
    """``chunk``, now that the ``before`` streamlines of the ranges before it are read; cut at ``claimed``."""
    return chunk if not claimed else chunk.head(claimed - before)


class _Counted:
    """``func`` on a chunk, paired with the chunk's streamline count: ``(n, func(chunk))``."""

    def __init__(self, func: Callable[[StreamlineChunk], Any]) -> None:
        self.func = func

    def __call__(self, chunk: StreamlineChunk) -> tuple[int, Any]:
        return len(chunk), self.func(chunk)

    def __dask_tokenize__(self) -> Any:
        return ("counted", dask.base.tokenize(self.func))


def _results_in_order(
    reads: list[Any], partitions: list[Partition], claimed: int | None, token: str, redo: tuple
) -> list[Any]:
    """:func:`_proven_in_order` for streamed ranges: each range's results once every range before it was read.

    ``reads`` give ``(n, result)`` per chunk. The header's ``n_count`` applies as nibabel does: the
    range it ends inside is read again up to that streamline (``redo``: opener, header,
    chunk_bytes, func), as its results on whole chunks cannot be cut.
    """
    out, before = [], 0
    for i, (read, part) in enumerate(zip(reads, partitions)):
        release = dask.delayed(_results_after_ranges_before, pure=True)
        out.append(release(read, before, claimed, part, redo, dask_key_name=(f"proven-{token}", i)))
        count = dask.delayed(_total, pure=True)(read, dask_key_name=(f"count-{token}", i))
        before = dask.delayed(operator.add, pure=True)(before, count, dask_key_name=(f"before-{token}", i + 1))
    return out


def _total(counted: list[tuple[int, Any]]) -> int:
    return sum(n for n, _ in counted)


def _results_after_ranges_before(
    counted: list[tuple[int, Any]], before: int, claimed: int | None, part: Partition, redo: tuple
) -> list[Any]:
    """A range's results, now that the ``before`` streamlines of the ranges before it are read; cut at ``claimed``."""
    if not claimed or before + _total(counted) <= claimed:
        return [result for _, result in counted]
    opener, header, chunk_bytes, func = redo
    left, out = claimed - before, []
    if left <= 0:
        return out
    chunks = iter_partition(part, opener, header, chunk_bytes)
    try:  # the range was read whole and proven already: stop at the ``claimed``-th streamline
        for chunk in chunks:
            chunk = chunk.head(left)
            out.append(func(chunk))
            left -= len(chunk)
            if left <= 0:
                break
    finally:
        chunks.close()
    return out


def _each_kept(chunk: StreamlineChunk, func: Callable[[StreamlineChunk], Any]) -> list[Any]:
    """``func`` on a persisted partition's chunk, as a streamed partition's results (none when empty)."""
    return [func(chunk)] if len(chunk) else []


def _field(chunk: StreamlineChunk, name: str) -> np.ndarray:
    return getattr(chunk, name)


def _arc_lengths(chunk: StreamlineChunk, _: None) -> np.ndarray:
    return chunk.arc_lengths()


def _named(chunk: StreamlineChunk, kind: str, name: str, columns: tuple[int, int]) -> np.ndarray:
    """A chunk's named array: by name (TRX), or the columns of its TRK scalars or properties."""
    named = getattr(chunk, kind)
    if name in named:
        return named[name]
    flat = chunk.scalars if kind == "data_per_point" else chunk.properties
    if flat is None:
        raise KeyError(f"this partition has no {kind} {name!r} (its files carry none: see MixedDataWarning)")
    return flat[:, columns[0] : columns[1]]


def _as_list(chunk: StreamlineChunk) -> list[StreamlineChunk]:
    return [chunk]


def read_tractogram(
    paths: str | Sequence[str],
    *,
    layout: str | None = None,
    header_bytes: int | None = None,
    storage_options: dict | None = None,
    block_size: int | str | None = None,
    prefetch_storage: Sequence[tuple[str, float]] | None = None,
    chunk_size: int | str | None = None,
    npartitions: int | None = None,
) -> Tractogram:
    """Open a TRK or TCK tractogram (one file, a list, or a glob) for Dask.

    Parameters
    ----------
    paths
        A path, a glob, or a list of them in order (``str``, or ``os.PathLike`` for local files),
        all on one store: ``s3://`` (read with rolling prefetch), local (plain paths, ``file://``),
        or any other fsspec protocol (``https://``, ``gs://``, ``memory://``, ...: read with rolling
        prefetch through ``PrefetchFileSystem`` over the fsspec filesystem they were listed on, never
        another one; ``memory://`` lives in one process, so worker processes of a cluster do not
        see it). Each file at most once: a list (globs expanded) naming a file
        twice raises.
    layout
        ``"files"``: every object is a complete TRK or TCK file, read with its own header.
        ``"sharded"``: a lone 1000-byte TRK header object (the first of a list; in a single glob,
        the one 1000-byte TRK object) and TRK shards read behind it. None (default): inferred
        only when unambiguous (see Notes).
    header_bytes
        With a global header: the bytes every shard starts with that are skipped (1000 for shards
        with their own TRK header, 0 for bare bodies). Giving it (> 0) means ``layout="sharded"``
        and skips looking at the shards' first bytes; 0 means complete files unless
        ``layout="sharded"``. None: inferred.
    storage_options
        For the filesystem of ``paths`` (for S3, ``S3PrefetchFileSystem``'s: ``endpoint_url``,
        ``anon``, ``key``, ...).
    block_size, prefetch_storage
        Passed to the prefetching filesystem's ``open`` by every task (any store but local files).
    chunk_size
        Bytes parsed at a time by the readers: an int or a string such as ``"8 MiB"`` (None: each
        reader's default, 2 MiB for TRK, 8 MiB for TCK, 8 MiB of positions for TRX).
    npartitions
        Tasks to split the work into, at least 1 (default: one per shard or file; for one TCK
        file, one per started 256 MiB: ``ceil(size / 256 MiB)``). Fewer partitions result when there
        are fewer shards; complete files are also split where their named data changes.

    Returns
    -------
    Tractogram

    Raises
    ------
    TypeError
        For a path not a ``str`` (or ``os.PathLike``), a bool or float where an int is expected,
        ``storage_options`` not a dict, a malformed ``prefetch_storage``.
    ValueError
        For an empty list, paths on two stores, a file listed twice, an unknown ``layout``,
        ``header_bytes`` negative, larger than a shard or given with ``layout="files"``, a sharded
        layout without a lone TRK header in front of its shards, objects that are neither complete
        files nor, unambiguously, shards (the message names them and how to choose),
        ``chunk_size``, ``block_size`` or ``npartitions`` not positive; ``CorruptTractogramError``
        (a ValueError) for a file that is neither TRK nor TCK or has a corrupt header.
    FileNotFoundError
        For a missing file or a glob that matches nothing (``IsADirectoryError`` for a directory).
    ImportError
        For a protocol whose fsspec implementation is not installed (naming what to install).

    Warns
    -----
    MixedDataWarning
        When complete files disagree on their scalars or properties: partitions are split where
        the named data changes, each chunk carries its own files' scalars and properties (None
        where they have none), ``header`` describes the first file, and points and lengths come
        from every file.

    Notes
    -----
    How the layout is inferred (``layout`` and ``header_bytes`` None), from the objects' first 1000
    bytes (small ranged reads, concurrent on S3):

    * If an object is a lone header -- exactly 1000 bytes, a valid TRK header with ``n_count`` 0
      (first in a list; in a single glob, the first such object) -- and every other object is
      either not a tractogram file by its first bytes (bodies: ``header_bytes=0``) or a TRK
      file whose header matches the lone one in byte order, scalars and properties (number and
      names) and the voxmm-to-RAS+ affine (voxel sizes, ``vox_to_ras``, voxel order, dimensions)
      (``header_bytes=1000``): sharded. Then both readings give the same streamlines; in case a
      shard holds more records than its own ``n_count`` claims (where nibabel would stop early),
      its task raises ``CorruptTractogramError`` saying how to choose.
    * Otherwise, if every object is a complete TRK or TCK file by its own header (empty ones
      included, such as nibabel's 1000-byte ``empty.trk``): complete files.
    * Otherwise ``ValueError`` naming the objects that are not complete files.

    Behind a lone header with more than 8 shards, only the header's and 8 shards' first bytes are
    read (the first, the last and six spread between); if they show a sharded layout, each task
    checks the first bytes of its own shards as it reads them, and raises
    ``CorruptTractogramError`` naming a shard that does not start as the sampled ones do.
    """
    path_list = check_paths(paths, "paths", caller="read_tractogram", pathlike=True)
    _check_arguments(path_list, storage_options, block_size, prefetch_storage, npartitions)
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"layout must be 'files', 'sharded' or None (infer), got {layout!r}")
    header_bytes = None if header_bytes is None else checks.check_int(header_bytes, "header_bytes", minimum=0)
    if layout == "files" and header_bytes:
        raise ValueError(
            f"layout='files' reads every file from its byte 0: header_bytes must be 0 or None, not {header_bytes}"
        )
    chunk_bytes = None if chunk_size is None else checks.check_bytes(chunk_size, "chunk_size")
    fs, opener = _filesystem(path_list[0], storage_options, block_size, prefetch_storage)
    expanded, listed = _expand(fs, path_list)
    check_unique(expanded, "paths" if len(expanded) == len(path_list) else "paths (globs expanded)")
    if any(is_trx_name(p) for p in expanded):
        return _trx_tractogram(fs, opener, expanded, storage_options, npartitions, chunk_bytes)
    one_glob = len(path_list) == 1
    first_bytes = _first_bytes_wanted(expanded, listed, layout, header_bytes, one_glob)
    try:
        infos, known = _infos(fs, expanded, listed, *first_bytes)
    except IsADirectoryError:  # TRX directories (key prefixes holding header.json) are read as TRX
        if not all(is_trx_directory(fs, p) for p in expanded):
            raise
        return _trx_tractogram(fs, opener, expanded, storage_options, npartitions, chunk_bytes)
    sizes = [int(info["size"]) for info in infos]
    heads = {i: head[:HEADER_SIZE] for i, head in known.items()}
    plan = plan_layout(fs, expanded, sizes, infos, layout, header_bytes, one_glob=one_glob, known=heads)
    order = plan.order
    read_first = known.get(order[0])
    packed_names = {expanded[i] for i in plan.packed}
    expanded, sizes, infos = [expanded[i] for i in order], [sizes[i] for i in order], [infos[i] for i in order]
    whole = plan.first_head is not None and len(plan.first_head) == sizes[0]  # e.g. the global header
    if read_first is None or len(read_first) != min(sizes[0], _PROBE_BYTES):
        read_first = plan.first_head if whole else None
    probe, packed = _probe(fs, expanded[0], sizes[0], read_first)
    fmt = detect_format(probe, expanded[0])
    size = None if packed else sizes[0]  # of a compressed file: unknown until it is read
    if packed:
        packed_names.add(expanded[0])
    if fmt == "trx":  # a zip by its magic, whatever its name
        if packed:
            raise CorruptTractogramError(expanded[0], 0, "a gzip-compressed zip: a TRX is read as the zip itself")
        return _trx_tractogram(fs, opener, expanded, storage_options, npartitions, chunk_bytes)
    if plan.kind == "sharded":
        header, parts = sharded_partitions(expanded, sizes, probe, plan, npartitions)
    elif len(expanded) > 1:
        header = _header(fmt, probe, expanded[0], size)
        header = replace(header, nb_streamlines=None)  # the first file's count is not the whole's
        parts = file_partitions(expanded, sizes, [plan.data[i] for i in order], npartitions)
    elif fmt == "tck" and not packed:  # a gzip stream has no random access: one partition
        header = _header(fmt, probe, expanded[0], size)
        n = npartitions or max(1, math.ceil(sizes[0] / TCK_PARTITION_BYTES))
        ranges = tck_byte_ranges(header, sizes[0], n)
        parts = [Partition("tck-range", (expanded[0],), start=a, stop=b, nbytes=b - a) for a, b in ranges]
    else:  # one TRK file: cut at candidate record starts, proven as the ranges are read
        header = _header(fmt, probe, expanded[0], size)
        n = 1 if packed else npartitions or max(1, math.ceil(sizes[0] / TRK_PARTITION_BYTES))
        cuts = trk_cuts(fs, expanded[0], header, sizes[0], n) if n > 1 else []
        if len(cuts) > 2:
            parts = [
                Partition("trk-range", (expanded[0],), start=a, stop=b, nbytes=b - a, last=b == sizes[0])
                for a, b in zip(cuts, cuts[1:])
            ]
        else:
            parts = [Partition("files", (expanded[0],), nbytes=sizes[0])]
    if packed_names:  # their decompressed sizes, from their trailers: a one-chunk read is sized right
        parts = _with_inflated_sizes(fs, parts, packed_names, expanded, sizes, infos)
    if opener.fs is not None:  # tasks open the very versions seen now, without a HEAD each
        version = opener.fs.source.version  # (S3: ETag and VersionId; other stores: their version token)
        pin_of = {path: (path, int(i["size"]), *version(i)) for path, i in zip(expanded, infos)}
        parts = [replace(p, pins=tuple(pin_of[path] for path in p.paths)) for p in parts]
    # Task keys must change with the data: where it lives and which versions were seen.
    seen = [(info.get("name"), info.get("size"), info.get("ETag") or info.get("mtime")) for info in infos]
    identity = (fs.protocol, storage_options, seen)
    return Tractogram(header, parts, opener, chunk_bytes, identity)


def _with_inflated_sizes(
    fs: Any, parts: list[Partition], packed: set[str], paths: list[str], sizes: list[int], infos: list[dict]
) -> list[Partition]:
    """``parts`` with a decompressed size hint for each gzip-compressed file they read (a 4-byte GET each).

    Without one, a reader that parses a compressed file into one array must guess its size and
    grow the array (up to twice the points, three times while copying).
    """
    wanted = [i for i, p in enumerate(paths) if p in packed]
    trailers = read_ranges(
        fs, [paths[i] for i in wanted], [(max(0, sizes[i] - 4), sizes[i]) for i in wanted], [infos[i] for i in wanted]
    )
    hint = {paths[i]: inflated_size_hint(t, sizes[i]) for i, t in zip(wanted, trailers)}
    return [
        replace(p, inflated=tuple((x, hint[x]) for x in p.paths if x in hint)) if p.kind == "files" else p
        for p in parts
    ]


def _trx_tractogram(
    fs: Any, opener: Opener, paths: list[str], storage_options: Any, npartitions: int | None, chunk_bytes: int | None
) -> Tractogram:
    """TRX files (zips or directories) as a :class:`Tractogram` (see ``trx_planning.py``)."""
    version = opener.fs.source.version if opener.fs is not None else None
    plan = plan_trx(fs, paths, npartitions, version)
    identity = (fs.protocol, storage_options, plan.seen)
    return Tractogram(
        plan.header, plan.partitions, opener, chunk_bytes, identity,
        groups=trx_groups(plan, opener), data_per_group=trx_data_per_group(plan, opener),
    )


def _filesystem(first: str, storage_options: Any, block_size: Any, prefetch_storage: Any) -> tuple[Any, Opener]:
    """The filesystem ``first`` lives on, and the :class:`Opener` that makes tasks read from that one.

    Raises ``ImportError`` naming the pip package to install when the protocol's implementation
    cannot be imported (``abfs:// needs adlfs: pip install adlfs``).
    """
    try:
        fs, _ = url_to_fs(first, **(storage_options or {}))
    except ImportError as e:
        from fsspec.registry import known_implementations

        protocol = split_protocol(first)[0] or "file"
        failed = e.__cause__ if isinstance(e.__cause__, ImportError) else e  # fsspec re-raises with its own text
        missing = (getattr(failed, "name", None) or "").split(".")[0]  # the module that would not import
        package = known_implementations.get(protocol, {}).get("class", "").split(".")[0]  # e.g. "adlfs"
        if package in ("", "fsspec"):  # fsspec's own implementation, needing a third-party module
            package = missing
        extra = {"adlfs": "azure", "gcsfs": "gcs"}.get(package)
        install = f"pip install {package}" + (f" (or 'dask-prefetch[{extra}]')" if extra else "")
        needs = f"{protocol}:// needs {package}: {install}" if package else f"{protocol}:// needs a package"
        raise ImportError(f"read_tractogram cannot read {protocol}:// paths such as {first!r}: {needs} ({failed})") from e
    if "s3" in fs.protocol:
        fs = S3PrefetchFileSystem(**(storage_options or {}))
        fs.invalidate_cache()  # list what is there now, not what a cached instance saw earlier
        return fs, Opener(fs, {"block_size": block_size, "prefetch_storage": prefetch_storage})
    if isinstance(fs, LocalFileSystem):
        return fs, Opener(None, {})
    # Any other protocol: rolling prefetch over the very filesystem the paths were listed on.
    prefetching = PrefetchFileSystem(fs=fs)
    return fs, Opener(prefetching, {"block_size": block_size, "prefetch_storage": prefetch_storage})


def _check_arguments(paths: list[str], storage_options: Any, block_size: Any, storage: Any, npartitions: Any) -> None:
    """Check ``read_tractogram``'s arguments before anything is listed (``TypeError``, ``ValueError``)."""
    protocols = {_PROTOCOLS.get(split_protocol(p)[0], split_protocol(p)[0]) for p in paths}
    if len(protocols) > 1:
        raise ValueError(f"paths mix protocols {sorted(protocols)}: read one store at a time, got {paths!r}")
    if storage_options is not None and not isinstance(storage_options, Mapping):
        raise TypeError(f"storage_options must be a dict, got {describe(storage_options)}")
    if block_size is not None:
        checks.check_bytes(block_size, "block_size")  # now, rather than in every task
    if storage is not None:
        checks.check_storage(storage)  # the shape only: the directories are the workers'
    if npartitions is not None:
        checks.check_int(npartitions, "npartitions", minimum=1)


def _expand(fs: Any, paths: list[str]) -> tuple[list[str], dict[str, dict]]:
    """The paths with globs expanded, in order, and (S3) what the listing said of each globbed object.

    Raises ``FileNotFoundError`` for a glob that matches nothing.
    """
    detail = isinstance(fs, S3PrefetchFileSystem)  # sizes and ETags come with the listing (see _infos)
    expanded: list[str] = []
    listed: dict[str, dict] = {}
    for p in paths:
        if any(c in p for c in "*?["):
            found = fs.glob(p, detail=detail)
            if detail:
                listed.update(found)
            found = sorted(found)
        else:
            found = [fs._strip_protocol(p)]
        if not found:
            raise FileNotFoundError(f"no file matches {p!r}")
        expanded.extend(found)
    return expanded, listed


def _first_bytes_wanted(
    paths: list[str], listed: dict[str, dict], layout: str | None, header_bytes: int | None, one_glob: bool
) -> tuple[list[int], int]:
    """Which objects' first bytes the graph build will read, and how many, when that is known before their
    sizes are: the objects of a list none of whose sizes a listing gave (read along with the sizes,
    one round trip on S3 where asking for the size and then reading the bytes would take two).

    One object: its probe (:data:`_PROBE_BYTES`). A list with the layout to infer: the first
    1000 bytes of the ones :func:`plan_layout` reads (every object, or behind a global header first
    in the list, the header and a sample of the shards). Otherwise none.
    """
    n = len(paths)
    if listed or (n > 1 and (one_glob or layout is not None or header_bytes is not None)):
        return [], 0
    if n == 1:
        return [0], _PROBE_BYTES
    if n - 1 <= SAMPLE:
        return list(range(n)), HEADER_SIZE
    return [0, *(1 + k for k in sample_positions(n - 1))], HEADER_SIZE


def _infos(
    fs: Any, paths: list[str], listed: dict[str, dict], heads: Sequence[int] = (), nbytes: int = 0
) -> tuple[list[dict], dict[int, bytes]]:
    """Sizes and versions (S3: ETag, VersionId): from the listing, one request per object only where needed;
    and the first ``nbytes`` of the objects at positions ``heads``, where the store gives them with their
    versions (S3: a ranged GET in place of a HEAD, see
    :meth:`S3Source.pin_reading_heads <dask_prefetch.sources.s3.S3Source.pin_reading_heads>`), by position.

    On S3 a globbed object's size and ETag come from the listing that found it; a path given
    without a glob, and every object of a versioned bucket, is asked for, concurrently (see
    :meth:`S3Source.pin_listed <dask_prefetch.sources.s3.S3Source.pin_listed>`). Other stores
    are asked for every object (their listings may name other version tokens than their reads check).

    Raises ``FileNotFoundError`` for a missing file, ``IsADirectoryError`` for a directory or a prefix.
    """
    if isinstance(fs, S3PrefetchFileSystem):
        retries = config.get_int("retries", minimum=1)
        if heads:
            return sync(fs.loop, fs.source.pin_reading_heads, paths, heads, nbytes, retries)
        return sync(fs.loop, fs.source.pin_listed, paths, listed, retries), {}
    infos = [fs.info(p) for p in paths]
    for path, info in zip(paths, infos):
        if info.get("type") != "file":
            raise IsADirectoryError(f"{path!r} is a directory, not a tractogram file")
    return infos, {}


def _probe(fs: Any, path: str, size: int, first: bytes | None = None) -> tuple[bytes, bool]:
    """The first bytes of ``path`` (decompressed if gzip-compressed: enough for its header), and whether it is.

    ``first``: its first ``min(size, _PROBE_BYTES)`` bytes if already read (a global header while
    planning, a lone object with its size), not read again.
    """
    probe = first if first is not None else fs.cat_file(path, start=0, end=min(size, _PROBE_BYTES))
    if is_gzip(probe):
        text = gunzip_prefix(probe, MAX_HEADER, path)
        if text.startswith(TCK_MAGIC) and b"\nEND\n" not in text and size > len(probe):  # a long TCK header
            text = gunzip_prefix(fs.cat_file(path, start=0, end=min(size, MAX_HEADER)), MAX_HEADER, path)
        return text, True
    if probe.startswith(TCK_MAGIC) and size > len(probe):
        probe = fs.cat_file(path, start=0, end=min(size, MAX_HEADER))
    return probe, False


def _header(fmt: str, probe: bytes, name: str, size: int | None) -> TractogramHeader:
    """The header of a ``size``-byte file (None: unknown) from its first bytes, ``probe``."""
    if fmt == "trk":
        return parse_trk_header(probe, name)
    return read_tck_header(io.BytesIO(probe), name, size=size)
