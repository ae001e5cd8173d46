"""Read-only by construction: every method outside the reading allow-list refuses, and the store is unchanged.

The walk over ``dir()`` is what keeps a method a future s3fs adds from slipping through: it is
refused until it is read and put on the allow-list.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import urllib.request

import dask.config
import fsspec
import pytest
import s3fs
from conftest import BUCKET, put_shards

from dask_prefetch import S3PrefetchFileSystem
from dask_prefetch.fs.readonly import READING_METHODS
from dask_prefetch.testing import FaultProxy

OWN_READING = {"_pin_objects", "_open_prefetching", "_range_source", "_object_path"}  # our own


def snapshot(raw_fs) -> tuple:
    """Everything a write could change: the objects with their ETags, and the multipart uploads."""
    objects = sorted((i["name"], i["ETag"]) for i in raw_fs.find(BUCKET, detail=True, refresh=True).values())
    uploads = raw_fs.call_s3("list_multipart_uploads", Bucket=BUCKET).get("Uploads", [])
    return objects, sorted(u["UploadId"] for u in uploads), sorted(raw_fs.ls("", refresh=True))


def methods_outside_the_allow_list(obj) -> list[str]:
    names = []
    for name in dir(obj):
        if name.startswith("__") or name in READING_METHODS or name in OWN_READING:
            continue
        if isinstance(inspect.getattr_static(type(obj), name, None), property):
            continue
        if callable(getattr(obj, name)) and not inspect.isclass(getattr(obj, name)):
            names.append(name)
    return names


@pytest.mark.parametrize("layer", ["S3PrefetchFileSystem", "the s3fs it holds", "prefetch::s3's s3fs"])
def test_every_method_outside_the_allow_list_refuses_and_the_store_is_unchanged(fs, raw_fs, storage_options, layer):
    """On the filesystem and on the s3fs it reads through (``fs.fs``, also the one a chained URL makes):
    reaching through cannot write either."""
    chained = fsspec.filesystem("prefetch", target_protocol="s3", target_options=storage_options,
                                skip_instance_cache=True)  # fmt: skip
    target = {"S3PrefetchFileSystem": fs, "the s3fs it holds": fs.fs, "prefetch::s3's s3fs": chained.fs}[layer]
    (path,) = put_shards(raw_fs, [1000])
    upload = raw_fs.call_s3("create_multipart_upload", Bucket=BUCKET, Key="pending")  # another writer's
    before = snapshot(raw_fs)
    names = methods_outside_the_allow_list(target)
    assert {"_copy_managed", "clear_multipart_uploads", "_abort_mpu", "pipe", "rm", "put_tags"} <= set(names)
    assert len(names) >= 50
    for name in names:
        method = getattr(target, name)
        args = (path, f"{BUCKET}/copy")
        with pytest.raises(PermissionError, match=r"read-only: .*\(\) is not allowed"):
            result = method(*args)
            if inspect.isawaitable(result):
                asyncio.run_coroutine_threadsafe(result, fs.loop).result(10)
    assert snapshot(raw_fs) == before
    assert upload["UploadId"] in snapshot(raw_fs)[1]


def test_the_allow_list_names_only_methods_that_exist():
    """A stale entry would let a future method of that name through unread."""
    known = set(dir(S3PrefetchFileSystem))
    assert sorted(READING_METHODS - known) == []


def test_the_filesystem_answers_every_method_of_s3fs():
    """Composed, not inherited: yet every s3fs method is there, read (forwarded) or refused -- none is missing."""
    kinds = (staticmethod, classmethod)
    attributes = {n: inspect.getattr_static(s3fs.S3FileSystem, n) for n in dir(s3fs.S3FileSystem) if n[:2] != "__"}
    methods = {n for n, a in attributes.items() if inspect.isfunction(a) or isinstance(a, kinds)}
    assert len(methods) > 150
    missing = methods - set(dir(S3PrefetchFileSystem))
    assert sorted(missing) == []
    assert not issubclass(S3PrefetchFileSystem, s3fs.S3FileSystem)


@pytest.mark.parametrize("layer", ["S3PrefetchFileSystem", "the s3fs it holds"])
def test_call_s3_sends_only_read_operations(fs, raw_fs, layer):
    fs = fs if layer == "S3PrefetchFileSystem" else fs.fs
    (path,) = put_shards(raw_fs, [1000])
    before = snapshot(raw_fs)
    assert fs.call_s3("head_object", Bucket=BUCKET, Key=path.split("/", 1)[1])["ContentLength"] == 1000
    for operation, kwargs in [
        ("put_object", dict(Bucket=BUCKET, Key="new", Body=b"x")),
        ("delete_object", dict(Bucket=BUCKET, Key=path.split("/", 1)[1])),
        ("copy_object", dict(Bucket=BUCKET, Key="copy", CopySource=path)),
        ("create_multipart_upload", dict(Bucket=BUCKET, Key="mpu")),
        ("put_object_tagging", dict(Bucket=BUCKET, Key="x", Tagging={"TagSet": []})),
    ]:
        with pytest.raises(PermissionError, match=f"call_s3\\('{operation}'\\) is not allowed"):
            fs.call_s3(operation, **kwargs)
        with pytest.raises(PermissionError):
            asyncio.run_coroutine_threadsafe(fs._call_s3(operation, **kwargs), fs.loop).result(10)
    assert snapshot(raw_fs) == before


def test_url_signs_only_reads(fs, raw_fs):
    (path,) = put_shards(raw_fs, [1000])
    with urllib.request.urlopen(fs.url(path), timeout=10) as response:
        assert response.read() == raw_fs.cat(path)
    for method in ("put_object", "delete_object"):
        with pytest.raises(PermissionError, match="url"):
            fs.url(path, client_method=method)
        with pytest.raises(PermissionError, match="url"):
            fs.sign(path, client_method=method)


def test_open_async_refuses_writing_modes(fs, raw_fs):
    (path,) = put_shards(raw_fs, [1000])

    async def read_and_try_writing():
        f = await fs.open_async(path, "rb")
        data = await f.read()
        await f.close()
        with pytest.raises(PermissionError, match="read-only"):
            await fs.open_async(f"{BUCKET}/new", "wb")
        return data

    assert asyncio.run_coroutine_threadsafe(read_and_try_writing(), fs.loop).result(10) == raw_fs.cat(path)
    assert not raw_fs.exists(f"{BUCKET}/new")


def test_the_s3fs_it_holds_opens_for_reading_only(fs, raw_fs):
    """``fs.fs.open`` is s3fs's own (unprefetched) file: it reads, and refuses every writing mode."""
    (path,) = put_shards(raw_fs, [1000])
    with fs.fs.open(path, "rb") as f:
        assert f.read() == raw_fs.cat(path)
    before = snapshot(raw_fs)
    for mode in ("wb", "ab", "w", "r+b", "xb"):
        with pytest.raises(PermissionError, match="read-only"):
            fs.fs.open(f"{BUCKET}/new", mode)
    assert snapshot(raw_fs) == before


