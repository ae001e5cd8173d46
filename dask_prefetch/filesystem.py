"""``S3PrefetchFileSystem``: a read-only s3fs filesystem whose files prefetch into local tiers."""

from __future__ import annotations

import io
import time
from typing import Any, Mapping, Sequence

import s3fs
from fsspec.asyn import _run_coros_in_chunks, sync

from . import config
from .cluster.worker import PrefetchWorkerPlugin, current_worker_plugin
from .engine import PrefetchEngine
from .file import PrefetchFile
from .layout import Layout
from .tiers import TierSet, disk_bytes

MiB = 2**20

_MUTATING = (
    "mkdir makedirs rmdir touch pipe pipe_file put put_file cp cp_file copy mv move rename rm rm_file "
    "delete merge setxattr chmod put_tags make_bucket_versioned rm_versioned_bucket_contents bulk_delete "
    "upload write_bytes write_text"
).split()


class S3PrefetchFileSystem(s3fs.S3FileSystem):
    """A read-only S3 filesystem whose :meth:`open` prefetches ahead of the reader.

    Takes the same arguments as :class:`s3fs.S3FileSystem` (``endpoint_url``, ``key``,
    ``secret``, ``anon``, ``client_kwargs``, ``config_kwargs``, ...). Listing and reading
    methods (``ls``, ``info``, ``cat``, ``glob``, ``find``, ...) behave as in s3fs; s3fs's own
    read cache is off; methods that would change the store raise ``PermissionError``.

    The S3 connection pool is raised to 64 connections (``config_kwargs["max_pool_connections"]``)
    unless given, so that several prefetching files are not capped at botocore's default of 10.

    Examples
    --------
    >>> fs = S3PrefetchFileSystem(anon=True)  # doctest: +SKIP
    >>> with fs.open("bucket/big.trk", prefetch_storage=[("/dev/shm", 1024), ("/tmp", 5120)]) as f:
    ...     header = f.read(1000)  # doctest: +SKIP
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("default_cache_type", "none")
        kwargs.setdefault("default_fill_cache", False)
        config_kwargs = dict(kwargs.pop("config_kwargs", None) or {})
        config_kwargs.setdefault("max_pool_connections", 64)
        super().__init__(*args, config_kwargs=config_kwargs, **kwargs)

    def open(  # type: ignore[override]
        self,
        path_or_paths: str | Sequence[str],
        mode: str = "rb",
        block_size: int | str | None = None,
        prefetch_storage: Sequence[tuple[str, float]] | None = None,
        header_bytes: int = 0,
        *,
        offset: int = 0,
        concurrency: int | None = None,
        part_size: int | str | None = None,
        read_timeout: float | str | None = None,
        pinned: Sequence[Mapping[str, Any]] | None = None,
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,
        compression: None = None,
    ) -> PrefetchFile | io.TextIOWrapper:
        """Open one object, or several read as one, with rolling prefetch into local tiers.

        Parameters
        ----------
        path_or_paths
            ``"bucket/key"`` or ``"s3://bucket/key"``, or a list of them read end to end.
        mode
            ``"rb"`` (or ``"r"``/``"rt"`` for text); anything that writes raises ``PermissionError``.
        block_size
            Bytes per cached block (default ``dask-prefetch.block-size``, 32 MiB).
        prefetch_storage
            ``[(directory, MiB), ...]`` in descending priority; the highest tier fills first.
            Default: inside a task on a worker with :class:`PrefetchWorkerPlugin`, the worker's
            shared tiers; else ``dask-prefetch.storage``, else ``/dev/shm`` (or the temp dir) with
            ``dask-prefetch.default-budget``.
        header_bytes
            Bytes skipped at the start of every object after the first (the first is a global
            header, read whole).
        offset
            Logical position to start at: prefetching starts there rather than at byte 0.
        concurrency
            Ranged GETs in flight (default ``dask-prefetch.concurrency``, 16).
        part_size
            Bytes per ranged GET, at most ``block_size`` (default ``dask-prefetch.part-size``, 8 MiB).
        read_timeout
            Seconds a read waits for data before ``TimeoutError`` (default ``dask-prefetch.read-timeout``).
        pinned
            The objects' ``info`` already known (``name``, ``size``, ``ETag``, optional
            ``VersionId``; one per path, in order), e.g. from when a Dask graph was built: opening
            then sends no HEAD request. Every GET is still conditioned on that ETag, so an object
            replaced since raises ``FileExpired``.
        encoding, errors, newline
            For text mode.
        compression
            Only ``None`` is supported.

        Returns
        -------
        PrefetchFile
            Or a text wrapper around one in text mode.

        Raises
        ------
        PermissionError
            For a writing mode.
        ValueError
            For an empty list, ``header_bytes`` larger than a shard, or blocks (``block_size``,
            or the largest shard when smaller) larger than every tier's budget.
        FileNotFoundError
            If an object does not exist (``IsADirectoryError`` if it is a prefix).
        OSError
            If a tier directory is unusable.
        """
        asked_at = time.monotonic()
        if set(mode) - set("rbt") or "r" not in mode:
            raise PermissionError(f"S3PrefetchFileSystem is read-only: cannot open {path_or_paths!r} in mode {mode!r}")
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        if compression is not None:
            raise ValueError("S3PrefetchFileSystem.open does not decompress; open with compression=None")
        paths = [path_or_paths] if isinstance(path_or_paths, (str, bytes)) else list(path_or_paths)
        if not paths:
            raise ValueError("S3PrefetchFileSystem.open needs at least one path, got an empty list")
        paths = [self._strip_protocol(p) for p in paths]
        open_kwargs = dict(
            block_size=block_size,
            prefetch_storage=prefetch_storage,
            header_bytes=header_bytes,
            concurrency=concurrency,
            part_size=part_size,
            read_timeout=read_timeout,
        )
        worker_plugin = current_worker_plugin() if prefetch_storage is None else None
        # Inside a task, the worker may have opened this very stream ahead (see next_tasks.py).
        f = worker_plugin.claim(self, paths, open_kwargs, offset) if worker_plugin is not None else None
        if f is None:
            f = self._open_prefetching(paths, open_kwargs, offset, worker_plugin, pinned)
        f.engine.start_clock(asked_at)
        if "b" in mode:
            return f
        return io.TextIOWrapper(io.BufferedReader(f), encoding=encoding, errors=errors, newline=newline)

    def _open_prefetching(
        self,
        paths: list[str],
        open_kwargs: dict,
        offset: int,
        worker_plugin: PrefetchWorkerPlugin | None,
        pinned: Sequence[Mapping[str, Any]] | None = None,
    ) -> PrefetchFile:
        """Pin the objects, plan the blocks and start prefetching from ``offset``."""
        block_size, prefetch_storage = open_kwargs["block_size"], open_kwargs["prefetch_storage"]
        concurrency, read_timeout = open_kwargs["concurrency"], open_kwargs["read_timeout"]
        header_bytes = open_kwargs["header_bytes"]
        block_bytes = config.get_bytes("block-size", block_size)
        part_bytes = min(config.get_bytes("part-size", open_kwargs["part_size"]), block_bytes)
        if worker_plugin is not None:
            tiers = worker_plugin.tiers  # the worker's one budget, shared with its other tasks
        else:
            tiers = TierSet(prefetch_storage or config.default_storage())
        infos = _check_pinned(paths, pinned) if pinned is not None else sync(self.loop, self._pin_objects, paths)
        layout = Layout.from_objects(infos, header_bytes, block_bytes, part_bytes)
        largest = max((b.length for b in layout.blocks), default=0)
        if disk_bytes(largest) > tiers.largest_budget:
            raise ValueError(
                f"{paths[0]}: blocks of {largest / MiB:.1f} MiB (block_size) do not fit in any prefetch_storage "
                f"tier (largest budget {tiers.largest_budget / MiB:.1f} MiB); lower block_size or raise a budget"
            )
        engine = PrefetchEngine(
            self,
            layout,
            tiers,
            concurrency=int(config.get("concurrency") if concurrency is None else concurrency),
            retries=int(config.get("retries")),
            read_timeout=config.get_seconds("read-timeout", read_timeout),
            start=layout.block_at(offset),
        )
        if worker_plugin is not None:
            worker_plugin.track(engine)
        return PrefetchFile(self, paths, layout, engine, open_kwargs, position=offset)

    def _open(self, path: str, mode: str = "rb", block_size: Any = None, **kwargs: Any) -> PrefetchFile:
        """fsspec's hook (used by ``OpenFile``, ``cat`` helpers...): a prefetching read-only file."""
        return self.open(path, mode=mode)  # type: ignore[return-value]

    async def _pin_objects(self, paths: list[str]) -> list[dict]:
        """Size, ETag and version of every object, fetched concurrently and never from a cache."""

        async def pin(path: str) -> dict:
            info = await self._info(path, refresh=True)
            if info.get("type") != "file":
                raise IsADirectoryError(f"{path!r} is a prefix, not an object")
            return info

        try:
            return await _run_coros_in_chunks([pin(p) for p in paths], batch_size=64)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"No such object: {e.args[0] if e.args else e}") from e


def _check_pinned(paths: list[str], pinned: Sequence[Mapping[str, Any]]) -> list[dict]:
    infos = [dict(info) for info in pinned]
    if len(infos) != len(paths):
        raise ValueError(f"pinned has {len(infos)} entries for {len(paths)} paths")
    for path, info in zip(paths, infos):
        if info.get("name") != path or not isinstance(info.get("size"), int) or info["size"] < 0:
            raise ValueError(f"pinned entry {info!r} does not describe {path!r} (name and size in bytes needed)")
    return infos


def _read_only(name: str) -> Any:
    def refuse(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise PermissionError(f"S3PrefetchFileSystem is read-only: {name}() is not allowed")

    refuse.__name__ = name
    refuse.__doc__ = "Not allowed: S3PrefetchFileSystem is read-only (raises PermissionError)."
    return refuse


def _read_only_async(name: str) -> Any:
    async def refuse(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise PermissionError(f"S3PrefetchFileSystem is read-only: {name.lstrip('_')}() is not allowed")

    refuse.__name__ = name
    return refuse


for _name in _MUTATING:
    setattr(S3PrefetchFileSystem, _name, _read_only(_name))
    setattr(S3PrefetchFileSystem, f"_{_name}", _read_only_async(f"_{_name}"))
