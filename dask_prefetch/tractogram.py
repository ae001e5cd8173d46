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
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

import dask
import dask.array as da
import dask.bag as db
import numpy as np
from fsspec.asyn import _run_coros_in_chunks, sync
from fsspec.core import split_protocol, url_to_fs
from fsspec.implementations.local import LocalFileSystem

from . import checks
from .checks import describe
from .filesystem import S3PrefetchFileSystem, check_paths, check_unique
from .prefetchfs import PrefetchFileSystem
from .partitions import Opener, Partition, read_partition
from .streamlines import CorruptTractogramError, StreamlineChunk, TractogramHeader, detect_format
from .streamlines.tck import MAGIC as TCK_MAGIC
from .streamlines.tck import MAX_HEADER, read_tck_header, tck_byte_ranges
from .streamlines.trk import HEADER_SIZE, parse_trk_header

_PROBE_BYTES = 64 * 1024  # enough for any TRK header and ordinary TCK headers
_PROTOCOLS = {None: "file", "local": "file", "s3a": "s3"}  # spellings of one store
LAYOUTS = ("files", "sharded")
#: One TCK file is split into one partition per started ``TCK_PARTITION_BYTES`` by default.
TCK_PARTITION_BYTES = 256 * 2**20


class MixedDataWarning(UserWarning):
    """The files of one tractogram disagree on their named data (TRK scalars / properties)."""


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
    """

    def __init__(
        self,
        header: TractogramHeader,
        partitions: list[Partition],
        opener: Opener,
        chunk_bytes: int | None,
        identity: Any,
        parts: list[Any] | None = None,
    ):
        self.header = header
        self.partitions = partitions
        self._opener = opener
        self._chunk_bytes = chunk_bytes
        self._identity = identity
        if parts is None:
            token = dask.base.tokenize(partitions, header.format, chunk_bytes, opener.open_kwargs, identity)
            name = f"read-tractogram-{token}"
            parts = [
                dask.delayed(read_partition, pure=True)(p, opener, header, chunk_bytes, dask_key_name=(name, i))
                for i, p in enumerate(partitions)
            ]
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
        return Tractogram(self.header, self.partitions, self._opener, self._chunk_bytes, self._identity, parts)

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
        or any other fsspec protocol (``memory://``, ...: read through the fsspec filesystem they
        were listed on, never another one; ``memory://`` lives in one process, so worker processes
        of a cluster do not see it). Each file at most once: a list (globs expanded) naming a file
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
        Passed to ``S3PrefetchFileSystem.open`` by every task (S3 only).
    chunk_size
        Bytes parsed at a time by the readers: an int or a string such as ``"8 MiB"`` (None: each
        reader's default, 2 MiB for TRK and 8 MiB for TCK).
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
    How the layout is inferred (``layout`` and ``header_bytes`` None), from the first 1000 bytes
    of every object (one small ranged read each, concurrent on S3):

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
    expanded = []
    for p in path_list:
        found = sorted(fs.glob(p)) if any(c in p for c in "*?[") else [fs._strip_protocol(p)]
        if not found:
            raise FileNotFoundError(f"no file matches {p!r}")
        expanded.extend(found)
    check_unique(expanded, "paths" if len(expanded) == len(path_list) else "paths (globs expanded)")
    infos = _infos(fs, expanded)
    sizes = [int(info["size"]) for info in infos]
    plan = _plan(fs, expanded, sizes, infos, layout, header_bytes, one_glob=len(path_list) == 1)
    order = plan.order
    expanded, sizes, infos = [expanded[i] for i in order], [sizes[i] for i in order], [infos[i] for i in order]
    probe = fs.cat_file(expanded[0], start=0, end=min(sizes[0], _PROBE_BYTES))
    if probe.startswith(TCK_MAGIC) and sizes[0] > len(probe):
        probe = fs.cat_file(expanded[0], start=0, end=min(sizes[0], MAX_HEADER))
    fmt = detect_format(probe, expanded[0])
    if plan.kind == "sharded":
        header, parts = _sharded_partitions(expanded, sizes, probe, plan, npartitions)
    elif len(expanded) > 1:
        header = _header(fmt, probe, expanded[0], sizes[0])
        header = replace(header, nb_streamlines=None)  # the first file's count is not the whole's
        parts = _file_partitions(expanded, sizes, [plan.data[i] for i in order], npartitions)
    elif fmt == "tck":
        header = _header(fmt, probe, expanded[0], sizes[0])
        n = npartitions or max(1, math.ceil(sizes[0] / TCK_PARTITION_BYTES))
        ranges = tck_byte_ranges(header, sizes[0], n)
        parts = [Partition("tck-range", (expanded[0],), start=a, stop=b, nbytes=b - a) for a, b in ranges]
    else:
        header = _header(fmt, probe, expanded[0], sizes[0])
        parts = [Partition("files", (expanded[0],), nbytes=sizes[0])]
    if opener.fs is not None:  # tasks open the very versions seen now, without a HEAD each
        version = opener.fs.source.version  # (S3: ETag and VersionId; other stores: their version token)
        pin_of = {path: (path, int(i["size"]), *version(i)) for path, i in zip(expanded, infos)}
        parts = [replace(p, pins=tuple(pin_of[path] for path in p.paths)) for p in parts]
    # Task keys must change with the data: where it lives and which versions were seen.
    seen = [(info.get("name"), info.get("size"), info.get("ETag") or info.get("mtime")) for info in infos]
    identity = (fs.protocol, storage_options, seen)
    return Tractogram(header, parts, opener, chunk_bytes, identity)


def _filesystem(first: str, storage_options: Any, block_size: Any, prefetch_storage: Any) -> tuple[Any, Opener]:
    """The filesystem ``first`` lives on, and the :class:`Opener` that makes tasks read from that one.

    Raises ``ImportError`` naming what to install when the protocol's implementation is missing.
    """
    try:
        fs, _ = url_to_fs(first, **(storage_options or {}))
    except ImportError as e:
        protocol = split_protocol(first)[0]
        raise ImportError(
            f"read_tractogram cannot read {protocol}:// paths such as {first!r}: {e} (fsspec's "
            f"implementation of {protocol!r} needs that package)"
        ) from e
    if "s3" in fs.protocol:
        fs = S3PrefetchFileSystem(**(storage_options or {}))
        fs.invalidate_cache()  # list what is there now, not what a cached instance saw earlier
        return fs, Opener(fs, {"block_size": block_size, "prefetch_storage": prefetch_storage})
    if isinstance(fs, LocalFileSystem):
        return fs, Opener(None, {})
    # Any other protocol: rolling prefetch over the very filesystem the paths were listed on.
    prefetching = PrefetchFileSystem(fs=fs)
    return fs, Opener(prefetching, {"block_size": block_size, "prefetch_storage": prefetch_storage})


@dataclass(frozen=True)
class _Plan:
    """How the objects are laid out: ``kind`` ``"files"`` or ``"sharded"``, the order to read them in
    (for ``"sharded"``, the global header first), the shards' ``header_bytes``, each object's
    named data (files), and the n_count each shard's own header claims (shards detected by them)."""

    kind: str
    order: list[int]
    header_bytes: int = 0
    data: tuple[Any, ...] = ()
    shard_counts: tuple[int, ...] = ()