def test_another_store_s_url_is_named(fs):
    with pytest.raises(ValueError, match=r"reads s3:// paths .* got 'memory://b/x.trk'"):
        fs.open("memory://b/x.trk")


def test_pinning_an_object_survives_bursts_of_503_and_names_the_object(s3_server, storage_options, raw_fs, tiers):
    """HEADs answered 503 (no SlowDown body: s3fs does not retry them) are retried like ranged GETs."""
    (path,) = put_shards(raw_fs, [1000])
    once = {"config_kwargs": {"retries": {"total_max_attempts": 1}}}  # botocore asks once: each 503 reaches us
    with FaultProxy(s3_server.endpoint_url, {"slowdown": 1.0}, heads=True) as proxy:
        fs = S3PrefetchFileSystem(**{**storage_options, "endpoint_url": proxy.endpoint_url}, skip_instance_cache=True, **once)
        started = time.monotonic()
        with dask.config.set({"dask-prefetch.retries": 3}), pytest.raises(OSError, match=f"{path}: request for its size") as info:
            fs.open(path, prefetch_storage=tiers(1))
        assert not isinstance(info.value, FileNotFoundError)
        assert proxy.counts()["method:HEAD"] == 3
        assert time.monotonic() - started < 10
        proxy.set_rates(slowdown=0.5)
        with dask.config.set({"dask-prefetch.retries": 20}), fs.open(path, prefetch_storage=tiers(1)) as f:
            assert f.read() == raw_fs.cat(path)
        assert proxy.counts()["slowdown"] >= 4
