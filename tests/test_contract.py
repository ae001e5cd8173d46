"""The contract suite (``dask_prefetch.testing.contract``) against every source and both filesystems.

Each store is real: moto's S3 server on loopback (through s3fs's aiobotocore client and through
obstore, and read anonymously over plain HTTP), the local disk, fsspec's memory filesystem. Objects are put and listed with the store's
own client, never through the filesystem under test.
"""

from __future__ import annotations

import importlib
import os
import sys

import fsspec
import pytest
from conftest import BUCKET

from dask_prefetch import PrefetchFileSystem, S3PrefetchFileSystem
from dask_prefetch.testing.contract import ContractStore, PrefetchFileSystemContract


def s3_snapshot(raw_fs):
    def snapshot():
        objects = sorted((i["name"], i["ETag"]) for i in raw_fs.find(BUCKET, detail=True, refresh=True).values())
        uploads = raw_fs.call_s3("list_multipart_uploads", Bucket=BUCKET).get("Uploads", [])
        return objects, sorted(u["UploadId"] for u in uploads), sorted(raw_fs.ls("", refresh=True))

    return snapshot


def local_snapshot(root: str):
    def snapshot():
        return sorted((e.path, e.stat().st_mtime_ns, e.stat().st_size) for e in os.scandir(root))

    return snapshot


class TestS3PrefetchFileSystem(PrefetchFileSystemContract):
    """Both S3 clients: s3fs's aiobotocore (the default) and obstore (the ``[obstore]`` extra)."""

    @pytest.fixture(params=["aiobotocore", "obstore"])
    def store(self, request, storage_options, raw_fs, tiers):
        if request.param == "obstore":
            pytest.importorskip("obstore")
        fs = S3PrefetchFileSystem(**storage_options, s3_client=request.param, skip_instance_cache=True)
        return ContractStore(fs, raw_fs.pipe_file, s3_snapshot(raw_fs), BUCKET, tiers(1))


class TestPrefetchOverS3(PrefetchFileSystemContract):
    @pytest.fixture
    def store(self, storage_options, raw_fs, tiers):
        fs = PrefetchFileSystem(target_protocol="s3", target_options=storage_options, skip_instance_cache=True)
        return ContractStore(fs, raw_fs.pipe_file, s3_snapshot(raw_fs), f"s3://{BUCKET}", tiers(1))


class TestPrefetchOverHTTP(PrefetchFileSystemContract):
    """Plain HTTP with Range: moto serves public-read objects to anonymous GETs and HEADs."""

    @pytest.fixture
    def store(self, s3_server, storage_options, raw_fs, tiers):
        def put(url: str, data: bytes) -> None:
            path = url.removeprefix(f"{s3_server.endpoint_url}/")
            raw_fs.pipe_file(path, data)
            raw_fs.chmod(path, "public-read")

        fs = PrefetchFileSystem(target_protocol="http", skip_instance_cache=True)
        root = f"{s3_server.endpoint_url}/{BUCKET}"
        return ContractStore(fs, put, s3_snapshot(raw_fs), root, tiers(1))


class TestPrefetchOverLocalFiles(PrefetchFileSystemContract):
    @pytest.fixture
    def store(self, tmp_path, tiers):
        root = tmp_path / "data"
        root.mkdir()

        def put(path: str, data: bytes) -> None:  # replaced as careful writers do: a new file renamed over
            with open(f"{path}.new", "wb") as f:
                f.write(data)
            os.replace(f"{path}.new", path)

        fs = PrefetchFileSystem(target_protocol="file", skip_instance_cache=True)
        return ContractStore(fs, put, local_snapshot(str(root)), str(root), tiers(1))


class TestPrefetchOverMemory(PrefetchFileSystemContract):
    @pytest.fixture
    def store(self, tmp_path, tiers):
        target = fsspec.filesystem("memory", skip_instance_cache=True)
        root = f"/contract-{tmp_path.name}"
        target.mkdir(root)

        def snapshot():
            return sorted((i["name"], i["size"], i["created"]) for i in target.find(root, detail=True).values())

        fs = PrefetchFileSystem(fs=target, skip_instance_cache=True)
        yield ContractStore(fs, target.pipe_file, snapshot, root, tiers(1))
        target.rm(root, recursive=True)


def test_chained_urls_reach_the_prefetching_filesystem(storage_options, raw_fs, tiers):
    """``prefetch::s3://...`` through fsspec.open, options keyed by protocol, as pandas and xarray pass them."""
    raw_fs.pipe_file(f"{BUCKET}/t.csv", b"a,b\n1,2\n3,4\n")
    options = {"s3": storage_options, "prefetch": {"block_size": "1 MiB", "prefetch_storage": tiers(1)}}
    with fsspec.open(f"prefetch::s3://{BUCKET}/t.csv", "rb", **options) as f:
        assert type(f).__name__ == "PrefetchFile"
        assert f.read() == b"a,b\n1,2\n3,4\n"
    fs, path = fsspec.core.url_to_fs(f"prefetch::s3://{BUCKET}/t.csv", **options)
    assert isinstance(fs, PrefetchFileSystem) and path == f"{BUCKET}/t.csv"
    assert fs.fs.config_kwargs["max_pool_connections"] == 64  # the S3 target got this package's client defaults
    pd = pytest.importorskip("pandas")
    frame = pd.read_csv(f"prefetch::s3://{BUCKET}/t.csv", storage_options=options)
    assert frame.to_dict("list") == {"a": [1, 3], "b": [2, 4]}


def test_bad_arguments_are_named(monkeypatch):
    with pytest.raises(ValueError, match="exactly one of fs= and target_protocol="):
        PrefetchFileSystem()
    with pytest.raises(ValueError, match="block_size"):
        PrefetchFileSystem(target_protocol="memory", block_size=-1)
    with pytest.raises(ValueError, match="prefetch once"):
        PrefetchFileSystem(fs=PrefetchFileSystem(target_protocol="memory"))
    monkeypatch.setitem(sys.modules, "adlfs", None)  # its import fails, as when it is not installed
    registry = importlib.import_module("fsspec.registry")
    for protocol, cls in list(registry.registry.items()):  # forget the class if an earlier test imported it
        if cls.__module__.split(".")[0] == "adlfs":
            monkeypatch.delitem(registry._registry, protocol)
    with pytest.raises(ImportError, match="adlfs"):
        PrefetchFileSystem(target_protocol="abfs")
