"""The range-source interface: the only thing the prefetch engine talks to.

A :class:`RangeSource` answers two questions about one store, and knows nothing of blocks, tiers
or formats:

* which version of an object is there now (:meth:`RangeSource.pin`: its ``info``, from which
  :meth:`RangeSource.version` takes a size-independent version token), and
* the bytes ``[start, stop)`` of that version (:meth:`RangeSource.open_range`: a body to read in
  pieces), never bytes of another version or another range.

Errors are the vocabulary of :mod:`.errors`: ``FileExpired`` when the object changed,
:class:`~.errors.RangeNotHonouredError` for other bytes than those asked for, retryable
``OSError`` s for throttling and broken connections, ``FileNotFoundError`` / ``PermissionError``
for the rest. Implementations: :class:`~.s3.S3Source` (aiobotocore, ``If-Match`` pinning) and
:class:`~.generic.FsspecSource` (any fsspec filesystem, async or sync).
"""

from __future__ import annotations

import abc
import asyncio
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

from fsspec.asyn import _run_coros_in_chunks
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from .errors import missing_bucket, naming, retryable

#: Metadata requests sent at once when pinning many objects.
PIN_BATCH = 64


@dataclass(frozen=True)
class ObjectVersion:
    """One object as pinned at open: its path, its size, and the version token(s) that name its bytes."""

    path: str
    size: int
    etag: str | None  # the version token: S3's ETag, or the source's (generation, mtime, ...); None: not pinned
    version_id: str | None  # S3's VersionId on a versioned bucket


class RangeBody(Protocol):
    """The body of one ranged read: pieces of at most ``n`` bytes, ``b""`` at its end."""

    async def read(self, n: int) -> bytes: ...

    def close(self) -> None: ...


