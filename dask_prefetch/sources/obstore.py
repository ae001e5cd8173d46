"""The S3 source through obstore (Rust's ``object_store``): ranged, conditioned GETs streamed in pieces.

An alternative to :class:`~.s3.S3Source` (aiobotocore), chosen with
``S3PrefetchFileSystem(s3_client="obstore")`` or the ``dask-prefetch.s3-client`` setting; it
needs ``pip install 'dask-prefetch[obstore]'``. The stores (one ``obstore.store.S3Store`` per
bucket) are built from the s3fs filesystem's settings -- endpoint (plain ``http://`` too),
credentials, region, timeouts and retry attempts -- on first use, and never pickled: a source
unpickled on a worker builds its own.

Every GET carries ``If-Match`` (and the ``VersionId`` when the bucket is versioned) and its answer
is checked against the pinned object: the range served must be the one asked for and the
object's size and ETag the pinned ones (a server that ignores ``If-Match``, or a shorter object,
gives ``FileExpired``), so bytes of two versions are never mixed.

obstore's exceptions carry no HTTP status: the status is read from their message, here and
nowhere else (:func:`translate`), and mapped onto the vocabulary of :mod:`.errors`; a ``200``
with the whole object to a ranged GET (which obstore refuses) is a :class:`~.errors.RangeNotHonouredError`,
asked again by the engine.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
from datetime import timedelta
from typing import Any

from s3fs.utils import FileExpired

from .base import ObjectVersion, RangeSource
from .errors import RETRYABLE_STATUSES, RangeNotHonouredError
from .s3 import S3Source

#: What ``pip`` installs for this source.
INSTALL_HINT = "pip install 'dask-prefetch[obstore]'"
#: Bytes obstore gathers into one piece of a body before handing it over (the engine writes pieces of <= 1 MiB).
PIECE_BYTES = 1 << 20
#: Defaults when the filesystem's ``config_kwargs`` do not say (those of botocore as S3PrefetchFileSystem sets it).
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_ATTEMPTS = 5
#: obstore's backoff between attempts: from 0.1 s, doubling, at most 15 s (s3fs's cap on its own retries).
BACKOFF = {"init_backoff": timedelta(seconds=0.1), "max_backoff": timedelta(seconds=15), "base": 2}
#: Longest one GET (request and whole body) may take; stalls are caught sooner, per piece, by the engine.
REQUEST_DEADLINE = timedelta(hours=1)

_STATUS = re.compile(r"status code: (\d{3})")
#: What obstore says when a ranged GET is answered with 200 and the whole object (a server that ignores Range).
_NOT_PARTIAL = "non-partial response"
_THROTTLED = frozenset({429, 503})


def _import_obstore() -> Any:
    try:
        import obstore
        import obstore.store  # noqa: F401  (the S3Store class)
    except ImportError as e:
        raise ImportError(f"the obstore S3 client needs the obstore package: {INSTALL_HINT}") from e
    return obstore


class ObstoreSource(RangeSource):
    """Ranges of S3 objects read with obstore, configured from the s3fs filesystem ``fs``.

    Parameters
    ----------
    fs
        Any :class:`s3fs.S3FileSystem`: its ``endpoint_url`` (or ``client_kwargs["endpoint_url"]``),
        ``key``/``secret``/``token`` (else the credentials botocore would find: environment,
        profile, instance role), ``anon``, region (``client_kwargs["region_name"]``, else
        ``AWS_REGION`` / ``AWS_DEFAULT_REGION``), ``requester_pays``, and botocore's
        ``read_timeout``, ``connect_timeout`` and ``retries["max_attempts"]`` from ``config_kwargs``
        with s3fs's own ``retries`` on top (attempts stack as on the aiobotocore path).
        Its event loop runs the source's coroutines.

    Raises
    ------
    ImportError
        If obstore is not installed (naming ``pip install 'dask-prefetch[obstore]'``).

    Notes
    -----
    obstore retries throttling, server errors and broken connections itself (``max_attempts`` ×
    ``fs.retries`` attempts in all, backoff from 0.1 s doubling to 15 s, for at most three times the
    read timeout); what reaches the engine after that is final for a request, and a body
    that breaks is resumed by the engine. :attr:`last_retried_error` stays None: obstore does not
    tell which errors it retried.
    """

    def __init__(self, fs: Any) -> None:
        super().__init__(fs)
        self._obstore = _import_obstore()
        self._stores: dict[str, Any] = {}  # bucket -> S3Store, built on first use (not pickled)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.fs.loop

    async def info(self, path: str) -> dict:
        bucket, key, _ = self.fs.split_path(path)
        try:
            meta = await self._obstore.head_async(self._store(bucket), key)
        except FileNotFoundError:
            # Not an object: s3fs tells a prefix ("directory") from nothing at all, and names the object.
            return await self.fs._info(path, refresh=True)
        except Exception as e:
            raise translate(e, f"{path}: request for its size and version failed") from e
        return {
            "name": f"{bucket}/{key}",
            "size": meta["size"],
            "ETag": meta["e_tag"],
            "VersionId": meta["version"],
            "LastModified": meta["last_modified"],
            "type": "file",
        }

    def version(self, info: dict) -> tuple[str | None, str | None]:
        return info.get("ETag") or None, info.get("VersionId") or None

    #: S3's listing gives what a HEAD through obstore would (the same quoted ETag and size): see
    #: :meth:`S3Source.pin_listed <dask_prefetch.sources.s3.S3Source.pin_listed>`.
    pin_listed = S3Source.pin_listed

    async def open_range(self, shard: ObjectVersion, start: int, stop: int) -> ObstoreBody:
        """Send the GET of object bytes ``start:stop`` and return its body, checked against the pinned version."""
        bucket, key, _ = self.fs.split_path(shard.path)
        options: dict[str, Any] = {}
        if (start, stop) != (0, shard.size):  # the whole object is asked without Range: a 200 is then its answer
            options["range"] = (start, stop)
        if shard.etag:
            options["if_match"] = shard.etag
        if shard.version_id:
            options["version"] = shard.version_id
        try:
            result = await self._obstore.get_async(self._store(bucket), key, options=options)
        except self._obstore.exceptions.PreconditionError as e:  # 412 to If-Match: another version
            raise FileExpired(shard.path, shard.etag) from e
        except Exception as e:
            if status_of(e) == 416:  # a range inside the pinned size: the object is shorter now
                raise FileExpired(shard.path, shard.etag) from e
            if _NOT_PARTIAL in str(e):  # asked again by the engine, like a broken body
                raise RangeNotHonouredError(
                    f"{shard.path}: asked for bytes {start}-{stop - 1}, the server answered with the whole object: "
                    f"it did not honour the Range request (a proxy or server that ignores Range?) ({_first_line(e)})"
                ) from e
            raise translate(e, f"{shard.path}: GET bytes {start}-{stop - 1} failed") from e
        meta = result.meta
        if shard.etag and meta.get("e_tag") not in (None, shard.etag):
            raise FileExpired(shard.path, shard.etag)  # a server that ignores If-Match
        if meta.get("size") != shard.size or tuple(result.range) != (start, stop):
            raise FileExpired(shard.path, shard.etag)  # obstore serves a short range when the object shrank
        return ObstoreBody(result, shard.path, start)

    def _store(self, bucket: str) -> Any:
        """The ``S3Store`` of ``bucket`` (built once per source)."""
        store = self._stores.get(bucket)
        if store is None:
            store = self._stores[bucket] = self._obstore.store.S3Store(bucket, **store_options(self.fs))
        return store


class ObstoreBody:
    """A :class:`~.base.RangeBody` over an obstore stream: its pieces, split to at most ``n`` bytes, without copies."""

    def __init__(self, result: Any, path: str, start: int) -> None:
        self._stream = result.stream(min_chunk_size=PIECE_BYTES)
        self._rest = memoryview(b"")
        self._path = path
        self._at = start

    async def read(self, n: int) -> memoryview:  # type: ignore[override]
        if not self._rest:
            if self._stream is None:
                return memoryview(b"")
            try:
                piece = await self._stream.__anext__()
            except StopAsyncIteration:
                self._stream = None
                return memoryview(b"")
            except Exception as e:  # the body broke: the engine resumes from the first missing byte
                raise ConnectionError(f"{self._path}: body broke at byte {self._at}: {_first_line(e)}") from e
            self._rest = memoryview(piece)
        out, self._rest = self._rest[:n], self._rest[n:]
        self._at += len(out)
        return out

    def close(self) -> None:
        self._stream = None  # dropping obstore's stream drops its connection
        self._rest = memoryview(b"")


def store_options(fs: Any) -> dict[str, Any]:
    """Keyword arguments of ``obstore.store.S3Store`` that reach what the s3fs filesystem ``fs`` reaches.

    Raises
    ------
    ValueError
        If ``fs`` asks for something this source cannot do the same way (a ``client_kwargs``
        ``verify`` other than True).
    """
    client_kwargs = dict(getattr(fs, "client_kwargs", None) or {})
    config_kwargs = dict(getattr(fs, "config_kwargs", None) or {})
    options: dict[str, Any] = {}
    endpoint = getattr(fs, "endpoint_url", None) or client_kwargs.get("endpoint_url")
    if endpoint:
        options["endpoint"] = endpoint
    region = client_kwargs.get("region_name") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        options["region"] = region
    if getattr(fs, "requester_pays", False):
        options["request_payer"] = True
    if client_kwargs.get("verify", True) is not True:
        raise ValueError("the obstore S3 client does not take client_kwargs['verify']; use s3_client='aiobotocore'")
    key = getattr(fs, "key", None) or client_kwargs.get("aws_access_key_id")
    secret = getattr(fs, "secret", None) or client_kwargs.get("aws_secret_access_key")
    token = getattr(fs, "token", None) or client_kwargs.get("aws_session_token")
    if getattr(fs, "anon", False):
        options["skip_signature"] = True
    elif key and secret:
        options.update(access_key_id=key, secret_access_key=secret)
        if token:
            options["session_token"] = token
    else:
        options["credential_provider"] = BotocoreCredentials(getattr(fs, "profile", None))
    timeout = float(config_kwargs.get("read_timeout", DEFAULT_TIMEOUT_SECONDS))
    connect = float(config_kwargs.get("connect_timeout", DEFAULT_TIMEOUT_SECONDS))
    options["client_options"] = {
        "allow_http": bool(endpoint) and str(endpoint).startswith("http://"),
        "connect_timeout": timedelta(seconds=connect),
        "read_timeout": timedelta(seconds=timeout),
        "timeout": REQUEST_DEADLINE,
    }
    attempts = int((config_kwargs.get("retries") or {}).get("max_attempts", DEFAULT_ATTEMPTS))
    attempts *= max(1, int(getattr(fs, "retries", 1)))  # botocore's attempts, each retried by s3fs
    options["retry_config"] = {
        "max_retries": max(0, attempts - 1),
        "retry_timeout": timedelta(seconds=3 * timeout),
        "backoff": BACKOFF,
    }
    return options


class BotocoreCredentials:
    """obstore credentials found as botocore finds them (environment, shared files and profiles, roles).

    Used when the filesystem was given no key: obstore alone would not read ``~/.aws`` profiles.
    Made on first call (in obstore's thread); refreshable credentials say when they expire.
    """

    def __init__(self, profile: str | None = None) -> None:
        self.profile = profile
        self._credentials: Any = None

    def __call__(self) -> dict[str, Any]:
        if self._credentials is None:
            import botocore.session

            credentials = botocore.session.Session(profile=self.profile).get_credentials()
            if credentials is None:
                raise PermissionError("no AWS credentials found (give key= and secret=, or anon=True)")
            self._credentials = credentials
        frozen = self._credentials.get_frozen_credentials()
        return {
            "access_key_id": frozen.access_key,
            "secret_access_key": frozen.secret_key,
            "token": frozen.token,
            "expires_at": getattr(self._credentials, "_expiry_time", None),
        }

    def __reduce__(self) -> tuple:
        return type(self), (self.profile,)


def status_of(error: BaseException) -> int | None:
    """The HTTP status an obstore error reports in its message, or None (obstore has no attribute for it)."""
    found = _STATUS.search(str(error))
    return int(found.group(1)) if found else None


def translate(error: BaseException, message: str) -> OSError:
    """An obstore error (after obstore's own retries) as the OSError of :mod:`.errors`' vocabulary.

    Not found gives ``FileNotFoundError``; denied or unauthenticated ``PermissionError``;
    throttling (``429``/``503``) ``OSError(EBUSY)`` and other server errors ``OSError(EREMOTEIO)``,
    retryable; a connection that failed or timed out ``ConnectionError`` / ``TimeoutError``,
    retryable; anything else a plain ``OSError``. Each names the object (``message``) and keeps
    obstore's first line.
    """
    exceptions = _import_obstore().exceptions
    text = f"{message}: {_first_line(error)}"
    status = status_of(error)
    if isinstance(error, FileNotFoundError) or status == 404:
        return FileNotFoundError(errno.ENOENT, text)
    if isinstance(error, (PermissionError, exceptions.PermissionDeniedError, exceptions.UnauthenticatedError)):
        return PermissionError(errno.EACCES, text)
    if status in (401, 403):
        return PermissionError(errno.EACCES, text)
    if status in _THROTTLED:
        return OSError(errno.EBUSY, text)
    if status in RETRYABLE_STATUSES:
        return OSError(getattr(errno, "EREMOTEIO", 121), text)
    if status is None and "timed out" in str(error).lower():
        return TimeoutError(errno.ETIMEDOUT, text)
    if status is None and ("error sending request" in str(error) or "connection" in str(error).lower()):
        return ConnectionError(text)
    if isinstance(error, OSError):
        return type(error)(error.errno, text) if error.errno else OSError(text)
    return OSError(text)


def _first_line(error: BaseException) -> str:
    """obstore's message without its multi-line debug dump."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
