"""Partitions of a tractogram, and how a task reads one: into one :class:`StreamlineChunk`, or chunk by chunk.

A :class:`Partition` names the objects of one sequential stream and how to parse them (a group
of shards behind a global header, a group of complete files, or a byte range of one TCK file).
:func:`read_partition` is what every ``read_tractogram`` task runs: it opens the stream through
an :class:`Opener` (rolling prefetch through ``S3PrefetchFileSystem``, or ``PrefetchFileSystem``
over the fsspec filesystem the paths were listed on; local files with ``open``) and parses it,
either whole or handing each chunk to a function as soon as it is parsed (:func:`iter_partition`
is the one parsing loop behind both). The cluster plugins find these tasks by that function (see
``cluster/tasks.py``).
"""

from __future__ import annotations

import builtins
import contextlib
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .. import config  # also hands dask-prefetch.compiled-parsers to the parsers, on workers too
from ..formats import StreamlineChunk, TractogramHeader, open_reader
from ..formats.errors import CorruptTractogramError, in_shard
from ..formats.tck import TckReader
from ..formats.trk import TrkReader
from .ahead import parsed_ahead
from .shard_heads import CheckedShards
from .trx_reading import first_stream as trx_first_stream
from .trx_reading import iter_trx_partition
from .trx_reading import read_trx_partition


@dataclass(frozen=True)
class Partition:
    """What one task reads: the objects of one stream and how to parse them.

    ``kind`` is ``"bodies"`` (``paths[0]`` a global header, the rest read from ``header_bytes``),
    ``"files"`` (complete files read one after the other, each by its own header; files of one
    partition carry the same named data), ``"tck-range"`` (data bytes ``[start, stop)`` of one
    TCK file), ``"trk-range"`` (the records in bytes ``[start, stop)`` of one TRK file: ``start``
    a candidate record start, and the records must end exactly at ``stop``) or ``"trx"`` (runs of
    streamlines of TRX files, ``trx``: see ``trx_reading.py``).
    """

    kind: str
    paths: tuple[str, ...]
    header_bytes: int = 0
    whole: bool = True  # the stream is the entire tractogram (a header count applies)
    start: int = 0
    stop: int = 0
    nbytes: int = 0  # bytes the task reads, to balance partitions across workers
    sizes: tuple[int, ...] = ()  # of the "bodies" objects, to name the shard an error is in
    pins: tuple[tuple[str, int, str | None, str | None], ...] = ()  # (name, size, ETag, VersionId) per path
    # "bodies" whose shards were detected by their own headers: the n_count each of those claims (0: none),
    # checked against what the shard holds (a shard holding more than it claims is not read as nibabel would)
    shard_counts: tuple[int, ...] = ()
    # "bodies" whose layout was inferred from a sample of the shards: what the task checks of every shard's
    # first bytes ("trk": a header of its own like the global one, whose n_count it checks; "bare": none), reading
    # the shards from their byte 0 (see shard_heads.py); "" when the plan had seen every shard's first bytes
    shard_heads: str = ""
    last: bool = True  # "trk-range": the range ends at the end of the file (else at a cut)
    trx: tuple[Any, ...] = ()  # "trx": the TrxSegments it reads
    # "files": (path, decompressed size hint) of its gzip-compressed files, from their trailers (to size buffers)
    inflated: tuple[tuple[str, int], ...] = ()

    def first_stream(self) -> tuple[tuple[str, ...], int, int, list[dict] | None, int | None]:
        """``(paths, header_bytes, offset, pinned, end)`` of the first stream the task opens.

        What a worker opens ahead of the task (see ``PrefetchWorkerPlugin``), so that the task
        finds its first blocks already local.
        """
        if self.kind == "bodies":  # shards whose first bytes the task checks are read from their byte 0
            skip = 0 if self.shard_heads else self.header_bytes
            return self.paths, skip, 0, self.pinned(self.paths), None
        if self.kind == "files":
            return self.paths[:1], 0, 0, self.pinned(self.paths[:1]), None
        if self.kind == "trx":
            return trx_first_stream(self)
        # A byte range of one file: nothing past it is prefetched (a TCK reader finishing the streamline that
        # crosses ``stop`` reads on past it, fetching only what it reads).
        return self.paths, 0, self.start, self.pinned(self.paths), self.stop

    def pinned(self, paths: Sequence[str]) -> list[dict] | None:
        """The objects' info seen when the graph was built (so tasks send no HEAD), or None."""
        known = {name: (name, size, etag, version) for name, size, etag, version in self.pins}
        if not all(p in known for p in paths):
            return None
        keys = ("name", "size", "ETag", "VersionId")
        return [dict(zip(keys, known[p])) for p in paths]


