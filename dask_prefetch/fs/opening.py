"""The prefetching ``open`` shared by the filesystems: checks, settings, tiers, engine, file.

:class:`PrefetchOpening` is mixed into :class:`~dask_prefetch.fs.prefetch.PrefetchFileSystem`
(and so into its S3 case, :class:`~dask_prefetch.fs.s3.S3PrefetchFileSystem`); a filesystem says
where its bytes come from (:meth:`PrefetchOpening._range_source`) and how it names objects
(:meth:`PrefetchOpening._object_path`), and everything else about opening is here, once.
"""

from __future__ import annotations

import contextvars
import io
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, AbstractSet, Any, Callable, Iterable, Mapping, Sequence

from fsspec.asyn import sync

from .. import checks, config
from ..checks import describe
from ..engine.rolling import PrefetchEngine, opening_limit
from .file import PrefetchFile
from ..engine.layout import Layout
from ..sources import RangeSource
from ..cache.tiers import TierSet, disk_bytes

if TYPE_CHECKING:
    from ..cluster.worker import PrefetchWorkerPlugin

MiB = 2**20
#: fsspec's buffering options of ``open``: accepted and ignored (prefetching is the cache).
#: Parts of the first block of a file opened ahead of its reader (a worker's next task): a 32 MiB block
#: over one connection at 40 MiB/s takes ~0.8 s, about a task's time, so the task would often wait for it.
AHEAD_START_PARTS = 4
_BUFFERING_OPTIONS = frozenset({"cache_type", "cache_options", "fill_cache", "block_cache", "autocommit"})


def _no_worker_plugin() -> None:
    return None


#: Who owns the tiers a file opened now draws on: the cluster layer installs its lookup (see
#: :func:`install_worker_lookup`); the core never imports it, and without it files have budgets of their own.
_worker_lookup: Callable[[], PrefetchWorkerPlugin | None] = _no_worker_plugin


def install_worker_lookup(lookup: Callable[[], PrefetchWorkerPlugin | None]) -> None:
    """Install what finds the worker plugin of the running task (``dask_prefetch.cluster`` does, when imported)."""
    global _worker_lookup
    _worker_lookup = lookup


#: Set in a task's helper thread (see :func:`helper_context`): the owner of the task's tiers, found in its thread.
_helping: contextvars.ContextVar[tuple[PrefetchWorkerPlugin | None] | None] = contextvars.ContextVar(
    "dask_prefetch_helping", default=None
)


def _tiers_owner() -> PrefetchWorkerPlugin | None:
    helping = _helping.get()
    return helping[0] if helping is not None else _worker_lookup()


def helper_context() -> contextvars.Context:
    """A copy of this thread's context for a thread that reads on behalf of the running task.

    Files opened in it draw on the tiers files opened in this thread would (the task's worker
    plugin, found by the task's thread), and the task's context variables (its metrics, a trace)
    go with them. Run the helper's work with ``helper_context().run(...)``.
    """
    context = contextvars.copy_context()
    context.run(_helping.set, (_tiers_owner(),))
    return context


