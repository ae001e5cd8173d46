"""Where a prefetching file's bytes come from: one small interface, one implementation per kind of store.

The engine talks to a :class:`RangeSource` only (object versions, and byte ranges of a pinned
version); :func:`source_for` picks the implementation for a filesystem.
"""

from __future__ import annotations

from typing import Any

from .base import BytesBody, ObjectVersion, RangeBody, RangeSource
from .errors import RangeNotHonouredError

__all__ = [
    "BytesBody",
    "ObjectVersion",
    "RangeBody",
    "RangeNotHonouredError",
    "RangeSource",
    "S3_CLIENTS",
    "source_for",
]

#: The clients an S3 filesystem can read through (the first is the default).
S3_CLIENTS = ("aiobotocore", "obstore")


def source_for(fs: Any, s3_client: str = "aiobotocore", name: str = "s3_client") -> RangeSource:
    """The range source reading from ``fs``.

    Parameters
    ----------
    fs
        The filesystem. A prefetching one (``PrefetchFileSystem``, ``S3PrefetchFileSystem``)
        already has its source (:attr:`source`, chosen when it was made): that one is returned.
    s3_client
        For an s3fs filesystem: ``"aiobotocore"`` (:class:`~.s3.S3Source`, on ``fs``'s own client)
        or ``"obstore"`` (:class:`~.obstore.ObstoreSource`). Other filesystems get
        :class:`~.generic.FsspecSource` whatever it says.
    name
        The argument or setting named in errors.

    Raises
    ------
    ValueError
        For another ``s3_client``.
    ImportError
        For ``"obstore"`` when obstore is not installed (naming ``pip install 'dask-prefetch[obstore]'``).
    """
    from s3fs import S3FileSystem

    if not isinstance(s3_client, str):
        raise TypeError(f"{name} must be a str, one of {', '.join(map(repr, S3_CLIENTS))}, got {s3_client!r}")
    if s3_client not in S3_CLIENTS:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, S3_CLIENTS))}, got {s3_client!r}")
    own = getattr(fs, "source", None)
    if isinstance(own, RangeSource):  # a prefetching filesystem (which holds the store's filesystem)
        return own
    if isinstance(fs, S3FileSystem):
        if s3_client == "obstore":
            from .obstore import ObstoreSource

            return ObstoreSource(fs)
        from .s3 import S3Source

        return S3Source(fs)
    from .generic import FsspecSource

    return FsspecSource(fs)
