"""Bad input and failing S3 give clear exceptions naming the path, never hangs or wrong bytes."""

from __future__ import annotations

import math
import time

import pytest
import s3fs
from conftest import BUCKET, MiB, put_shards, scratch_dirs
from s3fs.utils import FileExpired

from dask_prefetch import S3PrefetchFileSystem
from dask_prefetch.testing import LocalS3Server, WanProxy


def test_missing_object(fs, raw_fs, tiers):
    paths = put_shards(raw_fs, [10])
    with pytest.raises(FileNotFoundError, match=f"{BUCKET}/nope"):
        fs.open(f"{BUCKET}/nope", prefetch_storage=tiers(1))
    with pytest.raises(FileNotFoundError, match=f"{BUCKET}/missing-shard"):
        fs.open([*paths, f"{BUCKET}/missing-shard"], prefetch_storage=tiers(1))


def test_a_missing_bucket_is_named_as_a_bucket(fs, raw_fs, tiers):
    raw_fs.pipe(f"{BUCKET}/k", b"x")
    with pytest.raises(FileNotFoundError, match=r"^No such bucket: 'no-such-bucket' \(asked for the object 'no-such-bucket/k'\)$"):
        fs.open("no-such-bucket/k", prefetch_storage=tiers(1))
    with pytest.raises(FileNotFoundError, match=r"No such bucket: 'no-such-bucket'"):
        fs.open([f"{BUCKET}/k", "no-such-bucket/k"], prefetch_storage=tiers(1))
    with pytest.raises(FileNotFoundError, match=rf"^No such object: '{BUCKET}/nokey'$"):  # the path said once
        fs.open(f"{BUCKET}/nokey", prefetch_storage=tiers(1))


def test_a_prefix_is_not_a_file(fs, raw_fs, tiers):
    raw_fs.pipe(f"{BUCKET}/dir/a", b"x")
    with pytest.raises(IsADirectoryError, match=f"{BUCKET}/dir"):
        fs.open(f"{BUCKET}/dir", prefetch_storage=tiers(1))


def test_empty_list(fs):
    with pytest.raises(ValueError, match="at least one path"):
        fs.open([])


def test_header_larger_than_a_shard(fs, raw_fs, tiers):
    paths = put_shards(raw_fs, [1000, 5000, 999])
    with pytest.raises(ValueError, match=f"larger than shard '{paths[2]}'"):
        fs.open(paths, header_bytes=1000, prefetch_storage=tiers(1))


def test_block_larger_than_every_tier(fs, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [3 * MiB])
    with pytest.raises(ValueError, match=f"{path}: blocks of 3.0 MiB .* do not fit in any prefetch_storage tier"):
        fs.open(path, block_size=3 * MiB, prefetch_storage=tiers(1, 2))


def test_unusable_tier_directory(fs, raw_fs, tmp_path):
    (path,) = put_shards(raw_fs, [10])
    with pytest.raises(OSError, match="does-not-exist"):
        fs.open(path, prefetch_storage=[(str(tmp_path / "does-not-exist"), 10)])
    with pytest.raises(ValueError, match="budget"):
        fs.open(path, prefetch_storage=[(str(tmp_path), -1)])


@pytest.mark.parametrize("mode", ["wb", "ab", "xb", "r+b", "w"])
def test_writing_modes_are_refused(fs, mode):
    with pytest.raises(PermissionError, match="read-only"):
        fs.open(f"{BUCKET}/new", mode=mode)


def test_mutating_methods_are_refused(fs, raw_fs):
    (path,) = put_shards(raw_fs, [10])
    attempts = [
        lambda: fs.pipe(f"{BUCKET}/x", b"data"),
        lambda: fs.rm(path),
        lambda: fs.rm_file(path),
        lambda: fs.touch(f"{BUCKET}/y"),
        lambda: fs.mkdir("another-bucket"),
        lambda: fs.copy(path, f"{BUCKET}/copy"),
        lambda: fs.mv(path, f"{BUCKET}/moved"),
        lambda: fs.put(__file__, f"{BUCKET}/put"),
        lambda: fs.setxattr(path, a="b"),
    ]
    for attempt in attempts:
        with pytest.raises(PermissionError, match="read-only"):
            attempt()
    assert raw_fs.ls(BUCKET, refresh=True) == [path]


