"""The S3 source: ranged GETs with aiobotocore, through an s3fs filesystem's own client.

Every GET is conditioned on the ETag pinned at open (``If-Match``, and ``VersionId`` when the
bucket is versioned), and its answer is checked to be exactly the range asked for.
"""

from __future__ import annotations

import asyncio
from typing import Any, Mapping, Sequence

from s3fs.utils import FileExpired

from fsspec.asyn import _run_coros_in_chunks

from .base import PIN_BATCH, ObjectVersion, RangeSource
from .errors import RangeNotHonouredError, naming, object_changed


class S3Source(RangeSource):
    """Ranges of S3 objects, read with ``fs``'s client (credentials, endpoint, retry settings).

    Parameters
    ----------
    fs
        Any :class:`s3fs.S3FileSystem`. Its client is made on the first request, once per
        event loop, and a ``needs-retry`` hook on it remembers the last error botocore retried
        (:attr:`last_retried_error`).
    """

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.fs.loop

    async def info(self, path: str) -> dict:
        await self._watch_retries()
        return await self.fs._info(path, refresh=True)

    def version(self, info: dict) -> tuple[str | None, str | None]:
        return info.get("ETag") or None, info.get("VersionId") or None

    async def pin_listed(self, paths: Sequence[str], listed: Mapping[str, dict], retries: int) -> list[dict]:
        """Every object's size, ETag and VersionId, from the listing wherever that gives all three.

        S3's listing (ListObjectsV2) gives each object's size and ETag, with no VersionId; a
        version-aware filesystem lists with ListObjectVersions, whose entries carry it. Without
        VersionIds, one listed object per bucket is asked for (HEAD): if it has none, the bucket
        has never been versioned, so no object in it has one and each entry says all that a HEAD
        would. Otherwise (versioning enabled or suspended) every object of that bucket is asked
        for, as without a listing, so that reads stay pinned to the versions seen now. See
        :meth:`RangeSource.pin_listed <dask_prefetch.sources.RangeSource.pin_listed>`.
        """
        entries: dict[str, dict] = {}
        for path in paths:
            entry = listed.get(path)
            if entry is None:
                continue
            if entry.get("type") != "file":
                raise IsADirectoryError(f"{path!r} is a directory or prefix, not an object")
            if entry.get("ETag") and entry.get("size") is not None:
                entries[path] = entry
        probes: dict[str, str] = {}  # bucket -> the listed object asked for to tell whether it is versioned
        for path, entry in entries.items():
            if "VersionId" not in entry:
                probes.setdefault(self.fs.split_path(path)[0], path)
        infos = dict(zip(probes.values(), await self.pin(list(probes.values()), retries)))
        versioned = {bucket for bucket, path in probes.items() if infos[path].get("VersionId") is not None}
        for path, entry in entries.items():
            if path not in infos and ("VersionId" in entry or self.fs.split_path(path)[0] not in versioned):
                infos[path] = dict(entry)
        missing = [p for p in paths if p not in infos]
        infos.update(zip(missing, await self.pin(missing, retries)))
        return [infos[p] for p in paths]

    async def pin_reading_heads(
        self, paths: Sequence[str], heads: Sequence[int], nbytes: int, retries: int
    ) -> tuple[list[dict], dict[int, bytes]]:
        """Every object's info, and the first ``nbytes`` of the objects at ``heads``, in one round trip.

        The objects at ``heads`` are read with a ranged GET and no HEAD: its answer says all a HEAD
        would (the size in ``Content-Range``, ETag, VersionId), of the very version whose bytes it
        holds. The others are asked for (HEAD) at the same time. A GET that fails (a missing or
        empty object, a prefix, a store that ignores ``Range``) leaves its object to :meth:`pin`,
        which names the error, and its bytes to the caller. See
        :meth:`RangeSource.pin_reading_heads <dask_prefetch.sources.RangeSource.pin_reading_heads>`.
        """
        await self._watch_retries()
        wanted = sorted(set(heads))

        async def head(path: str) -> tuple[dict, bytes] | None:
            bucket, key, _ = self.fs.split_path(path)
            try:
                response = await self.fs._call_s3("get_object", Bucket=bucket, Key=key, Range=f"bytes=0-{nbytes - 1}")
            except Exception:  # noqa: BLE001 - pin() asks again, and names the error
                return None
            async with response["Body"] as body:
                data = await body.read()
            total = str(response.get("ContentRange") or "").rpartition("/")[2]
            if not total.isdigit() or len(data) != min(int(total), nbytes):
                return None  # no Content-Range (the whole object came back): pinned as any other
            info = {
                "ETag": response.get("ETag", ""),
                "LastModified": response.get("LastModified", ""),
                "size": int(total),
                "name": f"{bucket}/{key}",
                "type": "file",
                "StorageClass": response.get("StorageClass", "STANDARD"),
                "VersionId": response.get("VersionId"),
                "ContentType": response.get("ContentType"),
            }
            return info, bytes(data)

        chosen = set(wanted)
        others = [i for i in range(len(paths)) if i not in chosen]
        read, pinned = await asyncio.gather(
            _run_coros_in_chunks([head(paths[i]) for i in wanted], batch_size=PIN_BATCH),
            self.pin([paths[i] for i in others], retries),
        )
        infos: dict[int, dict] = dict(zip(others, pinned))
        found: dict[int, bytes] = {}
        for i, got in zip(wanted, read):
            if got is not None:
                infos[i], found[i] = got
        failed = [i for i in wanted if i not in infos]
        infos.update(zip(failed, await self.pin([paths[i] for i in failed], retries)))
        return [infos[i] for i in range(len(paths))], found

    async def open_range(self, shard: ObjectVersion, start: int, stop: int) -> Any:
        """Send the GET of object bytes ``start:stop`` and return its body stream, checked."""
        await self._watch_retries()
        bucket, key, _ = self.fs.split_path(shard.path)
        conditions = {}
        if shard.etag:
            conditions["IfMatch"] = shard.etag
        if shard.version_id:
            conditions["VersionId"] = shard.version_id
        try:  # a request that gets no answer ends with botocore's read_timeout (see S3PrefetchFileSystem)
            response = await self.fs._call_s3(
                "get_object", Bucket=bucket, Key=key, Range=f"bytes={start}-{stop - 1}", **conditions
            )
        except Exception as e:  # s3fs and botocore have retried already
            if object_changed(e):  # 412 to If-Match, or 416 for a range inside the pinned size
                raise FileExpired(shard.path, shard.etag) from e
            raise naming(e, f"{shard.path}: GET bytes {start}-{stop - 1} failed: {e}") from e
        body = response["Body"]
        try:
            if shard.etag and response.get("ETag") not in (None, shard.etag):
                raise FileExpired(shard.path, shard.etag)  # a server that ignores If-Match
            check_range(response, shard, start, stop)
        except BaseException:
            body.close()
            raise
        return body

    async def _watch_retries(self) -> None:
        """Hook the client (once per client) so that errors botocore retries are remembered."""
        s3 = await self.fs.set_session()
        if getattr(s3, "_dask_prefetch_watched", None) is not self:
            s3.meta.events.register("needs-retry.s3", self._note_retry)
            s3._dask_prefetch_watched = self

    def _note_retry(self, response: Any = None, caught_exception: Any = None, **kwargs: Any) -> None:
        """Remember the last error botocore saw on a request (it retries them out of our sight).

        A read that times out names it: under persistent ``503 SlowDown``, the GETs are still being
        retried inside botocore and s3fs when the read's deadline passes.
        """
        if caught_exception is not None:
            self.last_retried_error = f"{type(caught_exception).__name__}: {caught_exception}"
        elif response is not None:
            error = response[1].get("Error") if isinstance(response[1], dict) else None
            if error and error.get("Code"):
                status = getattr(response[0], "status_code", "?")
                if error["Code"] in THROTTLING_CODES or status == 503:
                    self.throttles += 1
                self.last_retried_error = f"{error['Code']} (HTTP {status}): {error.get('Message', '')}".rstrip(": ")


