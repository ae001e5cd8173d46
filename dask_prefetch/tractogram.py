"""``read_tractogram``: TRK/TCK streamlines from S3 (rolling prefetch) or local files into Dask.

Layouts and how they become partitions:

* **Global header + bodies** (TRK): a list whose first object is a lone header and whose other
  objects each start with ``header_bytes`` bytes to skip (given, or detected: a 1000-byte TRK
  header object followed by TRK shards). Each partition reads a contiguous group of shards as one
  rolling-prefetched stream ``[global header, *group]`` with ``header_bytes``, exactly as
  ``S3PrefetchFileSystem.open`` does; shards must start at record boundaries.
* **Complete files** (TRK or TCK): a list of files each with its own header; each partition
  reads a contiguous group of them.
* **One TCK file**: split into byte ranges that resynchronise at NaN rows, one per partition.
* **One TRK file**: TRK has no sync marker, so it is read as one stream (one partition). Shard it
  (``dask-prefetch`` reads shards in parallel) to spread one tractogram over a cluster.
"""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any, Callable, Mapping, Sequence

import dask
import dask.array as da
import dask.bag as db
import numpy as np
from fsspec.asyn import sync
from fsspec.core import split_protocol, url_to_fs

from . import checks
from .checks import describe
from .filesystem import S3PrefetchFileSystem, check_paths, check_unique
from .partitions import Opener, Partition, read_partition
from .streamlines import StreamlineChunk, TractogramHeader, detect_format
from .streamlines.tck import MAX_HEADER, read_tck_header, tck_byte_ranges
from .streamlines.trk import HEADER_SIZE, parse_trk_header

_PROBE_BYTES = 64 * 1024  # enough for any TRK header and ordinary TCK headers
_PROTOCOLS = {None: "file", "local": "file", "s3a": "s3"}  # spellings of one store


class Tractogram:
    """A lazily read tractogram: its header, and Dask collections over its streamlines.

    Made by :func:`read_tractogram`. Each partition is one task reading one sequential stream.

    Attributes
    ----------
    header : TractogramHeader
        Format, ``voxel_to_rasmm``, ``nb_streamlines`` when the header knows it.
    partitions : list of Partition
        What each task reads.
    """

    def __init__(
        self,
        header: TractogramHeader,
        partitions: list[Partition],
        opener: Opener,
        chunk_bytes: int | None,
        identity: Any,
    ):
        self.header = header
        self.partitions = partitions
        self._opener = opener
        self._chunk_bytes = chunk_bytes
        name = f"read-tractogram-{dask.base.tokenize(partitions, header.format, chunk_bytes, opener.open_kwargs, identity)}"
        self._parts = [
            dask.delayed(read_partition, pure=True)(p, opener, header, chunk_bytes, dask_key_name=(name, i))
            for i, p in enumerate(partitions)
        ]

    def __repr__(self) -> str:
        n = self.header.nb_streamlines
        return f"<Tractogram {self.header.format.upper()} npartitions={self.npartitions} streamlines={n if n is not None else '?'}>"

    @property
    def npartitions(self) -> int:
        return len(self._parts)

    def to_chunks(self) -> db.Bag:
        """A bag with one :class:`StreamlineChunk` (flat points + lengths) per partition: the fast path."""
        return db.from_delayed([dask.delayed(_as_list, pure=True)(p) for p in self._parts])

    def map_chunks(self, func: Callable[[StreamlineChunk], Any]) -> db.Bag:
        """``func(chunk)`` for every partition's chunk, as a bag of the results."""
        return self.to_chunks().map(func)

    def to_bag(self) -> db.Bag:
        """A bag of streamlines: one float32 ``(n_points, 3)`` array each, in file order, RAS+ mm."""
        return db.from_delayed([dask.delayed(StreamlineChunk.streamlines, pure=True)(p) for p in self._parts])

    @property
    def points(self) -> da.Array:
        """All points, ``(total_points, 3)`` float32 (chunk sizes unknown until computed)."""
        arrays = [
            da.from_delayed(dask.delayed(_field, pure=True)(p, "points"), shape=(np.nan, 3), dtype=np.float32)
            for p in self._parts
        ]
        return da.concatenate(arrays, axis=0) if arrays else da.empty((0, 3), dtype=np.float32)

    @property
    def lengths(self) -> da.Array:
        """Points per streamline, int64 (chunk sizes unknown until computed)."""
        arrays = [
            da.from_delayed(dask.delayed(_field, pure=True)(p, "lengths"), shape=(np.nan,), dtype=np.int64)
            for p in self._parts
        ]
        return da.concatenate(arrays, axis=0) if arrays else da.empty((0,), dtype=np.int64)


