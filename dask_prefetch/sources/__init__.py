"""Where a prefetching file's bytes come from: one small interface, one implementation per kind of store.

The engine talks to a :class:`RangeSource` only (object versions, and byte ranges of a pinned
version); :func:`source_for` picks the implementation for a filesystem.
"""

from __future__ import annotations

from typing import Any

from .base import BytesBody, ObjectVersion, RangeBody, RangeSource
from .errors import RangeNotHonouredError

__all__ = ["BytesBody", "ObjectVersion", "RangeBody", "RangeNotHonouredError", "RangeSource", "source_for"]


def source_for(fs: Any) -> RangeSource:
    """The range source reading from ``fs``: :class:`~.s3.S3Source` for s3fs, else :class:`~.generic.FsspecSource`."""
    from s3fs import S3FileSystem

    if isinstance(fs, S3FileSystem):
        from .s3 import S3Source

        return S3Source(fs)
    from .generic import FsspecSource

    return FsspecSource(fs)