#: Error codes with which S3 (and S3-compatible stores) ask a client to slow down.
THROTTLING_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
                              "TooManyRequests", "RequestThrottled", "ServiceUnavailable"})


def check_range(response: dict, shard: ObjectVersion, first: int, stop: int) -> None:
    """Accept a GET's answer only if its body is exactly object bytes ``first:stop``.

    HTTP lets a server or a proxy ignore ``Range`` and send ``200`` with the whole object; a body
    taken on trust would then put the object's first bytes where bytes ``first..`` belong. So the
    answer must be ``206`` with ``Content-Range: bytes first-(stop-1)/size``, or ``200`` when the
    range asked for is the whole object, and announce exactly ``stop - first`` bytes.

    Raises
    ------
    RangeNotHonouredError
        For any other answer (the GET is made again, as for a broken body).
    s3fs.utils.FileExpired
        If the ``Content-Range`` gives the object another size than the pinned one.
    """
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    served = response.get("ContentRange")
    length = response.get("ContentLength")
    expected = f"bytes {first}-{stop - 1}/"
    if served is not None and served.startswith(expected):
        total = served[len(expected) :]
        if total not in ("*", str(shard.size)):
            raise FileExpired(shard.path, shard.etag)  # the object has another size than when pinned
        ranged = status in (None, 206)
    else:
        ranged = served is None and status == 200 and first == 0 and stop == shard.size
    if not ranged or (length is not None and int(length) != stop - first):
        raise RangeNotHonouredError(
            f"{shard.path}: asked for bytes {first}-{stop - 1}, the server answered HTTP {status} with "
            f"{f'Content-Range {served!r}' if served else 'no Content-Range'} and {length} bytes: "
            "it did not honour the Range request (a proxy or server that ignores Range?)"
        )
