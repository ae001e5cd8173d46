"""gzip-compressed tractograms (.trk.gz, .tck.gz, or any name): streamed through the engine, equal to nibabel."""

from __future__ import annotations

import gzip
import io
import os
import tracemalloc
import zlib

import nibabel as nib
import numpy as np
import pytest
from conftest import BUCKET
from nibabel.testing import data_path

from dask_prefetch import read_tractogram
from dask_prefetch.formats import CorruptTractogramError, open_reader
from dask_prefetch.formats.compression import (
    MAX_RATIO,
    GunzipStream,
    decompressed,
    gunzip_prefix,
    inflated_size_hint,
    is_gzip,
)

FILES = ["standard.trk", "complex.trk", "complex_big_endian.trk", "standard.tck", "simple_big_endian.tck"]


def nibabel_points(name: str) -> tuple[np.ndarray, np.ndarray]:
    tg = nib.streamlines.load(os.path.join(data_path, name)).streamlines
    return tg.get_data(), np.asarray(tg._lengths, np.int64)


def compressed(name: str, **kwargs) -> bytes:
    with open(os.path.join(data_path, name), "rb") as f:
        return gzip.compress(f.read(), **kwargs)


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("key", ["{name}.gz", "{name}"])  # detected by magic number, whatever the name
def test_a_compressed_file_on_s3_equals_nibabel_over_the_uncompressed_one(raw_fs, storage_options, tiers, name, key):
    raw_fs.pipe(f"{BUCKET}/{key.format(name=name)}", compressed(name))
    tg = read_tractogram(f"s3://{BUCKET}/{key.format(name=name)}", storage_options=storage_options,
                         prefetch_storage=tiers(8), block_size="64 KiB")
    points, lengths = nibabel_points(name)
    assert tg.npartitions == 1 and tg.header.format == name[-3:]
    got_points, got_lengths = tg.points.compute(), tg.n_points.compute()
    np.testing.assert_array_equal(got_lengths, lengths)
    np.testing.assert_array_equal(got_points, points)


def test_nibabel_reads_the_same_compressed_file(tmp_path):
    path = tmp_path / "standard.trk.gz"
    path.write_bytes(compressed("standard.trk"))
    points, _ = nibabel_points("standard.trk")
    np.testing.assert_array_equal(nib.streamlines.load(str(path)).streamlines.get_data(), points)  # the reference
    np.testing.assert_array_equal(read_tractogram(str(path)).points.compute(), points)


def test_a_list_of_compressed_and_plain_files_reads_as_complete_files(raw_fs, storage_options, tiers):
    raw_fs.pipe(f"{BUCKET}/a.trk.gz", compressed("standard.trk"))
    raw_fs.pipe(f"{BUCKET}/b.trk", open(os.path.join(data_path, "standard.trk"), "rb").read())
    tg = read_tractogram([f"s3://{BUCKET}/a.trk.gz", f"s3://{BUCKET}/b.trk"], storage_options=storage_options,
                         prefetch_storage=tiers(8))
    points, lengths = nibabel_points("standard.trk")
    np.testing.assert_array_equal(tg.n_points.compute(), np.concatenate([lengths, lengths]))
    np.testing.assert_array_equal(tg.points.compute(), np.concatenate([points, points]))


def test_a_compressed_shard_behind_a_global_header_is_refused(raw_fs, storage_options):
    raw = open(os.path.join(data_path, "standard.trk"), "rb").read()
    header = bytearray(raw[:1000])
    header[988:992] = np.int32(0).tobytes()
    raw_fs.pipe(f"{BUCKET}/t/h.trk", bytes(header))
    raw_fs.pipe(f"{BUCKET}/t/s1.trk.gz", gzip.compress(raw))
    with pytest.raises(ValueError, match=r"s1.trk.gz' is gzip-compressed; a global header's shards must be uncompressed"):
        read_tractogram([f"s3://{BUCKET}/t/h.trk", f"s3://{BUCKET}/t/s1.trk.gz"], layout="sharded",
                        storage_options=storage_options)


