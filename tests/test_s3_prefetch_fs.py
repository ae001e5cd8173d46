"""``S3PrefetchFileSystem`` as the S3 case of ``PrefetchFileSystem``: one read-only s3fs held, s3fs's constructor kept."""

from __future__ import annotations

import asyncio
import pickle

import fsspec
import pytest
import s3fs
from fsspec.asyn import sync
from conftest import BUCKET, put_shards

from dask_prefetch import PrefetchFileSystem, S3PrefetchFileSystem
from dask_prefetch.fs.s3target import ReadOnlyS3FileSystem
from dask_prefetch.sources import source_for
from dask_prefetch.sources.s3 import S3Source


def test_it_is_a_prefetch_filesystem_over_one_read_only_s3fs(storage_options):
    fs = S3PrefetchFileSystem(**storage_options, skip_instance_cache=True)
    assert isinstance(fs, PrefetchFileSystem) and not isinstance(fs, s3fs.S3FileSystem)
    assert type(fs.fs) is ReadOnlyS3FileSystem and isinstance(fs.fs, s3fs.S3FileSystem)
    assert fs.protocol == ("s3", "s3a") and repr(fs) == "<S3PrefetchFileSystem over ReadOnlyS3FileSystem>"
    assert fs.endpoint_url == fs.fs.endpoint_url == storage_options["endpoint_url"]  # s3fs's settings, read
    assert (fs.key, fs.anon, fs.config_kwargs) == (storage_options["key"], False, fs.fs.config_kwargs)
    with pytest.raises(AttributeError):
        fs.endpoint_url = "http://elsewhere"  # not set: the client is made from the s3fs's own
    assert (fs.fs.default_cache_type, fs.fs.default_fill_cache) == ("none", False)  # s3fs's read cache off
    assert fs.fs.config_kwargs["max_pool_connections"] == 64
    with pytest.raises(ValueError, match="prefetch once"):
        PrefetchFileSystem(fs=fs)


def test_ranged_gets_go_through_an_s3_source_on_the_s3fs_it_holds(storage_options):
    """The engine's path is the one of the s3fs subclass it was: S3Source -> s3fs's _call_s3('get_object')."""
    fs = S3PrefetchFileSystem(**storage_options, skip_instance_cache=True)
    assert type(fs.source) is S3Source and fs.source.fs is fs.fs
    assert source_for(fs) is fs.source  # an engine given the filesystem reads through the same source
    fs.retries = 2
    assert fs.retries == fs.fs.retries == 2  # s3fs's retries on top of botocore's, as on s3fs


def test_instances_are_cached_as_fsspec_caches_them(storage_options):
    one = S3PrefetchFileSystem(**storage_options)
    assert S3PrefetchFileSystem(**storage_options) is one and S3PrefetchFileSystem(**storage_options).fs is one.fs
    fresh = S3PrefetchFileSystem(**storage_options, skip_instance_cache=True)
    assert fresh is not one and fresh.fs is not one.fs  # each filesystem its own s3fs: own client, own listings
    assert fresh.fs not in ReadOnlyS3FileSystem._cache.values()
    assert S3PrefetchFileSystem(**storage_options, s3_client="aiobotocore") is not one  # other arguments


def test_fsspec_configuration_for_s3_applies(storage_options, raw_fs, monkeypatch):
    (path,) = put_shards(raw_fs, [1000])
    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": storage_options["endpoint_url"]})
    options = {k: v for k, v in storage_options.items() if k != "endpoint_url"}
    fs = S3PrefetchFileSystem(**options, skip_instance_cache=True)
    assert fs.fs.endpoint_url == storage_options["endpoint_url"]
    assert fs.cat_file(path) == raw_fs.cat_file(path)


def test_listing_and_reading_methods_are_s3fs_s(fs, raw_fs):
    paths = put_shards(raw_fs, [1000, 2000], prefix="d/x")
    assert fs.ls(f"s3://{BUCKET}/d") == raw_fs.ls(f"{BUCKET}/d") == paths
    assert fs.find(BUCKET) == raw_fs.find(BUCKET)
    assert fs.glob(f"s3://{BUCKET}/d/x*") == paths
    detail = fs.glob(f"{BUCKET}/d/x*", detail=True)
    assert detail[paths[0]]["ETag"] == raw_fs.info(paths[0])["ETag"] and detail[paths[1]]["size"] == 2000
    assert fs.info(paths[0])["size"] == 1000 and fs.exists(paths[1]) and not fs.exists(f"{BUCKET}/nope")
    assert fs.isdir(f"{BUCKET}/d") and fs.isfile(paths[0]) and fs.sizes(paths) == [1000, 2000]
    assert fs.cat(paths) == raw_fs.cat(paths)
    assert fs.cat_file(paths[1], start=10, end=20) == raw_fs.cat_file(paths[1])[10:20]
    assert fs.cat_ranges(paths, [0, 5], [3, 9]) == [raw_fs.cat(paths[0])[:3], raw_fs.cat(paths[1])[5:9]]
    assert fs.split_path(f"s3://{BUCKET}/d/x000") == (BUCKET, "d/x000", None)
    assert fs.head(paths[0], 10) == raw_fs.cat(paths[0])[:10]  # fsspec's generic head, over the prefetching open


    async def both():  # the async twins, on s3fs's loop, as the graph builder awaits them
        return await asyncio.gather(fs._cat_file(paths[0], start=0, end=4), fs._info(paths[1]))

    head, info = sync(fs.loop, both)
    assert head == raw_fs.cat(paths[0])[:4] and info["size"] == 2000


def test_pickling_keeps_the_constructor_s_arguments(storage_options, raw_fs):
    (path,) = put_shards(raw_fs, [1000])
    fs = S3PrefetchFileSystem(**storage_options, s3_client="aiobotocore", skip_instance_cache=True)
    copy = pickle.loads(pickle.dumps(fs))
    assert type(copy) is S3PrefetchFileSystem and copy.storage_options == fs.storage_options
    assert copy.fs.endpoint_url == storage_options["endpoint_url"] and copy.cat_file(path) == raw_fs.cat_file(path)


def test_prefetch_filesystem_takes_the_s3_client_too(storage_options):
    pytest.importorskip("obstore")
    from dask_prefetch.sources.obstore import ObstoreSource

    fs = PrefetchFileSystem(target_protocol="s3", target_options=storage_options, s3_client="obstore",
                            skip_instance_cache=True)
    assert type(fs.source) is ObstoreSource
    with pytest.raises(ValueError, match="s3_client must be one of"):
        PrefetchFileSystem(target_protocol="memory", s3_client="boto3", skip_instance_cache=True)
