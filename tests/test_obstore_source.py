"""The obstore S3 source against moto's server: changed objects, missing objects, errors, settings."""

from __future__ import annotations

import pickle
import socket
import sys

import dask.config
import pytest
from conftest import BUCKET, MiB, put_shards, random_bytes
from fsspec.asyn import sync
from s3fs.utils import FileExpired

from dask_prefetch import S3PrefetchFileSystem
from dask_prefetch.sources import ObjectVersion
from dask_prefetch.sources.errors import retryable
from dask_prefetch.sources.s3 import S3Source
from dask_prefetch.testing import FaultProxy

pytest.importorskip("obstore")
from dask_prefetch.sources.obstore import ObstoreBody, ObstoreSource, store_options  # noqa: E402


@pytest.fixture
def ofs(storage_options: dict) -> S3PrefetchFileSystem:
    return S3PrefetchFileSystem(**storage_options, s3_client="obstore", skip_instance_cache=True)


def pinned(raw_fs, path: str, **changes) -> ObjectVersion:
    info = raw_fs.info(path, refresh=True)
    fields = dict(path=path, size=info["size"], etag=info["ETag"], version_id=None)
    return ObjectVersion(**{**fields, **changes})


def read_range(source: ObstoreSource, shard: ObjectVersion, start: int, stop: int) -> bytes:
    async def go() -> bytes:
        body = await source.open_range(shard, start, stop)
        assert isinstance(body, ObstoreBody)
        pieces = []
        try:
            while piece := await body.read(100_000):
                assert len(piece) <= 100_000
                pieces.append(bytes(piece))
        finally:
            body.close()
        return b"".join(pieces)

    return sync(source.loop, go)


def test_ranges_stream_in_pieces_of_at_most_n_bytes(ofs, raw_fs):
    (path,) = put_shards(raw_fs, [3 * MiB + 5])
    body = random_bytes(3 * MiB + 5)
    shard = pinned(raw_fs, path)
    assert read_range(ofs.source, shard, 0, shard.size) == body
    assert read_range(ofs.source, shard, 12345, 2 * MiB + 1) == body[12345 : 2 * MiB + 1]


def test_object_replaced_mid_read_raises_file_expired(ofs, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [MiB])
    # a window of 2 blocks of 64 KiB: most of the object is fetched after the replacement
    with ofs.open(path, block_size=64 * 1024, prefetch_storage=tiers(0.125)) as f:
        first = f.read(1000)
        raw_fs.pipe(path, b"\0" * MiB)  # same size, other bytes: only the ETag tells
        read = bytearray(first)
        with pytest.raises(OSError) as info:
            while piece := f.read(16 * 1024):
                read += piece
    assert isinstance(info.value, FileExpired) and path in str(info.value)
    assert bytes(read) == random_bytes(MiB)[: len(read)] and len(read) < MiB  # never a byte of the new version


def test_info_pinned_by_s3fs_is_honoured(ofs, raw_fs, tiers):
    """What a read_tractogram graph carries (s3fs's info, quoted ETag) pins obstore's GETs as it pins aiobotocore's."""
    (path,) = put_shards(raw_fs, [100_000])
    info = {k: v for k, v in raw_fs.info(path, refresh=True).items() if k in ("name", "size", "ETag")}
    assert ofs.source.version(sync(ofs.source.loop, ofs.source.info, path)) == (info["ETag"], None)
    with ofs.open(path, prefetch_storage=tiers(1), pinned=[info]) as f:
        assert f.read() == raw_fs.cat(path)
    raw_fs.pipe(path, b"x" * 100_000)  # same size, new content: only the pinned ETag can tell
    with pytest.raises(FileExpired, match=path), ofs.open(path, prefetch_storage=tiers(1), pinned=[info]) as f:
        f.read()