def test_object_replaced_mid_read_raises_file_expired(fs, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [MiB])
    # a window of 2 blocks of 64 KiB: most of the object is fetched after the replacement
    with fs.open(path, block_size=64 * 1024, prefetch_storage=tiers(0.125)) as f:
        first = f.read(1000)
        raw_fs.pipe(path, b"\0" * MiB)
        with pytest.raises(OSError) as info:
            f.read()
    assert isinstance(info.value, FileExpired) and path in str(info.value)
    assert first == put_shards.__globals__["random_bytes"](MiB)[:1000]


@pytest.fixture
def own_server():
    """A server of this test's own, so it can be stopped mid-read."""
    with LocalS3Server() as server:
        yield server


def test_persistent_s3_failure_raises_after_retries(own_server, tiers):
    options = own_server.storage_options()
    raw = s3fs.S3FileSystem(**options, skip_instance_cache=True)
    raw.mkdir(BUCKET)
    raw.pipe_file(f"{BUCKET}/obj", b"x" * MiB)
    fs = S3PrefetchFileSystem(**options, skip_instance_cache=True, config_kwargs={"retries": {"max_attempts": 2}})
    fs.retries = 2
    f = fs.open(f"{BUCKET}/obj", block_size=64 * 1024, prefetch_storage=tiers(0.125), read_timeout=60)
    try:
        assert f.read(10) == b"x" * 10
        own_server.stop()  # S3 goes away for good
        started = time.monotonic()
        with pytest.raises(OSError, match=f"{BUCKET}/obj: GET bytes"):
            f.read()
        assert time.monotonic() - started < 30  # retried, then raised: never a hang
    finally:
        f.close()


def test_a_stalled_read_times_out_and_close_is_prompt(s3_server, storage_options, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [MiB])
    storage = tiers(1)
    with WanProxy(s3_server.endpoint_url, latency=2.0, bandwidth=math.inf) as proxy:
        slow = S3PrefetchFileSystem(**{**storage_options, "endpoint_url": proxy.endpoint_url}, skip_instance_cache=True)
        f = slow.open(path, block_size=64 * 1024, prefetch_storage=storage, read_timeout=0.5)  # HEAD: 2 s
        try:
            assert len(scratch_dirs(storage[0][0])) == 1
            with pytest.raises(TimeoutError, match=f"{path}: no data .* within 0.5 s"):
                f.read(10)
            assert f.tell() == 0
        finally:
            started = time.monotonic()
            f.close()  # every GET is still waiting for its first byte
            assert time.monotonic() - started < 1.0
    assert scratch_dirs(storage[0][0]) == []


def test_pinned_info_is_used_instead_of_a_head_request_and_checked(fs, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [100_000])
    info = {k: v for k, v in raw_fs.info(path, refresh=True).items() if k in ("name", "size", "ETag")}
    with fs.open(path, prefetch_storage=tiers(1), pinned=[info]) as f:
        assert f.read() == raw_fs.cat(path)
    raw_fs.pipe(path, b"x" * 100_000)  # same size, new content: only the pinned ETag can tell
    with pytest.raises(FileExpired), fs.open(path, prefetch_storage=tiers(1), pinned=[info]) as f:
        f.read()
    with pytest.raises(ValueError, match="does not describe"):
        fs.open(path, prefetch_storage=tiers(1), pinned=[{**info, "name": "other/key"}])
    with pytest.raises(ValueError, match="1 entries for 2 paths"):
        fs.open([path, path], prefetch_storage=tiers(1), pinned=[info])


def test_an_object_shorter_than_pinned_says_it_changed(fs, raw_fs, tiers):
    """416 to a range inside the pinned size (what s3rver answers to If-Match when the object shrank), and a
    Content-Range giving another size, both mean the object changed: FileExpired, as for a 412."""
    (path,) = put_shards(raw_fs, [100_000])
    info = {k: v for k, v in raw_fs.info(path, refresh=True).items() if k in ("name", "size", "ETag")}
    longer = {**info, "size": 300_000}  # the same ETag: only the size says the object is not what was pinned
    small = dict(block_size=64 * 1024, prefetch_storage=tiers(1), pinned=[longer])
    with fs.open(path, offset=200_000, **small) as f, pytest.raises(FileExpired, match=path):
        f.read()  # bytes 200000.. are past the end: 416
    with fs.open(path, **small) as f, pytest.raises(FileExpired, match=path):
        f.read()  # bytes 0-65535 arrive with Content-Range .../100000