@dataclass(frozen=True)
class Opener:
    """How tasks open files: through the filesystem the paths were listed on, never another one.

    Attributes
    ----------
    fs
        A prefetching filesystem (``S3PrefetchFileSystem`` for S3, ``PrefetchFileSystem`` over
        the listing's filesystem for any other store), or None for local files, read with ``open``.
    open_kwargs
        Passed to ``fs.open`` (block size, prefetch storage).
    """

    fs: Any
    open_kwargs: dict

    def open(
        self,
        paths: Sequence[str],
        header_bytes: int = 0,
        offset: int = 0,
        pinned: list | None = None,
        end: int | None = None,
    ) -> Any:
        """One stream over ``paths`` (``header_bytes`` skipped after the first), positioned at ``offset``.

        ``end``: where the reader will stop (nothing from there on is prefetched; local files ignore it).
        """
        if self.fs is not None:
            bound = {} if end is None else {"end": end}
            return self.fs.open(
                list(paths), header_bytes=header_bytes, offset=offset, pinned=pinned, **bound, **self.open_kwargs
            )
        if len(paths) == 1:
            f = builtins.open(paths[0], "rb")
            f.seek(offset)
            return f
        return LocalStream(paths, header_bytes)


class LocalStream:
    """Local files read front to back as one stream, ``header_bytes`` skipped after the first."""

    def __init__(self, paths: Sequence[str], header_bytes: int) -> None:
        self._paths, self._header_bytes = list(paths), header_bytes
        self._file = builtins.open(self._paths[0], "rb")
        self._i = 0

    def __enter__(self) -> "LocalStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()

    def read(self, n: int = -1) -> bytes:
        out = bytearray()
        while n < 0 or len(out) < n:
            piece = self._file.read(-1 if n < 0 else n - len(out))
            if piece:
                out += piece
                continue
            if self._i + 1 == len(self._paths):
                break
            self._file.close()
            self._i += 1
            self._file = builtins.open(self._paths[self._i], "rb")
            self._file.seek(self._header_bytes)
        return bytes(out)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)


def read_partition(
    part: Partition,
    opener: Opener,
    header: TractogramHeader,
    chunk_bytes: int | None,
    per_chunk: Callable[[StreamlineChunk], Any] | None = None,
) -> Any:
    """Read one partition (runs in a task): one chunk of whole streamlines, or ``per_chunk`` of each chunk.

    Parameters
    ----------
    part, opener, header, chunk_bytes
        What to read, how to open it, the tractogram's header, bytes parsed at a time.
    per_chunk
        None: the whole partition parsed into one :class:`StreamlineChunk`, returned.
        A callable: called on each chunk of whole streamlines (about ``chunk_bytes`` of records)
        as soon as it is parsed, while the rest of the partition is still arriving; the list of
        its results, in file order, is returned. Never called on an empty chunk. It runs in the
        task's thread while the next ``dask-prefetch.parse-ahead`` chunks are read and parsed in
        a helper thread (:func:`~dask_prefetch.tractography.ahead.parsed_ahead`).

    Raises
    ------
    CorruptTractogramError
        Whatever the partition's checks find, also at its very end (a truncated record, a damaged
        gzip stream, a shard holding more than its ``n_count``): then no result is returned, even
        if ``per_chunk`` has already run on the chunks before.

    Notes
    -----
    Both ways go through :func:`iter_partition`, so they check the same things and give the same
    streamlines in the same order; only where the chunks are cut differs.
    """
    if per_chunk is None:
        return StreamlineChunk.concat(list(iter_partition(part, opener, header, chunk_bytes, whole=True)))
    ahead = config.get_int("parse-ahead", minimum=0)
    chunks = iter_partition(part, opener, header, chunk_bytes)
    with contextlib.closing(parsed_ahead(chunks, ahead) if ahead else chunks) as each:
        return [per_chunk(chunk) for chunk in each]  # closed at once if per_chunk fails: files, helper thread