class PrefetchOpening:
    """``open(path_or_paths, block_size, prefetch_storage, header_bytes, ...)`` with rolling prefetch."""

    #: Defaults of ``open``'s prefetch options given to the filesystem (None: configuration).
    _open_defaults: dict[str, Any] = {}

    def open(  # type: ignore[override]
        self,
        path_or_paths: str | Sequence[str],
        mode: str = "rb",
        block_size: int | str | None = None,
        prefetch_storage: Sequence[tuple[str, float]] | None = None,
        header_bytes: int = 0,
        *,
        offset: int = 0,
        end: int | None = None,
        concurrency: int | str | None = None,
        part_size: int | str | None = None,
        read_timeout: float | str | None = None,
        pinned: Sequence[Mapping[str, Any]] | None = None,
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,
        compression: None = None,
        **kwargs: Any,
    ) -> PrefetchFile | io.TextIOWrapper:
        """Open one object, or several read as one, with rolling prefetch into local tiers.

        Parameters
        ----------
        path_or_paths
            A path (``"bucket/key"``, ``"s3://bucket/key"``, ...), or a list of them read end to end
            (each object at most once).
        mode
            ``"rb"`` (or ``"r"``/``"rt"`` for text); anything that writes raises ``PermissionError``.
        block_size
            Bytes per cached block, an int or a string such as ``"32 MiB"`` (default
            ``dask-prefetch.block-size``, 32 MiB).
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
        end
            Logical position where the reader will stop (None: the end of the file): blocks are
            laid out from ``offset`` to ``end`` so that none holds bytes outside that range, and
            nothing from ``end`` on is prefetched (a read there still works, fetching only the
            block it reads). For readers of one byte range of a big object.
        concurrency
            Ranged GETs in flight: an int (fixed), or ``"auto"`` (default ``dask-prefetch.concurrency``):
            16 at first, adapted to the link up to ``dask-prefetch.max-concurrency`` (64): more
            while throughput rises, half as many when the store throttles.
        part_size
            Bytes per ranged GET (default ``dask-prefetch.part-size``, 8 MiB); a larger value is
            capped at ``block_size``, since a GET never spans blocks.
        read_timeout
            Seconds a read waits for data before ``TimeoutError``, a positive finite number or a string
            such as ``"2 min"`` (default ``dask-prefetch.read-timeout``).
        pinned
            The objects' ``info`` already known (``name``, ``size`` and the version fields, e.g.
            ``ETag`` and ``VersionId`` on S3; one per path, in order), e.g. from when a Dask graph
            was built: opening then sends no metadata request. Every read is still checked against
            that version, so an object replaced since raises ``FileExpired``.
        encoding, errors, newline
            For text mode.
        compression
            Only ``None`` is supported.
        **kwargs
            fsspec's buffering options (``cache_type``, ``cache_options``, ``fill_cache``), ignored:
            prefetching is this file's cache.

        Returns
        -------
        PrefetchFile
            Or a text wrapper around one in text mode.

        Raises
        ------
        PermissionError
            For a writing mode.
        TypeError
            For an argument of the wrong type: a path that is not a string, a size that is not an
            int (or a string such as ``"32 MiB"``), a bool or float where an int is expected, a
            ``prefetch_storage`` entry that is not a ``(directory, MiB)`` pair, a ``pinned`` entry
            that is not a mapping.
        ValueError
            For an unknown mode, an empty list or an empty path, the same object listed twice (a
            logical file is never made of one object twice: it is almost surely a mistake), sizes,
            counts or ``read_timeout`` that are not positive (``header_bytes`` and ``offset``
            negative), ``header_bytes`` larger than a shard, ``pinned`` entries that do not match
            the paths, a malformed ``prefetch_storage`` (empty, a budget not positive, a directory
            twice), or blocks (``block_size``, or the largest shard when smaller) larger than every
            tier's budget.
        FileNotFoundError
            If an object does not exist (``IsADirectoryError`` if it is a prefix).
        OSError
            If a tier directory is unusable.
        """
        asked_at = time.monotonic()
        defaults = self._open_defaults  # the filesystem's own, over dask-prefetch.* configuration
        block_size = defaults.get("block_size") if block_size is None else block_size
        prefetch_storage = defaults.get("prefetch_storage") if prefetch_storage is None else prefetch_storage
        concurrency = defaults.get("concurrency") if concurrency is None else concurrency
        part_size = defaults.get("part_size") if part_size is None else part_size
        read_timeout = defaults.get("read_timeout") if read_timeout is None else read_timeout
        check_mode(mode, path_or_paths, encoding, errors, newline, owner=type(self).__name__)
        offset = checks.check_int(offset, "offset", minimum=0)
        if end is not None:
            end = checks.check_int(end, "end", minimum=0)
        header_bytes = checks.check_int(header_bytes, "header_bytes", minimum=0)
        if compression is not None:
            raise ValueError(f"{type(self).__name__}.open does not decompress; open with compression=None")
        unknown = set(kwargs) - _BUFFERING_OPTIONS
        if unknown:
            raise TypeError(f"{type(self).__name__}.open() got unexpected keyword argument(s) {sorted(unknown)}")
        paths = check_paths(path_or_paths, "path_or_paths", caller=f"{type(self).__name__}.open")
        paths = [self._object_path(p) for p in paths]
        infos = _check_pinned(paths, pinned) if pinned is not None else None
        check_unique(paths, "path_or_paths")
        settings = _Settings.resolve(block_size, part_size, concurrency, read_timeout, prefetch_storage)
        open_kwargs = dict(
            block_size=block_size,
            prefetch_storage=prefetch_storage,
            header_bytes=header_bytes,
            concurrency=concurrency,
            part_size=part_size,
            read_timeout=read_timeout,
        )
        if end is not None:  # only then: files opened without it are what they were
            open_kwargs["end"] = end
        worker_plugin = _tiers_owner() if prefetch_storage is None else None
        # Inside a task, the worker may have opened this very stream ahead (see next_tasks.py).
        f = worker_plugin.claim(self, paths, open_kwargs, offset) if worker_plugin is not None else None
        if f is None:
            f = self._open_prefetching(paths, settings, open_kwargs, offset, worker_plugin, infos)
        f.engine.start_clock(asked_at, worker_plugin.on_first_bytes() if worker_plugin is not None else None)
        if "b" in mode:
            return f
        return io.TextIOWrapper(io.BufferedReader(f), encoding=encoding, errors=errors, newline=newline)

    def _open_prefetching(
        self,
        paths: list[str],
        settings: _Settings,
        open_kwargs: dict,
        offset: int,
        worker_plugin: PrefetchWorkerPlugin | None,
        infos: list[dict] | None = None,
    ) -> PrefetchFile:
        """Pin the objects (unless ``infos`` already did), plan the blocks and start prefetching from ``offset``."""
        source = self._range_source()
        if worker_plugin is not None:
            tiers = worker_plugin.tiers  # the worker's one budget, shared with its other tasks
        else:
            tiers = TierSet(settings.storage if settings.storage is not None else config.default_storage())
        if infos is None:
            infos = sync(source.loop, source.pin, paths, settings.retries)
        end = open_kwargs.get("end")
        cuts = () if end is None else (offset, end)
        layout = Layout.from_objects(
            infos,
            open_kwargs["header_bytes"],
            settings.block_bytes,
            settings.part_bytes,
            source.version,
            cuts,
            reader_start=offset,
            # The first block over every connection at once, unless opened ahead of its reader
            # (a worker's next task): that one has time, and its GETs would crowd the running reads';
            # it comes in a few parts, for its whole block not to take one connection's time.
            start_parts=(
                settings.concurrency if opening_limit.get() is None else min(AHEAD_START_PARTS, settings.concurrency)
            ),
        )
        largest = max((b.length for b in layout.blocks), default=0)
        if disk_bytes(largest) > tiers.largest_budget:
            raise ValueError(
                f"{paths[0]}: blocks of {_size(largest)} (block_size) do not fit in any prefetch_storage "
                f"tier (largest budget {_size(tiers.largest_budget)}); lower block_size or raise a budget"
            )
        engine = PrefetchEngine(
            source,
            layout,
            tiers,
            concurrency=settings.concurrency,
            max_concurrency=settings.max_concurrency,
            retries=settings.retries,
            read_timeout=settings.read_timeout,
            start=layout.block_at(offset),
            stop=None if end is None else layout.block_at(end),
            stall_timeout=settings.stall_timeout,
            straggler_factor=settings.straggler_factor,
        )
        if worker_plugin is not None:
            worker_plugin.track(engine)
        return PrefetchFile(self, paths, layout, engine, open_kwargs, position=offset)

    def _open(self, path: str, mode: str = "rb", block_size: Any = None, **kwargs: Any) -> PrefetchFile:
        """fsspec's hook (used by ``OpenFile``, ``cat`` helpers...): a prefetching read-only file."""
        return self.open(path, mode=mode)  # type: ignore[return-value]

    def _range_source(self) -> RangeSource:
        """Where this filesystem's bytes come from."""
        raise NotImplementedError

    def _object_path(self, path: str) -> str:
        """``path`` as the source names it (protocol stripped); ``ValueError`` for another store's URL."""
        raise NotImplementedError


