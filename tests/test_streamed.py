"""``map_chunks(func, per="chunk")``: the user's function on each chunk as it is parsed, inside the read task.

Each partition's streamed chunks, joined, must equal its one chunk of the default path (and
nibabel's / trx-python's streamlines); every check of the default path must still fail the task;
and the function runs before the partition's last byte has arrived.
"""

from __future__ import annotations

import gzip
import io
import os
import tracemalloc
import zlib

import dask
import nibabel as nib
import numpy as np
import pytest
from conftest import BUCKET, client_with_both_plugins, next_task_counters
from nibabel.testing import data_path
from trx import trx_file_memmap as tmm

from dask_prefetch import process_stats, read_tractogram
from dask_prefetch.formats import CorruptTractogramError, StreamlineChunk
from dask_prefetch.formats.trk import parse_trk_header
from dask_prefetch.testing.tractograms import synthetic_streamlines, trk_bytes, upload_sharded
from dask_prefetch.testing.trx import write_trx


def dipy_file(name: str) -> str:
    import dipy

    return os.path.join(os.path.dirname(dipy.__file__), "data", "files", name)


def nibabel_file(name: str) -> str:
    return os.path.join(data_path, name)


def with_n_count(data: bytes, n: int) -> bytes:
    out = bytearray(data)
    order = parse_trk_header(data[:1000]).fields["_endianness"]
    out[988:992] = np.int32(n).astype(np.dtype(order + "i4")).tobytes()
    return bytes(out)


def nibabel_reference(blobs: list[bytes]) -> StreamlineChunk:
    """What nibabel reads from these files one after the other (TRK scalars and properties too)."""
    chunks = []
    for data in blobs:
        data = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        cls = nib.streamlines.TrkFile if data[:5] == b"TRACK" else nib.streamlines.TckFile
        tg = cls.load(io.BytesIO(data), lazy_load=False).tractogram
        s = tg.streamlines
        dpp, dps = tg.data_per_point, tg.data_per_streamline
        scalars = np.hstack([dpp[k].get_data() for k in dpp]) if dpp else None
        props = np.hstack([dps[k] for k in dps]) if dps else None
        if len(s):
            chunks.append(StreamlineChunk(s.get_data(), np.asarray(s._lengths, np.int64), scalars, props))
    return StreamlineChunk.concat(chunks)


def as_one_stream(objects: dict[str, bytes]) -> bytes:
    """A global header's objects as the one TRK they stand for: the header, then every shard's body."""
    header, *shards = objects.values()
    return header + b"".join(data[1000:] for data in shards)


def sharded(tmp_path) -> dict[str, bytes]:
    """A global header and three TRK shards (upload_sharded's layout), as objects by name."""
    import fsspec

    paths = upload_sharded(fsspec.filesystem("file"), str(tmp_path / "t"), [synthetic_streamlines(n, s) for n, s in
                                                                              ((40, 1), (0, 2), (70, 3))])
    return {os.path.basename(p): open(p, "rb").read() for p in paths}


def read(name: str) -> bytes:
    return open(name, "rb").read()


#: case -> (objects by name, read_tractogram options); each read by nibabel file by file is the reference
CASES = {
    "trk": lambda tmp: ({"tracks300.trk": read(dipy_file("tracks300.trk"))}, {}),
    "trk-split": lambda tmp: ({"tracks300.trk": read(dipy_file("tracks300.trk"))}, {"npartitions": 4}),
    "trk-split-n_count-fewer": lambda tmp: (  # nibabel stops after 120: the range it ends in is cut
        {"tracks300.trk": with_n_count(read(dipy_file("tracks300.trk")), 120)}, {"npartitions": 4}),
    "trk-scalars-properties": lambda tmp: ({"complex.trk": read(nibabel_file("complex.trk"))}, {}),
    "trk-big-endian": lambda tmp: ({"cbe.trk": read(nibabel_file("complex_big_endian.trk"))}, {}),
    "trk-files": lambda tmp: ({"a.trk": read(nibabel_file("standard.trk")), "b.trk": read(dipy_file("tracks300.trk"))},
                              {"npartitions": 1}),
    "tck-split": lambda tmp: ({"standard.tck": read(nibabel_file("standard.tck"))}, {"npartitions": 3}),
    "trk-gz": lambda tmp: ({"tracks300.trk.gz": gzip.compress(read(dipy_file("tracks300.trk")))}, {}),
    "tck-gz": lambda tmp: ({"standard.tck.gz": gzip.compress(read(nibabel_file("standard.tck")))}, {}),
    "sharded": lambda tmp: (sharded(tmp), {"npartitions": 2}),
}