def test_a_get_of_another_version_or_size_is_refused(ofs, raw_fs):
    """412 to If-Match; a range past the end of a shorter object (416); a short range when it shrank."""
    (path,) = put_shards(raw_fs, [100_000])
    source = ofs.source
    with pytest.raises(FileExpired, match=path):
        read_range(source, pinned(raw_fs, path, etag='"0123456789abcdef0123456789abcdef"'), 0, 1000)
    longer = pinned(raw_fs, path, size=300_000)  # the same ETag: only the size says it is not what was pinned
    with pytest.raises(FileExpired, match=path):
        read_range(source, longer, 200_000, 250_000)  # past the end: 416
    with pytest.raises(FileExpired, match=path):
        read_range(source, longer, 90_000, 150_000)  # obstore would serve 90000-99999
    with pytest.raises(FileExpired, match=path):
        read_range(source, longer, 0, 1000)  # the whole range is there, but the object's size is not the pinned one


def test_a_missing_object_is_named(ofs, raw_fs, tiers):
    paths = put_shards(raw_fs, [10])
    with pytest.raises(FileNotFoundError, match=f"{BUCKET}/no-such-object"):
        ofs.open(f"{BUCKET}/no-such-object", prefetch_storage=tiers(1))
    with pytest.raises(FileNotFoundError, match=f"{BUCKET}/missing-shard"):
        ofs.open([*paths, f"{BUCKET}/missing-shard"], prefetch_storage=tiers(1))
    with pytest.raises(FileNotFoundError, match="no-such-bucket/key"):
        ofs.open("no-such-bucket/key", prefetch_storage=tiers(1))
    gone = pinned(raw_fs, paths[0])
    raw_fs.rm(paths[0])
    with pytest.raises(FileNotFoundError, match=f"{paths[0]}: GET bytes 0-9 failed"):
        read_range(ofs.source, gone, 0, 10)


def test_a_prefix_is_not_a_file(ofs, raw_fs, tiers):
    raw_fs.pipe(f"{BUCKET}/dir/a", b"x")
    with pytest.raises(IsADirectoryError, match=f"{BUCKET}/dir"):
        ofs.open(f"{BUCKET}/dir", prefetch_storage=tiers(1))


def test_a_server_that_ignores_range_is_asked_again(s3_server, storage_options, raw_fs, tiers):
    """A 200 with the whole object to a ranged GET is asked again, never written; one asked whole is accepted."""
    paths = put_shards(raw_fs, [2 * MiB, MiB + 12345])
    small = dict(block_size=256 * 1024, part_size=64 * 1024, prefetch_storage=tiers(1))
    with FaultProxy(s3_server.endpoint_url, {"norange": 0.3}, seed=1) as proxy:
        fs = S3PrefetchFileSystem(**{**storage_options, "endpoint_url": proxy.endpoint_url}, s3_client="obstore",
                                  skip_instance_cache=True)
        settings = {"dask-prefetch.straggler-factor": 0, "dask-prefetch.retries": 10}  # 0.3 ** 10: never 10 in a row
        with dask.config.set(settings), fs.open(paths, header_bytes=1000, **small) as f:
            data = f.read()
            resumed = f.engine.stats.gets_resumed
        injected = proxy.counts()["norange"]
    assert data == raw_fs.cat(paths[0]) + raw_fs.cat(paths[1])[1000:]
    assert injected >= 3 and resumed == injected  # each answered again
    with FaultProxy(s3_server.endpoint_url, {"norange": 1.0}) as proxy:
        fs = S3PrefetchFileSystem(**{**storage_options, "endpoint_url": proxy.endpoint_url}, s3_client="obstore",
                                  skip_instance_cache=True)
        with dask.config.set({"dask-prefetch.retries": 2}), fs.open(paths[0], **small) as f:
            with pytest.raises(OSError, match=r"failed 2 times; last error: .*did not honour the Range request"):
                f.read()
        (whole,) = put_shards(raw_fs, [50_000], prefix="whole")  # one part: bytes 0-49999 of 50000
        with fs.open(whole, **small) as f:
            assert f.read() == raw_fs.cat(whole) and f.engine.stats.gets_resumed == 0


