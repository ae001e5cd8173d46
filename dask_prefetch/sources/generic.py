"""Any fsspec filesystem as a range source: HTTP(S), GCS, Azure, local files, memory, NFS, ...

Async filesystems (``fs.async_impl``: HTTP, gcsfs, adlfs) are read with their own coroutines on
their own event loop; sync ones (local, memory, SFTP, ...) in threads, from fsspec's IO loop.

A store that cannot condition a read on a version is checked *after* each range instead: the
object's ``info`` is asked again once its bytes are in, and the range is accepted only if the
version token (ETag, generation, mtime, ...) and the size are still the pinned ones. A range
read before a change is then followed by a check after it, so bytes of two versions are never
mixed. That costs one metadata request per ranged read (a part, 8 MiB by default). A local
file rewritten in place within one tick of the filesystem's clock, at the same size, cannot be
told from the old one; one replaced by a rename (as careful writers do) always can.
"""

from __future__ import annotations

import asyncio
from functools import partial
from fsspec.asyn import get_loop
from s3fs.utils import FileExpired

from .base import BytesBody, ObjectVersion, RangeSource
from .errors import RangeNotHonouredError, naming

#: ``info`` keys that identify a version, in order of preference (the first present is used).
#: GCS's ``generation`` comes first: it names the object's bytes, while its ``etag`` also changes
#: with metadata (and fake-gcs-server's is the MD5, the same for a rewrite with the same bytes).
#: Azure (adlfs) gives ``etag``, new on every write; ``last_modified`` there has whole seconds.
VERSION_KEYS = (
    "generation",
    "ETag",
    "etag",
    "version_id",
    "VersionId",
    "mtime",
    "LastModified",
    "last_modified",
    "Last-Modified",
    "modified",
    "created",
)


class FsspecSource(RangeSource):
    """Ranges of files on any fsspec filesystem.

    Parameters
    ----------
    fs
        The filesystem; it must support ranged reads (``cat_file(path, start, end)``).
    """

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.fs.loop if self.fs.async_impl else get_loop()

    async def info(self, path: str) -> dict:
        self.fs.invalidate_cache(path)  # what is there now, not what a listing saw
        if self.fs.async_impl:
            return await self.fs._info(path)
        return await asyncio.get_running_loop().run_in_executor(None, self.fs.info, path)

    def version(self, info: dict) -> tuple[str | None, str | None]:
        token = next((info[k] for k in VERSION_KEYS if info.get(k) not in (None, "")), None)
        if token is None:
            return None, None
        if info.get("ino") is not None:  # a local file replaced by a rename within one clock tick
            return f"{token}/ino={info['ino']}", None
        return str(token), None

    async def open_range(self, shard: ObjectVersion, start: int, stop: int) -> BytesBody:
        try:
            if self.fs.async_impl:
                data = await self.fs._cat_file(shard.path, start=start, end=stop)
            else:
                read = partial(self.fs.cat_file, shard.path, start=start, end=stop)
                data = await asyncio.get_running_loop().run_in_executor(None, read)
        except FileNotFoundError as e:  # it was there when pinned: it has gone since
            raise FileExpired(shard.path, shard.etag) from e
        except Exception as e:
            raise naming(e, f"{shard.path}: read of bytes {start}-{stop - 1} failed: {e}") from e
        if len(data) != stop - start:
            await self._check_version(shard)  # a shorter object has changed: say so
            raise RangeNotHonouredError(
                f"{shard.path}: asked for bytes {start}-{stop - 1}, got {len(data)} bytes "
                "(a server that ignores Range?)"
            )
        await self._check_version(shard)
        return BytesBody(data)

    async def _check_version(self, shard: ObjectVersion) -> None:
        """Raise ``FileExpired`` unless the object still has the pinned size and version token."""
        try:
            info = await self.info(shard.path)
        except FileNotFoundError as e:
            raise FileExpired(shard.path, shard.etag) from e
        changed = shard.etag is not None and self.version(info)[0] != shard.etag  # None: pinned without one
        if changed or int(info.get("size", -1)) != shard.size:
            raise FileExpired(shard.path, shard.etag)