def put(objects: dict[str, bytes], store: str, tmp_path, raw_fs, storage_options, tiers) -> tuple[list[str], dict]:
    if store == "local":
        for name, data in objects.items():
            (tmp_path / name).write_bytes(data)
        return [str(tmp_path / name) for name in objects], {}
    for name, data in objects.items():
        raw_fs.pipe(f"{BUCKET}/{name}", data)
    options = dict(storage_options=storage_options, prefetch_storage=tiers(8), block_size="16 KiB")
    return [f"s3://{BUCKET}/{name}" for name in objects], options


def identity(chunk: StreamlineChunk) -> StreamlineChunk:
    return chunk


def assert_same(got: StreamlineChunk, want: StreamlineChunk) -> None:
    np.testing.assert_array_equal(got.lengths, want.lengths)
    np.testing.assert_array_equal(got.points, want.points)
    assert got.points.dtype == np.float32 and got.lengths.dtype == np.int64
    for name in ("scalars", "properties"):
        a, b = getattr(got, name), getattr(want, name)
        assert (a is None) == (b is None), name
        if a is not None:
            np.testing.assert_array_equal(a, b)
    for kind in ("data_per_point", "data_per_streamline"):
        a, b = getattr(got, kind), getattr(want, kind)
        assert sorted(a) == sorted(b), kind
        for key in a:
            assert a[key].dtype == b[key].dtype
            np.testing.assert_array_equal(a[key], b[key])


def streamed_and_whole(tg, scheduler: str | None) -> tuple[list[list[StreamlineChunk]], list[StreamlineChunk]]:
    """Per partition: the chunks the streamed path handed to ``func``, and the default path's one chunk."""
    parts = tg.map_chunks(identity, per="chunk").to_delayed()
    whole = tg.to_chunks().to_delayed()
    got = dask.compute(*parts, *whole, scheduler=scheduler)
    return [list(p) for p in got[: len(parts)]], [p[0] for p in got[len(parts) :]]


def assert_streamed_equals_whole(tg, scheduler: str | None) -> StreamlineChunk:
    streamed, whole = streamed_and_whole(tg, scheduler)
    assert len(streamed) == len(whole) == tg.npartitions
    for chunks, one in zip(streamed, whole):
        assert all(len(c) for c in chunks)  # never an empty chunk
        joined = StreamlineChunk.concat(chunks) if chunks else one.head(0)
        assert_same(joined, one)
    return StreamlineChunk.concat([c for chunks in streamed for c in chunks])


@pytest.mark.parametrize("store", ["local", "s3"])
@pytest.mark.parametrize("case", list(CASES))
def test_streamed_chunks_equal_the_one_chunk_path_and_nibabel(tmp_path, raw_fs, storage_options, tiers, store, case):
    objects, kwargs = CASES[case](tmp_path)
    paths, options = put(objects, store, tmp_path, raw_fs, storage_options, tiers)
    tg = read_tractogram(paths, chunk_size="4 KiB", **kwargs, **options)
    if "split" in case:
        assert tg.npartitions == kwargs["npartitions"]
    got = assert_streamed_equals_whole(tg, "threads")
    want = nibabel_reference([as_one_stream(objects)] if case == "sharded" else list(objects.values()))
    assert_same(StreamlineChunk(got.points, got.lengths, got.scalars, got.properties), want)
    n_chunks = len(tg.map_chunks(len, per="chunk").compute(scheduler="threads"))
    if want.points.nbytes > 8 * 4096 * tg.npartitions:
        assert n_chunks > 2 * tg.npartitions  # chunked within partitions, not one call each


@pytest.mark.parametrize("store", ["local", "s3"])
@pytest.mark.parametrize("storage", ["stored", "deflated"])
def test_trx_streamed_equals_trx_python(tmp_path, raw_fs, storage_options, tiers, storage, store):
    """Chunks of 4 KiB of positions, the rows of every array taken side by side (inflated as taken)."""
    path = write_trx(tmp_path / "t.trx", "tracks300.trk", storage=storage, dpv={"fa": np.float16},
                     dps={"weight": np.float64})
    (url,), options = put({"t.trx": path.read_bytes()}, store, tmp_path, raw_fs, storage_options, tiers)
    tg = read_tractogram(url, npartitions=3, chunk_size="4 KiB", **options)
    got = assert_streamed_equals_whole(tg, "threads")
    assert len(tg.map_chunks(len, per="chunk").compute(scheduler="threads")) > 2 * tg.npartitions
    ref = tmm.load(str(path))
    try:
        np.testing.assert_array_equal(got.points, np.asarray(ref.streamlines._data).astype(np.float32))
        np.testing.assert_array_equal(got.lengths, ref.streamlines._lengths)
        np.testing.assert_array_equal(got.data_per_point["fa"], ref.data_per_vertex["fa"]._data)
        np.testing.assert_array_equal(got.data_per_streamline["weight"], ref.data_per_streamline["weight"])
    finally:
        ref.close()