def _plan(
    fs: Any,
    paths: list[str],
    sizes: list[int],
    infos: list[dict],
    layout: str | None,
    header_bytes: int | None,
    one_glob: bool,
) -> _Plan:
    """Decide the layout (see :func:`read_tractogram`'s Notes), reading objects' first bytes only if needed."""
    n = len(paths)
    natural = list(range(n))
    if n == 1:
        if layout == "sharded":
            raise ValueError(f"layout='sharded' needs a global header and at least one shard, got only {paths[0]!r}")
        return _Plan("files", natural)
    if header_bytes or (layout == "sharded" and header_bytes == 0):  # stated: no need to look at the shards
        lone = [i for i, size in enumerate(sizes) if size == HEADER_SIZE]
        first = lone[0] if one_glob and len(lone) == 1 else 0  # a glob matched a header and its shards
        _check_header_bytes(header_bytes, [p for i, p in enumerate(paths) if i != first], sizes)
        return _Plan("sharded", [first] + [i for i in natural if i != first], header_bytes)
    heads = _heads(fs, paths, sizes, infos)
    kinds = [_kind(head, path) for head, path in zip(heads, paths)]
    if layout == "sharded":
        return _stated_sharded(paths, sizes, kinds, one_glob)
    if layout is None and header_bytes is None:
        lone = [i for i, k in enumerate(kinds) if sizes[i] == HEADER_SIZE and _is_header(k) and not k.nb_streamlines]
        lone = lone if one_glob or 0 in lone else []  # a list says its order: the header first
        if lone:  # more than one: the others are empty shards, or it is not sharded (checked below)
            g = lone[0]
            rest = [i for i in natural if i != g]
            if all(kinds[i] is None for i in rest):  # bare bodies: only readable behind the header
                return _Plan("sharded", [g] + rest, 0)
            if all(_is_header(kinds[i]) and _same_records(kinds[i], kinds[g]) for i in rest):
                counts = tuple(kinds[i].nb_streamlines or 0 for i in rest)
                return _Plan("sharded", [g] + rest, HEADER_SIZE, shard_counts=counts)
        _refuse_bodies(paths, kinds, lone)
    for k in kinds:
        if isinstance(k, CorruptTractogramError):
            raise k
    for path, k, head in zip(paths, kinds, heads):
        if k is None:
            detect_format(head, path)  # raises, naming the object
    return _Plan("files", natural, data=tuple(k.data_fields() if _is_header(k) else ((), ()) for k in kinds))


