"""The s3fs filesystem an ``S3PrefetchFileSystem`` reads through: read-only too, with this package's client defaults.

:class:`ReadOnlyS3FileSystem` is s3fs with the reading allow-list of :mod:`.readonly` applied
(every other method raises ``PermissionError``), ``call_s3`` limited to read operations, ``url``
to presigned reads and ``open``/``open_async`` to reading modes. It is what
``S3PrefetchFileSystem.fs`` holds, so that reaching through the wrapper cannot write either, and
what its :class:`~dask_prefetch.sources.s3.S3Source` sends the ranged GETs through.
"""

from __future__ import annotations

from typing import Any

import s3fs
from fsspec.asyn import sync_wrapper

from .. import config
from .opening import check_mode
from .readonly import allow_only_reading, check_operation, check_url_method

__all__ = ["ReadOnlyS3FileSystem", "s3_client_defaults"]


def s3_client_defaults(kwargs: dict) -> dict:
    """s3fs constructor arguments with this package's client defaults filled in (a copy).

    The connection pool is raised to 64, or ``dask-prefetch.max-concurrency`` if larger
    (botocore's 10 would silently cap the GETs in flight), and botocore's read and connect timeouts follow ``dask-prefetch.stall-timeout``.
    """
    kwargs = dict(kwargs)
    config_kwargs = dict(kwargs.pop("config_kwargs", None) or {})
    config_kwargs.setdefault("max_pool_connections", max(64, config.get_int("max-concurrency", minimum=1)))
    stall_seconds = config.get_seconds("stall-timeout")
    config_kwargs.setdefault("read_timeout", stall_seconds)
    config_kwargs.setdefault("connect_timeout", stall_seconds)
    return {**kwargs, "config_kwargs": config_kwargs}


@allow_only_reading
class ReadOnlyS3FileSystem(s3fs.S3FileSystem):
    """An :class:`s3fs.S3FileSystem` that only reads (same constructor).

    Every method not on :data:`~dask_prefetch.fs.readonly.READING_METHODS` raises
    ``PermissionError``; ``call_s3`` sends only :data:`~dask_prefetch.fs.readonly.READ_OPERATIONS`,
    ``url`` (and ``sign``) presign only ``get_object`` and ``head_object``, and ``open`` and
    ``open_async`` open for reading only. Its files are s3fs's own (no prefetching): prefetching
    is the business of the :class:`~dask_prefetch.fs.s3.S3PrefetchFileSystem` that holds it.
    """

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

    def _open(self, path: str, mode: str = "rb", *args: Any, **kwargs: Any) -> Any:
        """s3fs's file, for reading only (``PermissionError`` for a writing mode)."""
        check_mode(mode, path, owner=type(self).__name__)
        return super()._open(path, mode, *args, **kwargs)

    async def open_async(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        """s3fs's streamed async file, for reading only (``PermissionError`` for a writing mode)."""
        check_mode(mode, path, owner=type(self).__name__)
        return await super().open_async(path, mode, **kwargs)
