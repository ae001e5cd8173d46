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

from typing import Any, ClassVar, Sequence

import s3fs
from fsspec import filesystem, get_filesystem_class
from fsspec.implementations.chained import ChainedFileSystem
from fsspec.spec import AbstractFileSystem

from .. import checks, config
from .s3 import s3_client_defaults
from .opening import PrefetchOpening
from .readonly import allow_only_reading
from ..sources import RangeSource, source_for

__all__ = ["PrefetchFileSystem"]

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
        defaults (64 connections, timeouts following ``dask-prefetch.stall-timeout``).
    fo
        The path of a chained URL (fsspec passes it; not used).
    block_size, prefetch_storage, concurrency, part_size, read_timeout
        Defaults for :meth:`open` (each None: ``dask-prefetch.*`` configuration).
    **kwargs
        For fsspec's ``AbstractFileSystem`` (e.g. ``skip_instance_cache``).

    Raises
    ------
    ValueError
        If neither or both of ``fs`` and ``target_protocol`` are given, or the target is itself
        a ``PrefetchFileSystem``.
    TypeError, ValueError
        For malformed prefetch settings (see :meth:`open`).
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
        concurrency: int | None = None,
        part_size: int | str | None = None,
        read_timeout: float | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (fs is None) == (target_protocol is None):
            raise ValueError("PrefetchFileSystem needs exactly one of fs= and target_protocol=")
        if fs is None:
            options = dict(target_options or {})
            if issubclass(get_filesystem_class(target_protocol), s3fs.S3FileSystem):
                options = s3_client_defaults(options)
            fs = filesystem(target_protocol, **options)
        if isinstance(fs, PrefetchFileSystem):
            raise ValueError("PrefetchFileSystem over a PrefetchFileSystem: prefetch once")
        self.fs = fs
        self.source: RangeSource = source_for(fs, config.get("s3-client"), "dask-prefetch.s3-client")  # S3 targets
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
        return f"<PrefetchFileSystem over {type(self.fs).__name__}>"


def _forwarding(name: str) -> Any:
    def forward(self: PrefetchFileSystem, path: Any = None, *args: Any, **kwargs: Any) -> Any:
        stripped = () if path is None else (self._strip_protocol(path),)
        return getattr(self.fs, name)(*stripped, *args, **kwargs)

    forward.__name__ = forward.__qualname__ = name
    forward.__doc__ = f"The target filesystem's ``{name}`` (see its documentation)."
    return forward


for _name in FORWARDED:
    setattr(PrefetchFileSystem, _name, _forwarding(_name))


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