def _stated_sharded(paths: list[str], sizes: list[int], kinds: list[Any], one_glob: bool) -> _Plan:
    """``layout="sharded"`` without ``header_bytes``: find the global header and whether shards have one."""
    lone = [i for i, k in enumerate(kinds) if sizes[i] == HEADER_SIZE and _is_header(k)]
    if one_glob and len(lone) != 1:
        found = ", ".join(repr(paths[i]) for i in lone[:5]) or "none"
        raise ValueError(
            f"layout='sharded' needs exactly one lone {HEADER_SIZE}-byte TRK header among the objects, found {found}: "
            "list the objects with the global header first"
        )
    g = lone[0] if one_glob else 0
    if not _is_header(kinds[g]) or sizes[g] != HEADER_SIZE:
        raise ValueError(
            f"{paths[g]}: with layout='sharded' the first object must be a lone {HEADER_SIZE}-byte TRK header "
            f"(it has {sizes[g]} bytes; every partition reads it)"
        )
    rest = [i for i in range(len(paths)) if i != g]
    with_header = [i for i in rest if kinds[i] is not None]
    if not with_header:
        return _Plan("sharded", [g] + rest, 0)
    if len(with_header) < len(rest):
        bare = next(i for i in rest if kinds[i] is None)
        raise ValueError(
            f"layout='sharded': {paths[with_header[0]]!r} starts with a tractogram header but {paths[bare]!r} does "
            "not: pass header_bytes to say how many bytes every shard starts with"
        )
    for i in with_header:
        if not (_is_header(kinds[i]) and _same_records(kinds[i], kinds[g])):
            raise ValueError(
                f"layout='sharded': {paths[i]!r} has a header of its own that does not match the global header "
                f"{paths[g]!r} (format, byte order, scalars, properties or affine): it is a complete file "
                "(layout='files'), or pass header_bytes=1000 to read its records with the global header anyway"
            )
    return _Plan("sharded", [g] + rest, HEADER_SIZE)


def _refuse_bodies(paths: list[str], kinds: list[Any], lone: list[int]) -> None:
    """``ValueError`` if some objects are not complete files and no single global header explains them."""
    bare = [paths[i] for i, k in enumerate(kinds) if k is None]
    if not bare:
        return
    shown = ", ".join(repr(p) for p in bare[:5]) + (f" and {len(bare) - 5} more" if len(bare) > 5 else "")
    if len(lone) == 1:
        why = f"next to the lone TRK header {paths[lone[0]]!r} and complete files"
    elif lone:
        why = f"and there are {len(lone)} lone TRK headers ({', '.join(repr(paths[i]) for i in lone[:3])})"
    else:
        why = "and no lone 1000-byte TRK header (n_count 0) is in front of them"
    raise ValueError(
        f"{shown} {'is' if len(bare) == 1 else 'are'} not a complete TRK or TCK file (no header at byte 0) {why}: "
        "cannot tell the layout. Say it: layout='sharded' (with the global header first, and header_bytes if the "
        "shards start with bytes to skip), or list only complete files (layout='files')"
    )


def _kind(head: bytes, name: str) -> TractogramHeader | str | CorruptTractogramError | None:
    """What an object is by its first bytes: a TRK header, ``"tck"``, a corrupt TRK header, or None (no header)."""
    if head.startswith(b"TRACK"):
        try:
            return parse_trk_header(head, name)
        except CorruptTractogramError as e:
            return e
    if head.startswith(TCK_MAGIC):
        return "tck"
    return None


def _is_header(kind: Any) -> bool:
    return isinstance(kind, TractogramHeader)


