"""What a store's answers mean to a reader: one place that maps store errors to our vocabulary.

Every request a source sends is a read (metadata, ranged ``GET``, listings). Their failures fall
into a few kinds, decided here and nowhere else, for every source:

* **changed** -- the object is no longer the version pinned at open (S3: ``412
  PreconditionFailed`` to ``If-Match``, or ``416`` for a range that lies inside the pinned size:
  the object shrank; other stores: another version token): :class:`s3fs.utils.FileExpired`
  (fsspec's "file changed" error), never retried.
* **retryable** -- throttling and server errors (``503 SlowDown``, ``500``, ``502``, ``504``,
  ``RequestTimeout``) and broken connections: retried with backoff.
* **wrong range** -- bytes other than the range asked for (a server that ignores ``Range``):
  :class:`RangeNotHonouredError`, asked again, never written into a block.
* everything else (denied, not found, bad request) -- raised at once, naming the object.
"""

from __future__ import annotations

import asyncio
import errno
from typing import Any, Iterator

import aiohttp
from botocore.exceptions import ClientError, IncompleteReadError, ReadTimeoutError, ResponseStreamingError
from s3fs.core import S3_RETRYABLE_ERRORS

#: HTTP statuses and S3 error codes that are worth asking again.
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
RETRYABLE_CODES = frozenset(
    {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "500", "502", "503", "504"}
)
#: Failures of a body stream (or of the connection under it) that are worth resuming from where it stopped.
STREAM_ERRORS: tuple[type[BaseException], ...] = S3_RETRYABLE_ERRORS + (
    ResponseStreamingError,
    ReadTimeoutError,
    IncompleteReadError,
    asyncio.TimeoutError,
    ConnectionError,
    aiohttp.ClientError,
)
_CHANGED_CODES = frozenset({"PreconditionFailed", "412"})
_UNSATISFIABLE_CODES = frozenset({"InvalidRange", "416"})
#: errno values s3fs gives the OSErrors it translates retryable answers into.
_RETRYABLE_ERRNOS = frozenset({errno.EBUSY, getattr(errno, "EREMOTEIO", 121), errno.ETIMEDOUT})


class RangeNotHonouredError(OSError):
    """A ranged GET was answered with other bytes than the range asked for (the server ignored ``Range``)."""


def _chain(error: BaseException) -> Iterator[BaseException]:
    """``error`` and its causes, outermost first."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def client_error(error: BaseException) -> ClientError | None:
    """The botocore ``ClientError`` behind ``error`` (itself or a cause), or None."""
    return next((e for e in _chain(error) if isinstance(e, ClientError)), None)


def _code_and_status(error: ClientError) -> tuple[str | None, int | None]:
    response: dict[str, Any] = error.response or {}
    code = response.get("Error", {}).get("Code")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code, status


def _answered(error: BaseException, codes: frozenset, status: int) -> bool:
    """Whether the ``ClientError`` behind ``error`` carries one of ``codes`` or the HTTP ``status``."""
    cause = client_error(error)
    if cause is None:
        return False
    code, got = _code_and_status(cause)
    return code in codes or got == status


def precondition_failed(error: BaseException) -> bool:
    """Whether S3 refused the request because the object's ETag is not the pinned one (412)."""
    return _answered(error, _CHANGED_CODES, 412)


def range_not_satisfiable(error: BaseException) -> bool:
    """Whether S3 answered ``416``: asked for a range inside the pinned size, the object is shorter now."""
    return _answered(error, _UNSATISFIABLE_CODES, 416)


def object_changed(error: BaseException) -> bool:
    """Whether ``error`` says the object is no longer the version pinned at open (412, or 416 for a pinned range)."""
    return precondition_failed(error) or range_not_satisfiable(error)


def missing_bucket(error: BaseException) -> bool:
    """Whether S3 answered that the bucket itself does not exist (``NoSuchBucket``), not only the key."""
    return _answered(error, frozenset({"NoSuchBucket"}), -1)


def retryable(error: BaseException) -> bool:
    """Whether asking again may succeed: throttling, server errors, timeouts, broken connections."""
    for e in _chain(error):
        if isinstance(e, ClientError):
            code, status = _code_and_status(e)
            return code in RETRYABLE_CODES or status in RETRYABLE_STATUSES
        if isinstance(e, aiohttp.ClientResponseError):  # fsspec's HTTP (and gcsfs's) answers
            return e.status in RETRYABLE_STATUSES
        if isinstance(e, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
            return False
        if isinstance(e, STREAM_ERRORS):
            return True
        if isinstance(e, OSError) and e.errno in _RETRYABLE_ERRNOS:
            return True
    return False


def naming(error: Exception, message: str) -> OSError:
    """``error`` as an OSError of the same kind when possible, with a message naming the object."""
    if isinstance(error, OSError):
        try:
            return type(error)(error.errno, message) if error.errno else type(error)(message)
        except Exception:
            pass
    return OSError(message)
