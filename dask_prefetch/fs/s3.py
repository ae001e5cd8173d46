"""``S3PrefetchFileSystem``: a read-only s3fs filesystem whose files prefetch into local tiers."""

from __future__ import annotations

from typing import Any

import s3fs
from fsspec.asyn import sync_wrapper
from fsspec.core import split_protocol

from .. import config
from .opening import PrefetchOpening, check_mode, check_paths, check_unique
from .readonly import allow_only_reading, check_operation, check_url_method
from ..sources import RangeSource, source_for

__all__ = ["S3PrefetchFileSystem", "check_paths", "check_unique", "s3_client_defaults"]


def s3_client_defaults(kwargs: dict) -> dict:
    """s3fs constructor arguments with this package's client defaults filled in (a copy).

    The connection pool is raised to 64 (botocore's 10 would silently cap the GETs in flight)
    and botocore's read and connect timeouts follow ``dask-prefetch.stall-timeout``.
    """
    kwargs = dict(kwargs)
    config_kwargs = dict(kwargs.pop("config_kwargs", None) or {})
    config_kwargs.setdefault("max_pool_connections", 64)
    stall_seconds = config.get_seconds("stall-timeout")
    config_kwargs.setdefault("read_timeout", stall_seconds)
    config_kwargs.setdefault("connect_timeout", stall_seconds)
    return {**kwargs, "config_kwargs": config_kwargs}


@allow_only_reading
class S3PrefetchFileSystem(PrefetchOpening, s3fs.S3FileSystem):
    """A read-only S3 filesystem whose :meth:`open` prefetches ahead of the reader.

    Takes the same arguments as :class:`s3fs.S3FileSystem` (``endpoint_url``, ``key``,
    ``secret``, ``anon``, ``client_kwargs``, ``config_kwargs``, ...). Listing and reading
    methods (``ls``, ``info``, ``cat``, ``glob``, ``find``, ...) behave as in s3fs; s3fs's own
    read cache is off. It is read-only by construction: every method not on the allow-list
    :data:`dask_prefetch.fs.readonly.READING_METHODS` raises ``PermissionError`` (including any a
    later s3fs adds), ``call_s3`` sends only read operations and ``url`` signs only reads.
    It is :class:`~dask_prefetch.PrefetchFileSystem`'s S3 case, with s3fs's constructor:
    its files read through an :class:`~dask_prefetch.sources.s3.S3Source` on its own client,
    or, with ``s3_client="obstore"``, an :class:`~dask_prefetch.sources.obstore.ObstoreSource`
    built from the same settings (``pip install 'dask-prefetch[obstore]'``).

    Parameters
    ----------
    s3_client
        ``"aiobotocore"`` or ``"obstore"``: the client ranged GETs go through (None:
        ``dask-prefetch.s3-client``, ``"aiobotocore"`` by default). Listings and metadata calls
        (``ls``, ``info``, ...) always go through s3fs. Kept when pickled.
    *args, **kwargs
        As for :class:`s3fs.S3FileSystem`.

    Raises
    ------
    TypeError, ValueError
        For an ``s3_client`` that is not one of those names.
    ImportError
        For ``"obstore"`` without obstore installed.

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

    def __init__(self, *args: Any, s3_client: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("default_cache_type", "none")
        kwargs.setdefault("default_fill_cache", False)
        super().__init__(*args, **s3_client_defaults(kwargs))
        name = "s3_client" if s3_client is not None else "dask-prefetch.s3-client"
        self.source = source_for(self, config.get("s3-client") if s3_client is None else s3_client, name)

    @property
    def last_retried_error(self) -> str | None:
        """The last error botocore retried out of sight on this filesystem's client, or None."""
        return self.source.last_retried_error

    async def _call_s3(self, method: Any, *akwarglist: Any, **kwargs: Any) -> Any:
        """s3fs's ``_call_s3`` for S3 read operations only (``PermissionError`` for the rest)."""
        check_operation(method, type(self).__name__)
        return await super()._call_s3(method, *akwarglist, **kwargs)

    call_s3 = sync_wrapper(_call_s3)

    async def _url(self, path: str, expires: int = 3600, client_method: str = "get_object", **kwargs: Any) -> str:
        """A presigned URL that reads ``path`` (``PermissionError`` for any other ``client_method``)."""
        check_url_method(client_method, type(self).__name__)
        return await super()._url(path, expires=expires, client_method=client_method, **kwargs)

    url = sync_wrapper(_url)

    async def open_async(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        """s3fs's streamed async file, for reading only (``PermissionError`` for a writing mode)."""
        check_mode(mode, path, owner=type(self).__name__)
        return await super().open_async(path, mode, **kwargs)

    def _range_source(self) -> RangeSource:
        return self.source

    def _object_path(self, path: str) -> str:
        _check_s3_path(path)
        return self._strip_protocol(path)

    async def _pin_objects(self, paths: list[str]) -> list[dict]:
        """Size, ETag and version of every object, fetched concurrently and never from a cache (see
        :meth:`RangeSource.pin <dask_prefetch.sources.RangeSource.pin>`: retried like ranged GETs)."""
        return await self.source.pin(paths, config.get_int("retries", minimum=1))


def _check_s3_path(path: str) -> None:
    """Refuse a URL of another store (botocore would call ``memory:`` an invalid bucket name)."""
    protocol, _ = split_protocol(path)
    if protocol not in (None, "s3", "s3a"):
        raise ValueError(f"S3PrefetchFileSystem reads s3:// paths ('bucket/key' or 's3://bucket/key'), got {path!r}")


