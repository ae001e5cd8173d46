"""Byte-exact reads through a real S3 server: single objects, shards with headers, seeks, nibabel."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import BUCKET, MiB, logical_bytes, put_shards, random_bytes, scratch_dirs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dask_prefetch import PrefetchFile, S3PrefetchFileSystem
from dask_prefetch.testing import WanProxy

SMALL = dict(block_size=64 * 1024, part_size=16 * 1024)


def same(got: bytes, want: bytes) -> bool:
    """Equal bytes; else an assertion naming the first differing offset (pytest's diff of MBs is slow)."""
    if got == want:
        return True
    first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    raise AssertionError(f"{len(got)} bytes read, {len(want)} expected; first difference at offset {first}")


def test_read_whole_object(fs, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [1_000_003])
    with fs.open(f"s3://{path}", prefetch_storage=tiers(1), **SMALL) as f:
        assert isinstance(f, PrefetchFile) and f.size == 1_000_003
        assert f.readable() and f.seekable() and f.mode == "rb"
        assert f.read() == raw_fs.cat(path)
        assert f.read() == b"" and f.read(10) == b"" and f.tell() == 1_000_003


@pytest.mark.parametrize(
    "sizes, header",
    [
        ([1000, 300_000, 250_001, 1000, 123_456], 1000),  # global header, shards, an empty body
        ([70_000, 70_000, 70_000], 0),  # plain concatenation
        ([5], 0),  # tiny
        ([1000, 1000], 1000),  # header only
    ],
)
def test_shards_with_headers_read_as_one_file(fs, raw_fs, tiers, sizes, header):
    paths = put_shards(raw_fs, sizes)
    expected = logical_bytes(raw_fs, paths, header)
    with fs.open(paths, header_bytes=header, prefetch_storage=tiers(0.25, 0.25), **SMALL) as f:
        assert f.size == len(expected)
        chunks = []
        while chunk := f.read(50_001):
            chunks.append(chunk)
        assert b"".join(chunks) == expected


class Sharded(tuple):
    def __repr__(self) -> str:  # keep hypothesis reports short
        return f"<{len(self[0])} shards, {len(self[1])} bytes>"


@pytest.fixture
def sharded(raw_fs):
    paths = put_shards(raw_fs, [1000, 200_000, 150_000, 333_333], prefix="rand")
    return Sharded((paths, logical_bytes(raw_fs, paths, 1000)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["read", "readinto", "seek_set", "seek_cur", "seek_end", "read_all"]),
            st.integers(-700_000, 700_000),
        ),
        max_size=25,
    ),
    block=st.sampled_from([4096, 50_000, 65_536, 1 << 20]),
)
def test_random_reads_and_seeks_match_the_bytes(fs, tiers, sharded, ops, block):
    paths, expected = sharded
    budget = max(0.25, 3 * block / MiB)  # a small window, so seeks hit evicted blocks
    with fs.open(paths, header_bytes=1000, block_size=block, part_size=16_384, prefetch_storage=tiers(budget)) as f:
        pos = 0
        for op, n in ops:
            if op == "read":
                data = f.read(abs(n))
                assert same(data, expected[pos : pos + abs(n)])
                pos += len(data)
            elif op == "readinto":
                buf = bytearray(abs(n))
                got = f.readinto(buf)
                assert same(bytes(buf[:got]), expected[pos : pos + abs(n)])
                assert got == min(abs(n), max(0, len(expected) - pos))
                pos += got
            elif op == "read_all":
                assert same(f.read(), expected[pos:])
                pos = max(pos, len(expected))
            else:
                whence = {"seek_set": 0, "seek_cur": 1, "seek_end": 2}[op]
                n = abs(n) if whence == 0 else n
                target = [n, pos + n, len(expected) + n][whence]
                if target < 0:
                    with pytest.raises(OSError, match="negative"):
                        f.seek(n, whence)
                else:
                    assert f.seek(n, whence) == target
                    pos = target
            assert f.tell() == pos


def test_seek_back_into_an_evicted_block_refetches_it(fs, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [1 << 20])
    expected = raw_fs.cat(path)
    with fs.open(path, prefetch_storage=tiers(0.25), **SMALL) as f:
        f.seek(900_000)
        assert f.read(1000) == expected[900_000:901_000]
        f.seek(10)
        assert f.read(100_000) == expected[10:100_010]
        assert f.stats.blocks_refetched >= 1


def test_readinto_fills_fully_until_eof(fs, raw_fs, tiers):
    (path,) = put_shards(raw_fs, [300_000])
    with fs.open(path, prefetch_storage=tiers(1), **SMALL) as f:
        buf = bytearray(200_000)
        assert f.readinto(buf) == 200_000  # across several blocks, never short before EOF
        assert f.readinto(buf) == 100_000
        assert f.readinto(buf) == 0
        arr = np.empty(10, dtype=np.uint8)
        f.seek(0)
        assert f.readinto(arr) == 10 and arr.tobytes() == raw_fs.cat(path)[:10]