@dataclass(frozen=True)
class _Settings:
    """The checked settings of one ``open``: arguments, else ``dask-prefetch.*`` configuration."""

    block_bytes: int
    part_bytes: int
    concurrency: int  # GETs in flight at first
    max_concurrency: int  # ... and at most (the same: fixed)
    retries: int
    read_timeout: float
    stall_timeout: float  # seconds without a byte before a GET is resumed
    straggler_factor: float  # re-issue a GET after this many times the median GET (0: never)
    storage: list[tuple[str, float]] | None  # None: the worker's tiers or the default ones

    @classmethod
    def resolve(
        cls,
        block_size: int | str | None,
        part_size: int | str | None,
        concurrency: int | str | None,
        read_timeout: float | str | None,
        prefetch_storage: Any,
    ) -> "_Settings":
        """Check the ``open`` arguments and fill in the configured defaults.

        Raises
        ------
        TypeError, ValueError
            Naming the argument (or the ``dask-prefetch.*`` setting) and its value.
        """
        block_bytes = config.get_bytes("block-size", block_size, "block_size")
        part_bytes = config.get_bytes("part-size", part_size, "part_size")
        first, most = config.get_concurrency(concurrency)
        return cls(
            block_bytes=block_bytes,
            part_bytes=min(part_bytes, block_bytes),  # a GET never spans blocks: capped, as documented
            concurrency=first,
            max_concurrency=most,
            retries=config.get_int("retries", minimum=1),
            read_timeout=config.get_seconds("read-timeout", read_timeout, "read_timeout"),
            stall_timeout=config.get_seconds("stall-timeout"),
            straggler_factor=_straggler_factor(config.get("straggler-factor")),
            storage=None if prefetch_storage is None else checks.check_storage(prefetch_storage),
        )


