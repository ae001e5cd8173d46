"""``S3PrefetchFileSystem``: :class:`~.prefetch.PrefetchFileSystem`'s S3 case, with s3fs's constructor."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from fsspec.core import split_protocol

from .. import config
from .opening import check_paths, check_unique
from .prefetch import PrefetchFileSystem, forward_reading
from .readonly import allow_only_reading
from .s3target import ReadOnlyS3FileSystem, s3_client_defaults

__all__ = [
    "ReadOnlyS3FileSystem",
    "S3FS_SETTINGS",
    "S3PrefetchFileSystem",
    "check_paths",
    "check_unique",
    "s3_client_defaults",
]


class S3PrefetchFileSystem(PrefetchFileSystem):
    """A read-only S3 filesystem whose :meth:`open` prefetches ahead of the reader.

    Takes the same arguments as :class:`s3fs.S3FileSystem` (``endpoint_url``, ``key``,
    ``secret``, ``anon``, ``client_kwargs``, ``config_kwargs``, ...), and is a
    :class:`~dask_prefetch.PrefetchFileSystem` over the one s3fs filesystem they make: a
    :class:`~dask_prefetch.fs.s3target.ReadOnlyS3FileSystem` (s3fs, read-only too), held as
    :attr:`fs`, with s3fs's own read cache off. Its files read through an
    :class:`~dask_prefetch.sources.s3.S3Source` on that filesystem's client, or, with
    ``s3_client="obstore"``, an :class:`~dask_prefetch.sources.obstore.ObstoreSource` built from
    the same settings (``pip install 'dask-prefetch[obstore]'``).

    Listing and reading methods (``ls``, ``info``, ``cat``, ``glob``, ``find``, ``call_s3``,
    ``url``, their async twins ``_ls``, ``_cat_file``, ...) are s3fs's, forwarded to :attr:`fs`.
    It is read-only by construction: every other method of s3fs or fsspec -- not on the
    allow-list :data:`dask_prefetch.fs.readonly.READING_METHODS`, including any a later s3fs adds
    -- raises ``PermissionError``, here and on :attr:`fs`; ``call_s3`` sends only read operations
    and ``url`` signs only reads.

    Parameters
    ----------
    s3_client
        ``"aiobotocore"`` or ``"obstore"``: the client ranged GETs go through (None:
        ``dask-prefetch.s3-client``, ``"aiobotocore"`` by default). Listings and metadata calls
        (``ls``, ``info``, ...) always go through s3fs. Kept when pickled.
    *args, **kwargs
        As for :class:`s3fs.S3FileSystem` (``skip_instance_cache`` as for any fsspec filesystem:
        equal arguments give the same cached instance, and with it the same s3fs filesystem).

    Raises
    ------
    TypeError, ValueError
        For an ``s3_client`` that is not one of those names.
    ImportError
        For ``"obstore"`` without obstore installed.

    Notes
    -----
    It used to be a subclass of :class:`s3fs.S3FileSystem`; it now holds one, so
    ``isinstance(fs, s3fs.S3FileSystem)`` is False
    (``isinstance(fs.fs, s3fs.S3FileSystem)`` is True). s3fs's settings (:data:`S3FS_SETTINGS`:
    ``endpoint_url``, ``key``, ``anon``, ``client_kwargs``, ``config_kwargs``, ...) read
    :attr:`fs`'s and cannot be set (``retries`` can); anything else of s3fs's that is not a
    method (its client ``s3``, its ``session``) is only on :attr:`fs`. ``protocol`` is still
    s3fs's (``("s3", "s3a")``), so fsspec's configuration for ``s3`` applies.

    The S3 connection pool is raised to 64 connections (``config_kwargs["max_pool_connections"]``)
    unless given, so that several prefetching files are not capped at botocore's default of 10.
    botocore's ``read_timeout`` and ``connect_timeout`` default to ``dask-prefetch.stall-timeout``
    (30 s) rather than 60 s: a request that gets no answer is retried sooner.

    Examples
    --------
    >>> fs = S3PrefetchFileSystem(anon=True)  # doctest: +SKIP
    >>> with fs.open("bucket/big.trk", prefetch_storage=[("/dev/shm", 1024), ("/tmp", 5120)]) as f:
    ...     header = f.read(1000)  # doctest: +SKIP
    """

    protocol: ClassVar[tuple[str, ...]] = ("s3", "s3a")  # type: ignore[assignment]
    #: Its methods forward to a filesystem with an event loop: fsspec helpers may await the ``_x`` twins.
    async_impl = True
    fs: ReadOnlyS3FileSystem

    def __init__(self, *args: Any, s3_client: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("default_cache_type", "none")
        kwargs.setdefault("default_fill_cache", False)
        # Its own s3fs (its own client and listings cache): fsspec's cache is of this filesystem.
        target = ReadOnlyS3FileSystem(*args, **s3_client_defaults(kwargs), skip_instance_cache=True)
        super().__init__(fs=target, s3_client=s3_client)

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        """s3fs's: ``s3://bucket/key`` -> ``bucket/key``."""
        return ReadOnlyS3FileSystem._strip_protocol(path)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop of :attr:`fs` (s3fs's), which runs its requests."""
        return self.fs.loop

    @property
    def retries(self) -> int:
        """s3fs's retries of a failed request on top of botocore's attempts (:attr:`fs`'s; settable)."""
        return self.fs.retries

    @retries.setter
    def retries(self, value: int) -> None:
        self.fs.retries = value

    def _object_path(self, path: str) -> str:
        _check_s3_path(path)
        return self._strip_protocol(path)

    async def _pin_objects(self, paths: list[str]) -> list[dict]:
        """Size, ETag and version of every object, fetched concurrently and never from a cache (see
        :meth:`RangeSource.pin <dask_prefetch.sources.RangeSource.pin>`: retried like ranged GETs)."""
        return await self.source.pin(paths, config.get_int("retries", minimum=1))


#: s3fs's settings, read (not set) from the s3fs the filesystem holds, as code written for s3fs reads them.
S3FS_SETTINGS = (
    "endpoint_url key secret token anon profile client_kwargs config_kwargs requester_pays version_aware "
    "s3_additional_kwargs default_block_size use_ssl"
).split()


def _setting(name: str) -> property:
    def get(self: S3PrefetchFileSystem) -> Any:
        return getattr(self.fs, name)

    return property(get, doc=f"s3fs's ``{name}``, of :attr:`fs`.")


for _name in S3FS_SETTINGS:
    setattr(S3PrefetchFileSystem, _name, _setting(_name))
forward_reading(S3PrefetchFileSystem, ReadOnlyS3FileSystem)
allow_only_reading(S3PrefetchFileSystem, ReadOnlyS3FileSystem)


def _check_s3_path(path: str) -> None:
    """Refuse a URL of another store (botocore would call ``memory:`` an invalid bucket name)."""
    protocol, _ = split_protocol(path)
    if protocol not in (None, "s3", "s3a"):
        raise ValueError(f"S3PrefetchFileSystem reads s3:// paths ('bucket/key' or 's3://bucket/key'), got {path!r}")