def _same_records(a: TractogramHeader, b: TractogramHeader) -> bool:
    """Whether records read with header ``a`` or ``b`` give the same streamlines and named data."""
    fa, fb = a.fields, b.fields
    return (
        fa["_endianness"] == fb["_endianness"]
        and a.data_fields() == b.data_fields()
        and np.array_equal(fa["_voxmm_to_rasmm"], fb["_voxmm_to_rasmm"])
    )


async def _cat_heads(fs: Any, paths: list[str], ends: list[int], infos: list[dict]) -> list[bytes]:
    async def head(path: str, end: int, info: dict) -> bytes:
        version = info.get("VersionId")
        kwargs = {"version_id": version} if version else {}
        return await fs._cat_file(path, start=0, end=end, **kwargs) if end else b""

    return await _run_coros_in_chunks([head(p, e, i) for p, e, i in zip(paths, ends, infos)], batch_size=64)


def _heads(fs: Any, paths: list[str], sizes: list[int], infos: list[dict]) -> list[bytes]:
    """The first 1000 bytes (fewer if smaller) of every object: concurrent ranged GETs on S3."""
    ends = [min(size, HEADER_SIZE) for size in sizes]
    if isinstance(fs, S3PrefetchFileSystem):
        heads = sync(fs.loop, _cat_heads, fs, paths, ends, infos)
        for head in heads:
            if isinstance(head, BaseException):
                raise head
        return heads
    return [fs.cat_file(p, start=0, end=e) if e else b"" for p, e in zip(paths, ends)]


def _sharded_partitions(
    paths: list[str], sizes: list[int], probe: bytes, plan: _Plan, npartitions: int | None
) -> tuple[TractogramHeader, list[Partition]]:
    """The global header and the ``"bodies"`` partitions of ``paths`` (global header first)."""
    if detect_format(probe, paths[0]) != "trk":
        raise ValueError(f"{paths[0]}: a global header with shards (header_bytes, layout='sharded') is for TRK only")
    if sizes[0] != HEADER_SIZE:
        raise ValueError(
            f"{paths[0]}: with a global header (header_bytes, layout='sharded') the first object must be a lone "
            f"{HEADER_SIZE}-byte TRK header (it has {sizes[0]} bytes; every partition reads it)"
        )
    header = parse_trk_header(probe, paths[0])
    counts = dict(zip(paths[1:], plan.shard_counts))
    size_of = dict(zip(paths, sizes))
    groups = _groups(paths[1:], sizes[1:], npartitions)
    parts = [
        Partition(
            "bodies",
            (paths[0], *g),
            plan.header_bytes,
            whole=len(groups) == 1,
            nbytes=sum(size_of[p] for p in g),
            sizes=(sizes[0], *(size_of[p] for p in g)),
            shard_counts=tuple(counts[p] for p in g) if counts else (),
        )
        for g in groups
    ]
    return header, parts


def _file_partitions(paths: list[str], sizes: list[int], data: list[Any], npartitions: int | None) -> list[Partition]:
    """Contiguous groups of complete files, split where their named data changes (and warned about)."""
    distinct = list(dict.fromkeys(data))
    if len(distinct) > 1:
        example = {d: paths[data.index(d)] for d in distinct}
        told = "; ".join(f"{example[d]!r}: {_describe_data(d)}" for d in distinct[:4])
        warnings.warn(
            f"these {len(paths)} files disagree on named data ({told}): partitions are split where it changes, "
            "each chunk carries its own files' scalars/properties (None where they have none), the header "
            "describes the first file; points and lengths come from every file",
            MixedDataWarning,
            stacklevel=3,
        )
    size_of = dict(zip(paths, sizes))
    data_of = dict(zip(paths, data))
    parts = []
    for group in _groups(paths, sizes, npartitions):
        run: list[str] = []
        for path in group:
            if run and data_of[path] != data_of[run[-1]]:
                parts.append(Partition("files", tuple(run), nbytes=sum(size_of[p] for p in run)))
                run = []
            run.append(path)
        parts.append(Partition("files", tuple(run), nbytes=sum(size_of[p] for p in run)))
    return parts


def _describe_data(data: Any) -> str:
    scalars, properties = data
    said = [
        f"{kind} {', '.join(f'{name} ({columns})' for name, columns in fields)}"
        for kind, fields in (("scalars", scalars), ("properties", properties))
        if fields
    ]
    return "; ".join(said) or "no scalars or properties"


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