def _field(chunk: StreamlineChunk, name: str) -> np.ndarray:
    return getattr(chunk, name)


def _as_list(chunk: StreamlineChunk) -> list[StreamlineChunk]:
    return [chunk]


def read_tractogram(
    paths: str | Sequence[str],
    *,
    header_bytes: int | None = None,
    storage_options: dict | None = None,
    block_size: int | str | None = None,
    prefetch_storage: Sequence[tuple[str, float]] | None = None,
    chunk_size: int | str | None = None,
    npartitions: int | None = None,
) -> Tractogram:
    """Open a TRK or TCK tractogram (one file, a list, or a glob; ``s3://`` or local) for Dask.

    Parameters
    ----------
    paths
        A path, a glob, or a list of them in order (``str``, or ``os.PathLike`` for local files),
        all on one store. Each file at most once: a list (globs expanded) naming a file twice raises.
    header_bytes
        The first path is a global header and every later one starts with this many bytes to skip
        (as in ``S3PrefetchFileSystem.open``). None: detect a lone 1000-byte TRK header in front
        of TRK shards; otherwise each path is a complete file.
    storage_options
        For ``S3PrefetchFileSystem`` (``endpoint_url``, ``anon``, ``key``, ...).
    block_size, prefetch_storage
        Passed to ``S3PrefetchFileSystem.open`` by every task.
    chunk_size
        Bytes parsed at a time by the readers: an int or a string such as ``"8 MiB"`` (None: each
        reader's default, 2 MiB for TRK and 8 MiB for TCK).
    npartitions
        Tasks to split the work into, at least 1 (default: one per shard; for one TCK file, one
        per ~256 MiB). Fewer partitions result when there are fewer shards.

    Returns
    -------
    Tractogram

    Raises
    ------
    TypeError
        For a path not a ``str`` (or ``os.PathLike``), a bool or float where an int is expected,
        ``storage_options`` not a dict, a malformed ``prefetch_storage``.
    ValueError
        For an empty list, paths on two stores (``s3://`` and local), a file listed twice,
        ``header_bytes`` negative, larger than a shard or without a lone TRK header in front of TRK
        shards, ``chunk_size``, ``block_size`` or ``npartitions`` not positive;
        ``CorruptTractogramError`` (a ValueError) for a file that is neither TRK nor TCK.
    FileNotFoundError
        For a missing file or a glob that matches nothing (``IsADirectoryError`` for a directory).
    """
    path_list = check_paths(paths, "paths", caller="read_tractogram", pathlike=True)
    _check_arguments(path_list, storage_options, block_size, prefetch_storage, npartitions)
    header_bytes = None if header_bytes is None else checks.check_int(header_bytes, "header_bytes", minimum=0)
    chunk_bytes = None if chunk_size is None else checks.check_bytes(chunk_size, "chunk_size")
    fs, _ = url_to_fs(path_list[0], **(storage_options or {}))
    if "s3" in fs.protocol:
        fs = S3PrefetchFileSystem(**(storage_options or {}))
        fs.invalidate_cache()  # list what is there now, not what a cached instance saw earlier
        opener = Opener(fs, {"block_size": block_size, "prefetch_storage": prefetch_storage})
    else:
        opener = Opener(None, {})
    expanded = []
    for p in path_list:
        found = sorted(fs.glob(p)) if any(c in p for c in "*?[") else [fs._strip_protocol(p)]
        if not found:
            raise FileNotFoundError(f"no file matches {p!r}")
        expanded.extend(found)
    check_unique(expanded, "paths" if len(expanded) == len(path_list) else "paths (globs expanded)")
    infos = _infos(fs, expanded)
    sizes = [int(info["size"]) for info in infos]
    lone = [i for i, size in enumerate(sizes) if size == HEADER_SIZE]
    if len(path_list) == 1 and len(expanded) > 1 and len(lone) == 1 and header_bytes in (None, HEADER_SIZE):
        i = lone[0]  # a glob matched a lone header and its shards: the header goes first, whatever its name
        expanded.insert(0, expanded.pop(i))
        sizes.insert(0, sizes.pop(i))
        infos.insert(0, infos.pop(i))
    probe = fs.cat_file(expanded[0], start=0, end=min(sizes[0], _PROBE_BYTES))
    if probe.startswith(b"mrtrix tracks") and sizes[0] > len(probe):
        probe = fs.cat_file(expanded[0], start=0, end=min(sizes[0], MAX_HEADER))
    fmt = detect_format(probe, expanded[0])
    if header_bytes is None and fmt == "trk" and len(expanded) > 1 and sizes[0] == HEADER_SIZE:
        header_bytes = HEADER_SIZE  # a lone TRK header in front of TRK shards
    if header_bytes is not None and len(expanded) > 1:
        if fmt != "trk":
            raise ValueError("header_bytes with a global header is supported for TRK shards only")
        if sizes[0] != HEADER_SIZE:
            raise ValueError(
                f"{expanded[0]}: with header_bytes the first object must be a lone {HEADER_SIZE}-byte TRK header "
                f"(it has {sizes[0]} bytes; every partition reads it)"
            )
        _check_header_bytes(header_bytes, expanded[1:], sizes[1:])
        header = parse_trk_header(probe, expanded[0])
        groups = _groups(expanded[1:], sizes[1:], npartitions)
        size_of = dict(zip(expanded, sizes))
        parts = [
            Partition(
                "bodies",
                (expanded[0], *g),
                header_bytes,
                whole=len(groups) == 1,
                nbytes=sum(size_of[p] for p in g),
                sizes=(sizes[0], *(size_of[p] for p in g)),
            )
            for g in groups
        ]
    elif len(expanded) > 1:
        header = _header(fmt, probe, expanded[0], sizes[0])
        header = replace(header, nb_streamlines=None)  # the first file's count is not the whole's
        size_of = dict(zip(expanded, sizes))
        groups = _groups(expanded, sizes, npartitions)
        parts = [Partition("files", tuple(g), nbytes=sum(size_of[p] for p in g)) for g in groups]
    elif fmt == "tck":
        header = _header(fmt, probe, expanded[0], sizes[0])
        n = npartitions or max(1, sizes[0] // (256 * 2**20))
        ranges = tck_byte_ranges(header, sizes[0], n)
        parts = [Partition("tck-range", (expanded[0],), start=a, stop=b, nbytes=b - a) for a, b in ranges]
    else:
        header = _header(fmt, probe, expanded[0], sizes[0])
        parts = [Partition("files", (expanded[0],), nbytes=sizes[0])]
    if opener.fs is not None:  # tasks open the very versions seen now, without a HEAD each
        pin_of = {path: (path, int(i["size"]), i.get("ETag"), i.get("VersionId")) for path, i in zip(expanded, infos)}
        parts = [replace(p, pins=tuple(pin_of[path] for path in p.paths)) for p in parts]
    # Task keys must change with the data: where it lives and which versions were seen.
    identity = (storage_options, [(info.get("name"), info.get("size"), info.get("ETag")) for info in infos])
    return Tractogram(header, parts, opener, chunk_bytes, identity)


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


def _check_header_bytes(header_bytes: int, paths: list[str], sizes: list[int]) -> None:
    """Every shard after the global header holds its ``header_bytes``, or ``ValueError``."""
    for path, size in zip(paths, sizes):
        if header_bytes > size:
            raise ValueError(f"header_bytes={header_bytes} is larger than shard {path!r} ({size} bytes)")


def _infos(fs: Any, paths: list[str]) -> list[dict]:
    """Sizes (and ETags), fetched concurrently from S3: one round trip, not one per shard.

    Raises ``FileNotFoundError`` for a missing file, ``IsADirectoryError`` for a directory or a prefix.
    """
    if isinstance(fs, S3PrefetchFileSystem):
        return sync(fs.loop, fs._pin_objects, paths)
    infos = [fs.info(p) for p in paths]
    for path, info in zip(paths, infos):
        if info.get("type") != "file":
            raise IsADirectoryError(f"{path!r} is a directory, not a tractogram file")
    return infos


def _header(fmt: str, probe: bytes, name: str, size: int) -> TractogramHeader:
    """The header of a ``size``-byte file from its first bytes, ``probe``."""
    if fmt == "trk":
        return parse_trk_header(probe, name)
    return read_tck_header(io.BytesIO(probe), name, size=size)


def _groups(paths: list[str], sizes: list[int], n: int | None) -> list[list[str]]:
    """``n`` contiguous, non-empty groups of paths (default: one per path), balanced by bytes."""
    n = max(1, min(n or len(paths), len(paths)))
    cumulative = np.cumsum(sizes)
    cuts = [0]
    for k in range(1, n):
        cut = int(np.searchsorted(cumulative, cumulative[-1] * k / n, side="right"))
        cuts.append(min(max(cut, cuts[-1] + 1), len(paths) - (n - k)))
    cuts.append(len(paths))
    return [paths[a:b] for a, b in zip(cuts, cuts[1:])]