def test_on_a_cluster_with_the_plugins_streamed_tasks_are_prefetched_like_the_others(
    raw_fs, storage_options, tiers, tmp_path
):
    """Streamed tasks are ``read_partition`` tasks too: the plugins open each worker's next partition
    ahead and the task claims it; the results equal the default path's, in order."""
    objects = sharded(tmp_path) | {f"t.pt{i:03d}": trk_bytes(synthetic_streamlines(30, 10 + i)) for i in range(3, 6)}
    for name, data in objects.items():
        raw_fs.pipe(f"{BUCKET}/{name}", data)
    with client_with_both_plugins(tiers(64)) as client:
        tg = read_tractogram(f"s3://{BUCKET}/t.*", storage_options=storage_options, block_size="16 KiB",
                             chunk_size="4 KiB")
        assert tg.npartitions == 6
        got = assert_streamed_equals_whole(tg, None)
        counts = tg.map_chunks(len, per="chunk").compute()
        per_worker = next_task_counters(client)
    assert sum(counts) == len(got) and len(counts) > tg.npartitions
    want = nibabel_reference([as_one_stream(objects)])
    assert_same(got, want)
    assert sum(c for _, c in per_worker.values()) == sum(a for a, _ in per_worker.values()) > 0, per_worker


def test_the_function_runs_before_the_partitions_last_byte_is_fetched(raw_fs, storage_options, tiers):
    """Ordering, not speed: a 0.5 MiB tier lets the engine hold at most that much ahead of the parser,
    so the first chunk's call sees well under the 3.8 MiB fetched; the one-chunk path's one call sees all."""
    data = trk_bytes(synthetic_streamlines(3000, 1))
    raw_fs.pipe(f"{BUCKET}/one.trk", data)
    fetched: dict[str, list[int]] = {"chunk": [], "partition": []}
    for per, seen in fetched.items():
        tg = read_tractogram(f"s3://{BUCKET}/one.trk", storage_options=storage_options, prefetch_storage=tiers(0.5),
                             block_size="64 KiB", chunk_size="64 KiB")
        base = process_stats().bytes_fetched

        def call(chunk: StreamlineChunk, seen=seen, base=base) -> int:
            seen.append(process_stats().bytes_fetched - base)
            return len(chunk)

        assert sum(tg.map_chunks(call, per=per).compute(scheduler="sync")) == 3000
    assert fetched["partition"] == [fetched["partition"][0]] and fetched["partition"][0] >= len(data) - 1000
    assert len(fetched["chunk"]) > 10 and fetched["chunk"][0] < len(data) / 4, fetched["chunk"][:3]
    assert fetched["chunk"] == sorted(fetched["chunk"]) and fetched["chunk"][-1] >= len(data) - 1000


def calls_then(results: list, error: type, match: str, tg) -> None:
    """The streamed compute raises ``error``, after ``func`` ran on chunks before the damage."""
    with pytest.raises(error, match=match):
        tg.map_chunks(lambda c: results.append(len(c)) or len(c), per="chunk").compute(scheduler="threads")
    assert results, "func was never called: the damage was found before any chunk"


def test_a_truncated_record_at_the_end_fails_the_task_after_the_chunks_before(tmp_path):
    (tmp_path / "cut.trk").write_bytes(read(dipy_file("tracks300.trk"))[:-10])
    calls_then([], CorruptTractogramError, r"cut.trk: at byte \d+: truncated record",
               read_tractogram(str(tmp_path / "cut.trk"), chunk_size="4 KiB"))


