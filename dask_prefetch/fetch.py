"""One ranged, ETag-conditioned GET streamed into a block file.

The body is written in pieces with ``os.pwrite`` as it arrives, so memory does not grow with
the size of a part or with the number of GETs in flight. A body stream that breaks is resumed
from the first missing byte; errors of the request itself are retried by s3fs and botocore.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Callable

import aiohttp
from botocore.exceptions import ClientError, IncompleteReadError, ReadTimeoutError, ResponseStreamingError
from s3fs.utils import FileExpired
from s3fs import S3FileSystem
from s3fs.core import S3_RETRYABLE_ERRORS

from .layout import Part, Shard

#: Largest piece read from a body before it is written out.
logger = logging.getLogger(__name__)
CHUNK_BYTES = 1 << 20

#: Failures of a body stream that are worth resuming from where it stopped.
STREAM_ERRORS: tuple[type[BaseException], ...] = S3_RETRYABLE_ERRORS + (
    ResponseStreamingError,
    ReadTimeoutError,
    IncompleteReadError,
    asyncio.TimeoutError,
    ConnectionError,
    aiohttp.ClientError,
)


class ShortBodyError(OSError):
    """The server closed a body before sending every byte of the range."""


def _precondition_failed(error: BaseException) -> bool:
    cause = error if isinstance(error, ClientError) else error.__cause__
    if not isinstance(cause, ClientError):
        return False
    code = cause.response.get("Error", {}).get("Code")
    return code in ("PreconditionFailed", "412")


def _naming(error: Exception, message: str) -> OSError:
    """``error`` as an OSError of the same kind when possible, with a message naming the object."""
    if isinstance(error, OSError):
        try:
            return type(error)(error.errno, message) if error.errno else type(error)(message)
        except Exception:
            pass
    return OSError(message)


async def fetch_part(
    fs: S3FileSystem,
    shard: Shard,
    part: Part,
    fd: int,
    on_bytes: Callable[[int], None],
    retries: int,
) -> None:
    """Download object bytes ``part.start:part.stop`` of ``shard`` into ``fd`` at ``part.block_offset``.

    Parameters
    ----------
    fs
        The filesystem whose client (credentials, endpoint, retry settings) is used.
    shard
        The object, pinned to ``shard.etag`` / ``shard.version_id``.
    part
        The byte range and where it goes in the block file.
    fd
        An open, writable block file.
    on_bytes
        Called with the number of bytes after each piece is written (on the event loop).
    retries
        Attempts for a broken body stream before giving up.

    Raises
    ------
    s3fs.utils.FileExpired
        If the object no longer has the pinned ETag.
    OSError
        If S3 keeps failing (the last error is the cause).
    """
    bucket, key, _ = fs.split_path(shard.path)
    conditions = {}
    if shard.etag:
        conditions["IfMatch"] = shard.etag
    if shard.version_id:
        conditions["VersionId"] = shard.version_id
    done, failures = 0, 0
    while done < part.length:
        first = part.start + done
        try:
            response = await fs._call_s3(
                "get_object", Bucket=bucket, Key=key, Range=f"bytes={first}-{part.stop - 1}", **conditions
            )
        except Exception as e:  # s3fs and botocore have retried already
            if _precondition_failed(e):
                raise FileExpired(shard.path, shard.etag) from e
            raise _naming(e, f"{shard.path}: GET bytes {first}-{part.stop - 1} failed: {e}") from e
        if shard.etag and response.get("ETag") not in (None, shard.etag):
            response["Body"].close()
            raise FileExpired(shard.path, shard.etag)  # a server that ignores If-Match
        served = response.get("ContentRange")
        if served is not None and not served.startswith(f"bytes {first}-"):
            response["Body"].close()
            raise OSError(f"{shard.path}: asked for bytes {first}-{part.stop - 1}, the server sent {served!r}")
        body = response["Body"]
        resumed_at = done
        try:
            while done < part.length:
                piece = await body.read(min(CHUNK_BYTES, part.length - done))
                if not piece:
                    raise ShortBodyError(f"{shard.path}: body ended at byte {part.start + done} of {part.stop}")
                os.pwrite(fd, piece, part.block_offset + done)
                done += len(piece)
                on_bytes(len(piece))
        except (*STREAM_ERRORS, ShortBodyError) as e:
            body.close()
            failures = 1 if done > resumed_at else failures + 1  # only failures in a row count
            if failures >= retries:
                raise OSError(
                    f"{shard.path}: bytes {first}-{part.stop - 1} failed {failures} times; last error: {e!r}"
                ) from e
            delay = min(0.1 * 2**failures, 5.0)
            logger.debug("%s: body broke at byte %d (%r); resuming in %.1f s", shard.path, part.start + done, e, delay)
            await asyncio.sleep(delay)
        finally:
            body.close()