@pytest.mark.parametrize("damage", ["truncated", "flipped", "crc"])
def test_a_damaged_compressed_file_raises_naming_it(raw_fs, storage_options, tiers, damage):
    data = bytearray(compressed("standard.trk"))
    if damage == "truncated":
        data = data[: len(data) * 2 // 3]
    elif damage == "flipped":
        data[len(data) // 2] ^= 0xFF
    else:  # the deflate stream intact, its checksum not: only the CRC can tell
        data[-8:-4] = (zlib.crc32(b"other") & 0xFFFFFFFF).to_bytes(4, "little")
    raw_fs.pipe(f"{BUCKET}/bad.trk.gz", bytes(data))
    with pytest.raises(CorruptTractogramError, match=r"bad.trk.gz.*(gzip|truncated|end of file)"):
        # a small file's damage shows when the graph is built (its header is inflated then), else in the task
        read_tractogram(f"s3://{BUCKET}/bad.trk.gz", storage_options=storage_options, prefetch_storage=tiers(8)).points.compute()


def test_memory_stays_bounded_by_the_stream_not_the_file():
    """GunzipStream hands out what is asked for: reading 1 MiB at a time never holds the whole file."""
    body = np.random.default_rng(0).bytes(2**20) * 24  # 24 MiB that compress well
    stream = GunzipStream(io.BytesIO(gzip.compress(body, compresslevel=1)), "big.gz")
    pieces = []
    while piece := stream.read(2**20):
        assert len(piece) <= 2**20
        pieces.append(zlib.crc32(piece))
    assert len(pieces) == 24 and stream.tell() == len(body)


def test_helpers():
    data = compressed("standard.tck")
    assert is_gzip(data) and not is_gzip(b"TRACK")
    assert gunzip_prefix(data[:200], 13) == b"mrtrix tracks"
    with pytest.raises(CorruptTractogramError, match="does not inflate"):
        gunzip_prefix(b"\x1f\x8b" + b"\x00" * 30, 10, "x.gz")
    plain = io.BytesIO(b"TRACK....")
    assert decompressed(plain) is plain and plain.tell() == 0
    reader = open_reader(io.BytesIO(data), "standard.tck.gz")
    assert reader.header.format == "tck"
    with pytest.raises(io.UnsupportedOperation, match="cannot seek from its end"):
        GunzipStream(io.BytesIO(data)).seek(0, io.SEEK_END)


@pytest.mark.parametrize("damage", ["flipped", "crc", "truncated"])
def test_damage_past_the_header_raises_in_the_task_and_never_gives_other_points(raw_fs, storage_options, tiers, damage):
    rng = np.random.default_rng(1)
    walks = [np.cumsum(rng.normal(0, 1, (k, 3)), axis=0).astype(np.float32) for k in rng.integers(2, 60, 8000)]
    buf = io.BytesIO()
    nib.streamlines.TrkFile(nib.streamlines.Tractogram(walks, affine_to_rasmm=np.eye(4))).save(buf)
    data = bytearray(gzip.compress(buf.getvalue()))
    assert len(data) > 2 * 2**20  # the damage lies far past the bytes read when the graph is built
    if damage == "flipped":
        data[len(data) // 2] ^= 0x55
    elif damage == "crc":
        data[-8:-4] = (zlib.crc32(b"other") & 0xFFFFFFFF).to_bytes(4, "little")
    else:
        data = data[: len(data) // 2]
    raw_fs.pipe(f"{BUCKET}/big.trk.gz", bytes(data))
    tg = read_tractogram(f"s3://{BUCKET}/big.trk.gz", storage_options=storage_options, prefetch_storage=tiers(8),
                         block_size="256 KiB")
    with pytest.raises(CorruptTractogramError, match=r"big.trk.gz.*(gzip|truncated)"):
        tg.points.compute()


def test_the_decompressed_size_hint_comes_from_the_trailer_and_is_capped():
    body = b"x" * 100_000
    packed = gzip.compress(body)
    assert inflated_size_hint(packed[-4:], len(packed)) == len(body)
    assert inflated_size_hint(packed[-4:] + b"", 10) == 10 * MAX_RATIO  # a trailer claiming more than can inflate
    assert inflated_size_hint(b"\x01", 1) == 0
    two = gzip.compress(body) + gzip.compress(b"y" * 10)  # two members: the last one's length, a lower bound
    assert inflated_size_hint(two[-4:], len(two)) == 10


@pytest.mark.parametrize("store", ["local", "s3"])
def test_a_compressed_file_read_into_one_array_is_sized_from_its_trailer(tmp_path, raw_fs, storage_options, tiers,
                                                                         store):
    """Parsed into one array, a .trk.gz's points are allocated once, at about their size, not guessed (64 MiB)
    and doubled: the graph build reads each compressed file's last 4 bytes."""
    from dask_prefetch.testing.tractograms import synthetic_streamlines, trk_bytes

    raw = trk_bytes(synthetic_streamlines(15000, 4))  # ~20 MB of records
    if store == "local":
        (tmp_path / "t.trk.gz").write_bytes(gzip.compress(raw, compresslevel=1))
        tg = read_tractogram(str(tmp_path / "t.trk.gz"))
    else:
        raw_fs.pipe(f"{BUCKET}/t.trk.gz", gzip.compress(raw, compresslevel=1))
        tg = read_tractogram(f"s3://{BUCKET}/t.trk.gz", storage_options=storage_options, prefetch_storage=tiers(8),
                             block_size="1 MiB")
    ((name, hint),) = tg.partitions[0].inflated
    assert hint == len(raw) and name.endswith("t.trk.gz")
    tg.to_chunks().compute(scheduler="sync")  # once before: kernels loaded, imports made
    tracemalloc.start()
    try:
        (chunk,) = tg.to_chunks().compute(scheduler="sync")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    want = nib.streamlines.load(io.BytesIO(raw)).streamlines
    np.testing.assert_array_equal(chunk.points, want.get_data())
    assert peak < 2 * len(raw) < 64 * 2**20, (peak, len(raw))