class RangeSource(abc.ABC):
    """Object versions and byte ranges of them, from one store, read through the filesystem ``fs``.

    Attributes
    ----------
    last_retried_error
        The last error a client library retried out of sight (e.g. ``"SlowDown (HTTP 503)"``),
        for timeout messages; None when the source cannot tell.
    throttles
        Throttling answers (``503 SlowDown`` and the like) the client retried so far: the engines
        reading through this source back off their GETs in flight when it grows. Stays 0 when the
        source cannot tell.
    """

    last_retried_error: str | None = None
    throttles: int = 0

    def __init__(self, fs: Any) -> None:
        self.fs = fs  # the filesystem whose client reads the store
        self.last_retried_error = None
        self.throttles = 0

    def __reduce__(self) -> tuple:
        return type(self), (self.fs,)

    @property
    @abc.abstractmethod
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the source's coroutines run on."""

    @abc.abstractmethod
    async def info(self, path: str) -> dict:
        """The object's ``info`` as the store gives it now (never from a cache).

        Raises
        ------
        FileNotFoundError
            If there is no such object.
        """

    @abc.abstractmethod
    def version(self, info: dict) -> tuple[str | None, str | None]:
        """``(version token, version id)`` of an ``info``: what :meth:`open_range` checks (None: unknown)."""

    @abc.abstractmethod
    async def open_range(self, shard: ObjectVersion, start: int, stop: int) -> RangeBody:
        """Start reading object bytes ``[start, stop)`` of the version pinned in ``shard``.

        Raises
        ------
        s3fs.utils.FileExpired
            If the object is no longer that version.
        RangeNotHonouredError
            If the store answered with other bytes than the range.
        OSError
            Naming the object, for anything else (after the client's own retries).
        """

    async def pin(self, paths: Sequence[str], retries: int) -> list[dict]:
        """Every object's ``info`` now, fetched concurrently, each retried like a ranged GET.

        Parameters
        ----------
        paths
            The objects.
        retries
            Attempts per object while the store answers with a retryable error (backoff with jitter).

        Raises
        ------
        FileNotFoundError, IsADirectoryError
            For a missing object, or a directory / prefix.
        OSError
            Naming the object, when the store keeps failing or refuses.
        """

        async def pin_one(path: str) -> dict:
            try:
                async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(retries),
                    wait=wait_random_exponential(multiplier=0.1, max=5.0),
                    retry=retry_if_exception(retryable),
                    reraise=True,
                ):
                    with attempt:
                        info = await self.info(path)
            except FileNotFoundError as e:
                if missing_bucket(e):
                    bucket = path.split("/", 1)[0]
                    raise FileNotFoundError(f"No such bucket: {bucket!r} (asked for the object {path!r})") from e
                detail = str(e.args[-1] if e.args else e)
                said = f" ({detail})" if detail and detail not in path else ""  # s3fs often says just the path
                raise FileNotFoundError(f"No such object: {path!r}{said}") from e
            except OSError as e:
                raise naming(e, f"{path}: request for its size and version failed: {e}") from e
            if info.get("type") not in ("file", None):
                raise IsADirectoryError(f"{path!r} is a directory or prefix, not an object")
            return info

        return await _run_coros_in_chunks([pin_one(p) for p in paths], batch_size=PIN_BATCH)

    async def pin_listed(self, paths: Sequence[str], listed: Mapping[str, dict], retries: int) -> list[dict]:
        """Every object's ``info``: from ``listed`` where a listing says all :meth:`version` needs, else asked for.

        Parameters
        ----------
        paths
            The objects.
        listed
            Entries of a listing just made (``fs.glob(..., detail=True)``), by name; objects not in
            it are asked for.
        retries
            As for :meth:`pin`.

        Returns
        -------
        list of dict
            One ``info`` per path, in order, as :meth:`pin` would give it.

        Raises
        ------
        FileNotFoundError, IsADirectoryError, OSError
            As :meth:`pin`; ``IsADirectoryError`` also for a listed directory or prefix.

        Notes
        -----
        This default takes nothing from the listing and asks for every object (:meth:`pin`): a
        store's listing may carry another version token than its ``info`` (an mtime where ``info``
        has an ETag), and reads compare tokens of ``info``. A source whose listings carry the very
        tokens its reads check overrides this (:class:`~.s3.S3Source`).
        """
        return await self.pin(paths, retries)

    async def open_connections(self, path: str, n: int) -> int:
        """Open up to ``n`` connections to the store ahead of reads: ``n`` concurrent requests for ``path``'s info.

        The first file a process reads starts many GETs at once; on a client with no open
        connection, none is sent before all have made theirs. Errors are not raised (reads meet
        them themselves). Returns how many requests were answered.
        """
        answers = await asyncio.gather(*(self.info(path) for _ in range(n)), return_exceptions=True)
        return sum(not isinstance(a, BaseException) for a in answers)

    async def pin_reading_heads(
        self, paths: Sequence[str], heads: Sequence[int], nbytes: int, retries: int
    ) -> tuple[list[dict], dict[int, bytes]]:
        """Every object's ``info`` (as :meth:`pin`) and the first ``nbytes`` of some, in few round trips.

        Parameters
        ----------
        paths
            The objects.
        heads
            Positions in ``paths`` of the objects whose first bytes are wanted.
        nbytes
            How many (fewer for a smaller object).
        retries
            As for :meth:`pin`.

        Returns
        -------
        infos, heads
            One ``info`` per path, in order; the first bytes read, by position, of the very versions
            those infos name. Objects missing from ``heads`` are for the caller to read.

        Notes
        -----
        This default reads no bytes: it pins every object (:meth:`pin`). A source that learns an
        object's size and version from a ranged GET's answer overrides it (:class:`~.s3.S3Source`:
        one round trip where a HEAD and then a GET would take two).
        """
        return await self.pin(paths, retries), {}


class BytesBody:
    """A :class:`RangeBody` over bytes already in memory."""

    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._at = 0

    async def read(self, n: int) -> memoryview:  # type: ignore[override]
        piece = self._view[self._at : self._at + n]  # no copy: written out as it is
        self._at += len(piece)
        return piece

    def close(self) -> None:
        self._view = memoryview(b"")

