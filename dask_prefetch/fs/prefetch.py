"""``PrefetchFileSystem``: rolling prefetch over any fsspec filesystem, by composition, read-only.

Shaped like fsspec's ``CachingFileSystem``: it holds a target filesystem (``fs=``, or
``target_protocol=`` and ``target_options=``), forwards the listing and metadata calls it
chooses to the target, and opens files that prefetch ahead of the reader through the target's
:class:`~dask_prefetch.sources.RangeSource` (the fast aiobotocore path for S3, the target's own
ranged reads for anything else). Registered as the fsspec protocol ``prefetch`` (entry point
``fsspec.specs``), so chained URLs work wherever fsspec URLs do::

    fsspec.open("prefetch::s3://bucket/key", s3={"anon": True}, prefetch={"block_size": "16 MiB"})
    pandas.read_csv("prefetch::s3://bucket/t.csv", storage_options={"s3": {"anon": True}})

Everything else -- writing, copying, deleting, tagging, uploads -- raises ``PermissionError``:
the surface is an allow-list (:mod:`dask_prefetch.fs.readonly`).
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, Sequence

import s3fs
from fsspec import filesystem, get_filesystem_class
from fsspec.implementations.chained import ChainedFileSystem
from fsspec.spec import AbstractFileSystem

from .. import checks, config
from .s3target import ReadOnlyS3FileSystem, s3_client_defaults
from .opening import PrefetchOpening
from .readonly import READING_METHODS, allow_only_reading
from ..sources import RangeSource, source_for

__all__ = ["PrefetchFileSystem", "forward_reading"]

#: Calls handed to the target filesystem unchanged (listings and metadata: nothing that writes).
FORWARDED = (
    "ls info find glob exists isfile isdir lexists size sizes checksum ukey modified created du expand_path "
    "cat_file invalidate_cache"
).split()


@allow_only_reading
class PrefetchFileSystem(PrefetchOpening, ChainedFileSystem):
    """A read-only filesystem over ``fs`` whose :meth:`open` prefetches ahead of the reader.

    Parameters
    ----------
    fs
        The filesystem to read (any fsspec filesystem: s3fs, gcsfs, adlfs, HTTP, local, memory, ...).
    target_protocol, target_options
        Instead of ``fs``: the protocol and constructor options of the filesystem to make (what
        chained URLs such as ``prefetch::s3://...`` pass). An S3 target gets this package's client
        defaults (64 connections, timeouts following ``dask-prefetch.stall-timeout``) and is a
        :class:`~dask_prefetch.fs.s3target.ReadOnlyS3FileSystem`: ``.fs`` refuses to write as well.
        A filesystem passed as ``fs`` is the caller's own and is used as it is.
    fo
        The path of a chained URL (fsspec passes it; not used).
    block_size, prefetch_storage, concurrency, part_size, read_timeout
        Defaults for :meth:`open` (each None: ``dask-prefetch.*`` configuration).
    s3_client
        For an S3 target: ``"aiobotocore"`` or ``"obstore"``, the client ranged GETs go through
        (None: ``dask-prefetch.s3-client``). Ignored for other targets.
    **kwargs
        For fsspec's ``AbstractFileSystem`` (e.g. ``skip_instance_cache``).

    Raises
    ------
    ValueError
        If neither or both of ``fs`` and ``target_protocol`` are given, or the target is itself
        a ``PrefetchFileSystem``.
    TypeError, ValueError
        For malformed prefetch settings (see :meth:`open`), or an ``s3_client`` that is not one
        of those names.
    ImportError
        If the target protocol's package is not installed (fsspec's message names it).

    Examples
    --------
    >>> fs = PrefetchFileSystem(target_protocol="s3", target_options={"anon": True})  # doctest: +SKIP
    >>> with fs.open("bucket/big.trk", prefetch_storage=[("/dev/shm", 1024)]) as f:  # doctest: +SKIP
    ...     header = f.read(1000)
    """

    protocol: ClassVar[str] = "prefetch"  # type: ignore[misc]
    _strip_tokenize_options = ("fo",)

    def __init__(
        self,
        fs: AbstractFileSystem | None = None,
        target_protocol: str | None = None,
        target_options: dict | None = None,
        fo: str | None = None,
        *,
        block_size: int | str | None = None,
        prefetch_storage: Sequence[tuple[str, float]] | None = None,
        concurrency: int | str | None = None,
        part_size: int | str | None = None,
        read_timeout: float | str | None = None,
        s3_client: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (fs is None) == (target_protocol is None):
            raise ValueError("PrefetchFileSystem needs exactly one of fs= and target_protocol=")
        if fs is None:
            options = dict(target_options or {})
            target = get_filesystem_class(target_protocol)
            if issubclass(target, s3fs.S3FileSystem):
                options = s3_client_defaults(options)
            if target is s3fs.S3FileSystem:  # made here, so it only reads too (as S3PrefetchFileSystem's does)
                fs = ReadOnlyS3FileSystem(**options)
            else:
                fs = filesystem(target_protocol, **options)
        if isinstance(fs, PrefetchFileSystem):
            raise ValueError("PrefetchFileSystem over a PrefetchFileSystem: prefetch once")
        self.fs = fs
        name = "s3_client" if s3_client is not None else "dask-prefetch.s3-client"
        self.source: RangeSource = source_for(fs, config.get("s3-client") if s3_client is None else s3_client, name)
        self._open_defaults = _checked_defaults(
            dict(
                block_size=block_size,
                prefetch_storage=prefetch_storage,
                concurrency=concurrency,
                part_size=part_size,
                read_timeout=read_timeout,
            )
        )

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        """Drop a leading ``prefetch://`` or ``prefetch::`` (the target strips its own protocol)."""
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = str(path)
        for prefix in ("prefetch::", "prefetch://"):
            if path.startswith(prefix):
                path = path[len(prefix) :]
        return path

    @property
    def last_retried_error(self) -> str | None:
        """The last error the target's client retried out of sight, when its source can tell."""
        return self.source.last_retried_error

    def _range_source(self) -> RangeSource:
        return self.source

    def _object_path(self, path: str) -> str:
        return self.fs._strip_protocol(self._strip_protocol(path))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} over {type(self.fs).__name__}>"