def test_text_mode_and_readline(fs, raw_fs, tiers):
    raw_fs.pipe(f"{BUCKET}/lines.txt", b"alpha\nbeta\ngamma\n" * 1000)
    with fs.open(f"{BUCKET}/lines.txt", mode="r", prefetch_storage=tiers(1), **SMALL) as f:
        assert f.readline() == "alpha\n"
        assert len(f.readlines()) == 2999
    with fs.open(f"{BUCKET}/lines.txt", prefetch_storage=tiers(1), **SMALL) as f:
        assert f.readline() == b"alpha\n" and next(iter(f)) == b"beta\n"


def test_nibabel_loads_a_trk_from_a_prefetching_file(fs, raw_fs, tiers):
    trk = Path(nib.__file__).parent / "tests" / "data" / "complex.trk"
    raw_fs.pipe(f"{BUCKET}/complex.trk", trk.read_bytes())
    reference = nib.streamlines.load(str(trk))
    with fs.open(f"{BUCKET}/complex.trk", prefetch_storage=tiers(1), block_size=4096, part_size=1024) as f:
        loaded = nib.streamlines.TrkFile.load(f)
    assert len(loaded.streamlines) == len(reference.streamlines) > 0
    for a, b in zip(loaded.streamlines, reference.streamlines):
        np.testing.assert_array_equal(a, b)
    for key in reference.tractogram.data_per_point:
        np.testing.assert_array_equal(
            loaded.tractogram.data_per_point[key].get_data(), reference.tractogram.data_per_point[key].get_data()
        )


def test_filesystem_and_open_file_pickle(fs, raw_fs, tiers):
    paths = put_shards(raw_fs, [1000, 100_000, 100_000])
    expected = logical_bytes(raw_fs, paths, 1000)
    fs2 = pickle.loads(pickle.dumps(fs))
    assert isinstance(fs2, S3PrefetchFileSystem) and fs2.ls(BUCKET) == fs.ls(BUCKET)
    storage = tiers(1)
    with fs.open(paths, header_bytes=1000, prefetch_storage=storage, **SMALL) as f:
        f.seek(123_456)
        g = pickle.loads(pickle.dumps(f))
        try:
            assert g.tell() == 123_456 and g.size == f.size
            assert g.read() == expected[123_456:] == f.read()
        finally:
            g.close()


def test_several_files_share_a_tier_directory(fs, raw_fs, tiers):
    paths = put_shards(raw_fs, [400_000, 300_000, 500_000])
    storage = tiers(0.5)
    files = [fs.open(p, prefetch_storage=storage, **SMALL) for p in paths]
    try:
        assert len(scratch_dirs(storage[0][0])) == 3  # one private directory each
        outputs = [io.BytesIO() for _ in files]
        while any(f.tell() < f.size for f in files):  # interleaved reads
            for f, out in zip(files, outputs):
                out.write(f.read(37_000))
        assert [o.getvalue() for o in outputs] == [raw_fs.cat(p) for p in paths]
    finally:
        for f in files:
            f.close()
    assert scratch_dirs(storage[0][0]) == []


def test_read_only_filesystem_still_lists_and_reads(fs, raw_fs):
    (path,) = put_shards(raw_fs, [1234])
    assert fs.exists(path) and fs.info(path)["size"] == 1234
    assert fs.ls(BUCKET) == [path] and fs.glob(f"{BUCKET}/*") == [path] and fs.find(BUCKET) == [path]
    assert fs.cat(path) == raw_fs.cat(path)
    assert fs.cat_file(path, start=10, end=20) == random_bytes(1234)[10:20]


def test_seek_back_within_a_block_whose_earlier_parts_are_still_arriving(s3_server, storage_options, raw_fs, tiers):
    """Parts of a block arrive concurrently: bytes ahead of the reader say nothing of bytes behind."""
    (path,) = put_shards(raw_fs, [MiB])
    expected = raw_fs.cat(path)
    with WanProxy(s3_server.endpoint_url, latency=0.05, bandwidth=MiB) as proxy:  # a 256 KiB part: 0.25 s
        slow = S3PrefetchFileSystem(**{**storage_options, "endpoint_url": proxy.endpoint_url}, skip_instance_cache=True)
        with slow.open(path, block_size=MiB, part_size=256 * 1024, prefetch_storage=tiers(2)) as f:
            f.seek(768 * 1024)
            assert f.read(1) == expected[768 * 1024 : 768 * 1024 + 1]  # part 3 has begun to arrive
            f.seek(100 * 1024)  # back into part 0, most of which is still on the wire
            assert same(f.read(200 * 1024), expected[100 * 1024 : 300 * 1024])