def _straggler_factor(value: Any) -> float:
    """The configured ``dask-prefetch.straggler-factor``: a number >= 0 (0: never re-issue)."""
    try:
        factor = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"dask-prefetch.straggler-factor must be a number, got {checks.describe(value)}") from None
    if not factor >= 0:  # NaN too
        raise ValueError(f"dask-prefetch.straggler-factor must be >= 0 (0: never), got {value!r}")
    return factor


def _size(nbytes: int) -> str:
    """``nbytes`` for a message: in MiB, or in bytes when under 0.1 MiB."""
    return f"{nbytes / MiB:.1f} MiB" if nbytes >= MiB // 10 else f"{nbytes} bytes"


def check_mode(
    mode: Any, path: Any, encoding: Any = None, errors: Any = None, newline: Any = None, owner: str = "S3PrefetchFileSystem"
) -> None:
    """Reading modes only: ``PermissionError`` for writing ones, ``ValueError`` for nonsense."""
    if not isinstance(mode, str):
        raise TypeError(f"mode must be a str such as 'rb', got {describe(mode)}")
    if set(mode) & set("wax+"):
        raise PermissionError(f"{owner} is read-only: cannot open {path!r} in mode {mode!r}")
    if set(mode) - set("rbt") or mode.count("r") != 1 or len(set(mode)) != len(mode) or set("bt") <= set(mode):
        raise ValueError(f"invalid mode {mode!r}: {owner}.open reads with 'rb', 'r' or 'rt'")
    if "b" in mode and (encoding, errors, newline) != (None, None, None):
        raise ValueError(f"mode {mode!r} is binary: it takes no encoding, errors or newline")


def check_paths(path_or_paths: Any, name: str, caller: str, pathlike: bool = False) -> list[str]:
    """One path, or an ordered list of them, as a list of non-empty strings.

    Parameters
    ----------
    path_or_paths
        A string (or, with ``pathlike``, an ``os.PathLike``), or a list or tuple of them.
    name
        The argument, for errors.
    caller
        The function, for the error on an empty list.
    pathlike
        Accept ``pathlib.Path`` and other ``os.PathLike`` (local files).

    Raises
    ------
    TypeError
        If it is neither a path nor an ordered collection of paths (a set or a dict has no order),
        or an item is not a path.
    ValueError
        If the list is empty or a path is an empty string.
    """
    kinds: tuple[type, ...] = (str, os.PathLike) if pathlike else (str,)
    wanted = "a str or os.PathLike" if pathlike else "a str"
    if isinstance(path_or_paths, kinds):
        items, labels = [path_or_paths], [name]
    elif isinstance(path_or_paths, (bytes, Mapping, AbstractSet)) or not isinstance(path_or_paths, Iterable):
        raise TypeError(f"{name} must be a path or a list of paths, got {describe(path_or_paths)}")
    else:
        items = list(path_or_paths)
        labels = [f"{name}[{i}]" for i in range(len(items))]
    if not items:
        raise ValueError(f"{caller} needs at least one path, got an empty list")
    paths = []
    for item, label in zip(items, labels):
        if not isinstance(item, kinds):
            raise TypeError(f"{label} must be {wanted} path, got {describe(item)}")
        path = os.fspath(item)
        if not path:
            raise ValueError(f"{label} is an empty path")
        paths.append(path)
    return paths


def check_unique(paths: Sequence[str], name: str) -> None:
    """Refuse an object listed twice: a logical file made of the same object twice is a mistake.

    Raises
    ------
    ValueError
        Naming the path and both of its positions.
    """
    first: dict[str, int] = {}
    for i, path in enumerate(paths):
        if path in first:
            raise ValueError(
                f"{name} lists {path!r} twice (at positions {first[path]} and {i}); "
                "a logical file cannot be made of the same object twice"
            )
        first[path] = i


def _check_pinned(paths: list[str], pinned: Any) -> list[dict]:
    """``pinned`` as one info dict per path, in order.

    Raises
    ------
    TypeError
        If it is not a list of mappings.
    ValueError
        If it has not one entry per path, or an entry has the wrong name or no size in bytes.
    """
    if isinstance(pinned, (str, bytes, Mapping)) or not isinstance(pinned, Iterable):
        raise TypeError(f"pinned must be a list of info dicts (one per path), got {describe(pinned)}")
    entries = list(pinned)
    for i, info in enumerate(entries):
        if not isinstance(info, Mapping):
            raise TypeError(f"pinned[{i}] must be an info dict (name, size, ETag), got {describe(info)}")
    infos = [dict(info) for info in entries]
    if len(infos) != len(paths):
        raise ValueError(f"pinned has {len(infos)} entries for {len(paths)} paths")
    for path, info in zip(paths, infos):
        if info.get("name") != path or not checks.is_int(info.get("size")) or info["size"] < 0:
            raise ValueError(f"pinned entry {info!r} does not describe {path!r} (name and size in bytes needed)")
    return infos