def _forwarding(name: str) -> Any:
    def forward(self: PrefetchFileSystem, path: Any = None, *args: Any, **kwargs: Any) -> Any:
        stripped = () if path is None else (self._strip_protocol(path),)
        return getattr(self.fs, name)(*stripped, *args, **kwargs)

    forward.__name__ = forward.__qualname__ = name
    forward.__doc__ = f"The target filesystem's ``{name}`` (see its documentation)."
    return forward


for _name in FORWARDED:
    setattr(PrefetchFileSystem, _name, _forwarding(_name))


def forward_reading(cls: type, target: type) -> type:
    """Give the wrapper class ``cls`` the reading methods of ``target``, the class of the filesystem it holds.

    Each name of :data:`~dask_prefetch.fs.readonly.READING_METHODS` that ``target`` implements
    itself (s3fs's ``cat``, ``get_file``, ``split_path``, ``call_s3``, ``url``, the async twins
    such as ``_cat_file``, ...) is forwarded to ``self.fs``, unless ``cls`` has its own
    (``open``, the listing calls of :data:`FORWARDED`, ...). fsspec's generic methods written
    over other ones (``head``, ``tail``, ``read_text``, ``tree``, ``get_mapper``, ``to_json``, ...)
    stay the wrapper's, so that they run on top of what it forwards and opens. Static methods are
    the target's own; nothing that is not on the allow-list is forwarded (refuse the rest with
    ``allow_only_reading(cls, target)``).
    """
    for name in sorted(READING_METHODS & set(dir(target))):
        if _implementer(cls, name) not in (None, AbstractFileSystem):
            continue  # the wrapper's own
        theirs = _implementer(target, name)
        mirrored = inspect.iscoroutinefunction(getattr(target, f"_{name}", None)) or inspect.isasyncgenfunction(
            getattr(target, f"_{name}", None)
        )  # fsspec makes the sync twin of an async method on each instance
        if theirs is AbstractFileSystem and not mirrored:
            continue
        attribute = inspect.getattr_static(target, name)
        if isinstance(attribute, staticmethod):
            setattr(cls, name, attribute)
        elif isinstance(attribute, classmethod):
            setattr(cls, name, classmethod(_forwarding_to_class(name, target)))
        else:
            setattr(cls, name, _forwarding_to_target(name, inspect.iscoroutinefunction(attribute)))
    return cls


def _implementer(cls: type, name: str) -> type | None:
    return next((c for c in cls.__mro__ if name in c.__dict__), None)


def _forwarding_to_target(name: str, is_async: bool) -> Any:
    if is_async:

        async def forward_async(self: Any, *args: Any, **kwargs: Any) -> Any:
            return await getattr(self.fs, name)(*args, **kwargs)

        forward: Any = forward_async
    else:

        def forward_sync(self: Any, *args: Any, **kwargs: Any) -> Any:
            return getattr(self.fs, name)(*args, **kwargs)

        forward = forward_sync
    forward.__name__ = forward.__qualname__ = name
    forward.__doc__ = f"The held filesystem's ``{name}`` (see its documentation)."
    return forward


def _forwarding_to_class(name: str, target: type) -> Any:
    def forward(cls: type, *args: Any, **kwargs: Any) -> Any:
        return getattr(target, name)(*args, **kwargs)

    forward.__name__ = forward.__qualname__ = name
    forward.__doc__ = f"``{target.__name__}.{name}`` (see its documentation)."
    return forward


def _checked_defaults(defaults: dict) -> dict:
    """The constructor's ``open`` defaults, checked now rather than at every open."""
    if defaults["block_size"] is not None:
        checks.check_bytes(defaults["block_size"], "block_size")
    if defaults["part_size"] is not None:
        checks.check_bytes(defaults["part_size"], "part_size")
    if defaults["concurrency"] is not None:
        checks.check_concurrency(defaults["concurrency"], "concurrency")
    if defaults["read_timeout"] is not None:
        checks.check_seconds(defaults["read_timeout"], "read_timeout")
    if defaults["prefetch_storage"] is not None:
        defaults["prefetch_storage"] = checks.check_storage(defaults["prefetch_storage"])
    return {k: v for k, v in defaults.items() if v is not None}