def iter_partition(
    part: Partition, opener: Opener, header: TractogramHeader, chunk_bytes: int | None, whole: bool = False
) -> Iterator[StreamlineChunk]:
    """The partition's streamlines in file order, as chunks of whole streamlines as they are parsed.

    Each chunk holds about ``chunk_bytes`` of records (TRK, TCK) or of positions (TRX, whose
    arrays are read as byte ranges, and inflated as they are taken when deflated). Every check of
    the partition is made on the way: an error found after the last chunk raises from the
    iterator's last step.

    ``whole``: one chunk per stream instead (TRK streams parsed straight into one array, empty
    streams included), for :func:`read_partition`'s one-chunk result.
    """
    if part.kind == "trx":
        if whole:
            yield read_trx_partition(part, opener)
            return
        yield from iter_trx_partition(part, opener, chunk_bytes)
    elif part.kind == "bodies":
        lengths: list[np.ndarray] = []  # of every streamline, when the shards' counts are checked at the end
        counted = bool(part.shard_counts) or part.shard_heads == "trk"
        with opener.open(*part.first_stream()) as f:
            stream = CheckedShards(f, part.paths, part.sizes, part.shard_heads, header) if part.shard_heads else f
            stop = stream.body_bytes if part.shard_heads else None  # the size the stream cannot tell by seeking
            try:
                reader = TrkReader(
                    stream, part.paths[0], ignore_count=not part.whole, stop=stop, chunk_bytes=chunk_bytes
                )
                for chunk in ([reader.read_all()] if whole else reader):
                    if counted:
                        lengths.append(chunk.lengths)
                    yield chunk
            except CorruptTractogramError as e:
                raise in_shard(e, part.paths, part.sizes, part.header_bytes) from None
        if counted:
            held = np.concatenate(lengths) if lengths else np.empty(0, np.int64)
            claims = part.shard_counts or tuple(stream.counts)
            check_shard_counts(held, part, claims, reader.header.n_scalars, reader.header.n_properties)
    elif part.kind == "files":
        for path in part.paths:
            with opener.open([path], pinned=part.pinned([path])) as f:
                reader = open_reader(f, path, size_hint=dict(part.inflated).get(path), chunk_bytes=chunk_bytes)
                if whole and isinstance(reader, TrkReader):  # straight into one array: no chunks to join
                    yield reader.read_all()
                else:
                    yield from reader
    elif part.kind == "trk-range":  # records from a candidate start; they must end exactly at ``stop``
        with opener.open(*part.first_stream()) as f:
            body = replace(header, data_offset=part.start)  # offsets in messages are the file's
            reader = TrkReader(f, part.paths[0], header=body, ignore_count=True, stop=part.stop - part.start,
                               chunk_bytes=chunk_bytes)
            try:
                yield from ([reader.read_all()] if whole else reader)
            except CorruptTractogramError as e:
                if not part.last:
                    raise CorruptTractogramError(
                        part.paths[0],
                        e.offset,
                        f"{e.problem}; the records read from byte {part.start} do not end at byte {part.stop}, "
                        "where the next partition was cut: that cut fell inside a streamline whose bytes look "
                        "like records, or the file is damaged there. Read it with another npartitions (1: "
                        "no cut)",
                    ) from None
                raise
    else:  # one byte range of one TCK file, whose header was parsed when the graph was built
        with opener.open(*part.first_stream()) as f:
            yield from TckReader(
                f, part.paths[0], header=header, start=part.start, stop=part.stop, chunk_bytes=chunk_bytes
            )


def check_shard_counts(
    lengths: np.ndarray, part: Partition, claims: Sequence[int], n_scalars: int, n_properties: int
) -> None:
    """Every shard of a ``"bodies"`` partition holds no more streamlines than its own header claims.

    Shards found to be sharded by their own headers could also be read as complete files, which
    nibabel would stop after ``n_count`` records: the two readings agree unless a shard holds more.
    ``lengths``: the points of every streamline of the partition, in order; ``claims``: each shard's
    ``n_count`` (0: none).

    Raises
    ------
    CorruptTractogramError
        Naming the first shard that holds more streamlines than its ``n_count``.
    """
    record = 4 + 4 * (lengths * (3 + n_scalars) + n_properties)  # bytes of each record
    starts = np.cumsum(record) - record
    ends = np.cumsum([size - part.header_bytes for size in part.sizes[1:]])  # of each shard's body in the stream
    held = np.bincount(np.searchsorted(ends, starts, side="right"), minlength=len(ends))
    for path, claimed, n in zip(part.paths[1:], claims, held):
        if 0 < claimed < n:
            raise CorruptTractogramError(
                path,
                988,
                f"its own header claims n_count={claimed} but it holds {n} streamlines after the global header "
                f"{part.paths[0]!r}: read as a complete file it ends after {claimed}. Say which is meant: "
                "layout='files' (each file by its own header) or header_bytes=1000 (shards read to their ends)",
            )