@pytest.mark.parametrize("damage", ["crc", "truncated"])
def test_a_damaged_gzip_stream_fails_the_task(raw_fs, storage_options, tiers, damage):
    data = bytearray(gzip.compress(trk_bytes(synthetic_streamlines(800, 4))))
    if damage == "crc":  # found only after the last byte: the deflate stream is intact
        data[-8:-4] = (zlib.crc32(b"other") & 0xFFFFFFFF).to_bytes(4, "little")
    else:
        data = data[: len(data) * 3 // 4]
    raw_fs.pipe(f"{BUCKET}/bad.trk.gz", bytes(data))
    tg = read_tractogram(f"s3://{BUCKET}/bad.trk.gz", storage_options=storage_options, prefetch_storage=tiers(8),
                         block_size="64 KiB", chunk_size="16 KiB")
    calls_then([], CorruptTractogramError, r"bad.trk.gz.*(gzip|truncated)", tg)


def test_a_shard_holding_more_than_its_count_fails_the_streamed_task_too(tmp_path):
    objects = sharded(tmp_path)
    data = bytearray(objects["t.pt002"])
    data[988:992] = np.int32(3).tobytes()  # claims 3 of its 70
    (tmp_path / "t.pt002").write_bytes(bytes(data))
    tg = read_tractogram(str(tmp_path / "t.*"), chunk_size="4 KiB", npartitions=1)
    calls_then([], CorruptTractogramError, r"t\.pt002: at byte 988: its own header claims n_count=3 but it holds 70",
               tg)


def test_a_range_of_a_hostile_split_file_gives_nibabels_results_or_raises(tmp_path):
    from test_trk_split import hostile

    data = hostile()
    (tmp_path / "h.trk").write_bytes(data)
    ref = nibabel_reference([data])
    errors = 0
    for k in (2, 3, 5, 8):
        tg = read_tractogram(str(tmp_path / "h.trk"), npartitions=k, chunk_size="1 KiB")
        try:
            got = StreamlineChunk.concat(tg.map_chunks(identity, per="chunk").compute(scheduler="threads"))
        except CorruptTractogramError as e:
            assert "h.trk" in str(e) and "byte" in str(e)
            errors += 1
            continue
        assert_same(got, ref)
    assert errors  # the fake chain was caught, not read


def test_a_persisted_tractogram_maps_its_kept_chunks_and_other_arguments_are_refused(tmp_path):
    path = dipy_file("tracks300.trk")
    tg = read_tractogram(path, npartitions=2)
    kept = tg.persist(scheduler="threads")
    counts = kept.map_chunks(len).compute(scheduler="sync")
    assert kept.map_chunks(len, per="chunk").compute(scheduler="sync") == counts and sum(counts) == 300
    assert sum(tg.map_chunks(len, per="chunk").compute(scheduler="sync")) == 300
    sums = [tg.map_chunks(lambda c, k=k: k * len(c), per="chunk").sum().compute(scheduler="sync") for k in (1, 2)]
    assert sums == [300, 600]  # keys differ with the function
    with pytest.raises(ValueError, match="per must be 'partition' or 'chunk', got 'file'"):
        tg.map_chunks(len, per="file")


def x_and_fa_sum(chunk: StreamlineChunk) -> float:
    return float(chunk.points[:, 0].sum(dtype=np.float64) + chunk.data_per_point["fa"].sum(dtype=np.float64))


def test_a_streamed_task_over_a_deflated_trx_holds_a_few_chunks_not_its_file(tmp_path):
    """A deflated TRX is one partition: streamed, its members are inflated as chunks are taken."""
    (tmp_path / "big.trk").write_bytes(trk_bytes(synthetic_streamlines(20000, 5)))
    path = write_trx(tmp_path / "big.trx", str(tmp_path / "big.trk"), storage="deflated", dpv={"fa": np.float16})
    peaks, sums = {}, {}
    for per in ("partition", "chunk"):
        tg = read_tractogram(str(path), chunk_size="512 KiB")
        assert tg.npartitions == 1
        bag = tg.map_chunks(x_and_fa_sum, per=per)
        tracemalloc.start()
        try:
            sums[per] = sum(bag.compute(scheduler="sync"))
            peaks[per] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    points_bytes = int(tg.lengths.sum().compute(scheduler="sync")) * 12
    assert peaks["partition"] > 0.8 * points_bytes, (peaks, points_bytes)
    assert peaks["chunk"] < points_bytes / 3, (peaks, points_bytes)
    np.testing.assert_allclose(sums["chunk"], sums["partition"], rtol=1e-6)


def test_a_streamed_task_holds_a_few_chunks_not_its_partition(tmp_path):
    """tracemalloc's peak of one task over a ~16 MB TRK: the one-chunk path holds every point at once,
    the streamed one a few chunks (0.5 MiB of records; one more parsed ahead) at a time."""
    (tmp_path / "big.trk").write_bytes(trk_bytes(synthetic_streamlines(12000, 5)))
    size = os.path.getsize(tmp_path / "big.trk")
    peaks = {}
    for per in ("partition", "chunk"):
        tg = read_tractogram(str(tmp_path / "big.trk"), chunk_size="512 KiB")
        bag = tg.map_chunks(lambda c: float(c.points[:, 0].sum(dtype=np.float64)), per=per)
        tracemalloc.start()
        try:
            total = sum(bag.compute(scheduler="sync"))
            peaks[per] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        peaks[per + " sum"] = total
    assert peaks["partition"] > 0.8 * size, peaks
    assert peaks["chunk"] < min(size, peaks["partition"]) / 2, peaks
    np.testing.assert_allclose(peaks["chunk sum"], peaks["partition sum"], rtol=1e-9)