def test_a_server_that_is_gone_gives_a_retryable_error_naming_the_object(storage_options):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fs = S3PrefetchFileSystem(
        **{**storage_options, "endpoint_url": f"http://127.0.0.1:{port}"},
        s3_client="obstore",
        config_kwargs={"retries": {"max_attempts": 1}, "connect_timeout": 2},
        skip_instance_cache=True,
    )
    fs.retries = 1  # s3fs's retries on top of botocore's attempts: none, to see the raw fault
    shard = ObjectVersion(f"{BUCKET}/obj", 10, '"x"', None)
    with pytest.raises(OSError, match=f"{BUCKET}/obj: GET bytes 0-9 failed") as info:
        read_range(fs.source, shard, 0, 10)
    assert retryable(info.value) and not isinstance(info.value, FileNotFoundError)
    with pytest.raises(OSError, match=f"{BUCKET}/obj: request for its size and version failed") as info:
        sync(fs.source.loop, fs.source.info, f"{BUCKET}/obj")
    assert retryable(info.value)


def test_store_options_follow_the_filesystem(storage_options):
    options = store_options(S3PrefetchFileSystem(**storage_options, skip_instance_cache=True))
    assert options["endpoint"] == storage_options["endpoint_url"] and options["client_options"]["allow_http"]
    assert (options["access_key_id"], options["secret_access_key"]) == ("testing", "testing")
    assert options["retry_config"]["max_retries"] == 24  # botocore's 5 attempts, each retried 5 times by s3fs
    anon = store_options(S3PrefetchFileSystem(anon=True, skip_instance_cache=True))
    assert anon["skip_signature"] and "endpoint" not in anon and not anon["client_options"]["allow_http"]
    keyless = store_options(S3PrefetchFileSystem(endpoint_url="https://s3.example.org", skip_instance_cache=True))
    assert callable(keyless["credential_provider"]) and not keyless["client_options"]["allow_http"]
    pickle.loads(pickle.dumps(keyless["credential_provider"]))


def test_the_client_is_chosen_by_argument_or_setting_and_survives_pickling(storage_options):
    assert type(S3PrefetchFileSystem(**storage_options, skip_instance_cache=True).source) is S3Source
    with dask.config.set({"dask-prefetch.s3-client": "obstore"}):
        fs = S3PrefetchFileSystem(**storage_options, skip_instance_cache=True)
        assert type(fs.source) is ObstoreSource
        explicit = S3PrefetchFileSystem(**storage_options, s3_client="aiobotocore", skip_instance_cache=True)
        assert type(explicit.source) is S3Source
    chosen = S3PrefetchFileSystem(**storage_options, s3_client="obstore", skip_instance_cache=True)
    assert type(pickle.loads(pickle.dumps(chosen)).source) is ObstoreSource  # on a worker too
    with pytest.raises(ValueError, match="s3_client must be one of 'aiobotocore', 'obstore', got 'boto3'"):
        S3PrefetchFileSystem(**storage_options, s3_client="boto3", skip_instance_cache=True)
    with dask.config.set({"dask-prefetch.s3-client": "rust"}):
        with pytest.raises(ValueError, match="dask-prefetch.s3-client"):
            S3PrefetchFileSystem(**storage_options, skip_instance_cache=True)


def test_without_obstore_the_error_says_what_to_install(storage_options, monkeypatch):
    monkeypatch.setitem(sys.modules, "obstore", None)  # what an environment without it imports
    with pytest.raises(ImportError, match=r"pip install 'dask-prefetch\[obstore\]'"):
        S3PrefetchFileSystem(**storage_options, s3_client="obstore", skip_instance_cache=True)



def test_the_prefetch_protocol_over_s3_follows_the_s3_client_setting(storage_options, raw_fs):
    import dask
    import fsspec

    from dask_prefetch.sources.obstore import ObstoreSource

    raw_fs.pipe(f"{BUCKET}/k", b"payload")
    with dask.config.set({"dask-prefetch.s3-client": "obstore"}):
        fs = fsspec.filesystem("prefetch", target_protocol="s3", target_options=storage_options, skip_instance_cache=True)
        assert isinstance(fs.source, ObstoreSource)
        with fs.open(f"{BUCKET}/k") as f:
            assert f.read() == b"payload"
